//! leaderrun's side of the child: start the guard (the crate `leaderrun-guard`, guard/), which
//! starts the job and keeps it on a lifeline; tell it each new deadline; forward signals
//! through it; ask it to stop the whole tree; read what it reports. Knows nothing of
//! Kubernetes. Which signals are forwarded and which end a wait is stated in
//! guard/src/signals.rs (`FORWARDED`, `ends_wait`); what the guard does, at the top of
//! guard/src/lib.rs.
//!
//! Its own rules:
//! - a death by signal N is reported as exit code 128+N;
//! - leaderrun reaps only the guard, by pid, so kube's exec credential plugins keep their
//!   exit status. It is a child subreaper too (orphans of a guard that died come to it), and
//!   it reaps a zombie child that nobody else reaped within a second, so it can be PID 1;
//! - a stop is sent to the guard before anything is logged.

use std::ffi::OsString;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::net::unix::pipe;
use tokio::signal::unix::{signal, Signal as SignalStream, SignalKind};
use tokio::time::Instant;

use crate::guard::wire::{GuardArgs, Report, RECORD};
use crate::signals::{self, ends_wait, FORWARDED};
use crate::standby::{boottime_deadline, spawn_guard};
pub use crate::standby::{GuardLine, GuardSpec, Standby};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildExit {
    Code(i32),
    Signal(i32),
}

impl ChildExit {
    pub fn exit_code(self) -> u8 {
        match self {
            ChildExit::Code(c) => (c & 0xff) as u8,
            ChildExit::Signal(n) => crate::exit::for_signal(n),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("command not found: {0}")]
    NotFound(String),
    #[error("command is not executable: {0} ({1})")]
    NotExecutable(String, std::io::Error),
    #[error("cannot start {0}: {1}")]
    Other(String, std::io::Error),
    #[error("cannot start the guard process: {0}")]
    Guard(std::io::Error),
    /// The leadership's deadline passed before the job could start (leaderrun was stopped
    /// or stalled after winning the lock): the guard did not start it.
    #[error("the leadership's renew deadline passed before the child could start")]
    DeadlinePassed,
}

impl SpawnError {
    pub fn exit_code(&self) -> u8 {
        match self {
            SpawnError::NotFound(_) => crate::exit::NOT_FOUND,
            SpawnError::DeadlinePassed => crate::exit::LEADERSHIP_LOST,
            _ => crate::exit::NOT_EXECUTABLE,
        }
    }
}

/// Listens for signals to forward. Created before the lock is acquired, so that a TERM
/// while waiting is seen rather than killing us mid-write.
pub struct Signals {
    streams: Vec<(Signal, SignalStream)>,
}

impl Signals {
    pub fn new() -> std::io::Result<Signals> {
        let mut streams = Vec::new();
        for s in FORWARDED {
            streams.push((s, signal(SignalKind::from_raw(s as i32))?));
        }
        Ok(Signals { streams })
    }

    /// The next signal received.
    pub async fn recv(&mut self) -> Signal {
        let futs = self.streams.iter_mut().map(|(s, st)| {
            let s = *s;
            Box::pin(async move {
                st.recv().await;
                s
            })
        });
        futures::future::select_all(futs).await.0
    }

    /// The next signal that ends a wait; the others are dropped.
    pub async fn next_ending_wait(&mut self) -> Signal {
        loop {
            let s = self.recv().await;
            if ends_wait(s) {
                return s;
            }
            tracing::debug!(signal = ?s, "ignored while no child runs");
        }
    }
}

/// What the job needs to start.
pub struct JobSpec<'a> {
    pub command: &'a [OsString],
    pub env: &'a [(String, String)],
    pub grace: Duration,
    pub stop_signal: Signal,
    /// When the stop must start if no renew moves it.
    pub deadline: Instant,
}

/// Something the guard reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEvent {
    /// The job's leader ended; leftovers of its tree are being stopped.
    Exited(ChildExit),
    /// The job's leader was stopped by this signal (Ctrl-Z in a terminal).
    Stopped(Signal),
    /// Nothing to act on (the job's start, which leaderrun knows already).
    Continued,
    /// The guard's own deadline passed without a renew: it is stopping the tree.
    DeadlinePassed,
    /// The job's leader ended and left processes behind; the guard is stopping them.
    Leftovers(i32),
    /// Nothing of the job's tree is left.
    Gone,
    /// The guard itself died: leaderrun stopped what it could of the tree.
    GuardLost,
}

