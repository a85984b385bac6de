//! The end of a leadership: release the lock as client-go's ReleaseOnCancel does, or leave
//! it to expire.

use super::{AfterExit, Election, Leadership};
use crate::lastrun::LastRun;
use crate::lock::{Lock, LockError};

impl<L: Lock> Election<L> {
    /// After the child ended: release (empty holder, duration 1s, transitions kept, as
    /// client-go's ReleaseOnCancel) with what the run did (`run`, in the same write), or
    /// leave the lock to expire (the next leader then notes the run ended without a word).
    pub async fn finish(
        &self,
        l: Leadership<L::Object>,
        after: AfterExit,
        run: Option<&LastRun>,
    ) -> Result<(), LockError> {
        // A later round (--rejoin) knows the lock as we leave it.
        self.remember_held(l.slot, &l.held);
        if after == AfterExit::Leave {
            return Ok(());
        }
        let lock = self.lock(l.slot);
        let mut held = l.held;
        let note = run.map(LastRun::to_json);
        for _ in 0..2 {
            let record = held.record.released(self.record_now());
            let mark = self.writes.mark(&record);
            match lock
                .update(
                    &held,
                    &record,
                    Some(&mark),
                    note.as_deref(),
                    self.call_timeout(),
                )
                .await
            {
                Ok(released) => {
                    self.remember_held(l.slot, &released);
                    return Ok(());
                }
                Err(LockError::Conflict(_)) => match lock.get(self.call_timeout()).await? {
                    Some(o) if o.uid == held.uid && self.writes.ours(&o) => held = o,
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
