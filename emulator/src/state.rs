//! What every connection handler shares: the store, the faults, the request log, the
//! channel that ends open watches, the accepted tokens.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::faults::{self, Action, Fault, LogEntry};
use crate::store::Store;
use crate::sync::lock;

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

impl Shared {
    /// Adds a fault; returns its id.
    pub(crate) fn add_fault(&self, fault: Fault) -> u64 {
        let id = self.next_fault.fetch_add(1, Ordering::Relaxed);
        if fault.action == Action::Partition {
            // A partitioned client's open watches are cut at once, not ended cleanly.
            let _ = self.close_watches.send((fault.client.clone(), true));
        }
        let until = fault
            .duration_ms
            .map(|ms| Instant::now() + Duration::from_millis(ms));
        lock(&self.faults).push(faults::ActiveFault {
            id,
            fault,
            until,
            hits: 0,
        });
        id
    }
}
