//! `--service`: while this process leads, the Service's Endpoints point here. Pointed at once
//! when the child starts, checked again every lease duration (a user's edit, a former
//! leader's write that landed late), retried every retry period after a failure; taken out
//! when leadership ends, within a bound, never before the stop went to the guard.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::cli::RunArgs;
use crate::service::{LeaderService, ServiceError};
use crate::settings::Timing;

/// How long taking our address out may hold up a release or an exit: the next leader's
/// write replaces it anyway.
const WITHDRAW: Duration = Duration::from_secs(5);

/// The Service of `--service`, checked before anything is written to the lock.
pub(super) async fn open_service(
    args: &RunArgs,
    client: kube::Client,
    namespace: &str,
) -> Result<Option<Arc<LeaderService>>, ServiceError> {
    let Some(name) = &args.service else {
        return Ok(None);
    };
    if args.slots > 1 {
        return Err(ServiceError::WithSlots);
    }
    let pod = std::env::var("POD_NAME").ok().filter(|p| !p.is_empty());
    let service = LeaderService::open(client, namespace, name, args.pod_ip, pod).await?;
    Ok(Some(Arc::new(service)))
}

/// The Endpoints kept pointing here while this leadership lasts.
pub(super) struct Announcing {
    task: JoinHandle<()>,
    service: Arc<LeaderService>,
}

pub(super) fn announce(service: Arc<LeaderService>, timing: Timing) -> Announcing {
    let s = service.clone();
    let task = tokio::spawn(async move {
        // Ends when aborted by `withdraw`.
        loop {
            let next = match s.point_here().await {
                Ok(written) => {
                    if written {
                        info!(service = %s.describe(), "the Service now routes to this pod");
                    }
                    timing.lease_duration
                }
                Err(e) => {
                    warn!(service = %s.describe(), error = %e, "cannot point the Service at this pod; trying again");
                    timing.retry_period
                }
            };
            tokio::time::sleep(next).await;
        }
    });
    Announcing { task, service }
}

impl Announcing {
    /// Stops pointing here, then takes this pod's address out of the Endpoints.
    pub(super) async fn withdraw(self) {
        self.task.abort();
        // A write of the task already sent may land after this read: the withdrawal's own
        // write then meets a conflict and reads again.
        let _ = self.task.await;
        let s = &self.service;
        match tokio::time::timeout(WITHDRAW, s.withdraw()).await {
            Ok(Ok(true)) => {
                info!(service = %s.describe(), "the Service no longer routes to this pod")
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                warn!(service = %s.describe(), error = %e, "could not take this pod out of the Service; the next leader's write replaces it")
            }
            Err(_) => {
                warn!(service = %s.describe(), "taking this pod out of the Service timed out; the next leader's write replaces it")
            }
        }
    }
}
