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
//!   (within the job's group, only the processes there at the stop get the stop signal:
//!   what a TERM handler starts to clean up is left to finish until the KILL);
//! - when the job's leader exits on its own, what it left is stopped the same way, and only
//!   then does the guard report the tree gone (leaderrun releases the lock after that);
//! - the guard lives in a process group of its own and ignores terminal stop signals, so a
//!   SIGSTOP or Ctrl-Z aimed at leaderrun or at the job's group does not stop it. TERM, INT,
//!   HUP or QUIT sent to the guard itself start a stop.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// The first argument that selects guard mode.
pub const GUARD_ARG: &str = "__guard";
/// The guard reads commands on this descriptor and writes reports on the next one.
pub const COMMAND_FD: RawFd = 3;
pub const REPORT_FD: RawFd = 4;

/// The pipe protocol: fixed 16-byte records (a tag and a value), which a pipe writes whole.
pub mod wire {
    pub const RECORD: usize = 16;

    /// leaderrun to the guard.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Command {
        /// The moment (CLOCK_BOOTTIME, nanoseconds) the stop must start if no renew moves it.
        Deadline(u64),
        /// Send this signal to the job's process group.
        Signal(i32),
        /// Stop the whole tree now (stop signal, KILL after the grace).
        Stop,
    }

    /// The guard to leaderrun.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Report {
        /// The job runs with this pid (its process group has the same id).
        Started(i32),
        /// The job could not be started: the errno of its exec.
        SpawnFailed(i32),
        /// The job's leader ended: its exit code, or a negative signal number.
        Exited(i32),
        /// The job's leader was stopped by this signal (Ctrl-Z), or continued (0).
        JobStopped(i32),
        /// The deadline passed without a renew: the guard is stopping the tree.
        DeadlinePassed,
        /// The job's leader ended and left this many processes: the guard is stopping them.
        Leftovers(i32),
        /// Nothing of the job's tree is left; the guard exits next.
        TreeGone,
    }

    fn record(tag: u32, value: u64) -> [u8; RECORD] {
        let mut b = [0u8; RECORD];
        b[..4].copy_from_slice(&tag.to_le_bytes());
        b[8..].copy_from_slice(&value.to_le_bytes());
        b
    }

    fn parts(b: &[u8; RECORD]) -> (u32, u64) {
        let mut tag = [0u8; 4];
        tag.copy_from_slice(&b[..4]);
        let mut value = [0u8; 8];
        value.copy_from_slice(&b[8..]);
        (u32::from_le_bytes(tag), u64::from_le_bytes(value))
    }

    impl Command {
        pub fn encode(self) -> [u8; RECORD] {
            match self {
                Command::Deadline(ns) => record(1, ns),
                Command::Signal(s) => record(2, s as u32 as u64),
                Command::Stop => record(3, 0),
            }
        }
        pub fn decode(b: &[u8; RECORD]) -> Option<Command> {
            match parts(b) {
                (1, ns) => Some(Command::Deadline(ns)),
                (2, s) => Some(Command::Signal(s as u32 as i32)),
                (3, _) => Some(Command::Stop),
                _ => None,
            }
        }
    }

    impl Report {
        pub fn encode(self) -> [u8; RECORD] {
            let i = |v: i32| v as i64 as u64;
            match self {
                Report::Started(pid) => record(1, i(pid)),
                Report::SpawnFailed(errno) => record(2, i(errno)),
                Report::Exited(code) => record(3, i(code)),
                Report::JobStopped(sig) => record(4, i(sig)),
                Report::DeadlinePassed => record(5, 0),
                Report::TreeGone => record(6, 0),
                Report::Leftovers(n) => record(7, i(n)),
            }
        }
        pub fn decode(b: &[u8; RECORD]) -> Option<Report> {
            let (tag, v) = parts(b);
            let v = v as i64 as i32;
            match tag {
                1 => Some(Report::Started(v)),
                2 => Some(Report::SpawnFailed(v)),
                3 => Some(Report::Exited(v)),
                4 => Some(Report::JobStopped(v)),
                5 => Some(Report::DeadlinePassed),
                6 => Some(Report::TreeGone),
                7 => Some(Report::Leftovers(v)),
                _ => None,
            }
        }
    }
}

