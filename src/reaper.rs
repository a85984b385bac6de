//! Reaping what nobody else reaps: leaderrun is a child subreaper (and may be PID 1), so
//! orphans come to it. Only zombies that stay a second are reaped, so that whoever started a
//! child (kube's exec credential plugins) reaps it by pid and keeps its exit status.

use std::time::Duration;

use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, Signal as SignalStream, SignalKind};

/// Makes this process a child subreaper, so that orphans come to it to be reaped.
pub fn become_subreaper() {
    // Not fatal: without it orphans go to init, which reaps them too.
    let _ = nix::sys::prctl::set_child_subreaper(true);
}

/// Reaps zombie children that nobody else reaps: orphans adopted as subreaper (or as
/// PID 1). A zombie is left alone for a second first, for whoever started it (kube runs
/// exec credential plugins and waits for them by pid).
pub struct Strays {
    sigchld: SignalStream,
    seen: Vec<i32>,
}

impl Strays {
    pub fn new() -> std::io::Result<Strays> {
        Ok(Strays {
            sigchld: signal(SignalKind::child())?,
            seen: Vec::new(),
        })
    }

    /// Runs for ever: after each SIGCHLD, looks twice, a second apart, and reaps a zombie
    /// that is still there. `except` is reaped by its owner.
    pub async fn reap(&mut self, except: impl Fn(i32) -> bool) {
        loop {
            if self.seen.is_empty() {
                self.sigchld.recv().await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            let zombies = zombie_children(&except);
            for pid in &zombies {
                if self.seen.contains(pid) {
                    let _ = waitpid(Pid::from_raw(*pid), Some(WaitPidFlag::WNOHANG));
                }
            }
            self.seen = zombies;
        }
    }
}

/// This process's children that are zombies, by their pid in this namespace.
fn zombie_children(except: impl Fn(i32) -> bool) -> Vec<i32> {
    let me = crate::proc_tree::proc_pid().as_raw();
    let mut all = Vec::new();
    crate::proc_tree::scan(&mut all);
    all.into_iter()
        .filter(|e| e.zombie && e.proc_ppid == me && !except(e.pid.as_raw()))
        .map(|e| e.pid.as_raw())
        .collect()
}
