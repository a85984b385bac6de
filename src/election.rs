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
//!   then saw it deleted waits a lease duration from that moment before creating it (a
//!   free record may be a stale view: another may have taken it while our watch was down);
//! - a record that names our identity but was not written by this process is another
//!   holder (two processes given one `--identity` never both lead);
//! - a renewTime never goes backwards (`LeaderRecord::renewed`).

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::lock::watch::Follow;
use crate::lock::{Lock, LockError, Observed};
use crate::record::{self, LeaderRecord};
use crate::settings::Timing;

/// What we know of the lock, and when its record last changed as far as we know.
#[derive(Debug, Clone)]
pub struct View<O> {
    /// None: the object does not exist (or was not read yet, see `known`).
    pub current: Option<Observed<O>>,
    pub observed_at: Instant,
    /// At least one observation was made.
    pub known: bool,
    /// The object was deleted after we saw it: whoever held it last (perhaps a holder our
    /// view missed) may still run; wait a lease from the deletion.
    pub deleted_after_seen: bool,
    /// The highest transition count seen, so a re-created lock continues from it.
    pub transitions_seen: Option<i32>,
}

impl<O> View<O> {
    pub fn new(now: Instant) -> Self {
        View {
            current: None,
            observed_at: now,
            known: false,
            deleted_after_seen: false,
            transitions_seen: None,
        }
    }

    /// Records an observation; the observation time moves only when the record changed
    /// (or the object appeared or vanished), as in client-go. Other writes to the object
    /// (labels, ConfigMap data) say nothing about the holder: counting them would let a
    /// busy ConfigMap postpone a takeover for ever.
    pub fn see(&mut self, seen: Option<Observed<O>>, now: Instant) {
        let changed = match (&self.current, &seen) {
            (Some(a), Some(b)) => a.record != b.record,
            (None, None) => !self.known,
            _ => true,
        };
        if changed {
            self.observed_at = now;
        }
        match (&self.current, &seen) {
            (Some(_), None) => self.deleted_after_seen = true,
            (_, Some(_)) => self.deleted_after_seen = false,
            (None, None) => {}
        }
        if let Some(o) = &seen {
            let t = o.record.leader_transitions;
            self.transitions_seen = Some(self.transitions_seen.map_or(t, |s| s.max(t)));
        }
        self.known = true;
        self.current = seen;
    }
}

/// The records this process wrote, known by holder and renew time: a record naming our
/// identity that is not among them was written by another process. Each acquiring round
/// starts a new round of writes: only a write of the current round (an acquiring write
/// whose answer was lost) is resumed with its token; an older one ended with its leadership.
#[derive(Debug, Default)]
pub struct Writes(Mutex<SentWrites>);

#[derive(Debug, Default)]
struct SentWrites {
    sent: Vec<(String, Option<record::Time>, u32)>,
    round: u32,
}

impl Writes {
    const KEPT: usize = 32;

    fn inner(&self) -> std::sync::MutexGuard<'_, SentWrites> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn sent(&self, r: &LeaderRecord) {
        let mut w = self.inner();
        if w.sent.len() >= Self::KEPT {
            w.sent.remove(0);
        }
        let round = w.round;
        w.sent
            .push((r.holder_identity.clone(), r.renew_time, round));
    }

    /// Written by this process, in any round.
    pub fn ours(&self, r: &LeaderRecord) -> bool {
        self.written(r, false)
    }

    /// Written by this process in the current round: the same leadership.
    pub fn resumable(&self, r: &LeaderRecord) -> bool {
        self.written(r, true)
    }

    fn written(&self, r: &LeaderRecord, this_round: bool) -> bool {
        let w = self.inner();
        w.sent.iter().any(|(h, t, round)| {
            *h == r.holder_identity && *t == r.renew_time && (!this_round || *round == w.round)
        })
    }

    /// The server refused `r` (409, or 404 for an update): it did not land, so a record equal
    /// to it is another process's (a twin's write in the same second of a ConfigMap record).
    pub fn refused(&self, r: &LeaderRecord) {
        let mut w = self.inner();
        let round = w.round;
        if let Some(i) = w
            .sent
            .iter()
            .rposition(|(h, t, n)| *h == r.holder_identity && *t == r.renew_time && *n == round)
        {
            w.sent.remove(i);
        }
    }

    /// A new acquiring round: what was written before belongs to an ended leadership.
    pub fn new_round(&self) {
        let mut w = self.inner();
        w.round = w.round.wrapping_add(1);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No object: create it, holding the lock.
    Create,
    /// Free, expired, or our own record: write ourselves in.
    Take,
    /// Held by another; look again at `until` unless something changes first. `impostor`:
    /// the holder has our identity but is not this process.
    Wait {
        until: Instant,
        holder: String,
        impostor: bool,
    },
}

/// The core rule. `lease_duration` is ours; a record that names a longer one is honoured.
pub fn decide<O>(
    me: &str,
    view: &View<O>,
    ours: impl Fn(&LeaderRecord) -> bool,
    lease_duration: Duration,
    now: Instant,
) -> Decision {
    let wait = |promised: Duration, holder: &str, impostor: bool| {
        let until = view.observed_at + promised.max(lease_duration);
        if now >= until {
            Decision::Take
        } else {
            Decision::Wait {
                until,
                holder: holder.to_string(),
                impostor,
            }
        }
    };
    let Some(o) = &view.current else {
        // A lock deleted after we saw it: its last holder may still run until a lease
        // from the deletion runs out. A lock that never existed is created at once.
        return if view.deleted_after_seen {
            match wait(lease_duration, "", false) {
                Decision::Take => Decision::Create,
                w => w,
            }
        } else {
            Decision::Create
        };
    };
    let r = &o.record;
    if !r.is_held() {
        return Decision::Take;
    }
    let impostor = r.holder_identity == me;
    if impostor && ours(r) {
        return Decision::Take;
    }
    // The holder promised to stop within the duration it wrote; honour that, but
    // never wait less than our own setting would.
    let promised = Duration::from_secs(r.lease_duration_seconds.max(0) as u64);
    wait(promised, &r.holder_identity, impostor)
}

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

