//! One place per transition of a leadership: each is told here once, and writes its one
//! log line, its metrics and its Event. The election and the supervisor know nothing of
//! metrics or Events, and log only their own details (a retry, a failed renew, at debug or
//! warn): the transitions' lines are written here.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::election::{Lost, Observer};
use crate::events::Recorder;
use crate::lock::LockError;
use crate::metrics::Metrics;
use crate::supervisor::ChildExit;

/// How long the last Events may take before leaderrun exits anyway.
const EVENTS_FLUSH: Duration = Duration::from_secs(5);

pub struct Reporter {
    pub metrics: Arc<Metrics>,
    events: Option<Recorder>,
    lock: Mutex<String>,
    identity: String,
    /// The lock object as it was when leadership began (its uid does not change), for Events.
    target: Mutex<Option<ObjectReference>>,
    pending: Mutex<Vec<JoinHandle<()>>>,
}

impl Reporter {
    pub fn new(
        metrics: Arc<Metrics>,
        events: Option<Recorder>,
        lock: String,
        identity: String,
    ) -> Self {
        Reporter {
            metrics,
            events,
            lock: Mutex::new(lock),
            identity,
            target: Mutex::new(None),
            pending: Mutex::new(Vec::new()),
        }
    }

    fn event(&self, warning: bool, message: String) {
        let (Some(r), Some(target)) = (
            self.events.clone(),
            self.target
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        ) else {
            return;
        };
        let task = tokio::spawn(async move { r.record(target, warning, message).await });
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task);
    }

    /// The lock (or slot's lock) being talked about.
    fn lock(&self) -> String {
        self.lock.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn became_leader(
        &self,
        lock: String,
        token: i32,
        anchor: Instant,
        deadline: Instant,
        target: Option<ObjectReference>,
    ) {
        *self.lock.lock().unwrap_or_else(|p| p.into_inner()) = lock;
        info!(lock = %self.lock(), identity = %self.identity, transitions = token, "became leader");
        self.metrics.became_leader(token, anchor, deadline);
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = target;
        self.event(false, format!("{} became leader", self.identity));
    }

    pub fn child_started(&self, pid: i32) {
        debug!(pid, "child started");
        self.metrics.child_started();
    }

    pub fn spawn_failed(&self, error: &crate::supervisor::SpawnError) {
        error!(error = %error, "cannot start the command");
    }

    /// The child ended on its own (before anything of its tree was stopped).
    pub fn child_exited(&self, status: ChildExit) {
        info!(lock = %self.lock(), status = ?status, "child exited");
        self.metrics.child_exited(status.exit_code());
    }

    /// The child ended but left processes; the guard stops them before the lock goes.
    pub fn leftovers(&self, count: i32) {
        info!(count, "the child left processes in its group or elsewhere in its tree; stopping them before the lock is released");
    }

    /// Keeping the lock after the child's exit.
    pub fn keeping(&self, keep: Duration) {
        info!(lock = %self.lock(), keep = ?keep, "keeping the lock after the child's exit");
    }

    /// Leadership ends because the child is done: the lock is released or left.
    pub fn stopped_leading(&self, released: bool) {
        info!(lock = %self.lock(), identity = %self.identity, released, "leadership ends");
        self.event(false, format!("{} stopped leading", self.identity));
    }

    /// The run of this leadership ended, as the lock will record it.
    pub fn last_run(&self, run: &crate::lastrun::LastRun) {
        self.metrics.last_run(run);
        info!(lock = %self.lock(), run = %run.to_json(), "recording the run on the lock");
    }

    /// Leadership was lost. Called after the stop went to the guard, never before.
    pub fn lost(&self, reason: &Lost) {
        error!(lock = %self.lock(), identity = %self.identity, reason = %reason, "lost leadership; stopping the child");
        self.metrics.lost_leadership();
        self.event(true, format!("{} lost leadership: {reason}", self.identity));
    }

    /// The guard's own deadline fired before leaderrun's (leaderrun was stopped or stuck).
    pub fn guard_deadline(&self) {
        error!(lock = %self.lock(), "the guard's deadline passed without a renew; it stopped the child");
        self.metrics.lost_leadership();
    }

    pub fn guard_lost(&self) {
        error!(lock = %self.lock(), "the guard process died; the child's tree was killed");
        self.metrics.lost_leadership();
    }

    /// The child's tree was stopped after a loss; `status` is how the child ended.
    pub fn child_stopped(&self, status: Option<ChildExit>) {
        info!(status = ?status, "child stopped");
        if let Some(s) = status {
            self.metrics.child_exited(s.exit_code());
        }
    }

    pub fn release_failed(&self, error: &LockError) {
        // Not fatal: the lock expires after the lease duration anyway.
        warn!(lock = %self.lock(), error = %error, "could not release the lock; it will expire");
    }

    /// `--rejoin`: after a loss, waiting for the lock again.
    pub fn rejoining(&self) {
        let round = self.metrics.rejoined();
        info!(lock = %self.lock(), identity = %self.identity, round, "rejoining as a standby after lost leadership");
    }

    /// Nothing of this leadership runs any more.
    pub fn ended(&self) {
        self.metrics.leadership_ended();
    }

    /// Waits (a bounded time) for the Events still being recorded.
    pub async fn flush(&self) {
        let tasks: Vec<_> =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        let _ = tokio::time::timeout(EVENTS_FLUSH, futures::future::join_all(tasks)).await;
    }
}

impl Observer for Reporter {
    fn renewed(&self, anchor: Instant, latency: Duration, deadline: Instant) {
        self.metrics.renewed(anchor, latency, deadline);
    }

    fn renew_failed(&self, latency: Duration, _error: &LockError) {
        self.metrics.renew_failed(latency);
    }

    fn heard(&self) {
        self.metrics.heard(Instant::now());
    }

    fn waiting(&self, holder: &str, impostor: bool) {
        if impostor {
            warn!(lock = %self.lock(), identity = %self.identity, "the lock names this process's identity, but another process wrote it: two processes run with the same --identity. Waiting as for any other holder; give each copy its own identity");
        } else if holder.is_empty() {
            info!(lock = %self.lock(), identity = %self.identity, "waiting: the lock was deleted under its holder; waiting a lease duration from the deletion before taking it");
        } else {
            info!(lock = %self.lock(), holder = %holder, identity = %self.identity, "waiting: the lock is held by another");
        }
    }
}