use wire::{Command, Report};

/// CLOCK_BOOTTIME now: like CLOCK_MONOTONIC, but it counts time suspended.
pub fn boottime_now() -> Duration {
    use nix::time::{clock_gettime, ClockId as Clock};
    clock_gettime(Clock::CLOCK_BOOTTIME)
        .map(Duration::from)
        // Every Linux since 2.6.39 has it; if not, the monotonic clock is the next best.
        .unwrap_or_else(|_| {
            clock_gettime(Clock::CLOCK_MONOTONIC)
                .map(Duration::from)
                .unwrap_or_default()
        })
}

/// What the guard is told on its command line.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardArgs {
    pub grace: Duration,
    pub stop_signal: Signal,
    /// CLOCK_BOOTTIME nanoseconds.
    pub deadline: u64,
    /// Give the job the terminal's foreground.
    pub foreground: bool,
    pub command: Vec<OsString>,
}

impl GuardArgs {
    /// `__guard GRACE_MS SIGNAL DEADLINE_NS FOREGROUND -- CMD ARGS...`
    pub fn to_args(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec![
            GUARD_ARG.into(),
            self.grace.as_millis().to_string().into(),
            (self.stop_signal as i32).to_string().into(),
            self.deadline.to_string().into(),
            if self.foreground { "1" } else { "0" }.into(),
            "--".into(),
        ];
        v.extend(self.command.iter().cloned());
        v
    }

    pub fn parse(args: &[OsString]) -> Option<GuardArgs> {
        let s = |i: usize| args.get(i).and_then(|a| a.to_str());
        if s(0)? != GUARD_ARG || s(5)? != "--" || args.len() < 7 {
            return None;
        }
        Some(GuardArgs {
            grace: Duration::from_millis(s(1)?.parse().ok()?),
            stop_signal: Signal::try_from(s(2)?.parse::<i32>().ok()?).ok()?,
            deadline: s(3)?.parse().ok()?,
            foreground: s(4)? == "1",
            command: args[6..].to_vec(),
        })
    }
}

/// This process's pid as /proc numbers it. In a PID namespace whose /proc was not mounted
/// anew (`unshare --pid` without `--mount-proc`), getpid() says 1 while /proc uses the
/// outer numbers.
pub fn proc_pid() -> Pid {
    std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str()?.parse().ok())
        .map(Pid::from_raw)
        .unwrap_or_else(nix::unistd::getpid)
}

/// A process as /proc shows it: its number there, its parent's, and its number in this
/// process's own PID namespace (the one signals and waitpid take).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcEntry {
    pub proc_pid: i32,
    pub proc_ppid: i32,
    pub pid: Pid,
    pub zombie: bool,
}

/// How deep this process's PID namespace sits below /proc's: the index of "our" number
/// in each process's NSpid list.
fn our_depth(buf: &mut [u8; 2048]) -> usize {
    read_status(proc_pid().as_raw(), buf)
        .map(|e| e.1.saturating_sub(1))
        .unwrap_or(0)
}

/// (ppid, NSpid length, state, NSpid entry at `depth`) from /proc/PID/status, without
/// allocating: the file is read into `buf`.
fn read_status(pid: i32, buf: &mut [u8; 2048]) -> Option<(i32, usize, u8, [i32; 8])> {
    use std::io::Read;
    let mut path = [0u8; 32];
    let len = {
        use std::io::Write;
        let mut w = &mut path[..];
        write!(w, "/proc/{pid}/status").ok()?;
        32 - w.len()
    };
    let path = std::str::from_utf8(&path[..len]).ok()?;
    let mut f = std::fs::File::open(path).ok()?;
    let n = f.read(buf).ok()?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    let (mut ppid, mut state, mut ns, mut depth) = (None, b'?', [0i32; 8], 0usize);
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("PPid:") {
            ppid = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("State:") {
            state = v.trim().bytes().next().unwrap_or(b'?');
        } else if let Some(v) = line.strip_prefix("NSpid:") {
            for (i, n) in v.split_whitespace().take(8).enumerate() {
                ns[i] = n.parse().unwrap_or(0);
                depth = i + 1;
            }
        }
    }
    Some((ppid?, depth.max(1), state, ns))
}

