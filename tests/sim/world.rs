//! The simulated API server: one store of lock objects (one per slot) with a global
//! resourceVersion, compare-and-swap updates, uids, deletion, watches replayed from a
//! bounded history (410 beyond it), and a network between each process and the server with
//! latency, cut-offs, lost and late answers. Answers follow the real server's (tests/run.rs
//! and the emulator's differential test say what those are): 409 Conflict on a stale
//! version, 409 AlreadyExists on a create, 404 on an update of a missing object, and a write
//! that changes nothing keeps the version and sends no event.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use leaderrun::lock::{Change, Lock, LockError, Notes, Observed};
use leaderrun::record::LeaderRecord;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// The object as the election sees it: the record lives in `Observed`; this is the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct SimObject {
    /// Writes to other fields (labels, data) by other clients.
    pub others: u32,
}

#[derive(Debug, Clone)]
struct Stored {
    record: LeaderRecord,
    rv: u64,
    uid: String,
    /// leaderrun's annotations (the writer's mark, a step-down request).
    notes: Notes,
    others: u32,
}

impl Stored {
    fn observed(&self) -> Observed<SimObject> {
        Observed {
            record: self.record.clone(),
            resource_version: self.rv.to_string(),
            uid: self.uid.clone(),
            notes: self.notes.clone(),
            object: SimObject {
                others: self.others,
            },
        }
    }
}

type Sender = mpsc::UnboundedSender<Result<Change<SimObject>, LockError>>;

struct Watcher {
    process: usize,
    slot: usize,
    tx: Sender,
    /// Deliveries are in order: each one no earlier than the one before.
    last_at: Instant,
    /// A half-open connection: nothing more arrives, and nothing says so.
    stalled: bool,
}

/// What happens on the way of one request.
enum Path {
    /// Never reaches the server: the client hears nothing until its timeout, or (a refused
    /// connection) an error after `Duration`.
    Cut(Option<Duration>),
    Through {
        to_server: Duration,
        back: Duration,
        /// 5xx or 429 instead of an answer (`applied`: a 504 after the write landed).
        error: Option<(u16, bool)>,
        /// The write lands; the answer never arrives.
        lost: bool,
    },
}

/// Per-process network state.
#[derive(Default)]
pub struct Net {
    pub cut_until: Option<Instant>,
    /// Answers take up to this long each way until then (later than the client's timeout).
    pub slow_until: Option<Instant>,
    /// RBAC without `watch` for this process: every watch is refused (403).
    pub watch_forbidden: bool,
    /// The slots whose current object the process has taken in: a read's answer, or a watch
    /// event its election has read from the stream (not one merely delivered into the
    /// stream's buffer). The deletion rule.
    pub seen: Arc<Mutex<std::collections::BTreeSet<(usize, String)>>>,
    /// The highest transition count the process took in, per slot, taken in as `seen` is:
    /// a leadership it wins must carry a token no lower (docs/DESIGN.md: a copy that saw the
    /// old count continues from it, across a deletion too).
    /// With it, the longest lease (seconds) a held record it took in promised (DESIGN.md: a
    /// deletion is waited out for it, if longer than the copy's own).
    pub counts: Arc<Mutex<BTreeMap<usize, (i32, i32)>>>,
    /// Requests sent, by simulated second.
    pub sent: BTreeMap<u64, u32>,
    /// Acquiring rounds begun (a start, `--rejoin`), by simulated second: each reads every
    /// slot and opens its watch afresh.
    pub rounds: BTreeMap<u64, u32>,
}

pub struct World {
    pub start: Instant,
    pub rng: StdRng,
    objects: BTreeMap<usize, Stored>,
    rv: u64,
    uids: u64,
    /// (rv, slot, the object after the change or None for a deletion).
    history: Vec<(u64, usize, Option<Stored>)>,
    /// Watches from a version older than the oldest kept event get 410.
    keep_events: usize,
    watchers: Vec<Watcher>,
    pub net: Vec<Net>,
    /// Faults the driver has armed: the next N requests (any process) fail with 5xx/429;
    /// the next N writes land with their answers lost; the next N watches get 410.
    pub errors_left: u32,
    pub lost_left: u32,
    pub expire_left: u32,
    pub trace: Option<Vec<String>>,
    /// Creates sent and not yet answered (or timed out), per slot: a create sent before its
    /// process saw the current object would land after a deletion as if the lock were new
    /// (the documented limit), so the driver deletes only when there is none. One that timed
    /// out may still land after a deletion: its process has read the object since, and must
    /// wait the deletion out (seed 7353976515771255075).
    pub creates_in_flight: BTreeMap<usize, u32>,
}

