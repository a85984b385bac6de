//! The command pipe from leaderrun, read whole record by whole record; and the wait of a guard
//! started before the lock was won, until leaderrun arms it.

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;

use crate::wire::{self, Command, GuardArgs};

/// The command pipe from leaderrun: whole records out of what was read so far.
pub(crate) struct Lifeline {
    pub(crate) fd: OwnedFd,
    pub(crate) open: bool,
    buf: [u8; wire::RECORD * 16],
    held: usize,
}

impl Lifeline {
    pub(crate) fn new(fd: OwnedFd) -> Self {
        Lifeline {
            fd,
            open: true,
            buf: [0; wire::RECORD * 16],
            held: 0,
        }
    }

    /// Reads what leaderrun sent so far; true when the lifeline just broke (end of file).
    pub(crate) fn fill(&mut self) -> bool {
        // A full buffer is emptied by `pop` first: an empty read would look like the end.
        if !self.open || self.held == self.buf.len() {
            return false;
        }
        match nix::unistd::read(self.fd.as_fd(), &mut self.buf[self.held..]) {
            Ok(0) => {
                self.open = false;
                true
            }
            Ok(n) => {
                self.held += n;
                false
            }
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => false,
            Err(_) => {
                self.open = false;
                true
            }
        }
    }

    /// The next whole command read, if any (unknown records are skipped).
    pub(crate) fn pop(&mut self) -> Option<Command> {
        while self.held >= wire::RECORD {
            let mut r = [0u8; wire::RECORD];
            r.copy_from_slice(&self.buf[..wire::RECORD]);
            self.buf.copy_within(wire::RECORD..self.held, 0);
            self.held -= wire::RECORD;
            if let Some(c) = Command::decode(&r) {
                return Some(c);
            }
        }
        None
    }
}

/// A guard started while leaderrun waits for the lock: waits for the first deadline (the
/// lock is won) and the late environment sent before it. None when leaderrun goes away, asks
/// for a stop, or the guard is told to end (TERM, INT, HUP, QUIT) first: no job was started.
pub(crate) fn wait_to_start(
    args: &GuardArgs,
    line: &mut Lifeline,
    signals: &SignalFd,
) -> Option<(u64, Vec<(String, String)>)> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut late: Vec<(String, String)> = Vec::new();
    loop {
        let mut broke = false;
        let mut fds = [
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(line.fd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return None,
        }
        while let Ok(Some(si)) = signals.read_signal() {
            if si.ssi_signo as i32 != Signal::SIGCHLD as i32 {
                return None;
            }
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            broke = line.fill();
        }
        while let Some(c) = line.pop() {
            match c {
                Command::Env(i, v) => {
                    if let Some(name) = args.late.get(i as usize) {
                        late.retain(|(n, _)| n != name);
                        late.push((name.clone(), v.to_string()));
                    }
                }
                Command::Deadline(ns) => return Some((ns, late)),
                Command::Stop => return None,
                Command::Signal(_) => {}
            }
        }
        if broke {
            return None;
        }
    }
}