/// Every process whose chain of parents reaches `root` (a /proc number; not `root`
/// itself), from /proc/*/status. `out` gets their pids in this process's namespace
/// (cleared first); `scratch` holds what was read.
pub fn descendants(root: Pid, out: &mut Vec<Pid>, scratch: &mut Vec<ProcEntry>) {
    out.clear();
    scan(scratch);
    // Follow each process up its chain of parents; the depth bound guards against a
    // chain that changed while it was read.
    for e in scratch.iter() {
        let mut at = e.proc_pid;
        for _ in 0..64 {
            let Some(parent) = scratch
                .iter()
                .find(|p| p.proc_pid == at)
                .map(|p| p.proc_ppid)
            else {
                break;
            };
            if parent == root.as_raw() {
                out.push(e.pid);
                break;
            }
            if parent <= 1 {
                break;
            }
            at = parent;
        }
    }
}

/// Reads every process of /proc into `scratch` (cleared first); processes outside this
/// process's PID namespace are left out (they cannot be ours).
pub fn scan(scratch: &mut Vec<ProcEntry>) {
    scratch.clear();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    let mut buf = [0u8; 2048];
    let depth = our_depth(&mut buf);
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if let Some((ppid, levels, state, ns)) = read_status(pid, &mut buf) {
            if levels > depth {
                scratch.push(ProcEntry {
                    proc_pid: pid,
                    proc_ppid: ppid,
                    pid: Pid::from_raw(ns[depth]),
                    zombie: state == b'Z',
                });
            }
        }
    }
}

