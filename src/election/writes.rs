//! Which records this process wrote: each write carries the process's mark (the
//! `leaderrun.io/writer` annotation, `NONCE.SEQ`), and a record is ours only when the object
//! carries one of our marks *and* the record we sent with it. A record naming our identity
//! that is not ours was written by another process (docs/DESIGN.md §3): never a guess from
//! the holder and the time, which a twin with our identity can write too.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::lock::Observed;
use crate::record::LeaderRecord;

/// The writes this process sent, by mark. Each acquiring round starts a new round of
/// writes: only a write of the current round (an acquiring write whose answer was lost) is
/// resumed with its token; an older one ended with its leadership.
#[derive(Debug)]
pub struct Writes {
    nonce: String,
    inner: Mutex<SentWrites>,
}

#[derive(Debug, Default)]
struct SentWrites {
    /// (number, record, round), the latest last.
    sent: VecDeque<(u64, LeaderRecord, u32)>,
    next: u64,
    round: u32,
}

impl Default for Writes {
    fn default() -> Self {
        Writes {
            nonce: format!("{:016x}", crate::settings::random_u64()),
            inner: Mutex::default(),
        }
    }
}

impl Writes {
    /// Enough for any write whose answer may still be outstanding: a renew deadline holds a
    /// handful of writes.
    const KEPT: usize = 32;

    fn inner(&self) -> std::sync::MutexGuard<'_, SentWrites> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes that `r` is about to be written, and returns the mark to write with it.
    pub fn mark(&self, r: &LeaderRecord) -> String {
        let mut w = self.inner();
        if w.sent.len() >= Self::KEPT {
            w.sent.pop_front();
        }
        let (n, round) = (w.next, w.round);
        w.next += 1;
        w.sent.push_back((n, r.clone(), round));
        format!("{}.{n}", self.nonce)
    }

    /// Written by this process, in any round.
    pub fn ours<O>(&self, o: &Observed<O>) -> bool {
        self.written(o, false)
    }

    /// Written by this process in the current round: the same leadership.
    pub fn resumable<O>(&self, o: &Observed<O>) -> bool {
        self.written(o, true)
    }

    fn written<O>(&self, o: &Observed<O>, this_round: bool) -> bool {
        let Some(n) = o
            .notes
            .writer
            .as_deref()
            .and_then(|m| m.strip_prefix(self.nonce.as_str()))
            .and_then(|m| m.strip_prefix('.'))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            return false;
        };
        let w = self.inner();
        w.sent.iter().any(|(sent, r, round)| {
            *sent == n && *r == o.record && (!this_round || *round == w.round)
        })
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
    use crate::record;

    fn observed(r: &LeaderRecord, writer: Option<String>) -> Observed<()> {
        Observed {
            record: r.clone(),
            resource_version: "1".into(),
            uid: "u".into(),
            notes: crate::lock::Notes {
                writer,
                ..Default::default()
            },
            object: (),
        }
    }

    #[test]
    fn each_write_gets_a_mark_of_its_own() {
        // Found untested by cargo-mutants: a number that never moved gave every write one mark.
        let w = Writes::default();
        let r = LeaderRecord::taken(None, None, "me", 15, record::now());
        assert_ne!(w.mark(&r), w.mark(&r));
    }

    #[test]
    fn our_writes_are_known_by_mark_and_record() {
        let w = Writes::default();
        let r = LeaderRecord::taken(None, None, "me", 15, record::now());
        assert!(!w.ours(&observed(&r, None)));
        let mark = w.mark(&r);
        assert!(w.ours(&observed(&r, Some(mark.clone()))));
        // The same record without our mark, or with a twin's: not ours.
        assert!(!w.ours(&observed(&r, None)));
        let twin = Writes::default();
        let twins_mark = twin.mark(&r);
        assert_ne!(mark, twins_mark);
        assert!(!w.ours(&observed(&r, Some(twins_mark))));
        // Our mark kept by another client that changed the record: not ours.
        let other = LeaderRecord {
            holder_identity: "other".into(),
            ..r.clone()
        };
        assert!(!w.ours(&observed(&other, Some(mark.clone()))));
        // A new round: ours still, but not to be resumed.
        assert!(w.resumable(&observed(&r, Some(mark.clone()))));
        w.new_round();
        assert!(w.ours(&observed(&r, Some(mark.clone()))));
        assert!(!w.resumable(&observed(&r, Some(mark))));
    }
}
