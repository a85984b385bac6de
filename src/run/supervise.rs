//! The child while leading: the guard's reports, the renew loop and the signals to forward
//! in one `select!`, and keeping the lock a while after the child's exit.

use super::*;

/// Holds the lock a while longer after the child's exit (renewing), so that a copy
/// that starts a little late elsewhere does not run the job again. Ends after `keep`,
/// on a loss, or on TERM, INT, HUP or QUIT.
pub(super) async fn keep_lock<F: std::future::Future<Output = Lost> + Unpin>(
    reporter: &Reporter,
    host: &mut impl Host,
    keep: Duration,
    hold: &mut F,
) {
    reporter.keeping(keep);
    tokio::select! {
        biased;
        _ = tokio::time::sleep(keep) => {}
        lost = hold => {
            warn!(reason = %lost, "lost the lock while keeping it after the child's exit");
        }
        sig = host.ending_signal() => {
            info!(signal = ?sig, "signal while keeping the lock; releasing now");
        }
    }
}

/// Supervises the child: one `select!` over the guard's reports, the renew loop and the
/// signals to forward. Ends when nothing of the child's tree is left, or leadership is lost
/// (the stop goes to the guard before anything is logged).
pub(super) async fn supervise<F: std::future::Future<Output = Lost> + Unpin>(
    job: &mut impl JobControl,
    hold: &mut F,
    host: &mut impl Host,
    anchor: &mut watch::Receiver<Instant>,
    nudge: &Notify,
    reporter: &Reporter,
) -> End {
    // Set after Ctrl-Z and `fg`: the job continues only after a renew sent since then.
    let mut resuming: Option<Instant> = None;
    // The guard's deadline passed and it is stopping the child. The renew loop's own
    // deadline is the same moment: give it a little while to say why.
    let mut guard_stopped: Option<Instant> = None;
    let guard_reason = || Lost::Deadline {
        deadline: Duration::ZERO,
        last_error:
            "leaderrun did not renew in time (stopped or stuck); the guard stopped the child".into(),
    };
    loop {
        tokio::select! {
            // A loss first: when in doubt, stop. In order, too, so that a simulation's seed
            // replays the same choices.
            biased;
            lost = &mut *hold => {
                job.stop();
                return End::Lost(lost);
            }
            ev = job.next() => match ev {
                JobEvent::Exited(status) if guard_stopped.is_none() => reporter.child_exited(status),
                JobEvent::Gone if guard_stopped.is_some() => return End::Lost(guard_reason()),
                JobEvent::Gone => return End::Exited(job.exit()),
                JobEvent::DeadlinePassed => {
                    reporter.guard_deadline();
                    guard_stopped = Some(Instant::now() + Duration::from_millis(100));
                }
                JobEvent::GuardLost => {
                    reporter.guard_lost();
                    return End::Lost(Lost::Deadline {
                        deadline: Duration::ZERO,
                        last_error: "the guard process died".into(),
                    });
                }
                JobEvent::Stopped(sig) if job.interactive() && is_terminal_stop(sig) => {
                    // Ctrl-Z: stop with the job, so that the shell's prompt comes back.
                    supervisor::take_terminal();
                    supervisor::stop_self();
                    // `fg`: renew before the job may go on.
                    resuming = Some(Instant::now());
                    nudge.notify_one();
                }
                JobEvent::Leftovers(n) => reporter.leftovers(n),
                JobEvent::Exited(_) | JobEvent::Stopped(_) | JobEvent::Continued => {}
            },
            _ = sleep_until_some(guard_stopped) => return End::Lost(guard_reason()),
            // The shell's `fg` continues leaderrun with CONT: passing it on would let the
            // job go on before the renew (leaderrun sends its own CONT after it).
            sig = host.signal() => if !(sig == Signal::SIGCONT && resuming.is_some()) {
                job.signal(sig)
            },
            Ok(()) = anchor.changed(), if resuming.is_some() => {
                if resuming.is_some_and(|r| *anchor.borrow_and_update() >= r) {
                    resuming = None;
                    supervisor::give_terminal(job.pid());
                    job.signal(Signal::SIGCONT);
                }
            }
        }
    }
}