/// Sends `sig` to every process of a tree (and CONT after it, so that a stopped process
/// can act on it). ESRCH is fine: that one is gone already.
fn signal_all(pids: &[Pid], sig: Signal) {
    for &p in pids {
        let _ = kill(p, sig);
        if sig != Signal::SIGKILL {
            let _ = kill(p, Signal::SIGCONT);
        }
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
    /// Stopping: the moment (BOOTTIME) KILL goes out, and whether it went out.
    kill_at: Option<Duration>,
    killed: bool,
    /// Processes already sent the stop signal.
    signalled: Vec<Pid>,
    tree: Vec<Pid>,
    scratch: Vec<ProcEntry>,
    deadline: Duration,
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
        if self.kill_at.is_some() {
            return;
        }
        let _ = killpg(self.job, self.args.stop_signal);
        let _ = killpg(self.job, Signal::SIGCONT);
        self.kill_at = Some(boottime_now() + self.args.grace);
        self.sweep();
    }

    /// Signals descendants not signalled yet (stop signal, or KILL once past the grace), and
    /// says whether anything of the tree is left.
    fn sweep(&mut self) -> bool {
        descendants(self.me, &mut self.tree, &mut self.scratch);
        if self.kill_at.is_some_and(|k| boottime_now() >= k) {
            self.killed = true;
        }
        if self.killed {
            let _ = killpg(self.job, Signal::SIGKILL);
            signal_all(&self.tree, Signal::SIGKILL);
        } else if self.kill_at.is_some() {
            for i in 0..self.tree.len() {
                let p = self.tree[i];
                // The job's own group got the stop signal from `begin_stop`; what it starts
                // while it shuts down (a trap's commands) is its business until the KILL.
                // Processes that left the group (setsid, daemons) get it here.
                let in_group = nix::unistd::getpgid(Some(p)) == Ok(self.job);
                if !in_group && !self.signalled.contains(&p) {
                    let _ = kill(p, self.args.stop_signal);
                    let _ = kill(p, Signal::SIGCONT);
                    if self.signalled.len() < self.signalled.capacity() {
                        self.signalled.push(p);
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
            let flags = WaitPidFlag::WNOHANG | WaitPidFlag::WUNTRACED | WaitPidFlag::WCONTINUED;
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
                Ok(WaitStatus::Continued(pid)) if pid == self.job => {
                    self.report(Report::JobStopped(0));
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
    }

    /// The next moment the guard must act on its own (BOOTTIME).
    fn next_wake(&self) -> Duration {
        match self.kill_at {
            Some(_) => boottime_now() + SWEEP,
            None => self.deadline,
        }
    }

    fn arm_timer(&self) {
        let at = TimeSpec::from_duration(self.next_wake().max(Duration::from_nanos(1)));
        let _ = self.timer.set(
            Expiration::OneShot(at),
            TimerSetTimeFlags::TFD_TIMER_ABSTIME,
        );
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Deadline(ns) => self.deadline = Duration::from_nanos(ns),
            Command::Signal(s) => {
                if let Ok(sig) = Signal::try_from(s) {
                    let _ = killpg(self.job, sig);
                }
            }
            Command::Stop => self.begin_stop(),
        }
    }
}

/// The guard process, as a list of steps: take the pipes, configure signals and the
/// clock, become the subreaper, start the job, then loop { act on the deadline and the
/// tree; wait; reap; read commands }.
/// Returns the guard's exit code.
pub fn main(args: GuardArgs) -> i32 {
    // SAFETY: the descriptors were placed at 3 and 4 by leaderrun before exec.
    let commands = unsafe { OwnedFd::from_raw_fd(COMMAND_FD) };
    let reports = unsafe { OwnedFd::from_raw_fd(REPORT_FD) };
    let Some((signals, timer)) = configure(&commands, &reports) else {
        return 70;
    };
    let job = match spawn_job(&args) {
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
        kill_at: None,
        killed: false,
        signalled: Vec::with_capacity(4096),
        tree: Vec::with_capacity(4096),
        scratch: Vec::with_capacity(4096),
        deadline: Duration::from_nanos(args.deadline),
    };
    g.report(Report::Started(job.as_raw()));
    let mut line = Lifeline::new(commands);
    loop {
        if g.act() {
            g.report(Report::TreeGone);
            return 0;
        }
        g.arm_timer();
        let Some(commands_ready) = g.wait(&signals, &line) else {
            return 70;
        };
        g.reap();
        if commands_ready && line.read(&mut g) {
            // End of file: leaderrun is gone, in whatever way. Stop at once.
            g.begin_stop();
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
    for s in [
        Signal::SIGTSTP,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
        Signal::SIGPIPE,
    ] {
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

/// The command pipe from leaderrun: whole records out of what was read so far.
struct Lifeline {
    fd: OwnedFd,
    open: bool,
    buf: [u8; wire::RECORD * 16],
    held: usize,
}

impl Lifeline {
    fn new(fd: OwnedFd) -> Self {
        Lifeline {
            fd,
            open: true,
            buf: [0; wire::RECORD * 16],
            held: 0,
        }
    }

    /// Reads and carries out what leaderrun sent; true when the lifeline just broke.
    fn read(&mut self, g: &mut Guard) -> bool {
        if !self.open {
            return false;
        }
        match nix::unistd::read(self.fd.as_fd(), &mut self.buf[self.held..]) {
            Ok(0) => {
                self.open = false;
                true
            }
            Ok(n) => {
                self.held += n;
                let whole = self.held / wire::RECORD * wire::RECORD;
                for chunk in self.buf[..whole].chunks_exact(wire::RECORD) {
                    let mut r = [0u8; wire::RECORD];
                    r.copy_from_slice(chunk);
                    if let Some(c) = Command::decode(&r) {
                        g.command(c);
                    }
                }
                self.buf.copy_within(whole..self.held, 0);
                self.held -= whole;
                false
            }
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => false,
            Err(_) => {
                self.open = false;
                true
            }
        }
    }
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
            if self.kill_at.is_none() {
                self.report(Report::Leftovers(self.tree.len() as i32));
            }
            self.begin_stop();
        }
        if self.kill_at.is_none() && boottime_now() >= self.deadline {
            self.report(Report::DeadlinePassed);
            self.begin_stop();
        }
        self.kill_at.is_some() && !self.sweep() && self.job_done
    }

    /// Waits for a signal, the timer or a command; handles the signals (TERM, INT, HUP or
    /// QUIT to the guard start a stop). Some(true) when commands are ready; None on a
    /// poll failure.
    fn wait(&mut self, signals: &SignalFd, line: &Lifeline) -> Option<bool> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let listen = if line.open {
            PollFlags::POLLIN
        } else {
            PollFlags::empty()
        };
        let mut fds = [
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.timer.as_fd(), PollFlags::POLLIN),
            PollFd::new(line.fd.as_fd(), listen),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return None,
        }
        let commands_ready = fds[2].revents().is_some_and(|r| !r.is_empty());
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
fn spawn_job(args: &GuardArgs) -> std::io::Result<Pid> {
    let guard = nix::unistd::getpid();
    let foreground = args.foreground;
    let mut cmd = std::process::Command::new(&args.command[0]);
    cmd.args(&args.command[1..]);
    // SAFETY: only async-signal-safe calls (setpgid, prctl, getppid, signal, sigprocmask,
    // tcsetpgrp) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            use nix::sys::signal::{signal, SigHandler};
            for s in [
                Signal::SIGTSTP,
                Signal::SIGTTIN,
                Signal::SIGTTOU,
                Signal::SIGPIPE,
            ] {
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
                let _ = signal(Signal::SIGTTOU, SigHandler::SigIgn);
                let _ = nix::unistd::tcsetpgrp(std::io::stdin(), nix::unistd::getpid());
                let _ = signal(Signal::SIGTTOU, SigHandler::SigDfl);
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

/// The raw descriptor of `fd`, for leaderrun's side of the setup.
pub fn raw(fd: &impl AsRawFd) -> RawFd {
    fd.as_raw_fd()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        for c in [
            Command::Deadline(u64::MAX - 3),
            Command::Signal(15),
            Command::Stop,
        ] {
            assert_eq!(Command::decode(&c.encode()), Some(c));
        }
        for r in [
            Report::Started(4242),
            Report::SpawnFailed(2),
            Report::Exited(-9),
            Report::Exited(3),
            Report::JobStopped(20),
            Report::DeadlinePassed,
            Report::TreeGone,
            Report::Leftovers(3),
        ] {
            assert_eq!(Report::decode(&r.encode()), Some(r));
        }
        assert_eq!(Command::decode(&[0xff; wire::RECORD]), None);
    }

    #[test]
    fn arguments_round_trip() {
        let a = GuardArgs {
            grace: Duration::from_millis(1500),
            stop_signal: Signal::SIGINT,
            deadline: 123_456_789,
            foreground: true,
            command: vec!["sh".into(), "-c".into(), "echo --".into()],
        };
        assert_eq!(GuardArgs::parse(&a.to_args()), Some(a));
        assert_eq!(GuardArgs::parse(&["__guard".into()]), None);
    }

    #[test]
    fn descendants_of_this_process_include_a_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        descendants(nix::unistd::getpid(), &mut out, &mut scratch);
        let _ = child.kill();
        let _ = child.wait();
        assert!(out.contains(&Pid::from_raw(child.id() as i32)));
    }

    #[test]
    fn boottime_moves_forward() {
        let a = boottime_now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(boottime_now() > a);
    }
}
