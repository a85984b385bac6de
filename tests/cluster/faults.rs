//! The control plane faulted under a running Deployment (deploy/ as shipped): kube-apiserver
//! frozen (SIGSTOP) and stopped then started again, etcd frozen, each shorter than the renew
//! deadline (leadership must survive the blip, the worker untouched) and longer (the worker
//! stops by its deadline, the next starts no sooner than a lease after the last renew, one
//! worker again after the heal). Faults go through the runner's control folder
//! (`tests/real-cluster/run`, PATH.control/).

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;

use super::{next_start, one_leader, secs, stop_of, Cluster, Workers, CONTROL_PLANE, LEASE};
use crate::common::{assert_no_overlap, now_nanos, Line};

/// deploy/deployment.yaml's timings (leaderrun's defaults).
const RENEW_DEADLINE: Duration = Duration::from_secs(10);
const KILL_GRACE: Duration = Duration::from_secs(3);
/// Allowance on the host's clock for the worker's own stop line and the record's timestamp
/// resolution (microseconds): the bound itself is the design's, to the renew deadline.
const SLACK: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// SIGSTOP to the component, SIGCONT to heal.
    Freeze(&'static str),
    /// The runner stops kube-apiserver, and starts it again (same flags, port, data) to heal.
    StopApiServer,
}

struct Control(PathBuf);

impl Control {
    fn of(c: &Cluster) -> Control {
        let mut p = c.kubeconfig.clone().into_os_string();
        p.push(".control");
        Control(PathBuf::from(p))
    }

    fn pid(&self, name: &str) -> i32 {
        let pids = std::fs::read_to_string(self.0.join("pids")).expect("the runner's pids file");
        pids.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {pids}"))
    }

    fn signal(&self, name: &str, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid(name)), sig)
            .unwrap_or_else(|e| panic!("{sig} to {name}: {e}"));
    }

    fn inject(&self, f: Fault) {
        match f {
            Fault::Freeze(name) => self.signal(name, nix::sys::signal::Signal::SIGSTOP),
            Fault::StopApiServer => {
                std::fs::write(self.0.join("stop-kube-apiserver"), "").expect("ask for a stop")
            }
        }
    }

    fn heal(&self, f: Fault) {
        match f {
            Fault::Freeze(name) => self.signal(name, nix::sys::signal::Signal::SIGCONT),
            Fault::StopApiServer => {
                std::fs::remove_file(self.0.join("stop-kube-apiserver")).expect("ask for a start")
            }
        }
    }
}

/// Heals whatever is still faulted when the test ends, passed or failed: a frozen API server
/// would stop every later test.
struct Healer<'a>(&'a Control, Option<Fault>);

impl Drop for Healer<'_> {
    fn drop(&mut self) {
        if let Some(f) = self.1.take() {
            self.0.heal(f);
        }
    }
}

/// Every start's fencing token is above the one before it.
fn assert_tokens_increase(lines: &[Line]) {
    let starts: Vec<&Line> = lines.iter().filter(|l| l.what == "start").collect();
    for w in starts.windows(2) {
        assert!(
            w[1].token > w[0].token,
            "fencing tokens strictly increase: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
}

/// No container of the Deployment waits in CrashLoopBackOff.
async fn assert_no_back_off(c: &Cluster) {
    let pods = c
        .pods()
        .list(&ListParams::default().labels("app=nightly-report"))
        .await;
    for p in pods.expect("list pods").items {
        let waiting = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|s| s.state.as_ref()?.waiting.as_ref()?.reason.clone())
            .collect::<Vec<_>>();
        assert!(
            !waiting.iter().any(|r| r == "CrashLoopBackOff"),
            "{}: {waiting:?}",
            pod_name(&p)
        );
    }
}

/// Restarts of each pod's container, by pod name.
async fn restarts(c: &Cluster) -> std::collections::BTreeMap<String, i32> {
    let pods = c
        .pods()
        .list(&ListParams::default().labels("app=nightly-report"))
        .await;
    pods.expect("list pods")
        .items
        .iter()
        .map(|p| {
            let n = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|s| s.first())
                .map_or(0, |s| s.restart_count);
            (pod_name(p).to_string(), n)
        })
        .collect()
}

fn pod_name(p: &Pod) -> &str {
    p.metadata.name.as_deref().unwrap_or_default()
}