/// Told of renew outcomes as they happen, so the election knows nothing of metrics,
/// logs or the guard.
pub trait Observer {
    /// A renew that changed the record succeeded: the new anchor and deadline.
    fn renewed(&self, anchor: Instant, latency: Duration, deadline: Instant);
    fn renew_failed(&self, latency: Duration, error: &LockError);
    /// Waiting for the lock, which `holder` holds (each time the holder changes).
    fn waiting(&self, holder: &str, impostor: bool);
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

pub struct Election<L: Lock> {
    /// One lock, or one per slot (`--slots N`: at most N leaders at once).
    pub locks: Vec<L>,
    pub identity: String,
    pub timing: Timing,
    pub writes: Writes,
    wall: WallClock,
    /// Cleared once the API server refused a watch: a leader then does not try again.
    watch_allowed: std::sync::atomic::AtomicBool,
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
            watch_allowed: std::sync::atomic::AtomicBool::new(true),
        }
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

    /// Waits until this process holds the lock (one of the slots). Observations come from
    /// one `Follow` per slot (a watch, with reads and polling as the fallback); each one
    /// goes through `decide`. `stop` carries a signal that ends the wait: it is honoured
    /// between requests, never by abandoning a write, and a write that landed is released
    /// before returning.
    pub async fn acquire(
        &self,
        opts: WaitOptions,
        stop: &mut watch::Receiver<Option<i32>>,
        observer: &dyn Observer,
    ) -> Result<Leadership<L::Object>, AcquireError> {
        self.writes.new_round();
        let start = Instant::now();
        let wait_deadline = opts.wait_timeout.map(|d| start + d);
        let mut follows: Vec<Follow<L>> = self
            .locks
            .iter()
            .map(|l| Follow::new(l, self.timing.retry_period, self.call_timeout()))
            .collect();
        let mut views: Vec<View<L::Object>> = self.locks.iter().map(|_| View::new(start)).collect();
        let mut waiting_for: Option<String> = None;
        // --no-wait: the first sight of each held slot, to tell whether it changes.
        let mut first_seen: Vec<Option<Instant>> = vec![None; self.locks.len()];
        let mut wake: Option<Instant> = None;
        loop {
            // Ends when something is observed, a decision's time comes, the wait times out,
            // or a signal stops the wait.
            let until = match (wake, wait_deadline) {
                (Some(w), Some(d)) => Some(w.min(d)),
                (w, d) => w.or(d),
            };
            tokio::select! {
                (slot, seen) = next_of(&mut follows) => views[slot].see(seen?, Instant::now()),
                _ = sleep_until_opt(until) => {}
                sig = stopped(stop) => return Err(AcquireError::Stopped(sig)),
            }
            if wait_deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(AcquireError::WaitTimeout);
            }
            if !views.iter().all(|v| v.known) {
                continue;
            }
            let now = Instant::now();
            let decisions: Vec<Decision> = views
                .iter()
                .map(|v| {
                    decide(
                        &self.identity,
                        v,
                        |r| self.writes.ours(r),
                        self.timing.lease_duration,
                        now,
                    )
                })
                .collect();
            let Some(slot) = decisions
                .iter()
                .position(|d| !matches!(d, Decision::Wait { .. }))
            else {
                wake = self.all_held(
                    &views,
                    &decisions,
                    &mut first_seen,
                    opts,
                    observer,
                    &mut waiting_for,
                )?;
                continue;
            };
            wake = None;
            if follows.iter().any(|f| !f.watch_allowed()) {
                self.watch_allowed
                    .store(false, std::sync::atomic::Ordering::Relaxed);
            }
            match self.take(slot, &views[slot], decisions[slot].clone()).await {
                Ok(leadership) => return self.keep_unless_stopped(leadership, stop).await,
                Err(Taken::Again) => follows[slot].read_again(),
                Err(Taken::Pause(error)) => {
                    self.pause_after(slot, error, stop).await;
                    follows[slot].read_again();
                }
                Err(Taken::Fail(e)) => return Err(e.into()),
            }
        }
    }

    /// Every slot is held by another: give up (`--no-wait`), or say who holds it (each time
    /// that changes) and return when to look again.
    fn all_held(
        &self,
        views: &[View<L::Object>],
        decisions: &[Decision],
        first_seen: &mut [Option<Instant>],
        opts: WaitOptions,
        observer: &dyn Observer,
        waiting_for: &mut Option<String>,
    ) -> Result<Option<Instant>, AcquireError> {
        let gives_up = (0..views.len()).all(|i| {
            let first = *first_seen[i].get_or_insert(views[i].observed_at);
            self.no_wait_gives_up(&views[i], first)
        });
        let holders = holders_of(decisions);
        if opts.no_wait && gives_up {
            return Err(AcquireError::Held { holder: holders });
        }
        if waiting_for.as_deref() != Some(holders.as_str()) {
            let impostor = decisions
                .iter()
                .any(|d| matches!(d, Decision::Wait { impostor: true, .. }));
            observer.waiting(&holders, impostor);
            *waiting_for = Some(holders);
        }
        Ok(decisions
            .iter()
            .filter_map(|d| match d {
                Decision::Wait { until, .. } => Some(*until),
                _ => None,
            })
            .min())
    }

    /// `--no-wait` on a held lock: give up, unless the record looks abandoned by its own
    /// clock. Then watch it for a lease duration (as `decide` waits anyway): any change of
    /// the record since `first_seen` means it is held after all.
    fn no_wait_gives_up(&self, view: &View<L::Object>, first_seen: Instant) -> bool {
        let abandoned = view
            .current
            .as_ref()
            .is_some_and(|o| o.record.looks_abandoned((self.wall)()));
        !abandoned || view.observed_at != first_seen
    }

    /// A signal that came during the acquiring write: the lock is not ours to keep.
    /// Release what landed and report the stop.
    async fn keep_unless_stopped(
        &self,
        leadership: Leadership<L::Object>,
        stop: &mut watch::Receiver<Option<i32>>,
    ) -> Result<Leadership<L::Object>, AcquireError> {
        let stopped = *stop.borrow();
        match stopped {
            Some(sig) => {
                self.finish(leadership, AfterExit::Release).await.ok();
                Err(AcquireError::Stopped(sig))
            }
            None => Ok(leadership),
        }
    }

    /// The pause after a write that did not take: a retry period after an error, a moment
    /// when there was nothing to write yet. A stop cuts it short.
    async fn pause_after(
        &self,
        slot: usize,
        error: Option<LockError>,
        stop: &mut watch::Receiver<Option<i32>>,
    ) {
        let pause = match error {
            Some(e) => {
                warn!(lock = %self.lock(slot).describe(), error = %e, "cannot write the lock; retrying");
                self.timing.retry_period
            }
            None => self.timing.retry_period.min(Duration::from_millis(250)),
        };
        sleep_or_stop(Some(Instant::now() + pause), stop).await;
    }

    /// One acquiring write to `slot`, as `decision` says. Never abandoned halfway.
    async fn take(
        &self,
        slot: usize,
        view: &View<L::Object>,
        decision: Decision,
    ) -> Result<Leadership<L::Object>, Taken> {
        let lock = self.lock(slot);
        let now = self.record_now();
        let current = view.current.as_ref();
        let next = match (decision, current) {
            // Our own acquiring write of this round, whose answer was lost: the same
            // leadership. Anything else naming us (another process, or a leadership of ours
            // that ended) is taken as a new leadership, with the next token.
            (Decision::Take, Some(o)) if self.writes.resumable(&o.record) => {
                o.record
                    .renewed(self.lease_seconds(), now, lock.resolution())
            }
            (_, prev) => LeaderRecord::taken(
                prev.map(|o| &o.record),
                view.transitions_seen,
                &self.identity,
                self.lease_seconds(),
                now,
            ),
        };
        if current.is_some_and(|p| p.record == next) {
            // Our own record, within the same second of a ConfigMap record: a write would
            // change nothing that followers count from. Look again in a moment.
            return Err(Taken::Pause(None));
        }
        self.writes.sent(&next);
        let sent = Instant::now();
        let result = match current {
            None => lock.create(&next, self.call_timeout()).await,
            Some(prev) => lock.update(prev, &next, self.call_timeout()).await,
        };
        match result {
            Ok(held) => Ok(Leadership {
                slot,
                fencing_token: held.record.leader_transitions,
                held,
                last_renew_sent: sent,
            }),
            Err(LockError::Conflict(_) | LockError::AlreadyExists(_) | LockError::NotFound(_)) => {
                self.writes.refused(&next);
                debug!(lock = %lock.describe(), "another copy wrote first; reading again");
                Err(Taken::Again)
            }
            Err(e) if e.is_transient() => Err(Taken::Pause(Some(e))),
            Err(e) => Err(Taken::Fail(e)),
        }
    }

    /// The moment the child must start stopping if no renew succeeds before it.
    pub fn deadline(&self, l: &Leadership<L::Object>) -> Instant {
        l.last_renew_sent + self.timing.renew_deadline
    }

    /// Renews every retry period with one PUT carrying the version held; returns only when
    /// leadership is lost. No request outlives the renew deadline. `nudge` asks for a renew
    /// at once (after the process was stopped, say).
    pub async fn hold(
        &self,
        l: &mut Leadership<L::Object>,
        observer: &dyn Observer,
        nudge: &tokio::sync::Notify,
    ) -> Lost {
        let mut next = l.last_renew_sent + self.timing.retry_period;
        let mut renewing = Renewing {
            failures: 0,
            last_error: String::from("none yet"),
        };
        // The leader watches its own lock: a takeover, a release by another client, a
        // deletion or a step-down request is seen at once, not at the next renew.
        let mut watch = self
            .watch_allowed
            .load(std::sync::atomic::Ordering::Relaxed)
            .then(|| {
                Follow::watching(
                    self.lock(l.slot),
                    &l.held,
                    self.timing.retry_period,
                    self.call_timeout(),
                )
            });
        loop {
            // Ends at the next renew, the deadline, a nudge, or news from the watch.
            let deadline = self.deadline(l);
            let news = async {
                match watch.as_mut() {
                    Some(w) => w.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep_until(next.min(deadline)) => {}
                _ = nudge.notified() => {}
                seen = news => {
                    match seen {
                        Ok(seen) => {
                            if let Some(lost) = self.judge(l, seen) {
                                return lost;
                            }
                        }
                        // The renews decide; the watch was only news.
                        Err(_) => watch = None,
                    }
                    continue;
                }
            }
            if Instant::now() >= deadline {
                return Lost::Deadline {
                    deadline: self.timing.renew_deadline,
                    last_error: renewing.last_error,
                };
            }
            match self.renew(l, observer, deadline, &mut renewing).await {
                Ok(at) => next = at,
                Err(lost) => return lost,
            }
        }
    }

    /// One renew: our record with a later renew time, sent with the version held, bounded
    /// by the deadline. Returns when to renew next, or the loss.
    async fn renew(
        &self,
        l: &mut Leadership<L::Object>,
        observer: &dyn Observer,
        deadline: Instant,
        r: &mut Renewing,
    ) -> Result<Instant, Lost> {
        let lock = self.lock(l.slot);
        let sent = Instant::now();
        let record =
            l.held
                .record
                .renewed(self.lease_seconds(), self.record_now(), lock.resolution());
        if record == l.held.record {
            // Within the same second of a ConfigMap record: a write would change nothing
            // and count for nothing. Try again in a moment.
            return Ok(sent + self.timing.retry_period.min(Duration::from_millis(250)));
        }
        self.writes.sent(&record);
        let result = lock.update(&l.held, &record, deadline - sent).await;
        let latency = sent.elapsed();
        let retry_soon = || Instant::now() + self.timing.retry_period / 2;
        match result {
            Ok(held) => {
                if r.failures > 0 {
                    debug!(lock = %lock.describe(), failures = r.failures, "renewed again after failures");
                }
                r.failures = 0;
                l.last_renew_sent = sent;
                l.held = held;
                observer.renewed(sent, latency, self.deadline(l));
                Ok(sent + self.timing.retry_period)
            }
            Err(LockError::Conflict(_)) => {
                self.writes.refused(&record);
                observer.renew_failed(latency, &LockError::Conflict(lock.describe()));
                r.failures += 1;
                r.last_error = format!(
                    "409 Conflict: somebody else wrote the {} ({} in a row)",
                    lock.describe(),
                    r.failures
                );
                match self.after_conflict(l, deadline, r.failures).await {
                    Ok(at) => Ok(at),
                    Err(Some(lost)) => Err(lost),
                    Err(None) => Ok(retry_soon()),
                }
            }
            Err(LockError::NotFound(_)) => Err(Lost::Deleted),
            Err(e) => {
                observer.renew_failed(latency, &e);
                warn!(lock = %lock.describe(), error = %e, "renew failed; retrying until the renew deadline");
                r.last_error = e.to_string();
                r.failures += 1;
                Ok(retry_soon())
            }
        }
    }

    /// What the leader makes of its own lock as seen by its watch: lost, or still ours.
    /// Our own renews come back this way too, and are ignored.
    fn judge(&self, l: &Leadership<L::Object>, seen: Option<Observed<L::Object>>) -> Option<Lost> {
        let Some(o) = seen else {
            return Some(Lost::Deleted);
        };
        if o.uid != l.held.uid {
            return Some(Lost::Deleted);
        }
        if o.step_down.as_deref() == Some(self.identity.as_str())
            && o.record.holder_identity == self.identity
        {
            return Some(Lost::SteppedDown);
        }
        if o.record == l.held.record || self.writes.ours(&o.record) {
            return None;
        }
        Some(if !o.record.is_held() {
            Lost::Released
        } else if o.record.holder_identity == self.identity {
            Lost::Impostor(self.identity.clone())
        } else {
            Lost::TakenOver(o.record.holder_identity)
        })
    }

    /// Someone wrote the lock. Still ours (a renew of ours that landed late, another field
    /// of a ConfigMap)? Then go on from what is there: at once the first time, after a
    /// pause when conflicts repeat, so nothing spins. Err(Some) when leadership is lost,
    /// Err(None) when the read failed (retry until the deadline).
    async fn after_conflict(
        &self,
        l: &mut Leadership<L::Object>,
        deadline: Instant,
        failures: u32,
    ) -> Result<Instant, Option<Lost>> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lock(l.slot).get(left).await {
            Ok(Some(o)) if o.uid != l.held.uid => Err(Some(Lost::Deleted)),
            Ok(Some(o))
                if o.step_down.as_deref() == Some(self.identity.as_str())
                    && o.record.holder_identity == self.identity =>
            {
                Err(Some(Lost::SteppedDown))
            }
            Ok(Some(o)) if o.record.holder_identity == self.identity => {
                if !self.writes.ours(&o.record) {
                    return Err(Some(Lost::Impostor(self.identity.clone())));
                }
                l.held = o;
                Ok(if failures > 1 {
                    Instant::now() + self.timing.retry_period / 4
                } else {
                    Instant::now()
                })
            }
            Ok(Some(o)) if !o.record.is_held() => Err(Some(Lost::Released)),
            Ok(Some(o)) => Err(Some(Lost::TakenOver(o.record.holder_identity))),
            Ok(None) => Err(Some(Lost::Deleted)),
            Err(e @ LockError::Unreadable { .. }) => Err(Some(Lost::Lock(e))),
            Err(_) => Err(None),
        }
    }

    /// After the child ended: release (empty holder, duration 1s, transitions kept, as
    /// client-go's ReleaseOnCancel), or leave the lock to expire.
    pub async fn finish(
        &self,
        l: Leadership<L::Object>,
        after: AfterExit,
    ) -> Result<(), LockError> {
        if after == AfterExit::Leave {
            return Ok(());
        }
        let lock = self.lock(l.slot);
        let mut held = l.held;
        for _ in 0..2 {
            let record = held.record.released(self.record_now());
            match lock.update(&held, &record, self.call_timeout()).await {
                Ok(_) => return Ok(()),
                Err(LockError::Conflict(_)) => match lock.get(self.call_timeout()).await? {
                    Some(o) if o.uid == held.uid && self.writes.ours(&o.record) => held = o,
                    // Not ours any more: nothing to release.
                    _ => return Ok(()),
                },
                Err(LockError::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Err(LockError::Conflict(lock.describe()))
    }
}

/// How the renews are going: failures in a row, and the last error, for the deadline's message.
struct Renewing {
    failures: u32,
    last_error: String,
}

/// Why an acquiring write did not take the lock.
enum Taken {
    /// Somebody else wrote first: read again and decide again.
    Again,
    /// A transient error, or nothing to write yet: pause, then read again.
    Pause(Option<LockError>),
    Fail(LockError),
}

/// The next observation of any slot, with the slot's index.
async fn next_of<'a, L: Lock>(
    follows: &mut [Follow<'a, L>],
) -> (usize, Result<Option<Observed<L::Object>>, LockError>) {
    let futures = follows
        .iter_mut()
        .enumerate()
        .map(|(i, f)| Box::pin(async move { (i, f.next().await) }));
    futures::future::select_all(futures).await.0
}

/// Who holds the slots, for the log: one holder, or all of them.
fn holders_of(decisions: &[Decision]) -> String {
    let holders: Vec<&str> = decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Wait { holder, .. } => Some(holder.as_str()),
            _ => None,
        })
        .collect();
    holders.join(", ")
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Resolves with the signal once a stop is requested.
async fn stopped(stop: &mut watch::Receiver<Option<i32>>) -> i32 {
    loop {
        if let Some(sig) = *stop.borrow_and_update() {
            return sig;
        }
        if stop.changed().await.is_err() {
            // The sender is gone: nobody can ask any more.
            std::future::pending::<()>().await;
        }
    }
}

async fn sleep_or_stop(until: Option<Instant>, stop: &mut watch::Receiver<Option<i32>>) {
    tokio::select! {
        _ = sleep_until_opt(until) => {}
        _ = stopped(stop) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(h: &str, secs: i32) -> LeaderRecord {
        LeaderRecord {
            holder_identity: h.into(),
            lease_duration_seconds: secs,
            ..Default::default()
        }
    }

    fn obs(r: LeaderRecord, rv: &str) -> Observed<()> {
        Observed {
            record: r,
            resource_version: rv.into(),
            uid: "u".into(),
            step_down: None,
            object: (),
        }
    }

    fn view_of(r: Option<LeaderRecord>, at: Instant) -> View<()> {
        let mut v = View::new(at);
        v.see(r.map(|r| obs(r, "1")), at);
        v
    }

    const D: Duration = Duration::from_secs(15);

    #[test]
    fn a_lock_that_never_existed_is_created_at_once() {
        let now = Instant::now();
        assert_eq!(
            decide("me", &view_of(None, now), |_| false, D, now),
            Decision::Create
        );
    }

    #[test]
    fn free_or_own_lock_is_taken_at_once() {
        let now = Instant::now();
        assert_eq!(
            decide("me", &view_of(Some(held_by("", 1)), now), |_| false, D, now),
            Decision::Take
        );
        assert_eq!(
            decide(
                "me",
                &view_of(Some(held_by("me", 15)), now),
                |_| true,
                D,
                now
            ),
            Decision::Take
        );
    }

    #[test]
    fn our_identity_written_by_another_process_is_another_holder() {
        let now = Instant::now();
        assert_eq!(
            decide(
                "me",
                &view_of(Some(held_by("me", 15)), now),
                |_| false,
                D,
                now
            ),
            Decision::Wait {
                until: now + D,
                holder: "me".into(),
                impostor: true
            }
        );
    }

    #[test]
    fn held_lock_expires_a_lease_duration_after_it_was_observed() {
        let t0 = Instant::now();
        let v = view_of(Some(held_by("other", 15)), t0);
        assert!(matches!(
            decide("me", &v, |_| false, D, t0 + Duration::from_secs(14)),
            Decision::Wait { until, .. } if until == t0 + D
        ));
        assert_eq!(decide("me", &v, |_| false, D, t0 + D), Decision::Take);
    }

    #[test]
    fn the_longer_of_the_records_and_our_duration_counts() {
        let t0 = Instant::now();
        assert!(matches!(
            decide("me", &view_of(Some(held_by("py", 17)), t0), |_| false, D, t0 + D),
            Decision::Wait { until, .. } if until == t0 + Duration::from_secs(17)
        ));
        assert!(matches!(
            decide("me", &view_of(Some(held_by("x", 0)), t0), |_| false, D, t0),
            Decision::Wait { until, .. } if until == t0 + D
        ));
    }

    #[test]
    fn a_deletion_under_a_holder_is_waited_out_from_the_deletion() {
        let t0 = Instant::now();
        let mut v = view_of(Some(held_by("other", 15)), t0);
        let deleted = t0 + Duration::from_secs(10);
        v.see(None, deleted);
        assert!(matches!(
            decide("me", &v, |_| false, D, deleted + Duration::from_secs(1)),
            Decision::Wait { until, .. } if until == deleted + D
        ));
        assert_eq!(
            decide("me", &v, |_| false, D, deleted + D),
            Decision::Create
        );
        // A lock seen free and then deleted is waited out too: the free record may be a
        // stale view (our watch down while another took the lock, before the deletion).
        let mut free = view_of(Some(held_by("", 1)), t0);
        free.see(None, deleted);
        assert!(matches!(
            decide("me", &free, |_| false, D, deleted),
            Decision::Wait { until, .. } if until == deleted + D
        ));
        // A lock that never existed is created at once.
        let never = view_of(None, t0);
        assert_eq!(decide("me", &never, |_| false, D, t0), Decision::Create);
    }

    #[test]
    fn observation_time_moves_only_when_the_record_changes() {
        let t0 = Instant::now();
        let mut v: View<()> = View::new(t0);
        let s = |n: u64| t0 + Duration::from_secs(n);
        v.see(Some(obs(held_by("a", 15), "1")), s(1));
        assert_eq!(v.observed_at, s(1));
        // A re-read of the same version does not extend it.
        v.see(Some(obs(held_by("a", 15), "1")), s(3));
        assert_eq!(v.observed_at, s(1));
        // Nor does a write to another field (a label, ConfigMap data).
        v.see(Some(obs(held_by("a", 15), "2")), s(5));
        assert_eq!(v.observed_at, s(1));
        v.see(Some(obs(held_by("b", 15), "3")), s(6));
        assert_eq!(v.observed_at, s(6));
        v.see(None, s(7));
        assert_eq!(v.observed_at, s(7));
        assert!(v.deleted_after_seen);
    }

    #[test]
    fn transitions_seen_survive_a_deletion() {
        let t0 = Instant::now();
        let mut v: View<()> = View::new(t0);
        v.see(
            Some(obs(
                LeaderRecord {
                    leader_transitions: 7,
                    ..held_by("a", 15)
                },
                "1",
            )),
            t0,
        );
        v.see(None, t0);
        assert_eq!(v.transitions_seen, Some(7));
        let created = LeaderRecord::taken(None, v.transitions_seen, "me", 15, record::now());
        assert_eq!(created.leader_transitions, 8);
    }

    #[test]
    fn our_writes_are_known_by_renew_time() {
        let w = Writes::default();
        let r = LeaderRecord::taken(None, None, "me", 15, record::now());
        assert!(!w.ours(&r));
        w.sent(&r);
        assert!(w.ours(&r));
        let other = LeaderRecord {
            renew_time: None,
            ..r
        };
        assert!(!w.ours(&other));
    }
}

/// The election driven through a scripted lock in paused time: every transition of
/// `acquire` and `hold`, in milliseconds of real time.
#[cfg(test)]
mod paused {
    use super::*;
    use crate::fake_lock::{self, FakeLock, Fault, Op};

    const T: Timing = Timing {
        lease_duration: Duration::from_secs(4),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(500),
        kill_grace: Duration::from_secs(1),
    };
    const LEASE: Duration = T.lease_duration;

    /// The wall clock follows paused time from the real one at the start.
    fn election(lock: &FakeLock, me: &str) -> Election<FakeLock> {
        let (wall0, t0) = (record::now(), Instant::now());
        Election::new(lock.clone(), me.into(), T).with_wall_clock(std::sync::Arc::new(move || {
            record::plus(wall0, t0.elapsed()).unwrap_or(wall0)
        }))
    }

    fn held(holder: &str) -> LeaderRecord {
        LeaderRecord::taken(None, Some(4), holder, 4, record::now())
    }

    async fn acquire_with(
        e: &Election<FakeLock>,
        opts: WaitOptions,
    ) -> Result<Leadership<()>, AcquireError> {
        let (_tx, mut rx) = watch::channel(None);
        e.acquire(opts, &mut rx, &Unobserved).await
    }

    async fn acquire(e: &Election<FakeLock>) -> Result<Leadership<()>, AcquireError> {
        acquire_with(e, WaitOptions::default()).await
    }

    /// Another holder renewing every retry period for `for_` (then it stops).
    fn renewing(lock: &FakeLock, holder: &'static str, for_: Duration) {
        let lock = lock.clone();
        tokio::spawn(async move {
            let end = Instant::now() + for_;
            while Instant::now() < end {
                let r = lock.record().unwrap_or_else(|| held(holder));
                lock.write(LeaderRecord {
                    renew_time: Some(record::now()),
                    ..r
                });
                tokio::time::sleep(T.retry_period).await;
            }
        });
    }

    fn close(a: Duration, b: Duration) -> bool {
        a.abs_diff(b) <= Duration::from_millis(50)
    }

    #[tokio::test(start_paused = true)]
    async fn a_lock_that_never_existed_is_created_at_once_from_token_0() {
        let lock = FakeLock::default();
        let t0 = Instant::now();
        let l = acquire(&election(&lock, "me")).await.unwrap();
        assert!(t0.elapsed() < Duration::from_millis(10));
        assert_eq!((l.fencing_token, lock.calls(Op::Create)), (0, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_lock_is_taken_a_lease_after_its_last_change_with_the_next_token() {
        let lock = FakeLock::default();
        lock.write(held("other"));
        renewing(&lock, "other", Duration::from_secs(3));
        let t0 = Instant::now();
        let l = acquire(&election(&lock, "me")).await.unwrap();
        // The last renew was at about 2.5s (every 500ms for 3s): taken a lease after it.
        assert!(
            close(t0.elapsed(), Duration::from_millis(2500) + LEASE),
            "{:?}",
            t0.elapsed()
        );
        assert_eq!(l.fencing_token, 6, "one more than the holder's 5");
    }

    #[tokio::test(start_paused = true)]
    async fn a_release_is_seen_through_the_watch_at_once() {
        let lock = FakeLock::default();
        lock.write(held("other"));
        let l2 = lock.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let r = l2.record().unwrap();
            l2.write(r.released(record::now()));
        });
        let t0 = Instant::now();
        acquire(&election(&lock, "me")).await.unwrap();
        assert!(
            close(t0.elapsed(), Duration::from_secs(1)),
            "{:?}",
            t0.elapsed()
        );
        assert_eq!(lock.calls(Op::Get), 1, "one read, then the watch");
    }

    #[tokio::test(start_paused = true)]
    async fn with_watching_refused_it_polls_every_retry_period() {
        let lock = FakeLock::default();
        lock.fault(Op::Watch, Fault::Fail(fake_lock::refused));
        lock.write(held("other"));
        let l2 = lock.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let r = l2.record().unwrap();
            l2.write(r.released(record::now()));
        });
        let t0 = Instant::now();
        acquire(&election(&lock, "me")).await.unwrap();
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_secs(1)
                && took
                    <= Duration::from_secs(1)
                        + T.retry_period.mul_f64(1.2)
                        + Duration::from_millis(10),
            "{took:?}"
        );
        assert_eq!(
            lock.calls(Op::Watch),
            1,
            "a refused watch is not tried again"
        );
        assert!(lock.calls(Op::Get) >= 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_watch_is_replaced_and_a_release_seen_within_a_few_retry_periods() {
        let lock = FakeLock::default();
        lock.fault(Op::Watch, Fault::Stall);
        lock.write(held("other"));
        let l2 = lock.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let r = l2.record().unwrap();
            l2.write(r.released(record::now()));
        });
        let t0 = Instant::now();
        acquire(&election(&lock, "me")).await.unwrap();
        let took = t0.elapsed();
        // Silent for 3 retry periods, then a plain read shows the release: well before a lease.
        assert!(
            took <= T.retry_period * 3 + Duration::from_millis(10),
            "{took:?}"
        );
        assert!(took < LEASE);
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_times_out_when_the_holder_renews_on() {
        let lock = FakeLock::default();
        lock.write(held("other"));
        renewing(&lock, "other", Duration::from_secs(60));
        let t0 = Instant::now();
        let r = acquire_with(
            &election(&lock, "me"),
            WaitOptions {
                no_wait: false,
                wait_timeout: Some(Duration::from_secs(7)),
            },
        )
        .await;
        assert!(matches!(r, Err(AcquireError::WaitTimeout)), "{r:?}");
        assert!(close(t0.elapsed(), Duration::from_secs(7)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lock_deleted_under_its_holder_is_created_a_lease_after_the_deletion() {
        let lock = FakeLock::default();
        lock.write(held("other"));
        let l2 = lock.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            l2.delete();
        });
        let t0 = Instant::now();
        let l = acquire(&election(&lock, "me")).await.unwrap();
        assert!(
            close(t0.elapsed(), Duration::from_secs(1) + LEASE),
            "{:?}",
            t0.elapsed()
        );
        assert_eq!(
            l.fencing_token, 6,
            "the token continues from the deleted record's"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_naming_us_written_by_another_process_is_waited_out() {
        let lock = FakeLock::default();
        lock.write(held("me"));
        let before = lock.record().unwrap().leader_transitions;
        let t0 = Instant::now();
        let l = acquire(&election(&lock, "me")).await.unwrap();
        assert!(close(t0.elapsed(), LEASE), "{:?}", t0.elapsed());
        // Another process's leadership, though it bore our name: the token moves on.
        assert_eq!(l.fencing_token, before + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_twins_write_equal_to_our_refused_one_is_not_taken_for_ours() {
        // A ConfigMap record keeps whole seconds: a twin (our identity, another process)
        // renewing in the same second as our acquiring write writes the same holder and
        // renewTime. Ours met a 409, so the record is the twin's: wait it out and take it
        // with the next token, never resume it as our own leadership with the twin's token.
        let lock = FakeLock::with_seconds();
        lock.write(held("me"));
        let before = lock.record().unwrap().leader_transitions;
        lock.fault(Op::Update, Fault::WrittenFirst);
        let t0 = Instant::now();
        let l = acquire(&election(&lock, "me")).await.unwrap();
        assert_eq!(l.fencing_token, before + 2, "the twin had before + 1");
        assert!(t0.elapsed() >= 2 * LEASE, "{:?}", t0.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_leadership_after_our_own_gets_the_next_token() {
        // `--rejoin` after a loss that nobody took over: the lock still shows our last
        // write. It is taken at once, but as a new leadership.
        let lock = FakeLock::default();
        let e = election(&lock, "me");
        let first = acquire(&e).await.unwrap();
        drop(first);
        let t0 = Instant::now();
        let second = acquire(&e).await.unwrap();
        assert!(t0.elapsed() < T.retry_period, "{:?}", t0.elapsed());
        assert_eq!(second.fencing_token, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_signal_during_the_acquiring_write_releases_what_landed() {
        let lock = FakeLock::default();
        lock.fault(Op::Create, Fault::Slow(Duration::from_millis(100)));
        let e = election(&lock, "me");
        let (tx, mut rx) = watch::channel(None);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            tx.send_replace(Some(15));
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        let r = e
            .acquire(WaitOptions::default(), &mut rx, &Unobserved)
            .await;
        assert!(matches!(r, Err(AcquireError::Stopped(15))), "{r:?}");
        let left = lock.record().unwrap();
        assert!(!left.is_held(), "released: {left:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_namespace_is_an_error_at_once() {
        let lock = FakeLock::default();
        lock.fault(Op::Create, Fault::Fail(fake_lock::no_namespace));
        let r = acquire(&election(&lock, "me")).await;
        assert!(
            matches!(r, Err(AcquireError::Lock(LockError::NamespaceNotFound(_)))),
            "{r:?}"
        );
        assert_eq!(lock.calls(Op::Create), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn no_wait_gives_up_at_once_on_a_live_lock() {
        let lock = FakeLock::default();
        lock.write(held("other"));
        let t0 = Instant::now();
        let r = acquire_with(
            &election(&lock, "me"),
            WaitOptions {
                no_wait: true,
                wait_timeout: None,
            },
        )
        .await;
        assert!(matches!(r, Err(AcquireError::Held { .. })), "{r:?}");
        assert!(t0.elapsed() < Duration::from_millis(10));
    }

    fn abandoned(holder: &str) -> LeaderRecord {
        // Renewed an hour ago by its own clock.
        let mut r = held(holder);
        let old = LeaderRecord::from_annotation(r#"{"renewTime":"2000-01-01T00:00:00Z"}"#).unwrap();
        r.renew_time = old.renew_time;
        r
    }

    #[tokio::test(start_paused = true)]
    async fn no_wait_takes_an_abandoned_lock_after_watching_it_for_a_lease() {
        let lock = FakeLock::default();
        lock.write(abandoned("gone"));
        let t0 = Instant::now();
        acquire_with(
            &election(&lock, "me"),
            WaitOptions {
                no_wait: true,
                wait_timeout: None,
            },
        )
        .await
        .unwrap();
        assert!(close(t0.elapsed(), LEASE));
    }

    #[tokio::test(start_paused = true)]
    async fn no_wait_gives_up_when_a_lock_that_looked_abandoned_changes() {
        let lock = FakeLock::default();
        lock.write(abandoned("slow-clock"));
        let l2 = lock.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            // Its holder's clock is far behind, but it renews: it is alive.
            let mut r = abandoned("slow-clock");
            r.lease_duration_seconds = 5;
            l2.write(r);
        });
        let r = acquire_with(
            &election(&lock, "me"),
            WaitOptions {
                no_wait: true,
                wait_timeout: None,
            },
        )
        .await;
        assert!(matches!(r, Err(AcquireError::Held { .. })), "{r:?}");
    }

    /// Acquires, then holds for `for_` (or until lost).
    async fn hold_for(
        e: &Election<FakeLock>,
        for_: Duration,
    ) -> (Leadership<()>, Option<Lost>, Instant) {
        let mut l = acquire(e).await.unwrap();
        let nudge = tokio::sync::Notify::new();
        let t0 = Instant::now();
        let lost = tokio::select! {
            lost = e.hold(&mut l, &Unobserved, &nudge) => Some(lost),
            _ = tokio::time::sleep(for_) => None,
        };
        (l, lost, t0)
    }

    #[tokio::test(start_paused = true)]
    async fn the_leader_renews_with_one_update_per_retry_period_and_no_read() {
        let lock = FakeLock::default();
        let (_, lost, _) = hold_for(&election(&lock, "me"), Duration::from_millis(5100)).await;
        assert!(lost.is_none());
        assert_eq!(lock.calls(Op::Update), 10);
        assert_eq!(
            lock.calls(Op::Get),
            1,
            "only the first read, before acquiring"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn renews_that_would_change_nothing_are_not_sent() {
        // A record in whole seconds (a ConfigMap's) renewed every 500ms: half the renews
        // would rewrite the same record; they are skipped, and never move the anchor.
        let lock = FakeLock::with_seconds();
        let e = election(&lock, "me");
        let (l, lost, _) = hold_for(&e, Duration::from_secs(5)).await;
        assert!(lost.is_none());
        let updates = lock.calls(Op::Update);
        assert!((4..=6).contains(&updates), "{updates} updates in 5s");
        assert_eq!(lock.record().unwrap().renew_time, l.held.record.renew_time);
    }

    #[tokio::test(start_paused = true)]
    async fn failing_renews_lose_at_the_deadline_of_the_last_success() {
        let lock = FakeLock::default();
        let e = election(&lock, "me");
        let mut l = acquire(&e).await.unwrap();
        for _ in 0..100 {
            lock.fault(Op::Update, Fault::Fail(fake_lock::transient));
        }
        let nudge = tokio::sync::Notify::new();
        let lost = e.hold(&mut l, &Unobserved, &nudge).await;
        assert!(matches!(lost, Lost::Deadline { .. }), "{lost}");
        assert_eq!(Instant::now(), l.last_renew_sent + T.renew_deadline);
        assert!(lost.to_string().contains("connection refused"), "{lost}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_conflict_that_is_still_ours_goes_on_renewing() {
        let lock = FakeLock::default();
        lock.fault(Op::Update, Fault::Fail(fake_lock::conflict));
        let (_, lost, _) = hold_for(&election(&lock, "me"), Duration::from_secs(5)).await;
        assert!(lost.is_none(), "{lost:?}");
        assert_eq!(lock.calls(Op::Get), 2, "one read after the conflict");
    }

    #[tokio::test(start_paused = true)]
    async fn repeated_conflicts_name_the_conflict_at_the_deadline() {
        let lock = FakeLock::default();
        for _ in 0..100 {
            lock.fault(Op::Update, Fault::Fail(fake_lock::conflict));
        }
        let (_, lost, _) = hold_for(&election(&lock, "me"), Duration::from_secs(10)).await;
        let lost = lost.expect("lost at the deadline");
        assert!(lost.to_string().contains("409 Conflict"), "{lost}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_takeover_a_release_a_deletion_and_an_impostor_each_end_leadership() {
        type Act = fn(&FakeLock);
        type Want = fn(&Lost) -> bool;
        let cases: [(Act, Want); 4] = [
            (
                |l| l.write(held("x")),
                |l| matches!(l, Lost::TakenOver(h) if h == "x"),
            ),
            (
                |l| l.write(l.record().unwrap().released(record::now())),
                |l| matches!(l, Lost::Released),
            ),
            (|l| l.delete(), |l| matches!(l, Lost::Deleted)),
            (|l| l.write(held("me")), |l| matches!(l, Lost::Impostor(_))),
        ];
        for (act, want) in cases {
            let lock = FakeLock::default();
            let e = election(&lock, "me");
            let mut l = acquire(&e).await.unwrap();
            act(&lock);
            let nudge = tokio::sync::Notify::new();
            let t0 = Instant::now();
            let lost = e.hold(&mut l, &Unobserved, &nudge).await;
            assert!(want(&lost), "{lost}");
            assert!(t0.elapsed() <= T.retry_period, "at the next renew");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn with_slots_a_free_slot_is_taken_and_a_freed_one_seen_at_once() {
        let (a, b) = (FakeLock::default(), FakeLock::default());
        a.write(held("x"));
        let e = Election::with_slots(vec![a.clone(), b.clone()], "me".into(), T);
        let l = acquire(&e).await.unwrap();
        assert_eq!(l.slot, 1, "the free slot");
        // Both held: wait; a release of either is seen through its watch.
        let e2 = Election::with_slots(vec![a.clone(), b.clone()], "me2".into(), T);
        let a2 = a.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let r = a2.record().unwrap();
            a2.write(r.released(record::now()));
        });
        let t0 = Instant::now();
        let l2 = acquire(&e2).await.unwrap();
        assert_eq!(l2.slot, 0);
        assert!(
            close(t0.elapsed(), Duration::from_secs(1)),
            "{:?}",
            t0.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_down_request_is_seen_at_once_and_one_for_another_holder_is_not() {
        let lock = FakeLock::default();
        let e = election(&lock, "me");
        let mut l = acquire(&e).await.unwrap();
        let nudge = tokio::sync::Notify::new();
        let l2 = lock.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let seen = l2.get(Duration::from_secs(1)).await.unwrap().unwrap();
            l2.request_step_down(&seen, "someone-else", Duration::from_secs(1))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let seen = l2.get(Duration::from_secs(1)).await.unwrap().unwrap();
            l2.request_step_down(&seen, "me", Duration::from_secs(1))
                .await
                .unwrap();
        });
        let t0 = Instant::now();
        let lost = e.hold(&mut l, &Unobserved, &nudge).await;
        assert!(matches!(lost, Lost::SteppedDown), "{lost}");
        assert!(
            close(t0.elapsed(), Duration::from_millis(1100)),
            "at once: {:?}",
            t0.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_nudge_renews_at_once() {
        let lock = FakeLock::default();
        let e = election(&lock, "me");
        let mut l = acquire(&e).await.unwrap();
        // 100ms later, well before the next renew at 500ms.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let nudge = tokio::sync::Notify::new();
        nudge.notify_one();
        tokio::select! {
            _ = e.hold(&mut l, &Unobserved, &nudge) => panic!("not lost"),
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
        assert_eq!(lock.calls(Op::Update), 1);
    }
}
