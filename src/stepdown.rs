//! `step-down`: move leadership on purpose, with no overlap. The request is a
//! compare-and-swap write of the `STEP_DOWN` annotation naming the holder; a leaderrun holder
//! sees it at once (it watches its own lock), stops its child's whole tree with its stop
//! signal and grace, then releases, which clears the request. Followers ignore the request
//! and wait for the release as always. This command waits for that release (or a takeover).

use std::time::Duration;

use crate::cli::StepDownArgs;
use crate::client::{connect_to_lock, SetupError, Target};
use crate::exit;
use crate::lock::watch::Follow;
use crate::lock::{AnyLock, Lock, LockError};

use crate::client::CALL_TIMEOUT;
/// How often the request is tried again when the holder's renews keep winning the race.
const TRIES: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum StepDownError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Lock(#[from] LockError),
}

impl StepDownError {
    pub fn exit_code(&self) -> u8 {
        match self {
            StepDownError::Setup(e) => e.exit_code(),
            StepDownError::Lock(_) => exit::API,
        }
    }
}

impl crate::exit::Failure for StepDownError {
    fn exit_code(&self) -> u8 {
        StepDownError::exit_code(self)
    }
}

pub async fn step_down(args: StepDownArgs) -> Result<u8, StepDownError> {
    let name = args.lock.object_name(args.slot);
    let (client, ns) = connect_to_lock(&Target::from(&args.lock), &name).await?;
    StepDown(&args)
        .with(AnyLock::open(args.lock.lock, client, &ns, &name))
        .await
}

struct StepDown<'a>(&'a StepDownArgs);

impl StepDown<'_> {
    async fn with<L: Lock>(self, lock: L) -> Result<u8, StepDownError> {
        let args = self.0;
        let holder = match request(&lock, args).await? {
            Requested::Asked(holder) => holder,
            Requested::Done(code) => return Ok(code),
        };
        let mut follow = Follow::new(&lock, Duration::from_secs(1), CALL_TIMEOUT);
        let waited = tokio::time::timeout(args.timeout, async {
            // Ends when the record no longer names `holder`: released, taken, or deleted.
            loop {
                match follow.next().await? {
                    Some(o) if o.record.holder_identity == holder => continue,
                    Some(o) if o.record.is_held() => return Ok(Some(o.record.holder_identity)),
                    _ => return Ok::<_, LockError>(None),
                }
            }
        })
        .await;
        match waited {
            Ok(Ok(now)) => {
                println!(
                    "{}: {holder:?} stepped down; {}",
                    lock.describe(),
                    now.map_or("the lock is free".to_string(), |h| format!(
                        "now held by {h:?}"
                    ))
                );
                Ok(0)
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => {
                eprintln!(
                    "leaderrun: {holder:?} did not let go of {} within {:?}. A holder that is not leaderrun (client-go, the Python client) does not understand the request; stop it, or use force-release once it is gone",
                    lock.describe(),
                    args.timeout
                );
                Ok(exit::STEP_DOWN_TIMEOUT)
            }
        }
    }
}

enum Requested {
    /// The request names this holder.
    Asked(String),
    /// Nothing to wait for: exit with this code.
    Done(u8),
}

/// Writes the request, reading again when the holder's renews win the race.
async fn request<L: Lock>(lock: &L, args: &StepDownArgs) -> Result<Requested, LockError> {
    for _ in 0..TRIES {
        let Some(seen) = lock.get(CALL_TIMEOUT).await? else {
            eprintln!("leaderrun: {} does not exist", lock.describe());
            return Ok(Requested::Done(exit::INSPECT_MISSING));
        };
        let holder = seen.record.holder_identity.clone();
        if !seen.record.is_held() {
            println!("{} is free; nothing to step down", lock.describe());
            return Ok(Requested::Done(0));
        }
        if args.holder.as_ref().is_some_and(|want| *want != holder) {
            eprintln!(
                "leaderrun: {} is held by {holder:?}, not {:?}; nothing asked",
                lock.describe(),
                args.holder.as_deref().unwrap_or_default()
            );
            return Ok(Requested::Done(exit::RELEASE_REFUSED));
        }
        match lock.request_step_down(&seen, &holder, CALL_TIMEOUT).await {
            Ok(_) => return Ok(Requested::Asked(holder)),
            Err(LockError::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    eprintln!(
        "leaderrun: {} changed {TRIES} times while asking (409 Conflict); nothing was asked. Try again",
        lock.describe()
    );
    Ok(Requested::Done(exit::RELEASE_CONFLICT))
}
