//! `--service`: while this process leads, the Service's Endpoints point here. Pointed at once
//! when the child starts, checked again every lease duration (a user's edit, a former
//! leader's write that landed late), retried every retry period after a failure; taken out
//! when leadership ends, within a bound, never before the stop went to the guard.

use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
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
    // An API server out of reach is waited for, as the lock is: a pod restarted while cut off
    // must not crash-loop. A TERM or INT meanwhile ends the wait.
    use tokio::signal::unix::{signal, SignalKind};
    let signals = [SignalKind::terminate(), SignalKind::interrupt()];
    let [mut term, mut int] = signals.map(|k| signal(k).ok());
    let timing = crate::settings::Timing::from(&args.timing);
    let retry = timing.retry_period;
    // When the server was out of reach in this wait, a refusal is most likely a restarting
    // server's, whose RBAC caches are still filling: tried again for a lease duration before
    // it is taken as RBAC's (found by the nemesis on the real cluster: a pod restarted while
    // kube-apiserver restarted exited 69).
    let mut unreachable = false;
    let mut refused_since: Option<tokio::time::Instant> = None;
    loop {
        match LeaderService::open(client.clone(), namespace, name, args.pod_ip, pod.clone()).await {
            Ok(service) => return Ok(Some(Arc::new(service))),
            Err(ServiceError::Api(e)) if e.is_transient() => {
                unreachable = true;
                warn!(service = %name, error = %e, "cannot read the Service; trying again");
            }
            Err(ServiceError::Api(e))
                if unreachable
                    && e.is_refusal()
                    && refused_since
                        .get_or_insert_with(tokio::time::Instant::now)
                        .elapsed()
                        < timing.lease_duration =>
            {
                warn!(service = %name, error = %e, "refused by an API server that was just out of reach (restarting?); trying again");
            }
            Err(e) => return Err(e),
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            Some(_) = recv(&mut term) => return Err(ServiceError::Stopped(Signal::SIGTERM as i32)),
            Some(_) = recv(&mut int) => return Err(ServiceError::Stopped(Signal::SIGINT as i32)),
        }
    }
}

/// The next delivery of a signal, or never when it could not be listened for.
async fn recv(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
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

/// Takes this pod out of `--service`'s Endpoints, if it was put there.
pub(super) async fn withdrawal(announcing: Option<Announcing>) {
    if let Some(a) = announcing {
        a.withdraw().await;
    }
}
