//! The election: acquire, hold (renew), release. The decision of what to do
//! given what was observed and when is a pure function (`decide`); the loops
//! around it call the lock and read tokio's clock, so tests can pause time.
//!
//! Safety rests on two rules (DESIGN §3):
//! - a follower judges expiry by its own monotonic clock, from the moment it
//!   *observed* the record change, never by the record's timestamps;
//! - the leader's deadline is anchored at the *send* time of its last successful
//!   renew, which is before any follower could have observed that renew.

use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::lock::{Change, Lock, LockError, Observed};
use crate::record::{now_micros, LeaderRecord};
use crate::settings::Timing;

/// What we last saw of the lock, and when it last changed as far as we know.
#[derive(Debug, Clone)]
pub struct View<O> {
    /// None: the object does not exist.
    pub current: Option<Observed<O>>,
    pub observed_at: Instant,
}

impl<O> View<O> {
    /// Records a read; the observation time moves only when the record changed, as
    /// in client-go. Other writes to the object (labels, ConfigMap data) say nothing
    /// about the holder: counting them would let a busy ConfigMap postpone a takeover
    /// for ever. Every leader renew that reached the server changed the record: one
    /// that did not was a no-op, and the leader does not count those either.
    pub fn see(&mut self, seen: Option<Observed<O>>, now: Instant) {
        let changed = match (&self.current, &seen) {
            (Some(a), Some(b)) => a.record != b.record,
            (None, None) => false,
            _ => true,
        };
        if changed {
            self.observed_at = now;
        }
        self.current = seen;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No object: create it, holding the lock.
    Create,
    /// Free, expired, or already ours: write ourselves in.
    Acquire,
    /// Held by another; look again at this time unless something changes first.
    Wait { until: Instant },
}

/// The core rule. `lease_duration` is ours, used when the record names none.
pub fn decide(
    me: &str,
    record: Option<&LeaderRecord>,
    observed_at: Instant,
    lease_duration: Duration,
    now: Instant,
) -> Decision {
    let Some(r) = record else {
        return Decision::Create;
    };
    if !r.is_held() || r.holder_identity == me {
        return Decision::Acquire;
    }
    // The holder promised to stop within the duration it wrote; honour that,
    // but never wait less than our own setting would.
    let promised = Duration::from_secs(r.lease_duration_seconds.max(0) as u64);
    let until = observed_at + promised.max(lease_duration);
    if now >= until {
        Decision::Acquire
    } else {
        Decision::Wait { until }
    }
}

/// True when the record's own timestamps say it lapsed long ago. Used only to
/// decide whether `--no-wait` should wait and see, never to take the lock.
pub fn looks_abandoned(r: &LeaderRecord) -> bool {
    let Some(renewed) = r.renew_time else {
        return false;
    };
    let lapsed = renewed + chrono::Duration::seconds(r.lease_duration_seconds.max(0) as i64);
    // A generous allowance for clock offsets between hosts.
    lapsed + chrono::Duration::seconds(60) < chrono::Utc::now()
}

/// The record to write to take or keep the lock.
pub fn acquiring_record(prev: Option<&LeaderRecord>, me: &str, lease_seconds: i32) -> LeaderRecord {
    let now = now_micros();
    match prev {
        Some(p) if p.holder_identity == me => LeaderRecord {
            holder_identity: me.to_string(),
            lease_duration_seconds: lease_seconds,
            acquire_time: p.acquire_time.or(Some(now)),
            renew_time: Some(now),
            leader_transitions: p.leader_transitions,
        },
        Some(p) => LeaderRecord {
            holder_identity: me.to_string(),
            lease_duration_seconds: lease_seconds,
            acquire_time: Some(now),
            renew_time: Some(now),
            // Every change of holder bumps the count: it is the fencing token.
            leader_transitions: p.leader_transitions.saturating_add(1),
        },
        None => LeaderRecord {
            holder_identity: me.to_string(),
            lease_duration_seconds: lease_seconds,
            acquire_time: Some(now),
            renew_time: Some(now),
            leader_transitions: 0,
        },
    }
}

/// client-go's ReleaseOnCancel record: no holder, a 1s duration, the
/// transition count kept so that fencing tokens stay monotonic.
pub fn released_record(prev: &LeaderRecord) -> LeaderRecord {
    let now = now_micros();
    LeaderRecord {
        holder_identity: String::new(),
        lease_duration_seconds: 1,
        acquire_time: Some(now),
        renew_time: Some(now),
        leader_transitions: prev.leader_transitions,
    }
}

/// Held leadership.
#[derive(Debug)]
pub struct Leadership<O> {
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
    #[error("the lock object was deleted")]
    Deleted,
    #[error("another client cleared the holder (a force-release?)")]
    Released,
    #[error(transparent)]
    Lock(LockError),
}

/// What to do with the lock once the child (and any hold-over time) has ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AfterExit {
    Release,
    Leave,
}

