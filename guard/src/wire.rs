//! The guard's pipe protocol and command line: what leaderrun and its guard both speak, and
//! nothing else of either side. Fixed 16-byte records (a tag and a value), which a pipe writes
//! whole; deadlines travel as CLOCK_BOOTTIME nanoseconds.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::time::Duration;

use nix::sys::signal::Signal;

/// The first argument that selects guard mode.
pub const GUARD_ARG: &str = "__guard";
/// The guard reads commands on this descriptor and writes reports on the next one.
pub const COMMAND_FD: RawFd = 3;
pub const REPORT_FD: RawFd = 4;

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
    /// To a guard started before the lock was won: the job's environment variable
    /// `GuardArgs::late[index]` has this value. Sent before the `Deadline` that starts it.
    Env(u32, i32),
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
    /// The job's leader was stopped by this signal (Ctrl-Z).
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
            Command::Env(index, v) => record(4, (u64::from(index) << 32) | u64::from(v as u32)),
        }
    }
    pub fn decode(b: &[u8; RECORD]) -> Option<Command> {
        match parts(b) {
            (1, ns) => Some(Command::Deadline(ns)),
            (2, s) => Some(Command::Signal(s as u32 as i32)),
            (3, _) => Some(Command::Stop),
            (4, v) => Some(Command::Env((v >> 32) as u32, v as u32 as i32)),
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
    /// CLOCK_BOOTTIME nanoseconds. None: a guard started while leaderrun waits for the lock,
    /// which starts the job only when the first `Command::Deadline` arrives.
    pub deadline: Option<u64>,
    /// Give the job the terminal's foreground.
    pub foreground: bool,
    /// Environment variables whose values come later, in `Command::Env` (the fencing token
    /// is known only once the lock is won).
    pub late: Vec<String>,
    pub command: Vec<OsString>,
}

impl GuardArgs {
    /// `__guard GRACE_MS SIGNAL DEADLINE_NS|- FOREGROUND LATE,NAMES|- -- CMD ARGS...`
    pub fn to_args(&self) -> Vec<OsString> {
        let or_dash = |s: String| if s.is_empty() { "-".to_string() } else { s };
        let mut v: Vec<OsString> = vec![
            GUARD_ARG.into(),
            self.grace.as_millis().to_string().into(),
            (self.stop_signal as i32).to_string().into(),
            or_dash(self.deadline.map(|d| d.to_string()).unwrap_or_default()).into(),
            if self.foreground { "1" } else { "0" }.into(),
            or_dash(self.late.join(",")).into(),
            "--".into(),
        ];
        v.extend(self.command.iter().cloned());
        v
    }

    pub fn parse(args: &[OsString]) -> Option<GuardArgs> {
        let s = |i: usize| args.get(i).and_then(|a| a.to_str());
        if s(0)? != GUARD_ARG || s(6)? != "--" || args.len() < 8 {
            return None;
        }
        Some(GuardArgs {
            grace: Duration::from_millis(s(1)?.parse().ok()?),
            stop_signal: Signal::try_from(s(2)?.parse::<i32>().ok()?).ok()?,
            deadline: match s(3)? {
                "-" => None,
                d => Some(d.parse().ok()?),
            },
            foreground: s(4)? == "1",
            late: match s(5)? {
                "-" => Vec::new(),
                names => names.split(',').map(String::from).collect(),
            },
            command: args[7..].to_vec(),
        })
    }
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
            Command::Env(1, -7),
            Command::Env(u32::MAX, i32::MAX),
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
        assert_eq!(Command::decode(&[0xff; RECORD]), None);
    }

    #[test]
    fn arguments_round_trip() {
        let a = GuardArgs {
            grace: Duration::from_millis(1500),
            stop_signal: Signal::SIGINT,
            deadline: Some(123_456_789),
            foreground: true,
            late: vec!["A".into(), "B".into()],
            command: vec!["sh".into(), "-c".into(), "echo --".into()],
        };
        assert_eq!(GuardArgs::parse(&a.to_args()), Some(a.clone()));
        let unarmed = GuardArgs {
            deadline: None,
            late: Vec::new(),
            ..a
        };
        assert_eq!(GuardArgs::parse(&unarmed.to_args()), Some(unarmed.clone()));
        assert_eq!(GuardArgs::parse(&["__guard".into()]), None);
        // A command of one word is a command; none at all is not.
        let one_word = GuardArgs {
            command: vec!["true".into()],
            ..unarmed.clone()
        };
        assert_eq!(GuardArgs::parse(&one_word.to_args()), Some(one_word));
        let none = GuardArgs {
            command: Vec::new(),
            ..unarmed
        };
        assert_eq!(GuardArgs::parse(&none.to_args()), None);
    }

    #[test]
    fn boottime_moves_forward() {
        let a = boottime_now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(boottime_now() > a);
    }
}
