//! What a leadership's run leaves in the lock's last-run note, and `--once-per`'s check of
//! the note a leader finds.

use super::*;

/// How the child's exit reads in the last run's record.
pub(super) fn outcome_of(status: Option<ChildExit>) -> Outcome {
    match status {
        Some(ChildExit::Code(c)) => Outcome::Exited { exit_code: c },
        Some(ChildExit::Signal(s)) => Outcome::Signaled { signal: s },
        None => Outcome::Signaled {
            signal: Signal::SIGKILL as i32,
        },
    }
}

impl<H: Host> Context<'_, H> {
    /// This leadership's run, ended now, for the lock's record.
    pub(super) fn last_run<L: Lock>(
        &self,
        election: &Election<L>,
        l: &Leadership<L::Object>,
        outcome: Outcome,
    ) -> LastRun {
        let host = settings::host_name();
        let run = LastRun::ours(&l.held.record, host, outcome, election.wall_now());
        self.reporter.last_run(&run);
        run
    }

    /// `--once-per D`: the skip, when the lock's last run succeeded less than D ago.
    pub(super) fn ran_recently<L: Lock>(
        &self,
        election: &Election<L>,
        l: &Leadership<L::Object>,
    ) -> Option<Outcome> {
        let period = self.run.args.once_per?;
        let last = l.held.notes.last_run.as_deref().and_then(LastRun::parse)?;
        let ended = last.succeeded_at()?;
        let ago = record::seconds_between(ended, election.wall_now());
        if ago >= period.as_secs_f64() {
            return None;
        }
        info!(
            last_holder = %last.holder,
            host = last.host.as_deref().unwrap_or("-"),
            ended = %record::format_micros(ended),
            ago_seconds = ago as i64,
            "a run succeeded within --once-per; not running the job, releasing"
        );
        Some(Outcome::Skipped {
            because_of: Box::new(last),
        })
    }
}
