//! Which records this process wrote: a record naming our identity that is not among them was
//! written by another process (docs/DESIGN.md §3).

use std::sync::Mutex;

use crate::record::{self, LeaderRecord};

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

#[cfg(test)]
mod tests {
    use super::*;

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
