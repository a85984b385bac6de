//! `leaderrun force-release`: an operator frees a stuck lock (after checking, with --holder,
//! that it is still the one meant), with the version read, so a renew since wins.

use crate::cli::ForceReleaseArgs;
use crate::client::{connect_to_lock, Target, CALL_TIMEOUT};
use crate::exit;
use crate::inspect::InspectError;
use crate::lock::{AnyLock, Lock, LockError};
use crate::record;

pub async fn force_release(args: ForceReleaseArgs) -> Result<u8, InspectError> {
    if args.holder.is_none() && !args.yes {
        eprintln!("leaderrun: force-release without --holder releases whoever holds the lock; add --yes to confirm, or name the holder with --holder ID");
        return Ok(exit::RELEASE_REFUSED);
    }
    let name = args.lock.object_name(args.slot);
    let (client, ns) = connect_to_lock(&Target::from(&args.lock), &name).await?;
    release(&args, AnyLock::open(args.lock.lock, client, &ns, &name)).await
}

/// The release, on the lock opened.
async fn release<L: Lock>(args: &ForceReleaseArgs, lock: L) -> Result<u8, InspectError> {
    let Some(seen) = lock.get(CALL_TIMEOUT).await? else {
        eprintln!(
            "leaderrun: {} does not exist; nothing to release",
            lock.describe()
        );
        return Ok(exit::INSPECT_MISSING);
    };
    let prev = &seen.record;
    if !prev.is_held() {
        println!(
            "{} is already free (transitions {})",
            lock.describe(),
            prev.leader_transitions
        );
        return Ok(0);
    }
    if let Some(want) = &args.holder {
        if *want != prev.holder_identity {
            eprintln!(
                "leaderrun: {} is held by {:?}, not {:?}; not released",
                lock.describe(),
                prev.holder_identity,
                want
            );
            return Ok(exit::RELEASE_REFUSED);
        }
    }
    // The version we read: if the holder renewed or someone else wrote since, this fails.
    let released = prev.released(record::now_at(lock.resolution()));
    // Unmarked: the release is no leaderrun run's write.
    match lock
        .update(&seen, &released, None, None, CALL_TIMEOUT)
        .await
    {
        Ok(_) => {
            println!(
                "released {} (previous holder {:?}, transitions {})",
                lock.describe(),
                prev.holder_identity,
                prev.leader_transitions
            );
            Ok(0)
        }
        Err(LockError::Conflict(_)) => {
            eprintln!("leaderrun: {} changed while releasing (409 Conflict): somebody else wrote it. Inspect it again and retry if it is still stuck", lock.describe());
            Ok(exit::RELEASE_CONFLICT)
        }
        Err(e) => Err(e.into()),
    }
}
