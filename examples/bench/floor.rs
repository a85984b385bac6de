//! The server's own floor for a graceful handover: what the API costs with nothing else in the
//! way. Two raw clients (leaderrun's own connector: TCP_NODELAY, HTTP/2, so each keeps one warm
//! connection), one holding a Lease and one watching it: from the moment the holder sends its
//! release to the moment the watcher's acquiring write is answered. That is one write, its
//! watch event and one more write; no election can hand over in less. Beside it, the floors
//! of what a handover and a one-shot contain besides the election: a child process's own
//! cost, and a one-shot's requests on a new connection.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams, WatchEvent, WatchParams};

async fn client(kubeconfig: &Path) -> Result<kube::Client, String> {
    let target = leaderrun::client::Target {
        kubeconfig: Some(kubeconfig.to_path_buf()),
        context: None,
        namespace: Some("default".into()),
    };
    leaderrun::client::connect(&target)
        .await
        .map(|(c, _)| c)
        .map_err(|e| e.to_string())
}

fn held_by(holder: &str, duration: i32) -> LeaseSpec {
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::now(),
    );
    LeaseSpec {
        holder_identity: Some(holder.into()),
        lease_duration_seconds: Some(duration),
        acquire_time: Some(now.clone()),
        renew_time: Some(now),
        ..Default::default()
    }
}

/// One handover at the floor, in ms.
async fn once(a: &Api<Lease>, b: &Api<Lease>, name: &str) -> Result<f64, String> {
    let e = |e: kube::Error| e.to_string();
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(held_by("floor-a", 15)),
    };
    let held = a.create(&PostParams::default(), &lease).await.map_err(e)?;
    let rv = held.metadata.resource_version.clone().unwrap_or_default();
    let params = WatchParams::default().fields(&format!("metadata.name={name}"));
    let mut events = b.watch(&params, &rv).await.map_err(e)?.boxed();
    // Warm both connections, and give the watch time to be registered by the server.
    a.get(name).await.map_err(e)?;
    b.get(name).await.map_err(e)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut released = held.clone();
    released.spec = Some(held_by("", 1));
    let sent = Instant::now();
    a.replace(name, &PostParams::default(), &released)
        .await
        .map_err(e)?;
    let seen = loop {
        match tokio::time::timeout(Duration::from_secs(10), events.next()).await {
            Ok(Some(Ok(WatchEvent::Modified(l)))) => break l,
            Ok(Some(Ok(_))) => continue,
            other => return Err(format!("the release's watch event: {other:?}")),
        }
    };
    let mut taken = seen;
    taken.spec = Some(LeaseSpec {
        lease_transitions: Some(1),
        ..held_by("floor-b", 15)
    });
    b.replace(name, &PostParams::default(), &taken)
        .await
        .map_err(e)?;
    let took = sent.elapsed().as_secs_f64() * 1000.0;
    a.delete(name, &DeleteParams::default()).await.map_err(e)?;
    Ok(took)
}

/// `runs` handovers at the floor (after one to warm up), in ms.
pub async fn floor(
    kubeconfig_a: &Path,
    kubeconfig_b: &Path,
    prefix: &str,
    runs: usize,
) -> Result<Vec<f64>, String> {
    let a: Api<Lease> = Api::namespaced(client(kubeconfig_a).await?, "default");
    let b: Api<Lease> = Api::namespaced(client(kubeconfig_b).await?, "default");
    let mut v = Vec::new();
    for i in 0..=runs {
        let took = once(&a, &b, &format!("{prefix}-floor-{i}")).await?;
        if i > 0 {
            v.push(took);
        }
    }
    Ok(v)
}

/// The server's own floor for a one-shot that wins a free lock: what `leaderrun --no-wait --
/// true` asks of the API, in process and with no job. A new client on a new connection (TLS
/// on the real server), a read of the lock, a taking write, a release; in ms, from before the
/// client is made to the release's answer.
pub async fn one_shot_floor(
    kubeconfig: &Path,
    name: &str,
    runs: usize,
) -> Result<Vec<f64>, String> {
    let e = |e: kube::Error| e.to_string();
    let setup: Api<Lease> = Api::namespaced(client(kubeconfig).await?, "default");
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(held_by("", 1)),
    };
    setup
        .create(&PostParams::default(), &lease)
        .await
        .map_err(e)?;
    let mut v = Vec::new();
    for i in 0..=runs {
        let started = Instant::now();
        let api: Api<Lease> = Api::namespaced(client(kubeconfig).await?, "default");
        let mut lock = api.get(name).await.map_err(e)?;
        lock.spec = Some(held_by("floor-one-shot", 15));
        let mut held = api
            .replace(name, &PostParams::default(), &lock)
            .await
            .map_err(e)?;
        held.spec = Some(held_by("", 1));
        api.replace(name, &PostParams::default(), &held)
            .await
            .map_err(e)?;
        // The first run warms the server's caches and this process's code.
        if i > 0 {
            v.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    setup
        .delete(name, &DeleteParams::default())
        .await
        .map_err(e)?;
    Ok(v)
}

/// A child process's own cost in a handover, with no election at all: the bench runs the
/// leader's job script (the one leaderrun runs), waits for it to end, and at once starts the
/// standby's; from the first's last line to the second's first, in ms. Both lines come from a
/// `date` that `sh` starts, so this is a `date` ending, a shell exiting, a fork and exec of
/// `sh` and of `date`. A system that runs the job as a child process (leaderrun) pays it on
/// top of the server's floor; the peers' candidates log from inside their own process.
pub fn process_floor(dir: &Path, runs: usize) -> Result<Vec<f64>, String> {
    let mut v = Vec::new();
    for i in 0..=runs {
        let log = dir.join(format!("process-floor-{i}.log"));
        // The same folder serves every server's run.
        let _ = std::fs::remove_file(&log);
        for who in ["a", "b"] {
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(crate::job_script(&log, 0.001))
                .env("LEADERRUN_IDENTITY", who)
                .status()
                .map_err(|e| format!("cannot run sh: {e}"))?;
            if !status.success() {
                return Err(format!("the process floor's job failed: {status}"));
            }
        }
        let lines = crate::read_log(&log);
        if lines.len() != 4 {
            return Err(format!(
                "the process floor's log has {} lines, not 4",
                lines.len()
            ));
        }
        // The first run warms the page cache for sh and date.
        if i > 0 {
            v.push((lines[2].2 as f64 - lines[1].2 as f64) / 1e6);
        }
    }
    Ok(v)
}
