//! The seeded nemesis: rounds of random faults (one to three, overlapping, each its own start
//! and length), with quiet periods between, over deploy/'s Deployment and a CronJob at once,
//! for `LEADERRUN_NEMESIS_SECS` (180 unless set). The seed is printed;
//! `LEADERRUN_NEMESIS_SEED` replays the same plan (the kinds, targets by role, starts and
//! lengths; the cluster's own timing is not replayable). The checker runs after every round and
//! at the end: never two workers (or reports) at once, fencing tokens strictly increasing, every
//! worker that lost its lock stopped by its last renew + renew deadline + kill grace, no other
//! worker started within a lease of that renew, no container ended but by a kill, and the
//! Deployment steady again after each round. It ends with one summary line and a table per
//! fault kind: from the fault to the leader's worker stopping, to a new leader, and from the
//! heal to steady (median and max; a round's faults share its events).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::faults::{assert_tokens_increase_in, deploy, Fault, Faults};
use super::{
    host_pids_with_env, identity_of, pod_of, ready_and_live, secs, stop_of, try_leaderrun_pid_of,
    Cluster, Workers, CONTROL_PLANE, LEASE,
};
use crate::common::{now_nanos, Line};

const RENEW_DEADLINE: Duration = Duration::from_secs(10);
const KILL_GRACE: Duration = Duration::from_secs(3);
/// The host's clock against the record's, and the worker's own stop line (faults.rs).
const SLACK: Duration = Duration::from_secs(1);
/// Steady again after a round: kubelet's back-off after repeated kills of one container
/// reaches minutes.
const STEADY_WITHIN: Duration = Duration::from_secs(600);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    FreezeApiServer,
    FreezeEtcd,
    StopApiServer,
    Slow,
    CutOffLeader,
    CutOffStandby,
    DeleteLeaderPod,
    KillLeader,
    FreezeLeader,
}

const KINDS: [Kind; 9] = [
    Kind::FreezeApiServer,
    Kind::FreezeEtcd,
    Kind::StopApiServer,
    Kind::Slow,
    Kind::CutOffLeader,
    Kind::CutOffStandby,
    Kind::DeleteLeaderPod,
    Kind::KillLeader,
    Kind::FreezeLeader,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::FreezeApiServer => "kube-apiserver frozen",
            Kind::FreezeEtcd => "etcd frozen",
            Kind::StopApiServer => "kube-apiserver stopped",
            Kind::Slow => "API slow (1-12 s a request)",
            Kind::CutOffLeader => "leader cut off",
            Kind::CutOffStandby => "a standby cut off",
            Kind::DeleteLeaderPod => "leader's pod deleted",
            Kind::KillLeader => "leader SIGKILLed",
            Kind::FreezeLeader => "leader SIGSTOPped",
        }
    }
}

/// One fault of a round's plan.
#[derive(Clone, Debug)]
struct Planned {
    kind: Kind,
    offset: Duration,
    lasting: Duration,
    /// A slow API's delay each way.
    each_way: Duration,
}

/// What happened to one fault.
struct Done {
    kind: Kind,
    at: u128,
    healed: u128,
    /// The leadership running when it was injected.
    leader: Option<String>,
}

