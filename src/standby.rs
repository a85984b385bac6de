//! Starting the guard process (guard/): now, for a job about to start, or ahead of a win, as a
//! standby that a win arms with one pipe write (a handover then does not wait for this binary
//! to be executed again).

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::net::unix::pipe;

use tokio::time::Instant;

use crate::guard::wire::{boottime_now, Command, GuardArgs, COMMAND_FD, REPORT_FD};

/// The command pipe to the guard: cheap to clone, so that the renew observer can send
/// deadlines while the run loop owns the job.
#[derive(Clone)]
pub struct GuardLine(Arc<OwnedFd>);

impl GuardLine {
    pub(crate) fn send(&self, c: Command) {
        // Non-blocking and whole (16 bytes < PIPE_BUF). A guard that is gone or not reading
        // cannot be helped from here; it stops the tree on its own deadline.
        let _ = nix::unistd::write(self.0.as_fd(), &c.encode());
    }

    /// Moves the guard's deadline: `deadline` on tokio's clock, sent on CLOCK_BOOTTIME.
    pub fn extend(&self, deadline: Instant) {
        self.send(Command::Deadline(boottime_deadline(deadline)));
    }

    pub fn signal(&self, sig: Signal) {
        self.send(Command::Signal(sig as i32));
    }

    /// Stop the whole tree: the stop signal now, KILL after the grace.
    pub fn stop(&self) {
        self.send(Command::Stop);
    }
}

/// `deadline` (tokio's clock) as CLOCK_BOOTTIME nanoseconds: the same distance from now.
pub(crate) fn boottime_deadline(deadline: Instant) -> u64 {
    let now = Instant::now();
    let boot = boottime_now();
    let at = if deadline >= now {
        boot + (deadline - now)
    } else {
        boot.saturating_sub(now - deadline)
    };
    at.as_nanos().min(u128::from(u64::MAX)) as u64
}

/// A close-on-exec copy of `fd` numbered 10 or above, clear of the descriptors the
/// guard expects at 3 and 4.
fn high(fd: OwnedFd) -> std::io::Result<OwnedFd> {
    let raw = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10))?;
    // SAFETY: fcntl returned a new descriptor that nothing else owns.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) })
}

fn nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Re-executes this binary as the guard, with the command pipe at 3 and the report pipe
/// at 4, in a process group of its own. Returns its pid and our ends of the pipes.
pub(crate) fn spawn_guard(
    args: &GuardArgs,
    env: &[(String, String)],
) -> std::io::Result<(Pid, GuardLine, pipe::Receiver)> {
    let (cmd_read, cmd_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (rep_read, rep_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let cmd_read = high(cmd_read)?;
    let rep_write = high(rep_write)?;
    nonblocking(&cmd_write)?;
    nonblocking(&rep_read)?;
    let (cr, rw): (RawFd, RawFd) = (cmd_read.as_raw_fd(), rep_write.as_raw_fd());
    // The binary itself, even if it was replaced on disk since it started.
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.args(args.to_args())
        .envs(env.iter().map(|(k, v)| (k, v)));
    // SAFETY: only async-signal-safe calls (dup2 on descriptors this process owns,
    // setpgid) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for (from, to) in [(cr, COMMAND_FD), (rw, REPORT_FD)] {
                if nix::libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // Its own group: a stop aimed at leaderrun's or the job's group misses it.
            nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let guard = Pid::from_raw(child.id() as i32);
    // Reaped by pid in `Job::wait_guard`.
    std::mem::forget(child);
    Ok((
        guard,
        GuardLine(Arc::new(cmd_write)),
        pipe::Receiver::from_owned_fd(rep_read)?,
    ))
}

/// What a guard started before the lock is won is started for: the job, without what only
/// a win tells (the deadline, and the `late` variables: the fencing token, the slot).
pub struct GuardSpec<'a> {
    pub command: &'a [OsString],
    /// The job's environment, but for the late variables.
    pub env: &'a [(String, String)],
    /// The variables whose values come with the win.
    pub late: &'a [&'a str],
    pub grace: Duration,
    pub stop_signal: Signal,
}

/// A guard started while waiting for the lock, so that a win costs a pipe write rather than
/// executing this binary again. It starts nothing until armed with a deadline, and exits
/// when its pipe closes (this is dropped, or leaderrun is gone) or on TERM: no job, no stop.
pub struct Standby {
    guard: Pid,
    line: GuardLine,
    reports: pipe::Receiver,
    args: GuardArgs,
    env: Vec<(String, String)>,
}

impl Standby {
    /// Starts one. Not for a job that takes the terminal: that is decided as it starts.
    pub fn start(spec: &GuardSpec<'_>) -> std::io::Result<Standby> {
        let args = GuardArgs {
            grace: spec.grace,
            stop_signal: spec.stop_signal,
            deadline: None,
            foreground: false,
            late: spec.late.iter().map(|n| n.to_string()).collect(),
            command: spec.command.to_vec(),
        };
        let (guard, line, reports) = spawn_guard(&args, spec.env)?;
        Ok(Standby {
            guard,
            line,
            reports,
            args,
            env: spec.env.to_vec(),
        })
    }

    pub fn pid(&self) -> Pid {
        self.guard
    }

    /// Arms it for the job `spec` (its whole environment, with the late variables' values):
    /// the late variables, then the deadline, which starts the job. None when it was started
    /// for something else, or is gone already: dropped unarmed, it exits on its own.
    pub(crate) fn arm(
        self,
        spec: &GuardSpec<'_>,
        deadline: Instant,
    ) -> Option<(Pid, GuardLine, pipe::Receiver)> {
        let is_late = |k: &str| self.args.late.iter().any(|n| n == k);
        let same = self.args.command == spec.command
            && self.args.grace == spec.grace
            && self.args.stop_signal == spec.stop_signal
            && spec
                .env
                .iter()
                .filter(|(k, _)| !is_late(k))
                .eq(self.env.iter());
        let alive = matches!(
            waitpid(self.guard, Some(WaitPidFlag::WNOHANG)),
            Ok(WaitStatus::StillAlive)
        );
        if !same || !alive {
            return None;
        }
        for (k, v) in spec.env {
            let index = self.args.late.iter().position(|n| n == k);
            if let (Some(i), Ok(v)) = (index, v.parse::<i32>()) {
                self.line.send(Command::Env(i as u32, v));
            }
        }
        self.line.extend(deadline);
        Some((self.guard, self.line, self.reports))
    }
}