pub type Shared = Rc<RefCell<World>>;

impl Net {
    /// The process took in `o`, the object of `slot`.
    pub fn saw(&self, slot: usize, o: &Observed<SimObject>) {
        took_in(&self.seen, &self.counts, slot, o);
    }

    /// The highest transition count the process took in for `slot`.
    pub fn count_seen(&self, slot: usize) -> Option<i32> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(&slot).map(|c| c.0)
    }

    /// The longest lease a held record of `slot` the process took in promised.
    pub fn promise_seen(&self, slot: usize) -> Duration {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let secs = counts.get(&slot).map_or(0, |c| c.1);
        Duration::from_secs(secs.max(0) as u64)
    }

    pub fn has_seen(&self, slot: usize, uid: &str) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(slot, uid.to_string()))
    }
}

type Seen = Arc<Mutex<std::collections::BTreeSet<(usize, String)>>>;
type Counts = Arc<Mutex<BTreeMap<usize, (i32, i32)>>>;

fn took_in(seen: &Seen, counts: &Counts, slot: usize, o: &Observed<SimObject>) {
    let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
    s.insert((slot, o.uid.clone()));
    let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
    let r = &o.record;
    let promise = if r.is_held() {
        r.lease_duration_seconds
    } else {
        0
    };
    let t = c.entry(slot).or_insert((r.leader_transitions, promise));
    *t = (t.0.max(r.leader_transitions), t.1.max(promise));
}

