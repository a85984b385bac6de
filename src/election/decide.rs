//! The view of the lock and the pure rule: given what was observed and when, what to do now
//! (docs/DESIGN.md §3).

use std::time::Duration;

use tokio::time::Instant;

use crate::lock::Observed;

/// What we know of the lock, and when its record last changed as far as we know.
#[derive(Debug, Clone)]
pub struct View<O> {
    /// None: the object does not exist (or was not read yet, see `known`).
    pub current: Option<Observed<O>>,
    pub observed_at: Instant,
    /// At least one observation was made.
    pub known: bool,
    /// When we last learned that an object we had seen was deleted: it was gone, or another
    /// object (another uid) stood in its place at our next look. Whoever held the
    /// old one (perhaps a holder our view missed) may still run: nothing is taken or
    /// created before a lease from then, not even a record of ours that landed late (a
    /// create that reached the server after its timeout, and after the deletion: found by
    /// the simulation in CI, seed 7353976515771255075).
    pub deleted_at: Option<Instant>,
    /// The longest lease a holder of this lock was seen to promise: a deletion is waited out for
    /// the longer of it and our own. A free view may be stale (another may have taken the lock
    /// meanwhile, unseen), and copies of one lock may run with different leases: the longest
    /// promise seen stands for the unseen holder's.
    pub promised: Duration,
    /// The highest transition count seen, so a re-created lock continues from it.
    pub transitions_seen: Option<i32>,
    /// An acquiring write of ours did not take (a conflict, AlreadyExists, or no answer):
    /// the lock existed or changed meanwhile, whether or not we saw it. The next observation
    /// counts as a change, and no object then counts as a deletion after we saw it (found
    /// by the simulation: a copy whose create went unanswered while another created the lock
    /// and it was deleted, created it again at once).
    pub unsure: bool,
}

impl<O> View<O> {
    pub fn new(now: Instant) -> Self {
        View {
            current: None,
            observed_at: now,
            known: false,
            deleted_at: None,
            promised: Duration::ZERO,
            transitions_seen: None,
            unsure: false,
        }
    }

    /// Records an observation; the observation time moves only when the record changed
    /// (or the object appeared or vanished), as in client-go. Other writes to the object
    /// (labels, ConfigMap data) say nothing about the holder: counting them would let a
    /// busy ConfigMap postpone a takeover for ever.
    pub fn see(&mut self, seen: Option<Observed<O>>, now: Instant) {
        let deleted = match (&self.current, &seen) {
            (Some(_), None) => true,
            (Some(a), Some(b)) => a.uid != b.uid,
            (None, None) => self.unsure,
            (None, Some(_)) => false,
        };
        let changed = self.unsure
            || deleted
            || match (&self.current, &seen) {
                (Some(a), Some(b)) => a.record != b.record,
                (None, None) => !self.known,
                _ => true,
            };
        if changed {
            self.observed_at = now;
        }
        if deleted {
            self.deleted_at = Some(now);
        }
        if let Some(o) = seen.as_ref().filter(|o| o.record.is_held()) {
            self.promised = self.promised.max(promise(&o.record));
        }
        self.unsure = false;
        if let Some(o) = &seen {
            let t = o.record.leader_transitions;
            self.transitions_seen = Some(self.transitions_seen.map_or(t, |s| s.max(t)));
        }
        self.known = true;
        self.current = seen;
    }
}