/// The last renew of `leader` as the takeover recorded it (the record's renewTime, stamped
/// before that renew was sent), ns on the host's clock.
fn last_renew_of(c: &Cluster, leader: &str) -> u128 {
    let record = c.inspect("nightly-report");
    let last = &record["lastRun"];
    assert_eq!(
        last["holder"].as_str(),
        Some(super::identity_of(leader)),
        "the takeover records the faulted leader's run: {record}"
    );
    last["lastRenewed"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .and_then(|t| t.timestamp_nanos_opt())
        .unwrap_or_else(|| panic!("lastRenewed in {record}")) as u128
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_faulted_short_and_long_never_two_workers() {
    let Some(c) = Cluster::start("faults").await else {
        return;
    };
    let _alone = CONTROL_PLANE.write().await;
    for f in [
        "rbac.yaml",
        "rbac-events.yaml",
        "rbac-service.yaml",
        "service.yaml",
    ] {
        c.apply_deploy(f, &[]);
    }
    c.apply_deploy("deployment.yaml", &[]);
    let w = Workers::follow(c.pods(), "app=nightly-report", "worker");
    let control = Control::of(&c);
    let mut leader = one_leader(&c, &w).await;
    let faults = [
        (Fault::Freeze("kube-apiserver"), 5),
        (Fault::Freeze("kube-apiserver"), 25),
        (Fault::Freeze("etcd"), 5),
        (Fault::Freeze("etcd"), 25),
        (Fault::StopApiServer, 25),
    ];
    for (fault, lasting) in faults {
        let lasting = Duration::from_secs(lasting);
        let restarted_before = restarts(&c).await;
        let at = now_nanos();
        control.inject(fault);
        let mut healer = Healer(&control, Some(fault));
        tokio::time::sleep(lasting).await;
        control.heal(fault);
        healer.1 = None;
        let healed = now_nanos();
        if lasting + Duration::from_secs(2) < RENEW_DEADLINE {
            // A blip: the same worker runs on, and leads still a renew deadline later.
            tokio::time::sleep(RENEW_DEADLINE).await;
            let lines = w.lines();
            assert!(
                stop_of(&lines, &leader).is_none(),
                "{fault:?} {lasting:?}: the worker ran on: {lines:#?}"
            );
            assert_eq!(
                w.running().map(|r| r.id),
                Some(leader.clone()),
                "{fault:?} {lasting:?}"
            );
            eprintln!("{fault:?} for {lasting:?}: leadership and worker kept");
        } else {
            let lines = w
                .wait("the next worker after the fault", |l| {
                    stop_of(l, &leader).is_some() && next_start(l, at, &leader).is_some()
                })
                .await;
            let stop = stop_of(&lines, &leader).expect("stopped").nanos;
            let next = next_start(&lines, at, &leader).expect("the next");
            let last = last_renew_of(&c, &leader);
            assert!(
                stop <= last + (RENEW_DEADLINE + KILL_GRACE + SLACK).as_nanos(),
                "{fault:?}: the worker stopped {:.3}s after its last renew",
                secs(stop - last)
            );
            assert!(
                next.nanos >= last + LEASE.as_nanos(),
                "{fault:?}: the next worker started {:.3}s after the last renew, within the lease",
                secs(next.nanos.saturating_sub(last))
            );
            eprintln!(
                "{fault:?} for {lasting:?}: the worker stopped {:.3}s after its last renew ({:.3}s after the fault); the next started {:.3}s after the last renew, {:.3}s after the heal",
                secs(stop - last),
                secs(stop.saturating_sub(at)),
                secs(next.nanos - last),
                secs(next.nanos.saturating_sub(healed))
            );
            assert!(
                next.nanos.saturating_sub(healed) < Duration::from_secs(60).as_nanos(),
                "{fault:?}: one worker again within a minute of the heal"
            );
        }
        leader = one_leader(&c, &w).await;
        assert_no_back_off(&c).await;
        // --rejoin: a copy that lost the lock waits again; no container was restarted.
        assert_eq!(
            restarts(&c).await,
            restarted_before,
            "{fault:?}: no container restarted"
        );
        let lines = w.lines();
        assert_no_overlap(&lines);
        assert_tokens_increase(&lines);
    }
}
