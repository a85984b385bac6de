//! One way to take a lock, for every module.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex; a handler that panicked while holding it leaves data that is
/// still consistent for our purposes (every write is a single insert), so go on.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
