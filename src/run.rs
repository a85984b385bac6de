//! `leaderrun run`: the election and the supervisor, joined.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use tracing::{error, info, warn};

use crate::cli::{LockKind, RunArgs};
use crate::election::{AcquireError, AfterExit, Election};
use crate::events::Recorder;
use crate::exit;
use crate::health::Metrics;
use crate::lock::{KubeLock, Lock, LockError, LockObject};
use crate::settings::{self, SettingsError, Timing};
use crate::supervisor::{self, Signals};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Config(#[from] crate::client::ConfigError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("{0}")]
    Setup(String),
    #[error("cannot serve health on {0}: {1}. Choose another --health-addr")]
    Health(std::net::SocketAddr, std::io::Error),
}

impl RunError {
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Settings(_) => exit::USAGE,
            RunError::Config(_) | RunError::Health(..) => exit::CONFIG,
            RunError::Lock(_) | RunError::Setup(_) => exit::API,
        }
    }
}

pub fn timing(args: &RunArgs) -> Timing {
    Timing {
        lease_duration: args.lease_duration,
        renew_deadline: args.renew_deadline,
        retry_period: args.retry_period,
        kill_grace: args.kill_grace,
    }
}

/// Everything that can be checked without the API, checked first.
pub fn validate(args: &RunArgs) -> Result<(), SettingsError> {
    timing(args).validate()?;
    settings::validate_name(&args.lock.name)?;
    if let Some(ns) = &args.lock.namespace {
        settings::validate_namespace(ns)?;
    }
    if let Some(id) = &args.identity {
        settings::validate_identity(id)?;
    }
    Ok(())
}

pub async fn run(args: RunArgs) -> Result<u8, RunError> {
    validate(&args)?;
    let (client, namespace) = crate::client::connect(&args.lock).await?;
    settings::validate_namespace(&namespace)?;
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(settings::default_identity);
    let recorder = args
        .events
        .then(|| Recorder::new(client.clone(), &namespace, &identity));
    match args.lock.lock {
        LockKind::Lease => {
            run_with(
                KubeLock::<Lease>::new(client, &namespace, &args.lock.name),
                &args,
                identity,
                namespace,
                recorder,
            )
            .await
        }
        LockKind::Configmap => {
            if args.retry_period < Duration::from_secs(1) {
                // Safe (a no-op renew never moves the deadline) but wasteful.
                warn!(retry_period = ?args.retry_period, "a ConfigMap record carries whole seconds: renews within one second change nothing and do not count; use --retry-period 1s or more");
            }
            run_with(
                KubeLock::<ConfigMap>::new(client, &namespace, &args.lock.name),
                &args,
                identity,
                namespace,
                recorder,
            )
            .await
        }
    }
}