impl World {
    pub fn new(seed: u64, processes: usize, trace: bool) -> Shared {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5157_4f52_4c44);
        let keep_events = rng.random_range(2..60);
        Rc::new(RefCell::new(World {
            start: Instant::now(),
            rng,
            objects: BTreeMap::new(),
            rv: 100,
            uids: 0,
            history: Vec::new(),
            keep_events,
            watchers: Vec::new(),
            net: (0..processes).map(|_| Net::default()).collect(),
            errors_left: 0,
            lost_left: 0,
            expire_left: 0,
            trace: trace.then(Vec::new),
            creates_in_flight: BTreeMap::new(),
        }))
    }

    /// Simulated seconds since the start.
    pub fn secs(&self) -> f64 {
        (Instant::now() - self.start).as_secs_f64()
    }

    pub fn log(&mut self, line: impl FnOnce() -> String) {
        if self.trace.is_some() {
            let at = self.secs();
            let l = line();
            if let Some(t) = self.trace.as_mut() {
                t.push(format!("{at:>10.6}s {l}"));
            }
        }
    }

    pub fn add_process(&mut self) -> usize {
        self.net.push(Net::default());
        self.net.len() - 1
    }

    pub fn uid(&self, slot: usize) -> Option<String> {
        self.objects.get(&slot).map(|s| s.uid.clone())
    }

    pub fn record(&self, slot: usize) -> Option<LeaderRecord> {
        self.objects.get(&slot).map(|s| s.record.clone())
    }

    /// A change to `slot` at the server: the version moves, the history keeps it, and every
    /// watcher of the slot gets it after its delivery delay.
    fn commit(&mut self, me: &Shared, slot: usize, after: Option<Stored>) {
        self.history.push((self.rv, slot, after.clone()));
        if self.history.len() > self.keep_events {
            self.history.remove(0);
        }
        let now = Instant::now();
        for i in 0..self.watchers.len() {
            if self.watchers[i].slot != slot {
                continue;
            }
            let delay = self.delivery_delay();
            let w = &mut self.watchers[i];
            let at = (now + delay).max(w.last_at + Duration::from_micros(1));
            w.last_at = at;
            let event = match &after {
                Some(s) => Change::Changed(s.observed()),
                None => Change::Deleted,
            };
            deliver(me.clone(), w.tx.clone(), w.process, at, event);
        }
    }

    fn delivery_delay(&mut self) -> Duration {
        if self.rng.random_bool(0.05) {
            Duration::from_millis(self.rng.random_range(50..1500))
        } else {
            Duration::from_micros(self.rng.random_range(200..20_000))
        }
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    // ----- what other clients do, at the server (no network) -----

    /// Another client writes the record: `keep_mark` as client-go does (it writes the object
    /// it read, annotations and all), or unmarked as `leaderrun force-release` does (its notes
    /// then change as leaderrun's own writes change them: `Notes::updated`).
    pub fn external_write(
        &mut self,
        me: &Shared,
        slot: usize,
        record: LeaderRecord,
        keep_mark: bool,
    ) {
        let rv = self.next_rv();
        let Some(s) = self.objects.get_mut(&slot) else {
            return;
        };
        if !keep_mark {
            s.notes = Notes::updated(&s.notes, &record, None, None);
        }
        s.record = record;
        s.rv = rv;
        let after = s.clone();
        self.commit(me, slot, Some(after));
    }

    /// Another client writes another field (a label, ConfigMap data).
    pub fn benign_write(&mut self, me: &Shared, slot: usize) {
        let rv = self.next_rv();
        let Some(s) = self.objects.get_mut(&slot) else {
            return;
        };
        s.others += 1;
        s.rv = rv;
        let after = s.clone();
        self.commit(me, slot, Some(after));
    }

    /// `leaderrun step-down`: the annotation naming the holder, the record unchanged.
    pub fn step_down(&mut self, me: &Shared, slot: usize) -> Option<String> {
        let rv = self.next_rv();
        let s = self.objects.get_mut(&slot)?;
        if !s.record.is_held() {
            return None;
        }
        s.notes = Notes::asking_step_down(&s.notes, &s.record.holder_identity);
        s.rv = rv;
        let after = s.clone();
        let holder = after.record.holder_identity.clone();
        self.commit(me, slot, Some(after));
        Some(holder)
    }

    /// `kubectl delete`.
    pub fn delete(&mut self, me: &Shared, slot: usize) -> bool {
        if self.objects.remove(&slot).is_none() {
            return false;
        }
        self.next_rv();
        self.commit(me, slot, None);
        true
    }

    /// Breaks every watch of `process` (a cut): each stalls (half-open) or ends in an error.
    pub fn break_watches(&mut self, process: Option<usize>, stall_chance: f64) {
        let mut kept = Vec::new();
        for mut w in std::mem::take(&mut self.watchers) {
            if process.is_some_and(|p| p != w.process) {
                kept.push(w);
                continue;
            }
            if self.rng.random_bool(stall_chance) {
                w.stalled = true;
                kept.push(w);
            } else {
                let _ =
                    w.tx.send(Err(transport("watch", "the watch connection broke")));
            }
        }
        self.watchers = kept;
    }

    /// Closes every watch cleanly (the server's timeout, an API server restart).
    pub fn close_watches(&mut self) {
        self.watchers.clear();
    }

    /// Forgets every event but the last `keep`: watches from older versions get 410.
    pub fn compact(&mut self, keep: usize) {
        let n = self.history.len().saturating_sub(keep);
        self.history.drain(..n);
    }

    // ----- the requests -----

    fn path(&mut self, process: usize, write: bool) -> Path {
        let now = Instant::now();
        let net = &self.net[process];
        if net.cut_until.is_some_and(|u| now < u) {
            let refused = self.rng.random_bool(0.3);
            return Path::Cut(refused.then(|| Duration::from_millis(self.rng.random_range(1..50))));
        }
        let slow = net.slow_until.is_some_and(|u| now < u);
        let leg = |rng: &mut StdRng| {
            if slow && rng.random_bool(0.7) {
                Duration::from_millis(rng.random_range(100..4000))
            } else {
                Duration::from_micros(rng.random_range(300..15_000))
            }
        };
        let to_server = leg(&mut self.rng);
        let back = leg(&mut self.rng);
        let error = if self.errors_left > 0 {
            self.errors_left -= 1;
            let code = [500, 503, 504, 429][self.rng.random_range(0..4)];
            Some((code, write && code == 504 && self.rng.random_bool(0.5)))
        } else {
            None
        };
        let lost = write && error.is_none() && self.lost_left > 0 && {
            self.lost_left -= 1;
            true
        };
        Path::Through {
            to_server,
            back,
            error,
            lost,
        }
    }

    fn count(&mut self, process: usize) {
        let second = self.second();
        *self.net[process].sent.entry(second).or_default() += 1;
    }

    pub fn round_begun(&mut self, process: usize) {
        let second = self.second();
        *self.net[process].rounds.entry(second).or_default() += 1;
    }

    fn second(&self) -> u64 {
        (Instant::now() - self.start).as_secs()
    }

    /// Applies one request at the server.
    fn apply(&mut self, me: &Shared, slot: usize, req: &Req) -> Result<Answer, LockError> {
        let what = || format!("lock {slot}");
        match req {
            Req::Get => Ok(self.objects.get(&slot).map(Stored::observed)),
            Req::Create(record, notes) => {
                if self.objects.contains_key(&slot) {
                    return Err(LockError::AlreadyExists(what()));
                }
                self.uids += 1;
                let s = Stored {
                    record: record.clone(),
                    rv: self.next_rv(),
                    uid: format!("uid-{}", self.uids),
                    notes: notes.clone(),
                    others: 0,
                };
                self.objects.insert(slot, s.clone());
                let o = s.observed();
                self.commit(me, slot, Some(s));
                Ok(Some(o))
            }
            Req::Update {
                rv,
                uid,
                record,
                notes,
            } => {
                let Some(cur) = self.objects.get(&slot) else {
                    return Err(LockError::NotFound(what()));
                };
                if cur.rv.to_string() != *rv || cur.uid != *uid {
                    return Err(LockError::Conflict(what()));
                }
                let mut next = cur.clone();
                next.record = record.clone();
                next.notes = notes.clone();
                if next.record == cur.record && next.notes == cur.notes {
                    // A write that changes nothing: the same version, no event.
                    return Ok(Some(cur.observed()));
                }
                next.rv = self.next_rv();
                self.objects.insert(slot, next.clone());
                let o = next.observed();
                self.commit(me, slot, Some(next));
                Ok(Some(o))
            }
        }
    }
}

