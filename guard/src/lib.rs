//! The guard: a small process between leaderrun and the job, so that nothing of a leadership
//! outlives it even when leaderrun itself is killed, stopped or stuck. leaderrun re-executes
//! its own binary in this mode (`leaderrun __guard`, not in `--help`); no kube, no async
//! runtime, and no allocation between an event and the signal it calls for.
//!
//! Rules, stated once:
//! - the lifeline: leaderrun holds the write end of the command pipe. End of file means
//!   leaderrun is gone, in whatever way: stop the job's whole tree at once;
//! - the deadline: leaderrun sends a new deadline after every renew that moved it. If none
//!   arrives in time, the guard starts the stop at the deadline, on its own clock
//!   (CLOCK_BOOTTIME, so time suspended counts), whatever leaderrun is doing;
//! - the whole tree: the guard is the child subreaper of the job's tree, so orphans come to
//!   it. A stop sends the stop signal (then CONT) to the job's process group and to every
//!   descendant found in /proc (also those that left the group with setsid), again to new
//!   ones until none is left, and KILL to all after the grace period;
//!   (within the job's group, and within each group that got it, only the processes there
//!   when the group was first seen get the stop signal: what a TERM handler starts to clean
//!   up is left to finish until the KILL);
//! - when the job's leader exits on its own, what it left is stopped the same way, and only
//!   then does the guard report the tree gone (leaderrun releases the lock after that);
//! - the guard lives in a process group of its own and ignores terminal stop signals, so a
//!   SIGSTOP or Ctrl-Z aimed at leaderrun or at the job's group does not stop it. TERM, INT,
//!   HUP or QUIT sent to the guard itself start a stop.

mod lifeline;
pub mod proc_tree;
pub mod signals;
mod timers;
pub mod trim;
pub mod wire;

pub use timers::{kill_time, may_start, Timers};

use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::lifeline::{wait_to_start, Lifeline};
use crate::proc_tree::{descendants, proc_pid, ProcEntry};
use crate::signals::{set_foreground, TERMINAL_STOPS};
use wire::{boottime_now, Command, GuardArgs, Report, COMMAND_FD, REPORT_FD};

/// The guard's own exit when it cannot set itself up or wait (EX_SOFTWARE): leaderrun sees a
/// job that never started, or a guard gone, and stops as it would for those.
pub const GUARD_FAILED: i32 = 70;

/// KILL to every process of a tree (a stopped one too: KILL needs no CONT). ESRCH is fine:
/// that one is gone already.
fn kill_all(pids: &[Pid]) {
    for &p in pids {
        let _ = kill(p, Signal::SIGKILL);
    }
}

struct Guard<'a> {
    args: &'a GuardArgs,
    me: Pid,
    job: Pid,
    reports: BorrowedFd<'a>,
    timer: TimerFd,
    /// The job's leader has been reaped.
    job_done: bool,
    /// The deadline and the stop (BOOTTIME), and whether KILL went out.
    timers: Timers<Duration>,
    killed: bool,
    /// Processes already sent the stop signal, and their process groups.
    signalled: Vec<Pid>,
    told_groups: Vec<Pid>,
    tree: Vec<Pid>,
    scratch: Vec<ProcEntry>,
}

/// While stopping, how often the tree is swept for new processes and for being empty.
const SWEEP: Duration = Duration::from_millis(20);

