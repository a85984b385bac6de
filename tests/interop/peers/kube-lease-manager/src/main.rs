//! A candidate using kube-lease-manager's automatic mode (`LeaseManager::watch`), as its own
//! example uses it. See ../common.rs for the command line.
//!
//! The crate has no retry period or renew deadline: the holder renews `grace` seconds before
//! the lease ends, so grace = LEASE - RENEW renews as late as client-go's deadline allows.

#[path = "../../common.rs"]
mod common;

use kube_lease_manager::LeaseManagerBuilder;
use tokio::signal::unix::{signal, SignalKind};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = common::args();
    let client = common::client(&a).await;
    let mut term = signal(SignalKind::terminate()).unwrap_or_else(|e| {
        eprintln!("SIGTERM: {e}");
        std::process::exit(71)
    });
    let manager = LeaseManagerBuilder::new(client, a.name.clone())
        .with_namespace("default")
        .with_identity(a.id.clone())
        .with_duration(a.lease)
        .with_grace(a.lease.saturating_sub(a.renew).max(1))
        .build()
        .await
        .unwrap_or_else(|e| {
            eprintln!("LeaseManager: {e}");
            std::process::exit(69)
        });
    let (mut leading, task) = manager.watch().await;
    let mut job = common::Job::new(&a);
    loop {
        job.set(*leading.borrow_and_update());
        tokio::select! {
            changed = leading.changed() => if changed.is_err() { break },
            _ = term.recv() => break,
        }
    }
    job.set(false);
    // Closing the channel makes the manager's task release the lock and end.
    drop(leading);
    if let Ok(Err(e)) = task.await {
        eprintln!("release: {e}");
    }
}
