//! Which signals do what, each set stated once: the ones forwarded to the job, the ones that
//! end a wait for the lock, the terminal's stop signals (never a `--stop-signal`, ignored by
//! the guard, reset for the job), and how the terminal's foreground changes hands.

use nix::sys::signal::{signal, SigHandler, Signal};
use nix::unistd::Pid;

/// Signals forwarded to the child's process group, as tini forwards them: not the synchronous
/// faults (SEGV, BUS, FPE, ILL, TRAP, SYS, ABRT), not CHLD, not TTIN, TTOU, TSTP (job control
/// stays with the terminal, which talks to the job's group directly), and not PIPE.
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

/// The signals that end a wait for the lock (or the keeping of it after the child's exit).
pub fn ends_wait(sig: Signal) -> bool {
    matches!(
        sig,
        Signal::SIGTERM | Signal::SIGINT | Signal::SIGHUP | Signal::SIGQUIT
    )
}

/// The signals a terminal sends to stop a job (Ctrl-Z, a background read or write).
pub const TERMINAL_STOPS: [Signal; 3] = [Signal::SIGTSTP, Signal::SIGTTIN, Signal::SIGTTOU];

pub fn is_terminal_stop(sig: Signal) -> bool {
    TERMINAL_STOPS.contains(&sig)
}

/// Makes `group` the terminal's foreground process group. SIGTTOU is ignored around the call,
/// since tcsetpgrp from a background group would otherwise stop the caller. Only
/// async-signal-safe calls: the guard uses it between fork and exec.
pub fn set_foreground(group: Pid) {
    // SAFETY: changes this process's SIGTTOU disposition briefly; no handler runs.
    unsafe {
        let _ = signal(Signal::SIGTTOU, SigHandler::SigIgn);
        let _ = nix::unistd::tcsetpgrp(std::io::stdin(), group);
        let _ = signal(Signal::SIGTTOU, SigHandler::SigDfl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_signals_end_a_wait_and_three_are_the_terminals_stops() {
        let ending: Vec<Signal> = Signal::iterator().filter(|s| ends_wait(*s)).collect();
        let ends = [
            Signal::SIGHUP,
            Signal::SIGINT,
            Signal::SIGQUIT,
            Signal::SIGTERM,
        ];
        assert_eq!(ending, ends);
        let stops: Vec<Signal> = Signal::iterator()
            .filter(|s| is_terminal_stop(*s))
            .collect();
        assert_eq!(stops, [Signal::SIGTSTP, Signal::SIGTTIN, Signal::SIGTTOU]);
    }
}