pub fn transport(verb: &'static str, message: &str) -> LockError {
    LockError::Transport {
        verb,
        object: "lock".into(),
        message: message.into(),
    }
}

/// Sends `event` to a watcher at `at`, unless the watch has stalled or the process is cut
/// off by then.
fn deliver(world: Shared, tx: Sender, process: usize, at: Instant, event: Change<SimObject>) {
    tokio::task::spawn_local(async move {
        tokio::time::sleep_until(at).await;
        let mut w = world.borrow_mut();
        let live = w
            .watchers
            .iter()
            .any(|x| x.tx.same_channel(&tx) && !x.stalled);
        if !live || w.net[process].cut_until.is_some_and(|u| at < u) {
            return;
        }
        let text = describe_change(&event);
        w.log(|| format!("p{process} ⇐ event {text}"));
        let _ = tx.send(Ok(event));
    });
}

fn describe_change(c: &Change<SimObject>) -> String {
    match c {
        Change::Changed(o) => describe(o),
        Change::Deleted => "deleted".into(),
        Change::Expired => "410 Gone".into(),
    }
}

pub fn describe(o: &Observed<SimObject>) -> String {
    format!(
        "rv={} {} {} by={}{}",
        o.resource_version,
        o.uid,
        record_text(&o.record),
        o.notes.writer.as_deref().unwrap_or("-"),
        o.notes
            .step_down
            .as_ref()
            .map(|h| format!(" step-down={h}"))
            .unwrap_or_default()
    )
}

pub fn record_text(r: &LeaderRecord) -> String {
    format!(
        "[holder={:?} lease={} renew={} transitions={}]",
        r.holder_identity,
        r.lease_duration_seconds,
        r.renew_time
            .map(|t| t.format("%H:%M:%S%.6f").to_string())
            .unwrap_or_default(),
        r.leader_transitions
    )
}

enum Req {
    Get,
    Create(LeaderRecord, Notes),
    Update {
        rv: String,
        uid: String,
        record: LeaderRecord,
        notes: Notes,
    },
}

impl Req {
    fn text(&self) -> String {
        match self {
            Req::Get => "get".into(),
            Req::Create(r, _) => format!("create {}", record_text(r)),
            Req::Update { rv, record, .. } => format!("update rv={rv} {}", record_text(record)),
        }
    }
}

