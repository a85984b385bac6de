//! A lock in memory, for driving the election in paused time: it keeps one object with a
//! resourceVersion and uid, answers as the API server does (409 on a stale version, 404,
//! AlreadyExists), streams watch events, and can be told to fail, stall or be slow.
//! Like watchexec's test child: every transition of `acquire` and `hold` in milliseconds.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::lock::{Change, Lock, LockError, Notes, Observed};
use crate::record::LeaderRecord;

/// Which call a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Get,
    Create,
    Update,
    Watch,
}

/// What the fake does instead of answering.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Fail with this error (made fresh each time).
    Fail(fn(&str) -> LockError),
    /// Apply the call, but answer only after this long.
    Slow(Duration),
    /// For a create: the request reaches the server only after this long, past the
    /// caller's timeout (which it meets), and lands then if it still can.
    Late(Duration),
    /// For a watch: open it, but never send anything.
    Stall,
    /// For an update: another client writes the very record the caller sent, first (a
    /// twin with our identity renewing in the same second of a ConfigMap record); the
    /// caller's write then meets a 409.
    WrittenFirst,
}

#[derive(Default)]
struct State {
    object: Option<(LeaderRecord, u64, String)>,
    rv: u64,
    uids: u64,
    faults: VecDeque<(Op, Fault)>,
    /// Calls made, in order.
    calls: Vec<Op>,
    watchers: Vec<mpsc::UnboundedSender<Result<Change<()>, LockError>>>,
    /// The record's time resolution (zero: a microsecond, as a Lease).
    resolution: Duration,
    /// leaderrun's annotations on the object.
    notes: Notes,
    /// The resource version each watch was opened from, in order.
    watched_from: Vec<String>,
}

#[derive(Clone, Default)]
pub struct FakeLock(Arc<Mutex<State>>);

pub fn transient(what: &str) -> LockError {
    LockError::Transport {
        verb: "update",
        object: what.to_string(),
        message: "connection refused".into(),
    }
}

pub fn conflict(what: &str) -> LockError {
    LockError::Conflict(what.to_string())
}

pub fn refused(what: &str) -> LockError {
    LockError::Refused {
        verb: "watch",
        object: what.to_string(),
        code: 403,
        reason: "Forbidden".into(),
        message: "forbidden".into(),
        hint: String::new(),
    }
}

pub fn no_namespace(_: &str) -> LockError {
    LockError::NamespaceNotFound("typo".into())
}

impl FakeLock {
    /// A lock whose record keeps whole seconds, as a ConfigMap's does.
    pub fn with_seconds() -> FakeLock {
        let f = FakeLock::default();
        f.state().resolution = Duration::from_secs(1);
        f
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next call of `op` meets `fault` (faults are used in order, once each).
    pub fn fault(&self, op: Op, fault: Fault) {
        self.state().faults.push_back((op, fault));
    }

    pub fn calls(&self, op: Op) -> usize {
        self.state().calls.iter().filter(|c| **c == op).count()
    }

    pub fn record(&self) -> Option<LeaderRecord> {
        self.state().object.as_ref().map(|(r, _, _)| r.clone())
    }

    /// Another client writes `record` (or creates the object with it).
    pub fn write(&self, record: LeaderRecord) {
        let mut s = self.state();
        s.rv += 1;
        let rv = s.rv;
        let uid = match &s.object {
            Some((_, _, uid)) => uid.clone(),
            None => {
                s.uids += 1;
                format!("uid-{}", s.uids)
            }
        };
        s.object = Some((record, rv, uid));
        // Another process: not our mark.
        s.notes.writer = None;
        Self::notify(&mut s);
    }

    /// The resource version each watch was opened from, in order.
    pub fn watched_from(&self) -> Vec<String> {
        self.state().watched_from.clone()
    }

    /// The server ends every watch (its timeout).
    pub fn end_watches(&self) {
        self.state().watchers.clear();
    }

    /// Another client deletes the object.
    pub fn delete(&self) {
        let mut s = self.state();
        s.rv += 1;
        s.object = None;
        s.watchers.retain(|w| w.send(Ok(Change::Deleted)).is_ok());
    }

    fn notify(s: &mut State) {
        if let Some(o) = Self::observed(s) {
            s.watchers
                .retain(|w| w.send(Ok(Change::Changed(o.clone()))).is_ok());
        }
    }

    fn observed(s: &State) -> Option<Observed<()>> {
        s.object.as_ref().map(|(r, rv, uid)| Observed {
            record: r.clone(),
            resource_version: rv.to_string(),
            uid: uid.clone(),
            notes: s.notes.clone(),
            object: (),
        })
    }

    fn apply_create(
        &self,
        record: &LeaderRecord,
        notes: &Notes,
    ) -> Result<Observed<()>, LockError> {
        let mut s = self.state();
        if s.object.is_some() {
            return Err(LockError::AlreadyExists(self.describe()));
        }
        s.rv += 1;
        s.uids += 1;
        let (rv, uid) = (s.rv, format!("uid-{}", s.uids));
        s.object = Some((record.clone(), rv, uid));
        s.notes = notes.clone();
        Self::notify(&mut s);
        Ok(Self::observed(&s).unwrap_or_else(|| unreachable!("just created")))
    }

    /// Records the call and takes its fault, if one is queued for it.
    fn enter(&self, op: Op) -> Option<Fault> {
        let mut s = self.state();
        s.calls.push(op);
        let i = s.faults.iter().position(|(o, _)| *o == op)?;
        s.faults.remove(i).map(|(_, f)| f)
    }
}

impl Lock for FakeLock {
    type Object = ();