impl Guard<'_> {
    fn report(&self, r: Report) {
        // The pipe is non-blocking: a stuck leaderrun must never stop the guard.
        let _ = nix::unistd::write(self.reports, &r.encode());
    }

    /// Starts stopping the tree: the job's group first (no allocation, no /proc), then every
    /// other descendant. Idempotent.
    fn begin_stop(&mut self) {
        if !self.timers.begin_stop(boottime_now()) {
            return;
        }
        let _ = killpg(self.job, self.args.stop_signal);
        let _ = killpg(self.job, Signal::SIGCONT);
        self.sweep();
    }

    /// Signals descendants not signalled yet (stop signal, or KILL once past the grace), and
    /// says whether anything of the tree is left.
    fn sweep(&mut self) -> bool {
        descendants(self.me, &mut self.tree, &mut self.scratch);
        if self.timers.kill_due(boottime_now()) {
            self.killed = true;
        }
        if self.killed {
            let _ = killpg(self.job, Signal::SIGKILL);
            kill_all(&self.tree);
        } else if self.timers.stop_begun().is_some() {
            // Groups told in this sweep count from the next one: every member a group has
            // when it is first seen gets the signal.
            let told_before = self.told_groups.len();
            for i in 0..self.tree.len() {
                let p = self.tree[i];
                // The job's own group got the stop signal from `begin_stop`; what it starts
                // while it shuts down (a trap's commands) is its business until the KILL.
                // Processes that left the group (setsid, daemons) get it here, by the same
                // rule: a process new in a group told in an earlier sweep is that group's
                // shutdown, left to finish until the KILL.
                let group = nix::unistd::getpgid(Some(p)).ok();
                let in_group = group == Some(self.job);
                let told = group.is_some_and(|g| self.told_groups[..told_before].contains(&g));
                if !in_group && !told && !self.signalled.contains(&p) {
                    let _ = kill(p, self.args.stop_signal);
                    let _ = kill(p, Signal::SIGCONT);
                    if self.signalled.len() < self.signalled.capacity() {
                        self.signalled.push(p);
                    }
                    if let Some(g) = group.filter(|g| !self.told_groups.contains(g)) {
                        if self.told_groups.len() < self.told_groups.capacity() {
                            self.told_groups.push(g);
                        }
                    }
                }
            }
        }
        // Zombies still count as entries until reaped; reap first, then look again.
        self.reap();
        descendants(self.me, &mut self.tree, &mut self.scratch);
        !self.tree.is_empty()
    }

    /// True while the guard has a child, alive or not yet reaped.
    fn has_children(&self) -> bool {
        use nix::sys::wait::{waitid, Id};
        let flags = WaitPidFlag::WEXITED
            | WaitPidFlag::WSTOPPED
            | WaitPidFlag::WCONTINUED
            | WaitPidFlag::WNOHANG
            | WaitPidFlag::WNOWAIT;
        !matches!(waitid(Id::All, flags), Err(Errno::ECHILD))
    }

    /// Reaps every exited child (the guard is their subreaper); notes the job's end.
    fn reap(&mut self) {
        loop {
            // Stops only: leaderrun acts on a stopped job (Ctrl-Z), not on a continued one.
            let flags = WaitPidFlag::WNOHANG | WaitPidFlag::WUNTRACED;
            match waitpid(Pid::from_raw(-1), Some(flags)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == self.job => {
                    self.job_done = true;
                    self.report(Report::Exited(code));
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == self.job => {
                    self.job_done = true;
                    self.report(Report::Exited(-(sig as i32)));
                }
                Ok(WaitStatus::Stopped(pid, sig)) if pid == self.job => {
                    self.report(Report::JobStopped(sig as i32));
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
    }

    fn arm_timer(&self) {
        let wake = self.timers.next_wake(boottime_now(), SWEEP);
        let at = TimeSpec::from_duration(wake.max(Duration::from_nanos(1)));
        let _ = self.timer.set(
            Expiration::OneShot(at),
            TimerSetTimeFlags::TFD_TIMER_ABSTIME,
        );
    }

    /// The job runs: say so, carry out whatever came in the same read as the arming
    /// deadline, and give back the code only starting up ran (from here on the guard waits
    /// and now and then sweeps).
    fn started(&mut self, line: &mut Lifeline) {
        self.report(Report::Started(self.job.as_raw()));
        while let Some(c) = line.pop() {
            self.command(c);
        }
        trim::code_pages();
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Deadline(ns) => self.timers.set_deadline(Duration::from_nanos(ns)),
            Command::Signal(s) => {
                if let Ok(sig) = Signal::try_from(s) {
                    let _ = killpg(self.job, sig);
                }
            }
            Command::Stop => self.begin_stop(),
            // Only before the job starts (`wait_to_start`).
            Command::Env(..) => {}
        }
    }
}

/// The guard process, as a list of steps: take the pipes, configure signals and the
/// clock, become the subreaper, (if started before the lock was won, wait to be armed,)
/// start the job, then loop { act on the deadline and the tree; wait; reap; read commands }.
/// Returns the guard's exit code.
pub fn main(args: GuardArgs) -> i32 {
    // SAFETY: the descriptors were placed at 3 and 4 by leaderrun before exec.
    let commands = unsafe { OwnedFd::from_raw_fd(COMMAND_FD) };
    let reports = unsafe { OwnedFd::from_raw_fd(REPORT_FD) };
    let Some((signals, timer)) = configure(&commands, &reports) else {
        return GUARD_FAILED;
    };
    let mut line = Lifeline::new(commands);
    let (deadline, late) = match args.deadline {
        Some(d) => (d, Vec::new()),
        None => match wait_to_start(&args, &mut line, &signals) {
            Some(armed) => armed,
            // leaderrun is gone or gave up before winning: there is nothing to stop.
            None => return 0,
        },
    };
    if !may_start(boottime_now(), Duration::from_nanos(deadline)) {
        let _ = nix::unistd::write(&reports, &Report::DeadlinePassed.encode());
        return 0;
    }
    let job = match spawn_job(&args, &late) {
        Ok(pid) => pid,
        Err(e) => {
            let errno = e.raw_os_error().unwrap_or(Errno::EIO as i32);
            let _ = nix::unistd::write(&reports, &Report::SpawnFailed(errno).encode());
            return 0;
        }
    };
    let mut g = Guard {
        args: &args,
        me: proc_pid(),
        job,
        reports: reports.as_fd(),
        timer,
        job_done: false,
        timers: Timers::new(Duration::from_nanos(deadline), args.grace),
        killed: false,
        signalled: Vec::with_capacity(4096),
        told_groups: Vec::with_capacity(4096),
        tree: Vec::with_capacity(4096),
        scratch: Vec::with_capacity(4096),
    };
    g.started(&mut line);
    loop {
        if g.act() {
            g.report(Report::TreeGone);
            return 0;
        }
        g.arm_timer();
        let Some(commands_ready) = g.wait(&signals, &line) else {
            return GUARD_FAILED;
        };
        g.reap();
        if commands_ready {
            let broke = line.fill();
            while let Some(c) = line.pop() {
                g.command(c);
            }
            if broke {
                // End of file: leaderrun is gone, in whatever way. Stop at once.
                g.begin_stop();
            }
        }
    }
}

/// Non-blocking pipes, terminal stop signals ignored, a subreaper of our own name, the
/// signals handled through a signalfd, and a timer on CLOCK_BOOTTIME.
fn configure(commands: &OwnedFd, reports: &OwnedFd) -> Option<(SignalFd, TimerFd)> {
    // Neither pipe may ever block the guard: not a leaderrun that stopped reading, nor a
    // read after a wake-up that was for something else.
    // Nor may the job inherit them: a write of its own to the report pipe would be read by
    // leaderrun as the guard's.
    for fd in [commands, reports] {
        let _ = nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        );
        if nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .is_err()
        {
            return None;
        }
    }
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let _ = nix::sys::prctl::set_name(c"leaderrun-guard");
    // Terminal stop signals never stop the guard; a broken report pipe is not fatal.
    for s in TERMINAL_STOPS.into_iter().chain([Signal::SIGPIPE]) {
        // SAFETY: SIG_IGN installs no handler.
        let _ = unsafe { nix::sys::signal::signal(s, nix::sys::signal::SigHandler::SigIgn) };
    }
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        mask.add(s);
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None);
    let signals =
        SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).ok()?;
    let timer = TimerFd::new(
        ClockId::CLOCK_BOOTTIME,
        TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
    )
    .ok()?;
    Some((signals, timer))
}