/// What the server answers: the object after the request, or None (a get of nothing).
type Answer = Option<Observed<SimObject>>;

/// One process's view of one slot's lock.
pub struct SimLock {
    pub world: Shared,
    pub slot: usize,
    pub process: usize,
    pub resolution: Duration,
}

impl SimLock {
    async fn request(&self, req: Req, timeout: Duration) -> Result<Answer, LockError> {
        // Counted until answered, timed out, or dropped (a killed process).
        struct Creating<'a>(&'a SimLock);
        impl Drop for Creating<'_> {
            fn drop(&mut self) {
                let mut w = self.0.world.borrow_mut();
                if let Some(n) = w.creates_in_flight.get_mut(&self.0.slot) {
                    *n -= 1;
                }
            }
        }
        let _creating = matches!(req, Req::Create(..)).then(|| {
            *self
                .world
                .borrow_mut()
                .creates_in_flight
                .entry(self.slot)
                .or_default() += 1;
            Creating(self)
        });
        self.call(req, timeout).await
    }

    async fn call(&self, req: Req, timeout: Duration) -> Result<Answer, LockError> {
        let started = Instant::now();
        let write = !matches!(req, Req::Get);
        let path = {
            let mut w = self.world.borrow_mut();
            w.count(self.process);
            let p = self.process;
            let slot = self.slot;
            let text = req.text();
            w.log(|| format!("p{p} → slot{slot} {text}"));
            w.path(self.process, write)
        };
        let (to_server, back, error, lost) = match path {
            Path::Cut(refused) => {
                self.world
                    .borrow_mut()
                    .log(|| format!("p{} ✗ cut off", self.process));
                return match refused {
                    Some(after) if after < timeout => {
                        tokio::time::sleep(after).await;
                        Err(transport("request", "connection refused"))
                    }
                    _ => {
                        tokio::time::sleep(timeout).await;
                        Err(LockError::Timeout(timeout))
                    }
                };
            }
            Path::Through {
                to_server,
                back,
                error,
                lost,
            } => (to_server, back, error, lost),
        };
        let (tx, rx) = oneshot::channel();
        let world = self.world.clone();
        let (slot, process) = (self.slot, self.process);
        tokio::task::spawn_local(async move {
            tokio::time::sleep(to_server).await;
            let result = {
                let mut w = world.borrow_mut();
                let result = match error {
                    Some((code, false)) => Err(api_error(code)),
                    Some((code, true)) => {
                        let _ = w.apply(&world, slot, &req);
                        Err(api_error(code))
                    }
                    None => w.apply(&world, slot, &req),
                };
                let text = match &result {
                    Ok(Some(o)) => describe(o),
                    Ok(None) => "not found".into(),
                    Err(e) => e.to_string(),
                };
                let fate = if lost { " (answer lost)" } else { "" };
                w.log(|| format!("p{process} ⇐ server: {text}{fate}"));
                result
            };
            if lost {
                // The client hears nothing; its timeout ends the call.
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(back).await;
            let _ = tx.send(result);
        });
        let deadline = started + timeout;
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(result)) => {
                let w = self.world.borrow_mut();
                if let Ok(Some(o)) = &result {
                    w.net[process].saw(slot, o);
                }
                result
            }
            Ok(Err(_)) | Err(_) => {
                tokio::time::sleep_until(deadline).await;
                self.world
                    .borrow_mut()
                    .log(|| format!("p{process} ✗ no answer within {timeout:?}"));
                Err(LockError::Timeout(timeout))
            }
        }
    }

    async fn open_watch(
        &self,
        from: &str,
        timeout: Duration,
    ) -> Result<BoxStream<'static, Result<Change<SimObject>, LockError>>, LockError> {
        let path = {
            let mut w = self.world.borrow_mut();
            w.count(self.process);
            let p = self.process;
            let slot = self.slot;
            w.log(|| format!("p{p} → slot{slot} watch from {from:?}"));
            w.path(self.process, false)
        };
        let (to_server, back, error) = match path {
            Path::Cut(_) => {
                tokio::time::sleep(timeout).await;
                return Err(LockError::Timeout(timeout));
            }
            Path::Through {
                to_server,
                back,
                error,
                ..
            } => (to_server, back, error),
        };
        tokio::time::sleep(to_server).await;
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut w = self.world.borrow_mut();
            if let Some((code, _)) = error {
                return Err(api_error(code));
            }
            if w.net[self.process].watch_forbidden {
                return Err(LockError::Refused {
                    verb: "watch",
                    object: "lock".into(),
                    code: 403,
                    reason: "Forbidden".into(),
                    message: "watch is not allowed".into(),
                    hint: String::new(),
                });
            }
            let now = Instant::now();
            let first_at = now + back;
            let oldest = w.history.first().map(|h| h.0);
            let expire = w.expire_left > 0 && {
                w.expire_left -= 1;
                true
            };
            let mut replay: Vec<Change<SimObject>> = Vec::new();
            if from.is_empty() {
                // From now: the object as it is first (as good as a read).
                if let Some(s) = w.objects.get(&self.slot) {
                    replay.push(Change::Changed(s.observed()));
                }
            } else {
                let from: u64 = from.parse().unwrap_or(0);
                // Events after `from` are kept only if `from` is not older than the oldest kept
                // change (the real server's watch cache, or etcd's compaction).
                if expire || oldest.is_some_and(|o| from + 1 < o) {
                    replay.push(Change::Expired);
                } else {
                    for (rv, slot, after) in &w.history {
                        if *rv > from && *slot == self.slot {
                            replay.push(match after {
                                Some(s) => Change::Changed(s.observed()),
                                None => Change::Deleted,
                            });
                        }
                    }
                }
            }
            let mut last_at = first_at;
            for ev in replay {
                deliver(self.world.clone(), tx.clone(), self.process, last_at, ev);
                last_at += Duration::from_micros(1);
            }
            w.watchers.push(Watcher {
                process: self.process,
                slot: self.slot,
                tx,
                last_at,
                stalled: false,
            });
        }
        tokio::time::sleep(back).await;
        let (seen, counts, slot) = {
            let w = self.world.borrow();
            let net = &w.net[self.process];
            (net.seen.clone(), net.counts.clone(), self.slot)
        };
        let stream = futures::stream::unfold(rx, move |mut rx| {
            let (seen, counts) = (seen.clone(), counts.clone());
            async move {
                let ev = rx.recv().await?;
                if let Ok(Change::Changed(o)) = &ev {
                    took_in(&seen, &counts, slot, o);
                }
                Some((ev, rx))
            }
        });
        Ok(stream.boxed())
    }
}

