//! The child: spawn it into its own process group, forward signals to the
//! group, stop it with a grace period, reap it and every orphan. Knows nothing
//! of Kubernetes.
//!
//! Rules, stated once:
//! - forwarded to the group: HUP INT QUIT USR1 USR2 ALRM TERM CONT WINCH URG
//!   VTALRM PROF IO PWR XCPU XFSZ, as tini does; not the synchronous faults (SEGV,
//!   BUS, FPE, ILL, TRAP, SYS, ABRT), not CHLD, TTIN, TTOU, TSTP (job control stays
//!   with the terminal, which talks to the child's group directly), and not PIPE;
//! - the child gets PR_SET_PDEATHSIG(SIGKILL): it dies with leaderrun;
//! - leaderrun is a child subreaper and reaps every zombie, so it can be PID 1;
//! - a death by signal N is reported as exit code 128+N;
//! - when the child ends, what is left of its group is stopped too, so nothing
//!   of this leadership outlives it.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, Signal as SignalStream, SignalKind};
use tokio::time::Instant;

/// Signals forwarded to the child's process group.
pub const FORWARDED: [Signal; 16] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGALRM,
    Signal::SIGTERM,
    Signal::SIGCONT,
    Signal::SIGWINCH,
    Signal::SIGURG,
    Signal::SIGVTALRM,
    Signal::SIGPROF,
    Signal::SIGIO,
    Signal::SIGPWR,
    Signal::SIGXCPU,
    Signal::SIGXFSZ,
];

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
    #[error("cannot watch for child exits: {0}")]
    Signals(std::io::Error),
}

impl SpawnError {
    pub fn exit_code(&self) -> u8 {
        match self {
            SpawnError::NotFound(_) => crate::exit::NOT_FOUND,
            _ => crate::exit::NOT_EXECUTABLE,
        }
    }
}

/// Makes this process a child subreaper, so orphans of the child come to us to be reaped.
pub fn become_subreaper() {
    // Not fatal: without it orphans go to init, which reaps them too.
    let _ = nix::sys::prctl::set_child_subreaper(true);
}

/// Listens for signals to forward. Created before the lock is acquired, so
/// that a TERM while waiting is seen rather than killing us mid-write.
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
}

pub struct Child {
    pid: Pid,
    sigchld: SignalStream,
    status: Option<ChildExit>,
    /// The terminal whose foreground group we gave the child, to take it back.
    took_terminal: bool,
}

fn is_foreground_of_terminal() -> bool {
    let stdin = std::io::stdin();
    std::io::IsTerminal::is_terminal(&stdin)
        && nix::unistd::tcgetpgrp(&stdin).ok() == Some(nix::unistd::getpgrp())
}

/// Starts the command in its own process group with `env` added.
pub fn spawn(command: &[OsString], env: &[(String, String)]) -> Result<Child, SpawnError> {
    let name = command
        .first()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Registered before the fork, so the child's exit cannot be missed.
    let sigchld = signal(SignalKind::child()).map_err(SpawnError::Signals)?;
    let foreground = is_foreground_of_terminal();
    let parent = nix::unistd::getpid();
    let mut cmd = std::process::Command::new(&command[0]);
    cmd.args(&command[1..])
        .envs(env.iter().map(|(k, v)| (k, v)));
    // SAFETY: only async-signal-safe calls (setpgid, prctl, getppid, signal, tcsetpgrp) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // leaderrun may have died between fork and prctl: then die now.
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::other(
                    "leaderrun exited while starting the child",
                ));
            }
            if foreground {
                // An interactive job gets the terminal, so Ctrl-C and reads reach it.
                use nix::sys::signal::{signal, SigHandler};
                let _ = signal(Signal::SIGTTOU, SigHandler::SigIgn);
                let _ = nix::unistd::tcsetpgrp(std::io::stdin(), nix::unistd::getpid());
                let _ = signal(Signal::SIGTTOU, SigHandler::SigDfl);
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => SpawnError::NotFound(name.clone()),
        std::io::ErrorKind::PermissionDenied => SpawnError::NotExecutable(name.clone(), e),
        _ => SpawnError::Other(name.clone(), e),
    })?;
    let pid = Pid::from_raw(child.id() as i32);
    // std's Child is never waited on: every reap goes through `reap`, which
    // also collects orphans (we may be PID 1).
    std::mem::forget(child);
    Ok(Child {
        pid,
        sigchld,
        status: None,
        took_terminal: foreground,
    })
}

impl Child {
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Reaps every exited child without blocking; remembers ours.
    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == self.pid => {
                    self.status = Some(ChildExit::Code(code))
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == self.pid => {
                    self.status = Some(ChildExit::Signal(sig as i32))
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        if self.status.is_some() && self.took_terminal {
            self.took_terminal = false;
            give_terminal_back();
        }
    }

    /// Waits for the child to exit (reaping orphans meanwhile).
    pub async fn wait(&mut self) -> ChildExit {
        loop {
            self.reap();
            if let Some(s) = self.status {
                return s;
            }
            self.sigchld.recv().await;
        }
    }

    pub fn signal_group(&self, sig: Signal) {
        // ESRCH: the group is gone already, which is what we want anyway.
        let _ = killpg(self.pid, sig);
    }

    fn group_alive(&mut self) -> bool {
        self.reap();
        !matches!(killpg(self.pid, None), Err(Errno::ESRCH))
    }

    /// Waits until every process of the group has exited, or `until`.
    async fn wait_group_until(&mut self, until: Instant) -> bool {
        loop {
            if !self.group_alive() {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            // Group members that are not our children send no SIGCHLD: poll too.
            tokio::select! {
                _ = self.sigchld.recv() => {}
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    }

    /// TERM to the group, KILL after `grace`; returns once the child is reaped
    /// and the group is gone.
    pub async fn stop(&mut self, grace: Duration) -> ChildExit {
        self.signal_group(Signal::SIGTERM);
        self.signal_group(Signal::SIGCONT);
        if !self.wait_group_until(Instant::now() + grace).await {
            self.signal_group(Signal::SIGKILL);
            // KILL cannot be ignored; a process in uninterruptible sleep may take a moment.
            self.wait_group_until(Instant::now() + Duration::from_secs(30))
                .await;
        }
        self.wait().await
    }

    /// After the child exited on its own: stop whatever it left in its group.
    pub async fn stop_leftovers(&mut self, grace: Duration) {
        if self.group_alive() {
            tracing::info!(
                pgid = self.pid.as_raw(),
                "the child left processes in its group; stopping them"
            );
            self.stop(grace).await;
        }
    }
}

fn give_terminal_back() {
    use nix::sys::signal::{signal, SigHandler};
    // SAFETY: changes this process's SIGTTOU disposition briefly; no handler runs.
    unsafe {
        let _ = signal(Signal::SIGTTOU, SigHandler::SigIgn);
        let _ = nix::unistd::tcsetpgrp(std::io::stdin(), nix::unistd::getpgrp());
        let _ = signal(Signal::SIGTTOU, SigHandler::SigDfl);
    }
}
