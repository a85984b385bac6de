//! Holding the lock: a renew every retry period, the deadline anchored at the send time of
//! the last renew that changed the record, and one reading of the lock as seen anew.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, warn};

use super::{sleep_until_some, Election, Leadership, Lost, Observer};
use crate::lock::watch::Follow;
use crate::lock::{Lock, LockError, Observed};

impl<L: Lock> Election<L> {
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
        let lost = self.renew_until_lost(l, observer, nudge).await;
        self.remember_held(l.slot, &l.held);
        lost
    }

    async fn renew_until_lost(
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
            // Biased (a seed replays exactly), the timer first: a busy watch never starves
            // the renews.
            tokio::select! {
                biased;
                _ = sleep_until_some(self.timer_at(Some(next.min(deadline)))) => {}
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
            if self.now() >= deadline {
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
        let sent = self.now();
        let record =
            l.held
                .record
                .renewed(self.lease_seconds(), self.record_now(), lock.resolution());
        if record == l.held.record {
            // Within the same second of a ConfigMap record: a write would change nothing
            // and count for nothing. Try again in a moment.
            return Ok(sent + self.timing.retry_period.min(Duration::from_millis(250)));
        }
        let mark = self.writes.mark(&record);
        let result = lock
            .update(&l.held, &record, Some(&mark), None, deadline - sent)
            .await;
        let latency = self.now().saturating_duration_since(sent);
        let retry_soon = || self.now() + self.timing.retry_period / 2;
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

    /// How a leader reads its lock as seen anew, by its watch or after a conflict, stated
    /// once: still ours (our record, or a write of ours that landed late), or the loss.
    fn read_own(
        &self,
        l: &Leadership<L::Object>,
        seen: Option<Observed<L::Object>>,
    ) -> Result<Observed<L::Object>, Lost> {
        let Some(o) = seen else {
            return Err(Lost::Deleted);
        };
        self.saw_while_leading(l.slot, &o);
        // A new uid is a deletion we missed, followed by a re-creation.
        if o.uid != l.held.uid {
            return Err(Lost::Deleted);
        }
        let names_us = o.record.holder_identity == self.identity;
        if names_us && o.notes.step_down.as_deref() == Some(self.identity.as_str()) {
            return Err(Lost::SteppedDown);
        }
        // Ours by our mark and record, never by the record alone: a twin can write the very
        // record we hold (the same holder, in the same second of a ConfigMap record).
        if self.writes.ours(&o) {
            return Ok(o);
        }
        Err(if !o.record.is_held() {
            Lost::Released
        } else if names_us {
            // Our identity, not our write: a twin (docs/DESIGN.md §3).
            Lost::Impostor(self.identity.clone())
        } else {
            Lost::TakenOver(o.record.holder_identity)
        })
    }

    /// What the leader makes of its own lock as seen by its watch: lost, or still ours.
    /// Our own renews come back this way too, and are ignored.
    fn judge(&self, l: &Leadership<L::Object>, seen: Option<Observed<L::Object>>) -> Option<Lost> {
        self.read_own(l, seen).err()
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
        let left = deadline.saturating_duration_since(self.now());
        match self.lock(l.slot).get(left).await {
            Ok(seen) => {
                l.held = self.read_own(l, seen).map_err(Some)?;
                Ok(if failures > 1 {
                    self.now() + self.timing.retry_period / 4
                } else {
                    self.now()
                })
            }
            Err(e @ LockError::Unreadable { .. }) => Err(Some(Lost::Lock(e))),
            Err(_) => Err(None),
        }
    }
}

/// How the renews are going: failures in a row, and the last error, for the deadline's message.
struct Renewing {
    failures: u32,
    last_error: String,
}