pub struct Election<L: Lock> {
    pub lock: L,
    pub identity: String,
    pub timing: Timing,
    pub metrics: std::sync::Arc<crate::health::Metrics>,
}

impl<L: Lock> Election<L> {
    fn lease_seconds(&self) -> i32 {
        self.timing.lease_duration.as_secs().min(i32::MAX as u64) as i32
    }

    /// Followers' calls: bounded so that a hung request cannot stall the loop.
    fn call_timeout(&self) -> Duration {
        self.timing.renew_deadline
    }

    fn jittered_retry(&self) -> Duration {
        self.timing
            .retry_period
            .mul_f64(rand::rng().random_range(1.0..1.2))
    }

    /// Waits until this process holds the lock. A watch on the object tells of
    /// a release at once; polling every retry period takes over when watching
    /// is forbidden or breaks.
    pub async fn acquire(
        &self,
        no_wait: bool,
        wait_timeout: Option<Duration>,
    ) -> Result<Leadership<L::Object>, AcquireError> {
        let wait_deadline = wait_timeout.map(|d| Instant::now() + d);
        let mut view: View<L::Object> = View {
            current: None,
            observed_at: Instant::now(),
        };
        let mut refresh = true;
        let mut watch = None;
        let mut watch_allowed = true;
        let mut watch_retry_at = Instant::now();
        let mut waiting_for = String::new();
        loop {
            if refresh {
                match self.lock.get(self.call_timeout()).await {
                    Ok(seen) => view.see(seen, Instant::now()),
                    Err(e) if e.is_transient() => {
                        warn!(lock = %self.lock.describe(), error = %e, "cannot read the lock; retrying");
                        self.pause(wait_deadline).await?;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
                refresh = false;
            }
            let now = Instant::now();
            let record = view.current.as_ref().map(|o| &o.record);
            match decide(
                &self.identity,
                record,
                view.observed_at,
                self.timing.lease_duration,
                now,
            ) {
                Decision::Create | Decision::Acquire => {
                    let next = acquiring_record(record, &self.identity, self.lease_seconds());
                    let sent = Instant::now();
                    let result = match &view.current {
                        None => self.lock.create(&next, self.call_timeout()).await,
                        Some(prev) => self.lock.update(prev, &next, self.call_timeout()).await,
                    };
                    match result {
                        // Our own record rewritten unchanged within the same second: a
                        // no-op nobody saw, so it proves nothing about when followers
                        // started counting. Try again once a write can change it.
                        Ok(held)
                            if view
                                .current
                                .as_ref()
                                .is_some_and(|p| p.record == held.record) =>
                        {
                            debug!(lock = %self.lock.describe(), "acquiring write changed nothing; writing again");
                            self.pause(wait_deadline).await?;
                            refresh = true;
                        }
                        Ok(held) => {
                            let fencing_token = held.record.leader_transitions;
                            return Ok(Leadership {
                                held,
                                last_renew_sent: sent,
                                fencing_token,
                            });
                        }
                        Err(
                            LockError::Conflict(_)
                            | LockError::AlreadyExists(_)
                            | LockError::NotFound(_),
                        ) => {
                            debug!(lock = %self.lock.describe(), "another copy wrote first; reading again");
                            refresh = true;
                        }
                        Err(e) if e.is_transient() => {
                            warn!(lock = %self.lock.describe(), error = %e, "cannot write the lock; retrying");
                            self.pause(wait_deadline).await?;
                            refresh = true;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Decision::Wait { until } => {
                    let holder = record
                        .map(|r| r.holder_identity.clone())
                        .unwrap_or_default();
                    // A record that is stale by its own clock is not really held: rather than
                    // give up, confirm it the safe way (no change for a lease duration).
                    if no_wait && !record.is_some_and(looks_abandoned) {
                        return Err(AcquireError::Held { holder });
                    }
                    if holder != waiting_for {
                        info!(lock = %self.lock.describe(), holder = %holder, identity = %self.identity, "waiting: the lock is held by another");
                        waiting_for = holder;
                    }
                    if watch.is_none() && watch_allowed && now >= watch_retry_at {
                        let rv = view
                            .current
                            .as_ref()
                            .map(|o| o.resource_version.clone())
                            .unwrap_or_default();
                        match self.lock.watch(&rv, self.call_timeout()).await {
                            Ok(s) => watch = Some(s),
                            Err(e @ LockError::Refused { .. }) => {
                                info!(lock = %self.lock.describe(), error = %e, "watching is not allowed; polling every retry period instead");
                                watch_allowed = false;
                            }
                            Err(e) => {
                                debug!(lock = %self.lock.describe(), error = %e, "cannot watch; polling until the next try");
                                watch_retry_at = Instant::now() + self.timing.retry_period;
                            }
                        }
                    }
                    let mut wake = if watch.is_some() {
                        until
                    } else {
                        until.min(Instant::now() + self.jittered_retry())
                    };
                    if let Some(d) = wait_deadline {
                        wake = wake.min(d);
                    }
                    let event = async {
                        match watch.as_mut() {
                            Some(w) => w.next().await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        ev = event => match ev {
                            Some(Ok(Change::Changed(o))) => view.see(Some(o), Instant::now()),
                            Some(Ok(Change::Deleted)) => view.see(None, Instant::now()),
                            Some(Err(e @ LockError::Unreadable { .. })) => return Err(e.into()),
                            Some(Ok(Change::Expired)) | Some(Err(_)) | None => {
                                watch = None;
                                refresh = true;
                            }
                        },
                        _ = tokio::time::sleep_until(wake) => {
                            if wait_deadline.is_some_and(|d| Instant::now() >= d) {
                                return Err(AcquireError::WaitTimeout);
                            }
                            refresh = true;
                        }
                    }
                }
            }
        }
    }

    /// Sleeps a jittered retry period, or fails if the wait deadline comes first.
    async fn pause(&self, wait_deadline: Option<Instant>) -> Result<(), AcquireError> {
        let wake = Instant::now() + self.jittered_retry();
        match wait_deadline {
            Some(d) if d <= wake => {
                tokio::time::sleep_until(d).await;
                Err(AcquireError::WaitTimeout)
            }
            _ => {
                tokio::time::sleep_until(wake).await;
                Ok(())
            }
        }
    }

    /// The moment the child must start stopping if no renew succeeds before it.
    pub fn deadline(&self, l: &Leadership<L::Object>) -> Instant {
        l.last_renew_sent + self.timing.renew_deadline
    }

    /// Renews every retry period with one PUT carrying the version held; returns
    /// only when leadership is lost. No request outlives the renew deadline.
    pub async fn hold(&self, l: &mut Leadership<L::Object>) -> Lost {
        let mut next = l.last_renew_sent + self.timing.retry_period;
        let mut last_error = String::from("none");
        let mut failures = 0u32;
        loop {
            let deadline = self.deadline(l);
            tokio::time::sleep_until(next.min(deadline)).await;
            let sent = Instant::now();
            if sent >= deadline {
                return Lost::Deadline {
                    deadline: self.timing.renew_deadline,
                    last_error,
                };
            }
            let record =
                acquiring_record(Some(&l.held.record), &self.identity, self.lease_seconds());
            let result = self.lock.update(&l.held, &record, deadline - sent).await;
            let latency = sent.elapsed();
            if result.is_err() {
                self.metrics.renew_failed(latency);
            }
            match result {
                Ok(held) => {
                    if failures > 0 {
                        info!(lock = %self.lock.describe(), failures, "renewed again after failures");
                    }
                    failures = 0;
                    // Followers count from the last change of the record (View::see), so
                    // only a renew that changed it may move the anchor. One that did not
                    // (a ConfigMap record carries seconds: two renews in one second) was
                    // a no-op for the API server: same resourceVersion, no watch event.
                    if held.record != l.held.record {
                        l.last_renew_sent = sent;
                    } else {
                        debug!(lock = %self.lock.describe(), "renew changed nothing (same second); the deadline stays anchored at the last change");
                    }
                    self.metrics
                        .renewed(l.last_renew_sent, latency, self.deadline(l));
                    l.held = held;
                    next = sent + self.timing.retry_period;
                }
                Err(LockError::Conflict(_)) => {
                    // Someone wrote. Still ours (a renew of ours that landed late, or
                    // another field of a ConfigMap)? Then go on from what is there.
                    let left = deadline.saturating_duration_since(Instant::now());
                    match self.lock.get(left).await {
                        Ok(Some(o)) if o.record.holder_identity == self.identity => {
                            l.held = o;
                            next = Instant::now();
                        }
                        Ok(Some(o)) if !o.record.is_held() => return Lost::Released,
                        Ok(Some(o)) => return Lost::TakenOver(o.record.holder_identity),
                        Ok(None) => return Lost::Deleted,
                        Err(e @ LockError::Unreadable { .. }) => return Lost::Lock(e),
                        Err(e) => {
                            last_error = e.to_string();
                            failures += 1;
                            next = Instant::now() + self.timing.retry_period / 2;
                        }
                    }
                }
                Err(LockError::NotFound(_)) => return Lost::Deleted,
                Err(e) => {
                    warn!(lock = %self.lock.describe(), error = %e, "renew failed; retrying until the renew deadline");
                    last_error = e.to_string();
                    failures += 1;
                    next = Instant::now() + self.timing.retry_period / 2;
                }
            }
        }
    }

    /// After the child ended: release (empty holder, duration 1s, transitions
    /// kept, as client-go's ReleaseOnCancel), or leave the lock to expire.
    pub async fn finish(
        &self,
        l: Leadership<L::Object>,
        after: AfterExit,
    ) -> Result<(), LockError> {
        let record = match after {
            AfterExit::Leave => return Ok(()),
            AfterExit::Release => released_record(&l.held.record),
        };
        let mut held = l.held;
        for _ in 0..2 {
            match self.lock.update(&held, &record, self.call_timeout()).await {
                Ok(_) => return Ok(()),
                Err(LockError::Conflict(_)) => match self.lock.get(self.call_timeout()).await? {
                    Some(o) if o.record.holder_identity == self.identity => held = o,
                    // Not ours any more: nothing to release.
                    _ => return Ok(()),
                },
                Err(e) => return Err(e),
            }
        }
        Err(LockError::Conflict(self.lock.describe()))
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

    #[test]
    fn missing_object_is_created() {
        let now = Instant::now();
        assert_eq!(
            decide("me", None, now, Duration::from_secs(15), now),
            Decision::Create
        );
    }

    #[test]
    fn free_or_own_lock_is_acquired_at_once() {
        let now = Instant::now();
        assert_eq!(
            decide(
                "me",
                Some(&held_by("", 1)),
                now,
                Duration::from_secs(15),
                now
            ),
            Decision::Acquire
        );
        assert_eq!(
            decide(
                "me",
                Some(&held_by("me", 15)),
                now,
                Duration::from_secs(15),
                now
            ),
            Decision::Acquire
        );
    }

    #[test]
    fn held_lock_expires_a_lease_duration_after_it_was_observed() {
        let t0 = Instant::now();
        let r = held_by("other", 15);
        let d = Duration::from_secs(15);
        assert_eq!(
            decide("me", Some(&r), t0, d, t0 + Duration::from_secs(14)),
            Decision::Wait { until: t0 + d }
        );
        assert_eq!(decide("me", Some(&r), t0, d, t0 + d), Decision::Acquire);
    }

    #[test]
    fn the_longer_of_the_records_and_our_duration_counts() {
        let t0 = Instant::now();
        let d = Duration::from_secs(15);
        assert_eq!(
            decide("me", Some(&held_by("py", 17)), t0, d, t0 + d),
            Decision::Wait {
                until: t0 + Duration::from_secs(17)
            }
        );
        assert_eq!(
            decide("me", Some(&held_by("x", 0)), t0, d, t0),
            Decision::Wait { until: t0 + d }
        );
    }

    #[test]
    fn observation_time_moves_only_when_the_record_changes() {
        let t0 = Instant::now();
        let obs = |h: &str, rv: &str| Observed {
            record: held_by(h, 15),
            resource_version: rv.into(),
            object: (),
        };
        let mut v = View {
            current: None,
            observed_at: t0,
        };
        v.see(Some(obs("a", "1")), t0 + Duration::from_secs(1));
        assert_eq!(v.observed_at, t0 + Duration::from_secs(1));
        // A re-read of the same version does not extend it.
        v.see(Some(obs("a", "1")), t0 + Duration::from_secs(3));
        assert_eq!(v.observed_at, t0 + Duration::from_secs(1));
        // Nor does a write to another field (a label, ConfigMap data).
        v.see(Some(obs("a", "2")), t0 + Duration::from_secs(5));
        assert_eq!(v.observed_at, t0 + Duration::from_secs(1));
        v.see(Some(obs("b", "3")), t0 + Duration::from_secs(6));
        assert_eq!(v.observed_at, t0 + Duration::from_secs(6));
        v.see(None, t0 + Duration::from_secs(7));
        assert_eq!(v.observed_at, t0 + Duration::from_secs(7));
    }

    #[test]
    fn takeover_bumps_transitions_and_renew_keeps_them() {
        let prev = LeaderRecord {
            leader_transitions: 4,
            ..held_by("other", 15)
        };
        let taken = acquiring_record(Some(&prev), "me", 15);
        assert_eq!(
            (taken.holder_identity.as_str(), taken.leader_transitions),
            ("me", 5)
        );
        let renewed = acquiring_record(Some(&taken), "me", 15);
        assert_eq!(renewed.leader_transitions, 5);
        assert_eq!(renewed.acquire_time, taken.acquire_time);
        assert_eq!(acquiring_record(None, "me", 15).leader_transitions, 0);
        let released = LeaderRecord {
            leader_transitions: 5,
            ..held_by("", 1)
        };
        assert_eq!(
            acquiring_record(Some(&released), "me", 15).leader_transitions,
            6
        );
    }
}