impl<O> View<O> {
    /// An acquiring write of ours did not take. Until the slot is read again its view is
    /// stale: no decision is made on it (another slot's news must not send the same write
    /// again). `changed`: the lock existed or changed meanwhile (a conflict, AlreadyExists,
    /// no answer), so the next observation counts as a change.
    pub fn write_did_not_take(&mut self, changed: bool) {
        self.unsure |= changed;
        self.known = false;
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No object: create it, holding the lock.
    Create,
    /// Free, expired, or our own record: write ourselves in.
    Take,
    /// Held by another; look again at `until` unless something changes first. `impostor`:
    /// the holder has our identity but is not this process. No holder: a deletion is
    /// being waited out.
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
    ours: impl Fn(&Observed<O>) -> bool,
    lease_duration: Duration,
    now: Instant,
) -> Decision {
    // After a deletion, the old object's holder may run until a lease from when we saw it:
    // the longest lease promised on this lock, if longer than ours (found by the simulation
    // with copies of different timings: a holder cut off from the deletion ran on past our own
    // lease, also when our last view of the lock was free).
    let not_before = view
        .deleted_at
        .map(|d| d + lease_duration.max(view.promised));
    let wait = |promised: Duration, holder: &str, impostor: bool| {
        let until = view.observed_at + promised.max(lease_duration);
        let until = not_before.map_or(until, |n| n.max(until));
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
    // Free or ours, but perhaps only since a deletion: take it once the deletion is
    // waited out. A lock that never existed is created at once.
    let after_deletion = |d: Decision| match not_before {
        Some(until) if now < until => Decision::Wait {
            until,
            holder: String::new(),
            impostor: false,
        },
        _ => d,
    };
    let Some(o) = &view.current else {
        return after_deletion(Decision::Create);
    };
    let r = &o.record;
    if !r.is_held() {
        return after_deletion(Decision::Take);
    }
    let impostor = r.holder_identity == me;
    if impostor && ours(o) {
        return after_deletion(Decision::Take);
    }
    // The holder promised to stop within the duration it wrote; honour that, but
    // never wait less than our own setting would.
    wait(promise(r), &r.holder_identity, impostor)
}

/// How long a record's holder promised to stop within: the lease duration it wrote.
fn promise(r: &crate::record::LeaderRecord) -> Duration {
    Duration::from_secs(r.lease_duration_seconds.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record;
    use crate::record::LeaderRecord;

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
            notes: Default::default(),
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
    fn after_a_write_that_did_not_take_the_next_look_counts_as_a_change() {
        // Our write met a conflict: the lock changed since we saw it, even if the record we
        // read next looks the same as before (found missing by cargo-mutants).
        let t0 = Instant::now();
        let mut v = view_of(Some(held_by("other", 15)), t0);
        v.write_did_not_take(true);
        let later = t0 + Duration::from_secs(10);
        v.see(Some(obs(held_by("other", 15), "1")), later);
        assert!(matches!(
            decide("me", &v, |_| false, D, t0 + D),
            Decision::Wait { until, .. } if until == later + D
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
    fn a_deletion_is_waited_out_for_the_longest_lease_promised_on_the_lock() {
        let t0 = Instant::now();
        let short = Duration::from_secs(4);
        // The holder promised 15 s; we run with 4 s. It may not see the deletion (cut off from
        // the API server) and run on until its own deadline.
        let mut v = view_of(Some(held_by("other", 15)), t0);
        let deleted = t0 + Duration::from_secs(1);
        v.see(None, deleted);
        assert!(matches!(
            decide("me", &v, |_| false, short, deleted + short),
            Decision::Wait { until, .. } if until == deleted + D
        ));
        assert_eq!(
            decide("me", &v, |_| false, short, deleted + D),
            Decision::Create
        );
        // A shorter promise than ours: our own lease.
        let mut v = view_of(Some(held_by("other", 2)), t0);
        v.see(None, deleted);
        assert!(matches!(
            decide("me", &v, |_| false, short, deleted),
            Decision::Wait { until, .. } if until == deleted + short
        ));
        // A released record promises nothing: our own lease.
        let mut v = view_of(Some(held_by("", 15)), t0);
        v.see(None, deleted);
        assert!(matches!(
            decide("me", &v, |_| false, short, deleted),
            Decision::Wait { until, .. } if until == deleted + short
        ));
        // But a free view after a longer promise may be stale: the promise stands.
        let mut v = view_of(Some(held_by("other", 15)), t0);
        v.see(
            Some(obs(held_by("", 1), "2")),
            t0 + Duration::from_millis(500),
        );
        v.see(None, deleted);
        assert!(matches!(
            decide("me", &v, |_| false, short, deleted),
            Decision::Wait { until, .. } if until == deleted + D
        ));
    }

    #[test]
    fn an_object_replaced_between_two_looks_is_a_deletion_even_when_the_new_record_is_ours() {
        let t0 = Instant::now();
        let mut v = view_of(Some(held_by("other", 15)), t0);
        let replaced = t0 + Duration::from_secs(2);
        let ours = Observed {
            uid: "u2".into(),
            ..obs(held_by("me", 15), "9")
        };
        v.see(Some(ours), replaced);
        assert_eq!(v.deleted_at, Some(replaced));
        assert!(matches!(
            decide("me", &v, |_| true, D, replaced),
            Decision::Wait { until, ref holder, .. } if until == replaced + D && holder.is_empty()
        ));
        assert_eq!(decide("me", &v, |_| true, D, replaced + D), Decision::Take);
        // A free record in the new object, too.
        let mut free = view_of(Some(held_by("other", 15)), t0);
        free.see(
            Some(Observed {
                uid: "u2".into(),
                ..obs(held_by("", 1), "9")
            }),
            replaced,
        );
        assert!(matches!(
            decide("me", &free, |_| false, D, replaced),
            Decision::Wait { until, .. } if until == replaced + D
        ));
        // The same object, rewritten: no deletion.
        let mut same = view_of(Some(held_by("other", 15)), t0);
        same.see(Some(obs(held_by("", 1), "9")), replaced);
        assert_eq!(same.deleted_at, None);
        assert_eq!(decide("me", &same, |_| false, D, replaced), Decision::Take);
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
        assert_eq!(v.deleted_at, Some(s(7)));
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
}