impl Guard<'_> {
    /// What the guard does on its own each time round: stop leftovers of a job that
    /// ended, start the stop at the deadline, sweep while stopping. True when nothing of
    /// the tree is left after the job ended.
    fn act(&mut self) -> bool {
        if self.job_done {
            // No child at all means no descendant at all: orphans come to the guard, so
            // every process of the tree has a child of the guard among its ancestors. One
            // call, where a sweep reads all of /proc: the lock is released that much sooner.
            if !self.has_children() || !self.sweep() {
                return true;
            }
            if self.timers.stop_begun().is_none() {
                self.report(Report::Leftovers(self.tree.len() as i32));
            }
            self.begin_stop();
        }
        if self.timers.deadline_passed(boottime_now()) {
            self.report(Report::DeadlinePassed);
            self.begin_stop();
        }
        self.timers.stop_begun().is_some() && !self.sweep() && self.job_done
    }

    /// Waits for a signal, the timer or a command; handles the signals (TERM, INT, HUP or
    /// QUIT to the guard start a stop). Some(true) when commands are ready; None on a
    /// poll failure.
    fn wait(&mut self, signals: &SignalFd, line: &Lifeline) -> Option<bool> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.timer.as_fd(), PollFlags::POLLIN),
            PollFd::new(line.fd.as_fd(), PollFlags::POLLIN),
        ];
        // A broken lifeline is left out: poll reports a pipe's hang-up whatever it is asked
        // for, and the guard would spin through the whole grace after leaderrun went.
        let watched = if line.open { 3 } else { 2 };
        match poll(&mut fds[..watched], PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return None,
        }
        let commands_ready = line.open && fds[2].revents().is_some_and(|r| !r.is_empty());
        // Drain the timer (its expiry count) so it does not stay readable.
        let mut count = [0u8; 8];
        let _ = nix::unistd::read(self.timer.as_fd(), &mut count);
        while let Ok(Some(si)) = signals.read_signal() {
            if si.ssi_signo as i32 != Signal::SIGCHLD as i32 {
                self.begin_stop();
            }
        }
        Some(commands_ready)
    }
}