fn api_error(code: u16) -> LockError {
    LockError::Api {
        verb: "request",
        object: "lock".into(),
        code,
        message: "simulated server error".into(),
    }
}

impl SimLock {
    /// A write's answer: the object as written (a write never answers "nothing").
    async fn write(&self, req: Req, timeout: Duration) -> Result<Observed<SimObject>, LockError> {
        self.request(req, timeout)
            .await?
            .ok_or_else(|| LockError::NotFound(self.describe()))
    }
}

impl Lock for SimLock {
    type Object = SimObject;

    fn describe(&self) -> String {
        format!("sim lock {}", self.slot)
    }

    fn resolution(&self) -> Duration {
        self.resolution
    }

    async fn get(&self, timeout: Duration) -> Result<Option<Observed<SimObject>>, LockError> {
        self.request(Req::Get, timeout).await
    }

    async fn create_with(
        &self,
        record: &LeaderRecord,
        notes: &Notes,
        timeout: Duration,
    ) -> Result<Observed<SimObject>, LockError> {
        let req = Req::Create(record.clone(), notes.clone());
        self.write(req, timeout).await
    }

    async fn replace(
        &self,
        prev: &Observed<SimObject>,
        record: &LeaderRecord,
        notes: &Notes,
        timeout: Duration,
    ) -> Result<Observed<SimObject>, LockError> {
        let req = Req::Update {
            rv: prev.resource_version.clone(),
            uid: prev.uid.clone(),
            record: record.clone(),
            notes: notes.clone(),
        };
        self.write(req, timeout).await
    }

    async fn watch(
        &self,
        resource_version: &str,
        timeout: Duration,
    ) -> Result<BoxStream<'static, Result<Change<SimObject>, LockError>>, LockError> {
        self.open_watch(resource_version, timeout).await
    }
}