    fn describe(&self) -> String {
        "lease test/fake".into()
    }

    fn resolution(&self) -> Duration {
        self.state().resolution.max(Duration::from_micros(1))
    }

    async fn get(&self, _timeout: Duration) -> Result<Option<Observed<()>>, LockError> {
        match self.enter(Op::Get) {
            Some(Fault::Fail(e)) => return Err(e(&self.describe())),
            Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
            _ => {}
        }
        Ok(Self::observed(&self.state()))
    }

    async fn create_with(
        &self,
        record: &LeaderRecord,
        notes: &Notes,
        timeout: Duration,
    ) -> Result<Observed<()>, LockError> {
        let slow = match self.enter(Op::Create) {
            Some(Fault::Fail(e)) => return Err(e(&self.describe())),
            Some(Fault::Slow(d)) => Some(d),
            Some(Fault::Late(d)) => {
                let (lock, record, notes) = (self.clone(), record.clone(), notes.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    let _ = lock.apply_create(&record, &notes);
                });
                tokio::time::sleep(timeout.min(d)).await;
                return Err(LockError::Timeout(timeout));
            }
            _ => None,
        };
        let result = self.apply_create(record, notes);
        if let Some(d) = slow {
            // The write landed; the answer is late (past the caller's timeout, it is lost).
            tokio::time::sleep(d).await;
            if d >= timeout {
                return Err(LockError::Timeout(timeout));
            }
        }
        result
    }

    async fn replace(
        &self,
        prev: &Observed<()>,
        record: &LeaderRecord,
        notes: &Notes,
        timeout: Duration,
    ) -> Result<Observed<()>, LockError> {
        let slow = match self.enter(Op::Update) {
            Some(Fault::Fail(e)) => return Err(e(&self.describe())),
            Some(Fault::Slow(d)) => Some(d),
            Some(Fault::WrittenFirst) => {
                self.write(record.clone());
                return Err(conflict(&self.describe()));
            }
            _ => None,
        };
        let result = {
            let mut s = self.state();
            match &s.object {
                None => Err(LockError::NotFound(self.describe())),
                Some((_, _, uid)) if *uid != prev.uid => Err(LockError::Conflict(self.describe())),
                Some((_, rv, _)) if rv.to_string() != prev.resource_version => {
                    Err(LockError::Conflict(self.describe()))
                }
                Some((current, _, _)) if current == record && s.notes == *notes => {
                    // A write that changes nothing keeps the version (the API server's no-op).
                    Ok(Self::observed(&s).unwrap_or_else(|| unreachable!("checked above")))
                }
                Some((_, _, uid)) => {
                    let uid = uid.clone();
                    s.rv += 1;
                    let rv = s.rv;
                    s.object = Some((record.clone(), rv, uid));
                    s.notes = notes.clone();
                    Self::notify(&mut s);
                    Ok(Self::observed(&s).unwrap_or_else(|| unreachable!("just written")))
                }
            }
        };
        if let Some(d) = slow {
            tokio::time::sleep(d).await;
            if d >= timeout {
                return Err(LockError::Timeout(timeout));
            }
        }
        result
    }

    async fn watch(
        &self,
        resource_version: &str,
        _timeout: Duration,
    ) -> Result<BoxStream<'static, Result<Change<()>, LockError>>, LockError> {
        let fault = self.enter(Op::Watch);
        self.state().watched_from.push(resource_version.to_string());
        match fault {
            Some(Fault::Fail(e)) => return Err(e(&self.describe())),
            Some(Fault::Stall) => return Ok(futures::stream::pending().boxed()),
            _ => {}
        }
        let (tx, rx) = mpsc::unbounded_channel();
        self.state().watchers.push(tx);
        Ok(tokio_stream_like(rx))
    }
}

fn tokio_stream_like(
    mut rx: mpsc::UnboundedReceiver<Result<Change<()>, LockError>>,
) -> BoxStream<'static, Result<Change<()>, LockError>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}
