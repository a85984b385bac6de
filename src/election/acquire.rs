//! Waiting for the lock: one `Follow` per slot, each observation through `decide`, the
//! acquiring write, and what a signal during the wait means.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::{
    decide, sleep_until_some, AcquireError, AfterExit, Decision, Election, Leadership, Observer,
    View, WaitOptions,
};
use crate::lastrun::LastRun;
use crate::lock::watch::Follow;
use crate::lock::{Lock, LockError, Observed};
use crate::record::LeaderRecord;

impl<L: Lock> Election<L> {
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
        let start = self.now();
        // What an earlier round saw (--rejoin) is known still: a lock seen then and gone now
        // was deleted after we saw it.
        let mut views: Vec<View<L::Object>> = (0..self.locks.len())
            .map(|i| self.recall(i, start))
            .collect();
        let result = self.wait_and_take(opts, stop, observer, &mut views).await;
        for (slot, v) in views.iter().enumerate() {
            self.remember(slot, v);
        }
        if let Ok(l) = &result {
            self.remember_held(l.slot, &l.held);
        }
        result
    }

    async fn wait_and_take(
        &self,
        opts: WaitOptions,
        stop: &mut watch::Receiver<Option<i32>>,
        observer: &dyn Observer,
        views: &mut [View<L::Object>],
    ) -> Result<Leadership<L::Object>, AcquireError> {
        let start = self.now();
        let wait_deadline = opts.wait_timeout.map(|d| start + d);
        let mut follows = self.follows();
        let mut waiting_for: Option<String> = None;
        // --no-wait: the first sight of each held slot, to tell whether it changes.
        let mut first_seen: Vec<Option<Instant>> = vec![None; self.locks.len()];
        let mut wake: Option<Instant> = None;
        let mut refused_once = false;
        loop {
            // Ends when something is observed, a decision's time comes, the wait times out,
            // or a signal stops the wait.
            let until = [wake, wait_deadline].into_iter().flatten().min();
            tokio::select! {
                biased;
                sig = stopped(stop) => return Err(AcquireError::Stopped(sig)),
                (slot, seen) = next_of(&mut follows) => self.see(&mut views[slot], seen?, observer),
                _ = sleep_until_some(self.timer_at(until)) => {}
            }
            if wait_deadline.is_some_and(|d| self.now() >= d) {
                return Err(AcquireError::WaitTimeout);
            }
            if !views.iter().all(|v| v.known) {
                continue;
            }
            let decisions = self.decide_all(views, self.now());
            let Some(slot) = decisions
                .iter()
                .position(|d| !matches!(d, Decision::Wait { .. }))
            else {
                wake = self.all_held(
                    views,
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
            let decision = decisions[slot].clone();
            match self
                .take(slot, &views[slot], decision, &mut refused_once)
                .await
            {
                Ok(leadership) => return self.keep_unless_stopped(leadership, stop).await,
                Err(Taken::Again) => {
                    views[slot].write_did_not_take(true);
                    follows[slot].read_again();
                }
                Err(Taken::Pause(error)) => {
                    views[slot].write_did_not_take(error.is_some());
                    self.pause_after(slot, error, stop).await;
                    follows[slot].read_again();
                }
                Err(Taken::Fail(e)) => return Err(e.into()),
            }
        }
    }

    /// One `Follow` per slot. A copy that rejoins while the API server restarts is refused by
    /// it at first; it was answered in an earlier round (found on the real cluster: it exited
    /// 69, and kubelet restarted its container).
    fn follows(&self) -> Vec<Follow<'_, L>> {
        let answered = self.answered.load(std::sync::atomic::Ordering::Relaxed);
        self.locks
            .iter()
            .map(|l| {
                Follow::new(l, self.timing.retry_period, self.call_timeout())
                    .answered_before(answered)
            })
            .collect()
    }

    /// What to do about each slot, as seen now.
    fn decide_all(&self, views: &[View<L::Object>], now: Instant) -> Vec<Decision> {
        views
            .iter()
            .map(|v| {
                decide(
                    &self.identity,
                    v,
                    |o| self.writes.ours(o),
                    self.timing.lease_duration,
                    now,
                )
            })
            .collect()
    }

    /// Takes in what a slot's `Follow` saw (an answer of the API server: the observer hears of
    /// it). A deletion seen (no object, or another in its place) ends the round of writes: a
    /// write sent before it was meant for the old object, and if it landed late on a new one,
    /// taking it is a new leadership.
    fn see(
        &self,
        view: &mut View<L::Object>,
        seen: Option<Observed<L::Object>>,
        observer: &dyn Observer,
    ) {
        observer.heard();
        self.answered
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let deletions = view.deleted_at;
        view.see(seen, self.now());
        if view.deleted_at != deletions {
            self.writes.new_round();
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
                self.finish(leadership, AfterExit::Release, None).await.ok();
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
        sleep_or_stop(self.timer_at(Some(self.now() + pause)), stop).await;
    }

    /// One acquiring write to `slot`, as `decision` says. Never abandoned halfway.
    /// `refused_once`: a write of this round was refused (401/403) already.
    async fn take(
        &self,
        slot: usize,
        view: &View<L::Object>,
        decision: Decision,
        refused_once: &mut bool,
    ) -> Result<Leadership<L::Object>, Taken> {
        let lock = self.lock(slot);
        let now = self.record_now();
        let current = view.current.as_ref();
        let next = match (decision, current) {
            // Our own acquiring write of this round, whose answer was lost: the same
            // leadership. Anything else naming us (another process, or a leadership of ours
            // that ended) is taken as a new leadership, with the next token.
            (Decision::Take, Some(o)) if self.writes.resumable(o) => {
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
        let mark = self.writes.mark(&next);
        let note = current.and_then(|p| untold(p, &next)).map(|r| r.to_json());
        let sent = self.now();
        let result = match current {
            None => lock.create(&next, Some(&mark), self.call_timeout()).await,
            Some(prev) => {
                lock.update(
                    prev,
                    &next,
                    Some(&mark),
                    note.as_deref(),
                    self.call_timeout(),
                )
                .await
            }
        };
        match result {
            Ok(held) => Ok(Leadership {
                slot,
                fencing_token: held.record.leader_transitions,
                held,
                last_renew_sent: sent,
            }),
            Err(LockError::Conflict(_) | LockError::AlreadyExists(_) | LockError::NotFound(_)) => {
                debug!(lock = %lock.describe(), "another copy wrote first; reading again");
                Err(Taken::Again)
            }
            Err(e) if e.is_transient() => Err(Taken::Pause(Some(e))),
            // Refused once: a restarting API server's refusal (its caches filling), the decision
            // made on a view read before it went away. Pause and read again; refused again
            // after that fresh read, it is RBAC's (found by the nemesis on the real cluster:
            // two standbys exited 69).
            Err(e) if e.is_refusal() && !std::mem::replace(refused_once, true) => {
                Err(Taken::Pause(Some(e)))
            }
            Err(e) => Err(Taken::Fail(e)),
        }
    }
}

/// A takeover of a leadership that ended without a word (its holder killed, stopped, or run
/// with `--no-release`): the note that says so, unless its run is recorded already.
fn untold<O>(prev: &Observed<O>, next: &LeaderRecord) -> Option<LastRun> {
    let r = &prev.record;
    let taken_over = r.is_held() && next.leader_transitions != r.leader_transitions;
    let recorded = prev
        .notes
        .last_run
        .as_deref()
        .and_then(LastRun::parse)
        .is_some_and(|run| run.is_of(r));
    (taken_over && !recorded).then(|| LastRun::silent(r))
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
        biased;
        _ = stopped(stop) => {}
        _ = sleep_until_some(until) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::Notes;
    use crate::record;

    fn seen(record: LeaderRecord, last_run: Option<String>) -> Observed<()> {
        Observed {
            record,
            resource_version: "1".into(),
            uid: "u".into(),
            notes: Notes {
                last_run,
                ..Notes::default()
            },
            object: (),
        }
    }

    #[test]
    fn a_takeover_notes_the_silent_end_of_a_held_leadership_not_yet_recorded() {
        let x = LeaderRecord::taken(None, Some(4), "x", 4, record::now());
        let next = LeaderRecord::taken(Some(&x), Some(4), "me", 4, record::now());
        let note = untold(&seen(x.clone(), None), &next).expect("a note");
        assert!(note.is_of(&x), "{note:?}");
        // A free lock's last leadership ended with a release, which said what it did.
        let free = x.released(record::now());
        assert!(untold(&seen(free.clone(), None), &next).is_none());
        // The same leadership resumed (our own late write): nothing ended.
        assert!(untold(&seen(x.clone(), None), &x).is_none());
        // Its run recorded already (by its holder, or a copy that took over before).
        let said = Some(LastRun::silent(&x).to_json());
        assert!(untold(&seen(x.clone(), said), &next).is_none());
        // A note of an older leadership does not count for this one.
        let older_of = LeaderRecord {
            leader_transitions: x.leader_transitions - 1,
            ..x.clone()
        };
        let older_note = Some(LastRun::silent(&older_of).to_json());
        assert!(untold(&seen(x.clone(), older_note), &next).is_some());
    }
}
