//! The election: acquire, hold (renew), release. What to do given what was observed
//! and when is a pure function (`decide`); the loops around it call the lock and read
//! tokio's clock, so tests drive them in paused time with a scripted lock.
//!
//! Safety rests on these rules (docs/DESIGN.md §3):
//! - a follower judges expiry by its own monotonic clock, from the moment it *observed*
//!   the record change, never by the record's timestamps (client-go's observedTime);
//! - the leader's deadline is anchored at the *send* time of its last renew that changed
//!   the record, which is before any follower could have observed that renew;
//! - a deletion is a change of the record: a copy that saw the lock (held or free) and
//!   then saw it deleted (gone, or another object in its place) waits a lease duration from
//!   that moment before creating or taking it, even when the new object holds a record of
//!   ours (a create that landed after its timeout); a free record may be a stale view:
//!   another may have taken it while our watch was down;
//! - a record that names our identity but was not written by this process is another
//!   holder (two processes given one `--identity` never both lead);
//! - a renewTime never goes backwards (`LeaderRecord::renewed`).
//!
//! The parts: `decide.rs` (the view and the pure rule), `writes.rs` (which records this
//! process wrote), `acquire.rs`, `hold.rs` (renewing, and how a leader reads its lock as
//! seen anew), `finish.rs` (the release); `paused/` drives them all in paused time.

mod acquire;
mod decide;
#[cfg(test)]
mod fake_lock;
mod finish;
mod hold;
#[cfg(test)]
mod paused;
mod writes;

pub use decide::{decide, Decision, View};
pub use writes::Writes;

use std::time::Duration;

use tokio::time::Instant;

use crate::lock::{Lock, LockError, Observed};
use crate::record;
use crate::settings::Timing;

/// Held leadership.
#[derive(Debug)]
pub struct Leadership<O> {
    /// Which of the election's locks (`--slots`) is held.
    pub slot: usize,
    pub held: Observed<O>,
    /// The send time of the last renew that succeeded and changed the leader record
    /// (a no-op write is invisible to followers): the anchor of every deadline.
    pub last_renew_sent: Instant,
    /// The transition count at acquisition.
    pub fencing_token: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    #[error("the lock is held by {holder:?}")]
    Held { holder: String },
    #[error("the lock was not acquired within --wait-timeout")]
    WaitTimeout,
    /// A signal that ends the wait (TERM, INT, HUP, QUIT) arrived; nothing is held.
    #[error("stopped by signal {0} while waiting for the lock")]
    Stopped(i32),
    #[error(transparent)]
    Lock(#[from] LockError),
}

#[derive(Debug, thiserror::Error)]
pub enum Lost {
    #[error("could not renew within --renew-deadline ({deadline:?}); last error: {last_error}")]
    Deadline {
        deadline: Duration,
        last_error: String,
    },
    #[error("the lock now names {0:?} as holder")]
    TakenOver(String),
    #[error("the lock names this identity ({0:?}) but another process wrote it: two processes run with the same --identity")]
    Impostor(String),
    #[error("the lock object was deleted")]
    Deleted,
    #[error("another client cleared the holder (a force-release?)")]
    Released,
    /// `leaderrun step-down` asked this holder to let go: stop the child, then release.
    #[error("asked to step down (leaderrun step-down)")]
    SteppedDown,
    #[error(transparent)]
    Lock(LockError),
}

/// Told of renew outcomes as they happen, so the election knows nothing of metrics, the
/// guard, or the transitions' log lines (report.rs).
pub trait Observer {
    /// A renew that changed the record succeeded: the new anchor and deadline.
    fn renewed(&self, anchor: Instant, latency: Duration, deadline: Instant);
    fn renew_failed(&self, latency: Duration, error: &LockError);
    /// Waiting for the lock, which `holder` holds (each time the holder changes).
    fn waiting(&self, holder: &str, impostor: bool);
    /// The API server answered about the lock while waiting (a read or a watch event): this
    /// copy is in touch and taking part (what readiness reports).
    fn heard(&self) {}
}

/// An observer that does nothing (tests).
pub struct Unobserved;

impl Observer for Unobserved {
    fn renewed(&self, _: Instant, _: Duration, _: Instant) {}
    fn renew_failed(&self, _: Duration, _: &LockError) {}
    fn waiting(&self, _: &str, _: bool) {}
}

/// What to do with the lock once the child (and any hold-over time) has ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AfterExit {
    Release,
    Leave,
}

/// How to wait.
#[derive(Debug, Clone, Copy, Default)]
pub struct WaitOptions {
    /// Give up at once if another holds the lock (but watch one that looks abandoned).
    pub no_wait: bool,
    pub wait_timeout: Option<Duration>,
}

/// The wall clock written into records (tests use one that follows paused time).
pub type WallClock = std::sync::Arc<dyn Fn() -> record::Time + Send + Sync>;

/// The monotonic clock the election measures every wait and deadline by. leaderrun uses
/// tokio's (`Monotonic`); the simulation gives each process a clock of its own, running fast
/// or slow, to show that the timing rule's margin covers the hosts' clock rates.
pub trait Clock: Send + Sync {
    /// Now, as this clock reads it.
    fn now(&self) -> Instant;
    /// The moment of tokio's clock (which timers run on) when this clock reads `t`, or a
    /// moment after: a timer set for `t` never wakes before `now()` reaches `t`.
    fn timer_at(&self, t: Instant) -> Instant;
}

/// tokio's monotonic clock: the host's.
pub struct Monotonic;

impl Clock for Monotonic {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn timer_at(&self, t: Instant) -> Instant {
        t
    }
}

