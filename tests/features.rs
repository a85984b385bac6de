//! What users of lock wrappers ask for: `step-down` (move leadership on purpose, without
//! overlap), `--rejoin` (a standby again after a loss), `--stop-signal`, `--slots N`.

use crate::common;

use std::time::Duration;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const LONG: Duration = Duration::from_secs(60);

/// The lock object's annotations, as JSON.
async fn annotations(api: &Api, kind: &str, name: &str) -> serde_json::Value {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::ConfigMap;
    let client = api.client().await;
    let meta = if kind == "lease" {
        kube::Api::<Lease>::namespaced(client, &api.namespace)
            .get(name)
            .await
            .unwrap()
            .metadata
    } else {
        kube::Api::<ConfigMap>::namespaced(client, &api.namespace)
            .get(name)
            .await
            .unwrap()
            .metadata
    };
    serde_json::to_value(meta.annotations.unwrap_or_default()).unwrap()
}

#[tokio::test]
async fn step_down_moves_leadership_without_overlap_and_clears_the_request() {
    let api = Api::start().await;
    for kind in KINDS {
        let name = api.lock_name("stepdown");
        let log = api.log_path();
        let (leader, standby) = leader_then_standby(&api, kind, &name, "sd", &FAST, "0.3").await;
        let asked = now_nanos();
        let (code, out, err) = tool(&api, &["step-down", "--lock", kind, "--name", &name]).await;
        assert_eq!(code, 0, "{kind}: {err}");
        assert!(out.contains("\"sd-leader\" stepped down"), "{kind}: {out}");
        let (code, stderr) = exit_of(leader, LONG).await;
        assert_eq!(code, 121, "{kind}: {stderr}");
        assert!(stderr.contains("asked to step down"), "{kind}: {stderr}");
        assert_eq!(exit_of(standby, LONG).await.0, 0);
        let lines = read_log(&log);
        assert_eq!(lines.len(), 4, "{kind}: {lines:#?}");
        assert_no_overlap(&lines);
        assert_eq!(lines[2].id, "sd-standby");
        // Well before the lease (4s): the leader saw the request at once and released.
        let took = Duration::from_nanos((lines[2].nanos - asked) as u64);
        eprintln!("{kind}: step-down to the standby's start: {took:?}");
        assert!(took < Duration::from_secs(3), "{kind}: {took:?}");
        let ann = annotations(&api, kind, &name).await;
        assert!(
            ann.get(leaderrun::lock::STEP_DOWN).is_none(),
            "{kind}: cleared: {ann}"
        );
    }
}

#[tokio::test]
async fn step_down_refuses_the_wrong_holder_and_names_a_holder_that_ignores_it() {
    let api = Api::start().await;
    let name = api.lock_name("sd-edge");
    let (code, _, err) = tool(&api, &["step-down", "--name", &name]).await;
    assert_eq!(code, 4, "no such lock: {err}");
    let leader = job_candidate(&api, "lease", &name, "sd-a", &FAST, "1000");
    wait_log(&api.log_path(), LONG, |l| l.len() == 1).await;
    let (code, _, err) = tool(&api, &["step-down", "--name", &name, "--holder", "sd-b"]).await;
    assert_eq!(code, 5, "{err}");
    drop(leader);
    // A holder that is not leaderrun never reacts (a client-go or Python holder).
    let other = api.lock_name("sd-foreign");
    let holder = job_candidate(&api, "lease", &other, "sd-c", &FAST, "0.1");
    assert_eq!(exit_of(holder, LONG).await.0, 0);
    take_lock(&api, "lease", &other, "python-holder").await;
    let (code, _, err) = tool(&api, &["step-down", "--name", &other, "--timeout", "2s"]).await;
    assert_eq!(code, 7, "{err}");
    assert!(err.contains("does not understand the request"), "{err}");
}

#[tokio::test]
async fn rejoin_makes_a_lost_leader_a_standby_again() {
    let api = Api::start().await;
    for kind in KINDS {
        let name = api.lock_name("rejoin");
        let log = api.log_path();
        let _ = std::fs::remove_file(&log);
        let mut args = FAST.to_vec();
        args.push("--rejoin");
        let c = job_candidate(&api, kind, &name, "rj", &args, "1000");
        wait_log(&log, LONG, |l| l.len() == 1).await;
        // Another holder takes the lock, and never renews: after its lease, the lock is ours again.
        take_lock(&api, kind, &name, "someone-else").await;
        let lines = wait_log(&log, LONG, |l| l.len() >= 3).await;
        assert_eq!(
            lines.iter().map(|l| l.what.as_str()).collect::<Vec<_>>(),
            ["start", "stop", "start"],
            "{kind}"
        );
        assert!(lines[2].token > lines[0].token, "{kind}: a new leadership");
        kill(Pid::from_raw(c.id().unwrap() as i32), Signal::SIGTERM).unwrap();
        let (code, stderr) = exit_of(c, LONG).await;
        assert_eq!(
            code, 143,
            "{kind}: the child's own status at the end: {stderr}"
        );
        assert!(
            stderr.contains("rejoining as a standby"),
            "{kind}: {stderr}"
        );
    }
}

