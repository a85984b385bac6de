//! A candidate using kube-leader-election's `LeaseLock`, driven as its shared-lease example
//! drives it: `try_acquire_or_renew` every retry period. See ../common.rs for the command line.
//!
//! The crate leaves the renew deadline to its user (its example keeps the last answer on an
//! error, forever): here the job also stops once no renew has succeeded for RENEW seconds, as
//! a careful user would write it.

#[path = "../../common.rs"]
mod common;

use std::time::{Duration, Instant};

use kube_leader_election::{LeaseLock, LeaseLockParams, LeaseLockResult};
use tokio::signal::unix::{signal, SignalKind};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = common::args();
    let client = common::client(&a).await;
    let mut term = signal(SignalKind::terminate()).unwrap_or_else(|e| {
        eprintln!("SIGTERM: {e}");
        std::process::exit(71)
    });
    let lock = LeaseLock::new(
        client,
        "default",
        LeaseLockParams {
            holder_id: a.id.clone(),
            lease_name: a.name.clone(),
            lease_ttl: Duration::from_secs(a.lease),
        },
    );
    let mut job = common::Job::new(&a);
    let mut renewed: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(a.retry));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = term.recv() => break,
        }
        let asked = Instant::now();
        match lock.try_acquire_or_renew().await {
            Ok(LeaseLockResult::Acquired(_)) => renewed = Some(asked),
            Ok(LeaseLockResult::NotAcquired(_)) => renewed = None,
            Err(e) => eprintln!("{e}"),
        }
        let within = renewed.is_some_and(|t| t.elapsed() < Duration::from_secs(a.renew));
        job.set(within);
    }
    let held = job.running();
    job.set(false);
    if held {
        if let Err(e) = lock.step_down().await {
            eprintln!("step down: {e}");
        }
    }
}
