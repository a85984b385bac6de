//! What the run loop needs from the process it runs in: the signals that reach it, and a
//! job started behind a guard. `Process` is leaderrun's own (real signals, the guard process);
//! the simulation (tests/sim) provides simulated ones, so that it drives this very loop.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::time::Instant;

use crate::supervisor::{
    ChildExit, GuardLine, GuardSpec, Job, JobEvent, JobSpec, Signals, SpawnError, Standby,
};

/// Where a leadership stands, told to the host as it changes. leaderrun itself has nothing to
/// do with it (the reporter logs it); a simulation checks each leadership against the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Waiting for the lock begins.
    Waiting,
    /// The lock is won: the slot, its fencing token, and when the winning write was sent.
    Won {
        slot: usize,
        token: i32,
        sent: Instant,
    },
    /// The leadership is over: its job ended, or the stop after a loss begins.
    Ended,
}

/// The process the run loop runs in.
// Only single-threaded runtimes drive this (main.rs, the simulation): no Send bound.
#[allow(async_fn_in_trait)]
pub trait Host {
    type Job: JobControl;

    /// The next signal that ends a wait: TERM, INT, HUP or QUIT.
    async fn ending_signal(&mut self) -> Signal;

    /// The next signal to pass on to the job.
    async fn signal(&mut self) -> Signal;

    /// Starts the job behind its guard, which holds it to `spec.deadline`.
    async fn start(&mut self, spec: JobSpec<'_>) -> Result<Self::Job, SpawnError>;

    /// While waiting for the lock: get the guard ready, so that `start` after a win is quick.
    /// Nothing may start before `start`.
    fn prepare(&mut self, _spec: &GuardSpec<'_>) {}

    fn stage(&mut self, _stage: Stage) {}
}

/// A started job, behind its guard.
#[allow(async_fn_in_trait)]
pub trait JobControl {
    type Line: DeadlineLine;

    /// The next thing the guard reports. Cancel-safe.
    async fn next(&mut self) -> JobEvent;
    /// Waits until nothing of the job's tree is left; the job's exit status if known.
    async fn wait_gone(&mut self) -> Option<ChildExit>;
    /// Where renews send the guard's next deadline, while the run loop owns the job.
    fn line(&self) -> Self::Line;
    fn signal(&self, sig: Signal);
    /// Stops the whole tree: the stop signal now, KILL after the grace.
    fn stop(&self);
    /// The guard does not answer: kill everything of the job from here.
    fn kill_all(&mut self);
    fn exit(&self) -> Option<ChildExit>;
    fn pid(&self) -> Pid;
    /// The job runs in a terminal's foreground.
    fn interactive(&self) -> bool;
}

/// The guard's deadline, as renews move it.
pub trait DeadlineLine {
    fn extend(&self, deadline: Instant);
}

/// leaderrun's own process: its signals, the guard's pid for the stray reaper, and a guard
/// started while waiting.
pub struct Process {
    pub signals: Signals,
    pub guard: Arc<AtomicI32>,
    pub standby: Option<Standby>,
}

impl Host for Process {
    type Job = Job;

    async fn ending_signal(&mut self) -> Signal {
        self.signals.next_ending_wait().await
    }

    async fn signal(&mut self) -> Signal {
        self.signals.recv().await
    }

    async fn start(&mut self, spec: JobSpec<'_>) -> Result<Job, SpawnError> {
        let job = Job::start(spec, self.standby.take()).await?;
        self.guard
            .store(job.guard_pid().as_raw(), Ordering::Relaxed);
        // Leading needs little of the code that starting up, winning and starting the job
        // ran: it goes at the first renew, once all of that is done.
        TRIM_AT_RENEW.store(true, Ordering::Relaxed);
        Ok(job)
    }

    fn prepare(&mut self, spec: &GuardSpec<'_>) {
        // A job that takes the terminal is started as it starts (the terminal may change hands).
        if self.standby.is_some() || crate::supervisor::is_foreground_of_terminal() {
            return;
        }
        match Standby::start(spec) {
            Ok(s) => {
                tracing::debug!(pid = s.pid().as_raw(), "guard started, waiting to be armed");
                self.standby = Some(s);
            }
            // Not fatal: `start` starts one after the win instead.
            Err(e) => tracing::debug!(error = %e, "cannot start the guard ahead"),
        }
    }
}

impl JobControl for Job {
    type Line = GuardLine;

    async fn next(&mut self) -> JobEvent {
        Job::next(self).await
    }

    async fn wait_gone(&mut self) -> Option<ChildExit> {
        Job::wait_gone(self).await
    }

    fn line(&self) -> GuardLine {
        Job::line(self)
    }

    fn signal(&self, sig: Signal) {
        Job::signal(self, sig)
    }

    fn stop(&self) {
        Job::stop(self)
    }

    fn kill_all(&mut self) {
        Job::kill_all(self)
    }

    fn exit(&self) -> Option<ChildExit> {
        Job::exit(self)
    }

    fn pid(&self) -> Pid {
        Job::pid(self)
    }

    fn interactive(&self) -> bool {
        Job::interactive(self)
    }
}

/// Set at the job's start, taken by the first renew after it.
static TRIM_AT_RENEW: AtomicBool = AtomicBool::new(false);

impl DeadlineLine for GuardLine {
    fn extend(&self, deadline: Instant) {
        GuardLine::extend(self, deadline);
        if TRIM_AT_RENEW.swap(false, Ordering::Relaxed) {
            leaderrun_guard::trim::code_pages();
        }
    }
}