#[tokio::test]
async fn the_stop_signal_is_what_starts_a_stop() {
    let api = Api::start().await;
    let name = api.lock_name("stop-signal");
    let got = api.dir.path().join("got");
    let ready = api.dir.path().join("ready");
    let script = format!(
        "trap 'echo INT > {got}; exit 0' INT; trap '' TERM; echo > {ready}; while :; do sleep 0.05; done",
        got = got.display(),
        ready = ready.display()
    );
    let mut args = FAST.to_vec();
    args.extend(["--stop-signal", "SIGINT"]);
    let mut leader = candidate(&api, "lease", &name, "ss", &args, &["sh", "-c", &script]);
    wait_leader(&mut leader).await;
    // The job's traps are set before the lock is taken from it.
    wait_file(&ready, LONG).await;
    take_lock(&api, "lease", &name, "someone-else").await;
    let (code, stderr) = exit_of(leader, LONG).await;
    assert_eq!(code, 121, "{stderr}");
    assert_eq!(std::fs::read_to_string(&got).unwrap().trim(), "INT");
    let (code, _, err) = tool(
        &api,
        &["run", "--name", "x", "--stop-signal", "STOP", "--", "true"],
    )
    .await;
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("pauses a process"), "{err}");
}

#[tokio::test]
async fn with_two_slots_five_copies_never_run_three_jobs_at_once() {
    let api = Api::start().await;
    for kind in KINDS {
        let name = api.lock_name("slots");
        let log = api.dir.path().join(format!("slots-{kind}.log"));
        // Logs the slot where the job script logs its token.
        let script = format!(
            "echo start $LEADERRUN_IDENTITY $LEADERRUN_SLOT $(date +%s%N) >> {log}; sleep 1; echo stop $LEADERRUN_IDENTITY $LEADERRUN_SLOT $(date +%s%N) >> {log}",
            log = log.display()
        );
        let mut args = FAST.to_vec();
        args.extend(["--slots", "2"]);
        let copies: Vec<_> = (0..5)
            .map(|i| {
                candidate(
                    &api,
                    kind,
                    &name,
                    &format!("s{i}"),
                    &args,
                    &["sh", "-c", &script],
                )
            })
            .collect();
        for c in copies {
            let (code, stderr) = exit_of(c, LONG).await;
            assert_eq!(code, 0, "{kind}: {stderr}");
        }
        let mut lines = read_log(&log);
        lines.sort_by_key(|l| (l.nanos, l.what == "start"));
        assert_eq!(lines.len(), 10, "{kind}: every copy ran once: {lines:#?}");
        let (mut running, mut most) = (0i32, 0i32);
        let mut slots_in_use = std::collections::BTreeSet::new();
        let mut waits = Vec::new();
        let mut last_stop: Option<u128> = None;
        for l in &lines {
            if l.what == "start" {
                running += 1;
                assert!(
                    slots_in_use.insert(l.token),
                    "{kind}: slot {} taken twice: {lines:#?}",
                    l.token
                );
                if let Some(stop) = last_stop.take() {
                    waits.push(Duration::from_nanos((l.nanos - stop) as u64));
                }
            } else {
                running -= 1;
                slots_in_use.remove(&l.token);
                last_stop = Some(l.nanos);
            }
            most = most.max(running);
        }
        assert_eq!(
            most, 2,
            "{kind}: at most two at once, and two did run: {lines:#?}"
        );
        assert!(
            lines.iter().all(|l| l.token == 0 || l.token == 1),
            "{kind}: LEADERRUN_SLOT is 0 or 1"
        );
        // A freed slot is taken by a waiting copy at once (its watch sees the release).
        let slowest = waits.iter().max().copied().unwrap_or_default();
        eprintln!("{kind}: a freed slot was taken after at most {slowest:?}");
        assert!(slowest < Duration::from_secs(1), "{kind}: {waits:?}");
        let (code, out, _) = tool(
            &api,
            &[
                "inspect", "--lock", kind, "--name", &name, "--slots", "2", "-o", "json",
            ],
        )
        .await;
        assert_eq!(code, 3, "{kind}: both slots free now");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["slots"].as_array().map(|a| a.len()), Some(2), "{out}");
        assert_eq!(v["slots"][1]["name"], format!("{name}-1"));
    }
}