fn plan_round(rng: &mut StdRng) -> Vec<Planned> {
    let n = rng.random_range(1..=3);
    let mut kinds = KINDS.to_vec();
    (0..n)
        .map(|_| {
            let kind = kinds.remove(rng.random_range(0..kinds.len()));
            Planned {
                kind,
                offset: Duration::from_millis(rng.random_range(0..15_000)),
                lasting: Duration::from_millis(rng.random_range(1_000..40_000)),
                each_way: Duration::from_millis(rng.random_range(500..6_000)),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_nemesis_never_makes_two_workers() {
    let Some(c) = Cluster::start("nemesis").await else {
        return;
    };
    let _alone = CONTROL_PLANE.write().await;
    let run_for = Duration::from_secs(env_u64("LEADERRUN_NEMESIS_SECS").unwrap_or(180));
    let seed = env_u64("LEADERRUN_NEMESIS_SEED").unwrap_or_else(rand::random);
    eprintln!("nemesis: seed {seed} (LEADERRUN_NEMESIS_SEED={seed} replays the plan), {run_for:?}");
    let mut rng = StdRng::seed_from_u64(seed);
    let faults = Faults::start(&c).await;
    deploy(&c);
    // The CronJob of cluster.rs's test, on a lock of its own.
    c.apply_deploy(
        "cronjob-1.20.yaml",
        &[
            ("schedule: \"0 2 * * *\"", "schedule: \"* * * * *\""),
            (
                "\"--keep-after-exit\", \"10m\"",
                "\"--keep-after-exit\", \"20s\"",
            ),
            (
                "\"--name\", \"nightly-report\"",
                "\"--name\", \"nightly-batch\"",
            ),
        ],
    );
    c.apply_deploy(
        "rbac.yaml",
        &[
            (
                "name: leaderrun-nightly-report",
                "name: leaderrun-nightly-batch",
            ),
            (
                "resourceNames: [\"nightly-report\"]",
                "resourceNames: [\"nightly-batch\"]",
            ),
        ],
    );
    let w = Workers::follow(&c, "app=nightly-report", "worker");
    let reports = Workers::follow(&c, "job-name", "report");
    let notes = Notes::collect(&c, "nightly-report");
    let batch_notes = Notes::collect(&c, "nightly-batch");
    let mut violations = Vec::new();
    steady(&c, &w).await.expect("a first leader");
    let (started, mut rounds, mut done) = (Instant::now(), 0, Vec::new());
    while started.elapsed() < run_for {
        rounds += 1;
        let plan = plan_round(&mut rng);
        let begun = now_nanos();
        let ran = join_all(plan.iter().map(|p| one_fault(&c, &w, &faults, p))).await;
        let steady_at = steady(&c, &w).await;
        if steady_at.is_none() {
            violations.push(format!(
                "round {rounds}: not steady within {STEADY_WITHIN:?}"
            ));
        }
        let said: Vec<String> = plan
            .iter()
            .zip(&ran)
            .map(|(p, d)| {
                let skipped = if d.is_some() {
                    ""
                } else {
                    " (not injected: no target, or the API server down)"
                };
                let lasting = match p.kind {
                    Kind::DeleteLeaderPod | Kind::KillLeader => String::new(),
                    _ => format!(" for {:.1}s", p.lasting.as_secs_f64()),
                };
                format!(
                    "{} +{:.1}s{lasting}{skipped}",
                    p.kind.name(),
                    p.offset.as_secs_f64()
                )
            })
            .collect();
        eprintln!(
            "round {rounds}: {}; steady {:.1}s after it began",
            said.join(", "),
            secs(steady_at.unwrap_or(begun).saturating_sub(begun))
        );
        for d in ran.into_iter().flatten() {
            done.push((d, steady_at));
        }
        violations.extend(check(&w, &notes));
        violations.extend(check(&reports, &batch_notes));
        violations.extend(exits_but_kills(&c).await);
        if !violations.is_empty() {
            break;
        }
        let quiet = Duration::from_millis(rng.random_range(5_000..30_000));
        tokio::time::sleep(quiet).await;
    }
    let lines = w.lines();
    let leaderships = lines.iter().filter(|l| l.what == "start").count();
    let report_count = reports.lines().iter().filter(|l| l.what == "start").count();
    eprintln!(
        "nemesis: seed {seed}, {:.0}s, {} faults injected in {rounds} rounds, {leaderships} leaderships and {report_count} reports, {} violations",
        started.elapsed().as_secs_f64(),
        done.len(),
        violations.len()
    );
    eprintln!("{}", table(&done, &lines));
    assert!(
        violations.is_empty(),
        "nemesis seed {seed}: {violations:#?}\n{lines:#?}"
    );
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Waits `p.offset`, injects the fault on its target as things are then, heals it after
/// `p.lasting`. None when it could not be injected: its target missing (no worker running at
/// that moment), or a pod deletion refused by an API server another fault has stopped.
async fn one_fault(c: &Cluster, w: &Workers, faults: &Faults, p: &Planned) -> Option<Done> {
    tokio::time::sleep(p.offset).await;
    let leader = w.running().map(|r| r.id);
    let leader_pod = leader.as_deref().map(|l| pod_of(l).to_string());
    let at = now_nanos();
    let fault = match p.kind {
        Kind::FreezeApiServer => Fault::Freeze("kube-apiserver"),
        Kind::FreezeEtcd => Fault::Freeze("etcd"),
        Kind::StopApiServer => Fault::StopApiServer,
        Kind::Slow => Fault::Slow(p.each_way),
        Kind::CutOffLeader => Fault::CutOff(leader_pod.clone()?),
        Kind::CutOffStandby => {
            let (_, live) = ready_and_live(&c.pods()).await;
            // One whose leaderrun runs (not a container kubelet is restarting).
            let standby = live
                .into_iter()
                .find(|n| Some(n) != leader_pod.as_ref() && try_leaderrun_pid_of(n).is_some());
            Fault::CutOff(standby?)
        }
        Kind::DeleteLeaderPod => {
            let pod = leader_pod?;
            // Through the API server, which another fault of the round may have stopped: then
            // this one was not injected (a deletion that timed out may still land later).
            let args = [
                "-n",
                &c.ns,
                "delete",
                "pod",
                &pod,
                "--wait=false",
                "--request-timeout=10s",
            ];
            c.kubectl(&args, None).status.success().then_some(())?;
            return Some(Done {
                kind: p.kind,
                at,
                healed: at,
                leader,
            });
        }
        Kind::KillLeader => {
            let leadership = leader.clone()?;
            kill_leader(w, &leadership).await?;
            return Some(Done {
                kind: p.kind,
                at,
                healed: at,
                leader,
            });
        }
        Kind::FreezeLeader => {
            let pid = Pid::from_raw(try_leaderrun_pid_of(leader_pod.as_deref()?)?);
            nix::sys::signal::kill(pid, Signal::SIGSTOP).ok()?;
            tokio::time::sleep(p.lasting).await;
            // kubelet may have restarted the container meanwhile (liveness).
            let _ = nix::sys::signal::kill(pid, Signal::SIGCONT);
            return Some(Done {
                kind: p.kind,
                at,
                healed: now_nanos(),
                leader,
            });
        }
    };
    if let Fault::CutOff(pod) = &fault {
        try_leaderrun_pid_of(pod)?;
    }
    let n = faults.inject(&fault).await;
    tokio::time::sleep(p.lasting).await;
    faults.heal(n);
    Some(Done {
        kind: p.kind,
        at,
        healed: now_nanos(),
        leader,
    })
}

/// SIGKILL to the leader's leaderrun (PID 1: the kernel ends its whole container); its worker
/// logs no stop, so the test writes one once the worker's processes are gone.
async fn kill_leader(w: &Workers, leadership: &str) -> Option<()> {
    let pid = try_leaderrun_pid_of(pod_of(leadership))?;
    let job = host_pids_with_env(&format!("LEADERRUN_IDENTITY={}", identity_of(leadership)));
    nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL).ok()?;
    super::until("the killed leader's worker to be gone", || {
        let job = job.clone();
        async move {
            job.iter()
                .all(|(p, _)| !std::path::Path::new(&format!("/proc/{p}")).exists())
        }
    })
    .await;
    // Only if its worker had not stopped on its own first (it may have been losing already).
    if stop_of(&w.lines(), leadership).is_none() {
        w.killed.lock().unwrap().push(Line {
            what: "stop".into(),
            id: leadership.to_string(),
            token: -1,
            nanos: now_nanos(),
        });
    }
    Some(())
}

/// Steady: the worker running is the leadership the Lease names (holder and transitions, read
/// fresh from the API server), the holder renews, and three pods are live and Ready, all still
/// so two readiness periods later (a frozen API server leaves pods' statuses and the logs
/// behind for a while). When it was first so (host ns), or None after STEADY_WITHIN.
async fn steady(c: &Cluster, w: &Workers) -> Option<u128> {
    let deadline = Instant::now() + STEADY_WITHIN;
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), &c.ns);
    let mut since: Option<(u128, String, String)> = None;
    while Instant::now() < deadline {
        match (now_steady(c, w, &leases).await, &since) {
            (Some((l, renewed)), Some((at, r0, l0))) if l == *l0 => {
                if renewed != *r0 && now_nanos() - at >= Duration::from_secs(4).as_nanos() {
                    return Some(*at);
                }
            }
            (Some((l, renewed)), _) => since = Some((now_nanos(), renewed, l)),
            (None, _) => since = None,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// The leadership running and the Lease's renewTime, if steady at this moment.
async fn now_steady(c: &Cluster, w: &Workers, leases: &Api<Lease>) -> Option<(String, String)> {
    let running = w.running()?.id;
    let lease = tokio::time::timeout(Duration::from_secs(2), leases.get("nightly-report"))
        .await
        .ok()?
        .ok()?;
    let spec = lease.spec?;
    let named = format!("{}#{}", spec.holder_identity?, spec.lease_transitions?);
    let (mut ready, mut live) = ready_and_live(&c.pods()).await;
    ready.sort();
    live.sort();
    (named == running && live.len() == 3 && ready == live).then(|| {
        (
            running,
            serde_json::to_string(&spec.renew_time).unwrap_or_default(),
        )
    })
}

/// The last-run notes of the lock, as every takeover and release writes them, read every
/// second from this host: leadership (`identity#token`) to its note.
#[derive(Clone, Default)]
struct Notes(Arc<Mutex<BTreeMap<String, serde_json::Value>>>);

impl Notes {
    fn collect(c: &Cluster, name: &str) -> Notes {
        let notes = Notes::default();
        let (n, kubeconfig, ns, name) = (
            notes.clone(),
            c.kubeconfig.clone(),
            c.ns.clone(),
            name.to_string(),
        );
        tokio::spawn(async move {
            // Ends with the test's runtime.
            loop {
                let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_leaderrun"))
                    .args(["inspect", "-o", "json", "--kubeconfig"])
                    .arg(&kubeconfig)
                    .args(["-n", &ns, "--name", &name])
                    .output()
                    .await;
                let record = out
                    .ok()
                    .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
                if let Some(last) = record.map(|r| r["lastRun"].clone()) {
                    if let (Some(h), Some(t)) =
                        (last["holder"].as_str(), last["fencingToken"].as_i64())
                    {
                        n.0.lock().unwrap().insert(format!("{h}#{t}"), last);
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        notes
    }

    /// The last renew a note records for a leadership that ended without a word (ns).
    fn last_renew(&self, leadership: &str) -> Option<u128> {
        let notes = self.0.lock().unwrap();
        let note = notes.get(leadership)?;
        (note["outcome"] == "no-word").then_some(())?;
        let t = chrono::DateTime::parse_from_rfc3339(note["lastRenewed"].as_str()?).ok()?;
        Some(t.timestamp_nanos_opt()? as u128)
    }
}

/// The invariants of one lock's workers, as violations.
fn check(w: &Workers, notes: &Notes) -> Vec<String> {
    let mut out = Vec::new();
    let lines = w.lines();
    if let Err(e) = std::panic::catch_unwind(|| crate::common::assert_no_overlap(&lines)) {
        out.push(format!("two at once: {}", panic_text(&e)));
    }
    out.extend(assert_tokens_increase_in(&lines).err());
    let killed: Vec<String> = w
        .killed
        .lock()
        .unwrap()
        .iter()
        .map(|l| l.id.clone())
        .collect();
    for stop in lines.iter().filter(|l| l.what == "stop") {
        let Some(last) = notes.last_renew(&stop.id) else {
            continue;
        };
        let bound = last + (RENEW_DEADLINE + KILL_GRACE + SLACK).as_nanos();
        if !killed.contains(&stop.id) && stop.nanos > bound {
            out.push(format!(
                "{} stopped {:.3}s after its last renew",
                stop.id,
                secs(stop.nanos - last)
            ));
        }
        let other = lines.iter().find(|l| {
            l.what == "start" && l.nanos > last && identity_of(&l.id) != identity_of(&stop.id)
        });
        if let Some(next) = other.filter(|n| n.nanos < last + LEASE.as_nanos()) {
            out.push(format!(
                "{} started {:.3}s after {}'s last renew, within the lease",
                next.id,
                secs(next.nanos - last),
                stop.id
            ));
        }
    }
    out
}

/// A container that ended with anything but a kill ended on its own: leaderrun must not exit
/// on a lost leadership (--rejoin). 137 is a SIGKILL (ours, or kubelet's after the grace);
/// 143 is kubelet's TERM after a failed liveness probe, passed on (a SIGSTOPped leaderrun,
/// thawed, acts on it).
async fn exits_but_kills(c: &Cluster) -> Vec<String> {
    let pods: Api<Pod> = c.pods();
    let Ok(list) = pods
        .list(&ListParams::default().labels("app=nightly-report"))
        .await
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in list.items {
        let statuses = p
            .status
            .and_then(|s| s.container_statuses)
            .unwrap_or_default();
        for s in statuses {
            let ended = s.last_state.and_then(|l| l.terminated);
            if let Some(t) = ended.filter(|t| t.exit_code != 137 && t.exit_code != 143) {
                let name = p.metadata.name.clone().unwrap_or_default();
                // What it said before it exited: the run that failed is gone with the cluster.
                let said = pods
                    .logs(
                        &name,
                        &LogParams {
                            container: Some(s.name.clone()),
                            previous: true,
                            tail_lines: Some(40),
                            ..LogParams::default()
                        },
                    )
                    .await
                    .unwrap_or_else(|e| format!("(no log: {e})"));
                out.push(format!(
                    "{name} ended with {} ({:?}); its last lines:\n{said}",
                    t.exit_code, t.reason
                ));
            }
        }
    }
    out
}

fn panic_text(e: &Box<dyn std::any::Any + Send>) -> String {
    let text = e
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    text.chars().take(2000).collect()
}

/// Per fault kind: how many, from the fault to the leader's worker stopping (of those where it
/// stopped), to the next leader's start, and from the heal to steady.
fn table(done: &[(Done, Option<u128>)], lines: &[Line]) -> String {
    let mut by: BTreeMap<&str, [Vec<f64>; 3]> = BTreeMap::new();
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for (d, steady) in done {
        let name = d.kind.name();
        // Events of the fault's own round.
        let until = steady.unwrap_or(u128::MAX);
        *count.entry(name).or_default() += 1;
        let row = by.entry(name).or_default();
        if let Some(leader) = &d.leader {
            if let Some(stop) = lines
                .iter()
                .find(|l| l.what == "stop" && &l.id == leader && l.nanos >= d.at)
                .filter(|l| l.nanos <= until)
            {
                row[0].push(secs(stop.nanos - d.at));
            }
            if let Some(next) = lines
                .iter()
                .find(|l| l.what == "start" && l.nanos > d.at && &l.id != leader)
                .filter(|l| l.nanos <= until)
            {
                row[1].push(secs(next.nanos - d.at));
            }
        }
        if let Some(s) = steady {
            row[2].push(secs(s.saturating_sub(d.healed)));
        }
    }
    let stat = |v: &Vec<f64>| {
        if v.is_empty() {
            return "-".to_string();
        }
        let mut v = v.clone();
        v.sort_by(f64::total_cmp);
        format!(
            "{:.2} / {:.2} ({})",
            v[v.len() / 2],
            v[v.len() - 1],
            v.len()
        )
    };
    let mut out = String::from(
        "| fault | injected | fault to worker stopped, s (median / max (n)) | fault to next leader, s | heal to steady, s |\n|---|---|---|---|---|\n",
    );
    for (name, row) in &by {
        out += &format!(
            "| {name} | {} | {} | {} | {} |\n",
            count[name],
            stat(&row[0]),
            stat(&row[1]),
            stat(&row[2])
        );
    }
    out
}