/// A started job, behind its guard.
pub struct Job {
    guard: Pid,
    line: GuardLine,
    reports: pipe::Receiver,
    buf: [u8; RECORD * 8],
    held: usize,
    pid: Pid,
    /// The job was given the terminal's foreground (leaderrun runs interactively).
    foreground: bool,
    took_terminal: bool,
    exit: Option<ChildExit>,
    gone: bool,
}

pub fn is_foreground_of_terminal() -> bool {
    let stdin = std::io::stdin();
    std::io::IsTerminal::is_terminal(&stdin)
        && nix::unistd::tcgetpgrp(&stdin).ok() == Some(nix::unistd::getpgrp())
}

/// The guard for `spec`: `standby` armed, if it was started for this job and the job does not
/// take the terminal; else one started now.
fn guard_for(
    spec: &JobSpec<'_>,
    standby: Option<Standby>,
    foreground: bool,
) -> std::io::Result<(Pid, GuardLine, pipe::Receiver)> {
    let job = GuardSpec {
        command: spec.command,
        env: spec.env,
        late: &[],
        grace: spec.grace,
        stop_signal: spec.stop_signal,
    };
    // Dropped unarmed, a standby exits on its own (its pipe closes); the stray reaper reaps it.
    if let Some(armed) = standby
        .filter(|_| !foreground)
        .and_then(|s| s.arm(&job, spec.deadline))
    {
        return Ok(armed);
    }
    let args = GuardArgs {
        grace: spec.grace,
        stop_signal: spec.stop_signal,
        deadline: Some(boottime_deadline(spec.deadline)),
        foreground,
        late: Vec::new(),
        command: spec.command.to_vec(),
    };
    spawn_guard(&args, spec.env)
}

impl Job {
    /// Starts the job in its own process group with `env` added: through `standby` if it was
    /// started for this job, else through a guard started now.
    pub async fn start(spec: JobSpec<'_>, standby: Option<Standby>) -> Result<Job, SpawnError> {
        let name = spec
            .command
            .first()
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default();
        let foreground = is_foreground_of_terminal();
        let (guard, line, reports) =
            guard_for(&spec, standby, foreground).map_err(SpawnError::Guard)?;
        let mut job = Job {
            guard,
            line,
            reports,
            buf: [0; RECORD * 8],
            held: 0,
            pid: Pid::from_raw(0),
            foreground,
            took_terminal: foreground,
            exit: None,
            gone: false,
        };
        match job.read_report().await {
            Some(Report::Started(pid)) => {
                job.pid = Pid::from_raw(pid);
                Ok(job)
            }
            Some(Report::DeadlinePassed) => {
                job.wait_guard().await;
                Err(SpawnError::DeadlinePassed)
            }
            Some(Report::SpawnFailed(errno)) => {
                job.wait_guard().await;
                let e = std::io::Error::from_raw_os_error(errno);
                Err(match e.kind() {
                    std::io::ErrorKind::NotFound => SpawnError::NotFound(name),
                    std::io::ErrorKind::PermissionDenied => SpawnError::NotExecutable(name, e),
                    _ => SpawnError::Other(name, e),
                })
            }
            _ => {
                job.wait_guard().await;
                Err(SpawnError::Guard(std::io::Error::other(
                    "the guard exited before starting the job",
                )))
            }
        }
    }

    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The job runs in a terminal, in its foreground.
    pub fn interactive(&self) -> bool {
        self.foreground
    }

    /// The command line to the guard, for whoever sends deadlines.
    pub fn line(&self) -> GuardLine {
        self.line.clone()
    }

    /// Forwards `sig` to the job's process group.
    pub fn signal(&self, sig: Signal) {
        self.line.signal(sig);
    }

    /// Stops the whole tree (stop signal, KILL after the grace); `next` reports it gone.
    pub fn stop(&self) {
        self.line.stop();
    }

    /// The job's exit status, once it has ended.
    pub fn exit(&self) -> Option<ChildExit> {
        self.exit
    }

