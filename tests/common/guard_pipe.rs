//! A guard driven through its pipes as leaderrun drives it: started with `__guard`, its command
//! pipe at 3 and its report pipe at 4. For the tests of the guard's own rules.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::time::Duration;

use leaderrun::guard::wire::{boottime_now, Command, GuardArgs, Report, RECORD};
use nix::sys::signal::Signal;

pub struct PipeGuard {
    pub child: std::process::Child,
    /// leaderrun's end of the lifeline: dropping it is leaderrun gone.
    pub commands: Option<OwnedFd>,
    reports: OwnedFd,
    alone: bool,
}

impl PipeGuard {
    /// A guard as leaderrun starts one ahead of a win: unarmed, a 500 ms grace, TERM.
    pub fn start(script: &str, late: &[&str]) -> PipeGuard {
        PipeGuard::with(script, late, Duration::from_millis(500))
    }

    pub fn with(script: &str, late: &[&str], grace: Duration) -> PipeGuard {
        PipeGuard::spawn(script, late, grace, false)
    }

    /// A guard in a PID namespace of its own, with its own /proc (`unshare`, as root): its
    /// sweeps read only its own tree, whatever else runs on the host.
    pub fn alone(script: &str, grace: Duration) -> PipeGuard {
        PipeGuard::spawn(script, &[], grace, true)
    }

    fn spawn(script: &str, late: &[&str], grace: Duration, alone: bool) -> PipeGuard {
        let args = GuardArgs {
            grace,
            stop_signal: Signal::SIGTERM,
            deadline: None,
            foreground: false,
            late: late.iter().map(|s| s.to_string()).collect(),
            command: vec!["sh".into(), "-c".into(), script.into()],
        };
        let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
        let (cmd_read, cmd_write) = nix::unistd::pipe2(cloexec).expect("pipe");
        let (rep_read, rep_write) = nix::unistd::pipe2(cloexec).expect("pipe");
        let (cr, rw) = (cmd_read.as_raw_fd(), rep_write.as_raw_fd());
        let bin = env!("CARGO_BIN_EXE_leaderrun");
        let mut c = if alone {
            let mut c = std::process::Command::new("unshare");
            c.args(["--pid", "--fork", "--mount-proc", bin]);
            c
        } else {
            std::process::Command::new(bin)
        };
        c.args(args.to_args());
        // SAFETY: fcntl and dup2 only, between fork and exec.
        unsafe {
            c.pre_exec(move || {
                // Above 4 first, so that neither dup2 below overwrites the other's source; the
                // copies close on exec, and dup2's targets do not.
                let up = |fd| nix::libc::fcntl(fd, nix::libc::F_DUPFD_CLOEXEC, 10);
                let (cr, rw) = (up(cr), up(rw));
                if nix::libc::dup2(cr, 3) < 0 || nix::libc::dup2(rw, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = c.spawn().expect("start the guard");
        drop((cmd_read, rep_write));
        PipeGuard {
            child,
            commands: Some(cmd_write),
            reports: rep_read,
            alone,
        }
    }

    /// The guard's pid, as this process sees it (under `unshare`, its one child).
    pub fn pid(&self) -> u32 {
        let pid = self.child.id();
        if !self.alone {
            return pid;
        }
        let t = std::time::Instant::now();
        loop {
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            if let Some(p) = children.split_whitespace().next() {
                return p.parse().expect("a pid");
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "unshare started no guard"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn send(&self, cs: &[Command]) {
        // One write, as the records of one moment would be read together.
        let bytes: Vec<u8> = cs.iter().flat_map(|c| c.encode()).collect();
        let fd = self.commands.as_ref().expect("the pipe is open");
        assert_eq!(nix::unistd::write(fd, &bytes), Ok(bytes.len()));
    }

    /// Every report until the guard exits, and its exit code.
    pub fn finish(mut self) -> (Vec<Report>, i32) {
        let mut f = std::fs::File::from(self.reports);
        let mut bytes = Vec::new();
        // The guard exits within seconds of what each test does; a hang fails the test run.
        f.read_to_end(&mut bytes).expect("read the reports");
        let reports = bytes
            .chunks_exact(RECORD)
            .filter_map(|c| Report::decode(c.try_into().ok()?))
            .collect();
        drop(self.commands.take());
        let code = self.child.wait().expect("wait").code().unwrap_or(-1);
        (reports, code)
    }
}

/// A deadline `ahead` from now on the guard's clock.
pub fn in_future(ahead: Duration) -> Command {
    Command::Deadline((boottime_now() + ahead).as_nanos() as u64)
}