async fn run_with<K: LockObject>(
    lock: KubeLock<K>,
    args: &RunArgs,
    identity: String,
    namespace: String,
    recorder: Option<Recorder>,
) -> Result<u8, RunError> {
    supervisor::become_subreaper();
    let mut signals =
        Signals::new().map_err(|e| RunError::Setup(format!("cannot handle signals: {e}")))?;
    let metrics = std::sync::Arc::new(Metrics::default());
    if let Some(addr) = args.health_addr {
        let bound = crate::health::serve(addr, metrics.clone())
            .await
            .map_err(|e| RunError::Health(addr, e))?;
        info!(addr = %bound, "serving /healthz, /readyz and /metrics");
    }
    let election = Election {
        lock,
        identity: identity.clone(),
        timing: timing(args),
        metrics: metrics.clone(),
    };
    let describe = election.lock.describe();

    let acquired = tokio::select! {
        r = election.acquire(args.no_wait, args.wait_timeout) => r,
        sig = signals.recv() => {
            info!(lock = %describe, signal = ?sig, "signal while waiting for the lock; exiting");
            return Ok(exit::for_signal(sig as i32));
        }
    };
    let mut leadership = match acquired {
        Ok(l) => l,
        Err(AcquireError::Held { holder }) => {
            info!(lock = %describe, holder = %holder, "the lock is held by another and --no-wait was given");
            return Ok(args.conflict_exit_code);
        }
        Err(AcquireError::WaitTimeout) => {
            warn!(lock = %describe, "--wait-timeout passed before the lock was acquired");
            return Ok(exit::WAIT_TIMEOUT);
        }
        Err(AcquireError::Lock(e)) => return Err(e.into()),
    };
    info!(lock = %describe, identity = %identity, transitions = leadership.fencing_token, "became leader");
    metrics.became_leader(
        leadership.fencing_token,
        leadership.last_renew_sent,
        election.deadline(&leadership),
    );
    if let Some(r) = recorder.clone() {
        let target = leadership.held.object.reference();
        let message = format!("{identity} became leader");
        tokio::spawn(async move { r.record(target, false, message).await });
    }
    // Events name the object as it was when leadership began (its uid does not change).
    let target = leadership.held.object.reference();
    let record_event = |warning: bool, message: String| {
        let r = recorder.clone();
        let target = target.clone();
        async move {
            if let Some(r) = r {
                r.record(target, warning, message).await;
            }
        }
    };

    let env = vec![
        ("LEADERRUN_IDENTITY".to_string(), identity.clone()),
        (
            "LEADERRUN_LOCK".to_string(),
            args.lock.lock.as_str().to_string(),
        ),
        ("LEADERRUN_NAMESPACE".to_string(), namespace),
        ("LEADERRUN_NAME".to_string(), args.lock.name.clone()),
        (
            "LEADERRUN_FENCING_TOKEN".to_string(),
            leadership.fencing_token.to_string(),
        ),
    ];
    let mut child = match supervisor::spawn(&args.command, &env) {
        Ok(c) => {
            metrics.child_started();
            c
        }
        Err(e) => {
            error!(error = %e, "cannot start the command");
            release(&election, leadership, AfterExit::Release).await;
            metrics.leadership_ended();
            return Ok(e.exit_code());
        }
    };

    enum End {
        Exited(supervisor::ChildExit),
        Lost(crate::election::Lost),
    }
    let end = {
        let hold = election.hold(&mut leadership);
        tokio::pin!(hold);
        let end = loop {
            tokio::select! {
                status = child.wait() => break End::Exited(status),
                lost = &mut hold => break End::Lost(lost),
                sig = signals.recv() => child.signal_group(sig),
            }
        };
        match end {
            // Keep renewing while leftovers of the child's group are stopped:
            // the lock must stay ours until nothing of this leadership runs.
            End::Exited(status) => {
                let stopped = tokio::select! {
                    _ = child.stop_leftovers(args.kill_grace) => None,
                    lost = &mut hold => Some(End::Lost(lost)),
                };
                if let Some(lost) = stopped {
                    lost
                } else {
                    if let Some(keep) = args.keep_after_exit {
                        // Hold the lock a while longer (renewing), so a copy that
                        // starts a little late elsewhere does not run the job again.
                        info!(lock = %describe, keep = ?keep, status = ?status, "child exited; keeping the lock");
                        tokio::select! {
                            _ = tokio::time::sleep(keep) => {}
                            lost = &mut hold => warn!(lock = %describe, reason = %lost, "lost the lock while keeping it after the child's exit"),
                            sig = signals.recv() => info!(signal = ?sig, "signal while keeping the lock; releasing now"),
                        }
                    }
                    End::Exited(status)
                }
            }
            lost => lost,
        }
    };
    match end {
        End::Exited(status) => {
            let after = if args.no_release {
                AfterExit::Leave
            } else {
                AfterExit::Release
            };
            info!(lock = %describe, identity = %identity, transitions = leadership.fencing_token, status = ?status, after = ?after, "child exited; leadership ends");
            metrics.child_exited(status.exit_code());
            tokio::join!(
                release(&election, leadership, after),
                record_event(false, format!("{identity} stopped leading")),
            );
            metrics.leadership_ended();
            Ok(status.exit_code())
        }
        End::Lost(lost) => {
            error!(lock = %describe, identity = %identity, transitions = leadership.fencing_token, reason = %lost, "lost leadership; stopping the child");
            metrics.lost_leadership();
            let (status, ()) = tokio::join!(
                child.stop(args.kill_grace),
                record_event(true, format!("{identity} lost leadership: {lost}")),
            );
            info!(status = ?status, "child stopped");
            metrics.child_exited(status.exit_code());
            metrics.leadership_ended();
            Ok(exit::LEADERSHIP_LOST)
        }
    }
}

async fn release<L: Lock>(
    election: &Election<L>,
    leadership: crate::election::Leadership<L::Object>,
    after: AfterExit,
) {
    if let Err(e) = election.finish(leadership, after).await {
        // Not fatal: the lock expires after the lease duration anyway.
        warn!(lock = %election.lock.describe(), error = %e, "could not release the lock; it will expire");
    }
}