/// Starts the job in its own process group, with the signal state a fresh process expects.
fn spawn_job(args: &GuardArgs, late: &[(String, String)]) -> std::io::Result<Pid> {
    let guard = nix::unistd::getpid();
    let foreground = args.foreground;
    let mut cmd = std::process::Command::new(&args.command[0]);
    cmd.args(&args.command[1..]);
    cmd.envs(late.iter().map(|(k, v)| (k, v)));
    // SAFETY: only async-signal-safe calls (setpgid, prctl, getppid, signal, sigprocmask,
    // tcsetpgrp) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            use nix::sys::signal::{signal, SigHandler};
            for s in TERMINAL_STOPS.into_iter().chain([Signal::SIGPIPE]) {
                let _ = signal(s, SigHandler::SigDfl);
            }
            let _ = nix::sys::signal::sigprocmask(
                SigmaskHow::SIG_SETMASK,
                Some(&SigSet::empty()),
                None,
            );
            nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
            // The job dies with the guard, if the guard itself is SIGKILLed.
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            if nix::unistd::getppid() != guard {
                return Err(std::io::Error::other(
                    "the guard exited while starting the job",
                ));
            }
            if foreground {
                // An interactive job gets the terminal, so Ctrl-C and reads reach it.
                set_foreground(nix::unistd::getpid());
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let pid = Pid::from_raw(child.id() as i32);
    // Reaped by `Guard::reap`, with every orphan of the tree.
    std::mem::forget(child);
    Ok(pid)
}