    /// The next report from the guard. Cancel-safe: partial records are kept.
    async fn read_report(&mut self) -> Option<Report> {
        loop {
            if self.held >= RECORD {
                let mut r = [0u8; RECORD];
                r.copy_from_slice(&self.buf[..RECORD]);
                self.buf.copy_within(RECORD..self.held, 0);
                self.held -= RECORD;
                if let Some(report) = Report::decode(&r) {
                    return Some(report);
                }
                continue;
            }
            if self.reports.readable().await.is_err() {
                return None;
            }
            let held = self.held;
            match self.reports.try_read(&mut self.buf[held..]) {
                Ok(0) => return None,
                Ok(n) => self.held += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return None,
            }
        }
    }

    /// What happened next to the job. After `Gone` (or `GuardLost`) it keeps returning that.
    pub async fn next(&mut self) -> JobEvent {
        if self.gone {
            return JobEvent::Gone;
        }
        match self.read_report().await {
            Some(Report::Exited(code)) => {
                let exit = if code < 0 {
                    ChildExit::Signal(-code)
                } else {
                    ChildExit::Code(code)
                };
                self.exit = Some(exit);
                if self.took_terminal {
                    self.took_terminal = false;
                    take_terminal();
                }
                JobEvent::Exited(exit)
            }
            Some(Report::JobStopped(sig)) => {
                JobEvent::Stopped(Signal::try_from(sig).unwrap_or(Signal::SIGTSTP))
            }
            Some(Report::DeadlinePassed) => JobEvent::DeadlinePassed,
            Some(Report::Leftovers(n)) => JobEvent::Leftovers(n),
            Some(Report::TreeGone) => {
                self.gone = true;
                self.wait_guard().await;
                JobEvent::Gone
            }
            Some(Report::Started(_) | Report::SpawnFailed(_)) => JobEvent::Continued,
            None => {
                // The guard died without saying the tree is gone: stop what it left.
                self.gone = true;
                self.stop_orphans();
                self.wait_guard().await;
                JobEvent::GuardLost
            }
        }
    }

    /// The guard does not answer: KILL it, the job's group and everything below us.
    pub fn kill_all(&mut self) {
        let _ = nix::sys::signal::kill(self.guard, Signal::SIGKILL);
        self.stop_orphans();
        self.gone = true;
    }

    /// The guard is gone: KILL the job's group and every descendant of this process but
    /// the guard (its orphans came to us as subreaper).
    fn stop_orphans(&self) {
        let _ = nix::sys::signal::killpg(self.pid, Signal::SIGKILL);
        let (mut tree, mut scratch) = (Vec::new(), Vec::new());
        crate::proc_tree::descendants(crate::proc_tree::proc_pid(), &mut tree, &mut scratch);
        for p in tree {
            if p != self.guard {
                let _ = nix::sys::signal::kill(p, Signal::SIGKILL);
            }
        }
    }

    /// Reaps the guard, by pid only. It exits right after its last report, and its exit
    /// closes the report pipe: wait for that end rather than poll (the release waits on it).
    async fn wait_guard(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let _ = tokio::time::timeout_at(deadline, async {
            while self.read_report().await.is_some() {}
        })
        .await;
        // The pipe closes a moment before the exit is reapable.
        let mut spins = 0;
        loop {
            match waitpid(self.guard, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                    spins += 1;
                    if spins < 200 {
                        tokio::task::yield_now().await;
                    } else {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                Err(Errno::EINTR) => {}
                _ => return,
            }
        }
    }

    /// Waits until nothing of the job's tree is left; returns the job's exit status if
    /// it is known.
    pub async fn wait_gone(&mut self) -> Option<ChildExit> {
        while !matches!(self.next().await, JobEvent::Gone | JobEvent::GuardLost) {}
        self.exit
    }

    /// The guard's pid (it is reaped here, not by the stray reaper).
    pub fn guard_pid(&self) -> Pid {
        self.guard
    }
}

/// Gives the terminal's foreground back to leaderrun's own group (after the job had it).
pub fn take_terminal() {
    signals::set_foreground(nix::unistd::getpgrp());
}

/// Gives the terminal's foreground to the job's group (on `fg` after Ctrl-Z), if it is
/// leaderrun's to give: after `bg` it is not, and the job goes on in the background.
pub fn give_terminal(job: Pid) {
    if is_foreground_of_terminal() {
        signals::set_foreground(job);
    }
}

/// Stops this process as a shell's job: the shell sees it stopped and prints its prompt.
/// Returns when the shell continues it (`fg`).
pub fn stop_self() {
    let _ = nix::sys::signal::kill(nix::unistd::getpid(), Signal::SIGSTOP);
}
