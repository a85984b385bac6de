//! What every connection handler shares: the store, the faults, the request log, the
//! channel that ends open watches, the accepted tokens.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::broadcast;

use crate::faults::{self, LogEntry};
use crate::store::Store;

/// What the connection handlers share.
pub(crate) struct Shared {
    pub store: Mutex<Store>,
    pub faults: Mutex<Vec<faults::ActiveFault>>,
    pub log: Mutex<Vec<LogEntry>>,
    pub next_fault: AtomicU64,
    /// Sends the client scope (None: all) whose watches must end; the bool says abruptly.
    pub close_watches: broadcast::Sender<(Option<String>, bool)>,
    pub tokens: HashMap<String, String>,
    pub started: Instant,
}

/// Locks a mutex; a handler that panicked while holding it leaves data that is
/// still consistent for our purposes (every write is a single insert), so go on.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
