//! Exit codes: the one place they are defined. README and the man page list them.
//!
//! | code | meaning |
//! |---|---|
//! | child's code | the child exited on its own |
//! | 128+N | the child was ended by signal N |
//! | 126 / 127 | the command is not executable / not found |
//! | 64 | usage error: bad option, bad value, timing rule broken |
//! | 69 | Kubernetes API error: unreachable, refused (401/403), or a lock record that cannot be read |
//! | 75 | the lock is held by another and `--no-wait` was given (change with `--conflict-exit-code`) |
//! | 78 | configuration error: kubeconfig missing or corrupt, unknown context |
//! | 121 | leadership lost: the child was stopped because the lock could not be renewed |
//! | 124 | `--wait-timeout` passed before the lock was acquired |
//!
//! `inspect`: 0 held, 3 free or expired, 4 no such lock (and 64/69/78 as above).
//! `force-release`: 0 released (or already free), 5 refused (holder mismatch or no `--yes`), 6 conflict.

pub const USAGE: u8 = 64;
pub const API: u8 = 69;
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

/// The shell convention for a death by signal.
pub fn for_signal(signal: i32) -> u8 {
    (128 + signal).clamp(0, 255) as u8
}