pub struct Election<L: Lock> {
    /// One lock, or one per slot (`--slots N`: at most N leaders at once).
    pub locks: Vec<L>,
    pub identity: String,
    pub timing: Timing,
    pub writes: Writes,
    wall: WallClock,
    clock: std::sync::Arc<dyn Clock>,
    /// Cleared once the API server refused a watch: a leader then does not try again.
    watch_allowed: std::sync::atomic::AtomicBool,
    /// Set once the API server answered about the lock: a 401 or 403 since, in any later
    /// round, is a restarting server's (its caches filling), not RBAC's.
    answered: std::sync::atomic::AtomicBool,
    /// What this process last saw of each slot, kept from one acquiring round to the next
    /// (`--rejoin`), so that a lock seen before and gone now counts as deleted after it was
    /// seen, as it would within one round (found by the simulation, tests/sim).
    memory: std::sync::Mutex<Vec<Option<View<L::Object>>>>,
}

impl<L: Lock> Election<L> {
    pub fn new(lock: L, identity: String, timing: Timing) -> Self {
        Self::with_slots(vec![lock], identity, timing)
    }

    /// An election over several locks, of which this process takes at most one.
    pub fn with_slots(locks: Vec<L>, identity: String, timing: Timing) -> Self {
        assert!(
            !locks.is_empty(),
            "an election has at least one lock (one slot)"
        );
        Election {
            locks,
            identity,
            timing,
            writes: Writes::default(),
            wall: std::sync::Arc::new(record::now),
            clock: std::sync::Arc::new(Monotonic),
            watch_allowed: std::sync::atomic::AtomicBool::new(true),
            answered: std::sync::atomic::AtomicBool::new(false),
            memory: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Vec<Option<View<L::Object>>>> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A view of `slot` for a new round starting at `now`: what was last seen of it, if
    /// anything, not yet confirmed by this round (`known` is false until it reads).
    fn recall(&self, slot: usize, now: Instant) -> View<L::Object> {
        match self.memory().get(slot).cloned().flatten() {
            // Unwatched since: a deletion seen then is waited out from now, as is any change.
            Some(v) => View {
                observed_at: now,
                deleted_at: v.deleted_at.map(|_| now),
                known: false,
                ..v
            },
            None => View::new(now),
        }
    }

    /// Keeps what `view` knows of `slot` for later rounds.
    fn remember(&self, slot: usize, view: &View<L::Object>) {
        if !view.known {
            return;
        }
        let mut m = self.memory();
        if m.len() <= slot {
            m.resize(slot + 1, None);
        }
        m[slot] = Some(view.clone());
    }

    /// Keeps the lock as this process last held it (or released it).
    /// The highest transition count seen before on `slot` is kept: a leader that lost to a
    /// takeover read the taker's count (found by the simulation, seed 8371: after a deletion it
    /// created the lock again with a token below that count).
    fn remember_held(&self, slot: usize, held: &Observed<L::Object>) {
        let now = self.now();
        let mut view = View::new(now);
        view.see(Some(held.clone()), now);
        self.remember_count(slot, &mut view);
        self.remember(slot, &view);
    }

    /// Folds the transition count already remembered for `slot` into `view`.
    fn remember_count(&self, slot: usize, view: &mut View<L::Object>) {
        let old = self.memory().get(slot).cloned().flatten();
        if let Some(t) = old.and_then(|v| v.transitions_seen) {
            view.transitions_seen = Some(view.transitions_seen.map_or(t, |s| s.max(t)));
        }
    }

    /// A record seen while leading (a takeover, a twin's write): its count is kept for later
    /// rounds.
    fn saw_while_leading(&self, slot: usize, seen: &Observed<L::Object>) {
        let now = self.now();
        let mut view = View::new(now);
        view.see(Some(seen.clone()), now);
        self.remember_count(slot, &mut view);
        self.remember(slot, &view);
    }

    /// The lock of `slot`.
    pub fn lock(&self, slot: usize) -> &L {
        &self.locks[slot.min(self.locks.len() - 1)]
    }

    /// `lease default/name`, or with slots `lease default/name-0 (+2 slots)`.
    pub fn describe(&self) -> String {
        match self.locks.len() {
            1 => self.locks[0].describe(),
            n => format!("{} (+{} slots)", self.locks[0].describe(), n - 1),
        }
    }

    /// Uses `wall` for the times written into records.
    pub fn with_wall_clock(mut self, wall: WallClock) -> Self {
        self.wall = wall;
        self
    }

    /// Measures every wait and deadline by `clock` (the simulation's per-process clocks).
    pub fn with_clock(mut self, clock: std::sync::Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Now, by the election's monotonic clock: every `Instant` of the election (views,
    /// deadlines, `Leadership::last_renew_sent`) is of this clock.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// When a timer for `t` (of the election's clock) must fire on tokio's clock.
    pub fn timer_at(&self, t: Option<Instant>) -> Option<Instant> {
        t.map(|t| self.clock.timer_at(t))
    }

    /// The wall clock now (the one written into records).
    pub fn wall_now(&self) -> record::Time {
        (self.wall)()
    }

    /// The wall clock now, at the resolution the locks' records keep.
    fn record_now(&self) -> record::Time {
        record::at_resolution((self.wall)(), self.lock(0).resolution())
    }

    fn lease_seconds(&self) -> i32 {
        self.timing.lease_duration.as_secs().min(i32::MAX as u64) as i32
    }

    /// Calls are bounded so that a hung request cannot stall a loop.
    fn call_timeout(&self) -> Duration {
        self.timing.renew_deadline
    }
}

/// Sleeps until `t`; with no `t`, for ever (a branch of a select that never fires).
pub(crate) async fn sleep_until_some(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
