//! Exit codes: the one place they are defined. `--help` and the man page are generated from
//! `TABLE`, and `tests/docs.rs` checks the README's table against it.

pub const USAGE: u8 = 64;
pub const API: u8 = 69;
/// The operating system refused what leaderrun needs to run at all: its runtime, its signal
/// handlers (EX_OSERR).
pub const OS: u8 = 71;
pub const LOCK_HELD: u8 = 75;
pub const CONFIG: u8 = 78;
pub const LEADERSHIP_LOST: u8 = 121;
pub const WAIT_TIMEOUT: u8 = 124;
pub const NOT_EXECUTABLE: u8 = 126;
pub const NOT_FOUND: u8 = 127;

pub const INSPECT_HELD: u8 = 0;
pub const INSPECT_FREE: u8 = 3;
pub const INSPECT_MISSING: u8 = 4;
pub const RELEASE_REFUSED: u8 = 5;
pub const RELEASE_CONFLICT: u8 = 6;
pub const STEP_DOWN_TIMEOUT: u8 = 7;

/// An error that ends a command: its text is logged, its code is the exit status.
pub trait Failure: std::fmt::Display {
    fn exit_code(&self) -> u8;
}

/// The guard's own exit when it cannot set itself up or wait (defined by the guard crate).
pub use leaderrun_guard::GUARD_FAILED;

/// Every exit code of `leaderrun run`: (code, meaning), in the order they are documented.
pub const TABLE: &[(&str, &str)] = &[
    ("the child's code", "the child exited on its own"),
    ("128+N", "the child was ended by signal N"),
    ("126 / 127", "the command is not executable / not found"),
    (
        "64",
        "usage error: bad option or value, timing rule broken, missing command, `--service` with `--slots`",
    ),
    (
        "69",
        "Kubernetes API error: refused (401/403, with the verb and resource to grant), a missing namespace, or a lock record that cannot be read",
    ),
    (
        "71",
        "the operating system refused leaderrun its runtime or its signal handlers (nothing was written to the lock)",
    ),
    (
        "75",
        "the lock is held by another and `--no-wait` was given (`--conflict-exit-code`)",
    ),
    (
        "78",
        "configuration error: kubeconfig missing or corrupt, unknown context, a `--service` that cannot be kept (missing, with a selector, a named target port, no pod IP)",
    ),
    (
        "121",
        "leadership lost: the child was stopped because the lock could not be renewed",
    ),
    (
        "124",
        "`--wait-timeout` passed before the lock was acquired",
    ),
];

/// The exit codes of the other subcommands: (subcommand, codes).
pub const OTHERS: &[(&str, &str)] = &[
    ("inspect", "0 held, 3 free or expired, 4 no such lock"),
    (
        "force-release",
        "0 released (or already free), 4 no such lock, 5 refused (holder mismatch, or neither `--holder` nor `--yes`), 6 conflict (somebody wrote the lock meanwhile; nothing was written)",
    ),
    (
        "step-down",
        "0 the holder let go (or the lock was free), 4 no such lock, 5 refused (holder mismatch), 6 conflict (the request could not be written), 7 the holder did not let go within `--timeout`",
    ),
];

/// The exit-code section of `--help` and the man page.
pub fn help() -> String {
    let width = TABLE.iter().map(|(c, _)| c.len()).max().unwrap_or(0) + 2;
    let mut s = String::from("Exit status:\n");
    for (code, meaning) in TABLE {
        s.push_str(&format!("  {code:width$}{}\n", meaning.replace('`', "")));
    }
    for (cmd, codes) in OTHERS {
        let label = format!("{cmd}:");
        s.push_str(&format!("  {label:width$}{}\n", codes.replace('`', "")));
    }
    s.pop();
    s
}

/// The shell convention for a death by signal.
pub fn for_signal(signal: i32) -> u8 {
    (128 + signal).clamp(0, 255) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_code() {
        let h = help();
        for code in [USAGE, API, LOCK_HELD, CONFIG, LEADERSHIP_LOST, WAIT_TIMEOUT] {
            assert!(h.contains(&format!("  {code} ")), "{code} in {h}");
        }
        assert!(h.contains("force-release:"));
        assert!(!h.contains('`'));
    }
}
