//! Election edge cases, each of which once broke the one-job-at-a-time promise, looped
//! against the API server or surprised a user: a deleted lock, one identity in two
//! processes, a signal during the acquiring write, a missing namespace, signals that must
//! not end a wait, a watch that goes silent, `--no-wait` against a holder whose clock is far
//! behind, and absurd times in a record.

use crate::common;

use std::time::Duration;

use common::*;
use kube_emulator::{Action, Fault};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const LONG: Duration = Duration::from_secs(60);

async fn delete_lock(api: &Api, kind: &str, name: &str) {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api as KubeApi, DeleteParams};
    let client = api.client().await;
    if kind == "lease" {
        KubeApi::<Lease>::namespaced(client, &api.namespace)
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete the lease");
    } else {
        KubeApi::<ConfigMap>::namespaced(client, &api.namespace)
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete the configmap");
    }
}

#[tokio::test]
async fn a_deleted_lock_stops_the_leader_and_the_standby_waits_a_lease_from_the_deletion() {
    let api = Api::start().await;
    for kind in KINDS {
        let name = api.lock_name("deleted");
        let log = api.log_path();
        // The standby has seen the lock held before it is deleted.
        let (leader, standby) = leader_then_standby(&api, kind, &name, "d", &FAST, "0.5").await;
        let deleted_at = now_nanos();
        delete_lock(&api, kind, &name).await;
        // On a real server the leader's next renew gets 409 (its uid precondition fails),
        // on the emulator too (tests/differential.rs holds it to that): it stops its child.
        let (code, stderr) = exit_of(leader, LONG).await;
        assert_eq!(code, 121, "{kind}: {stderr}");
        assert!(stderr.contains("deleted"), "{kind}: says why: {stderr}");
        let (code, stderr) = exit_of(standby, LONG).await;
        assert_eq!(code, 0, "{kind}: {stderr}");
        let lines = read_log(&log);
        assert_eq!(lines.len(), 4, "{kind}: {lines:#?}");
        assert_no_overlap(&lines);
        let started = lines[2].nanos;
        assert!(
            started >= deleted_at + 4_000_000_000,
            "{kind}: the standby started {}ms after the deletion, within the 4s lease",
            (started - deleted_at) / 1_000_000
        );
        assert_eq!(
            lines[2].token,
            lines[0].token + 1,
            "{kind}: the fencing token continues across the re-creation: {lines:#?}"
        );
    }
}

/// Waits until the emulator's request log has an entry that `pred` accepts.
async fn wait_request(
    emu: &kube_emulator::Emulator,
    what: &str,
    pred: impl Fn(&kube_emulator::LogEntry) -> bool,
) {
    let deadline = std::time::Instant::now() + LONG;
    while !emu.request_log().iter().any(&pred) {
        assert!(std::time::Instant::now() < deadline, "never saw {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_copy_whose_last_view_was_free_waits_a_lease_after_a_deletion() {
    // The copy saw the lock free, but its take did not land and it was then cut off; while
    // it was away another took the lock and the lock was deleted. Its view ("free") is
    // stale: the other holder may still run, so the deletion is waited out like any other.
    let api = Api::start().await;
    let Some(emu) = api.emulator("a stale free view and a deletion") else {
        return;
    };
    for kind in KINDS {
        let name = api.lock_name("stale-free");
        let log = api.log_path();
        let _ = std::fs::remove_file(&log);
        let (a_id, b_id) = (format!("sf-a-{kind}"), format!("sf-b-{kind}"));
        let leader = job_candidate(&api, kind, &name, &a_id, &FAST, "1000");
        wait_log(&log, LONG, |l| l.len() == 1).await;
        // The standby's writes are dropped (its watch stays): it will see the lock free but
        // not take it.
        emu.add_fault(Fault::new(Action::Drop).for_client(&b_id).method("PUT"));
        let standby = job_candidate(&api, kind, &name, &b_id, &FAST, "0.2");
        wait_request(emu, "the standby's read", |e| {
            e.client == b_id && e.verb == "get" && e.status == 200
        })
        .await;
        kill(
            Pid::from_raw(leader.id().expect("the leader's pid") as i32),
            Signal::SIGTERM,
        )
        .unwrap();
        let (code, stderr) = exit_of(leader, LONG).await;
        assert_eq!(code, 143, "{kind}: {stderr}");
        wait_request(emu, "the standby's dropped take", |e| {
            e.client == b_id && e.method == "PUT" && e.status == 0
        })
        .await;
        // Cut off entirely (its watch too); meanwhile another holder, then a deletion.
        emu.add_fault(Fault::new(Action::Partition).for_client(&b_id));
        take_lock(&api, kind, &name, "someone-else").await;
        delete_lock(&api, kind, &name).await;
        let back = now_nanos();
        emu.clear_faults();
        let (code, stderr) = exit_of(standby, LONG).await;
        assert_eq!(code, 0, "{kind}: {stderr}");
        let lines = read_log(&log);
        assert_eq!(lines.len(), 4, "{kind}: {lines:#?}");
        let started = lines[2].nanos;
        assert!(
            started >= back + 3_500_000_000,
            "{kind}: the standby started {}ms after it was back, within the 4s lease",
            (started - back) / 1_000_000
        );
    }
}

#[tokio::test]
async fn two_processes_with_one_identity_never_both_lead() {
    let api = Api::start().await;
    for kind in KINDS {
        let name = api.lock_name("twins");
        let log = api.log_path();
        let _ = std::fs::remove_file(&log);
        let first = job_candidate(&api, kind, &name, "same", &FAST, "3");
        wait_log(&log, LONG, |l| l.len() == 1).await;
        // The cron line that fires again while the first job runs, with `--identity $(hostname)`.
        let second = job_candidate(&api, kind, &name, "same", &FAST, "0.5");
        let (c1, _) = exit_of(first, LONG).await;
        let (c2, stderr) = exit_of(second, LONG).await;
        assert_eq!((c1, c2), (0, 0), "{kind}: {stderr}");
        assert!(
            stderr.contains("two processes run with the same --identity"),
            "{kind}: said loudly: {stderr}"
        );
        let lines = read_log(&log);
        assert_eq!(lines.len(), 4, "{kind}: {lines:#?}");
        assert_no_overlap(&lines);
        // Two leaderships under one name are still two: the fencing token moves on.
        assert_eq!(
            lines[2].token,
            lines[0].token + 1,
            "{kind}: the second process's token: {lines:#?}"
        );
    }
}

#[tokio::test]
async fn a_twin_taking_over_a_dead_twins_lease_gets_the_next_token() {
    // The first process dies without releasing: its record (our name, not our write) is
    // waited out and taken. It is a new leadership: storage fenced by the token must be
    // able to tell the two apart.
    let api = Api::start().await;
    for kind in KINDS {
        let name = api.lock_name("dead-twin");
        let log = api.log_path();
        let _ = std::fs::remove_file(&log);
        let first = job_candidate(&api, kind, &name, "same-id", &FAST, "1000");
        wait_log(&log, LONG, |l| l.len() == 1).await;
        let second = job_candidate(&api, kind, &name, "same-id", &FAST, "0.2");
        kill(
            Pid::from_raw(first.id().expect("the first's pid") as i32),
            Signal::SIGKILL,
        )
        .unwrap();
        let _ = exit_of(first, LONG).await;
        let (code, stderr) = exit_of(second, LONG).await;
        assert_eq!(code, 0, "{kind}: {stderr}");
        let lines = read_log(&log);
        assert_no_overlap(&lines);
        let (first_line, last) = (&lines[0], &lines[lines.len() - 1]);
        assert_eq!(
            last.token,
            first_line.token + 1,
            "{kind}: the second leadership's token: {lines:#?}"
        );
    }
}

#[tokio::test]
async fn a_create_that_lands_after_a_deletion_is_not_led_before_the_deletion_is_waited_out() {
    // A's create reaches the store only after A gave up on it. Meanwhile B creates the lock
    // and leads, A reads B's record, and the lock is deleted under B; then A's create lands:
    // A's own record, with A's mark, on a new object. B may still be stopping its job, so A
    // waits a lease from the deletion like any copy that saw it, and leads with a token
    // above B's (found by the simulation in CI, seed 7353976515771255075).
    let api = Api::start().await;
    let Some(emu) = api.emulator("a create carried out after its client gave up") else {
        return;
    };
    for kind in KINDS {
        let name = api.lock_name("late-create");
        let log = api.log_path();
        let _ = std::fs::remove_file(&log);
        let (a_id, b_id) = (format!("lc-a-{kind}"), format!("lc-b-{kind}"));
        // A's call times out after the renew deadline (2 s); its create lands at 4 s.
        emu.add_fault(
            Fault::new(Action::LateRequest { ms: 4000 })
                .for_client(&a_id)
                .method("POST")
                .times(1),
        );
        let a = job_candidate(&api, kind, &name, &a_id, &FAST, "0.5");
        wait_request(emu, "A's first read", |e| {
            e.client == a_id && e.verb == "get" && e.status == 404
        })
        .await;
        let b = job_candidate(&api, kind, &name, &b_id, &FAST, "1000");
        wait_log(&log, LONG, |l| l.len() == 1).await;
        wait_request(emu, "A's read of B's record", |e| {
            e.client == a_id && e.verb == "get" && e.status == 200
        })
        .await;
        let deleted_at = now_nanos();
        delete_lock(&api, kind, &name).await;
        let (code, stderr) = exit_of(b, LONG).await;
        assert_eq!(code, 121, "{kind}: B lost its lock: {stderr}");
        let (code, stderr) = exit_of(a, LONG).await;
        assert_eq!(code, 0, "{kind}: {stderr}");
        let landed = emu
            .request_log()
            .into_iter()
            .find(|e| e.client == a_id && e.method == "POST")
            .map(|e| e.status);
        assert_eq!(landed, Some(201), "{kind}: A's late create landed");
        let lines = read_log(&log);
        assert_eq!(lines.len(), 4, "{kind}: {lines:#?}");
        assert_no_overlap(&lines);
        assert_eq!(lines[2].id, a_id, "{kind}: {lines:#?}");
        assert!(
            lines[2].nanos >= deleted_at + 4_000_000_000,
            "{kind}: A started {}ms after the deletion, within the 4s lease",
            (lines[2].nanos - deleted_at) / 1_000_000
        );
        assert!(
            lines[2].token > lines[0].token,
            "{kind}: A's token is above B's: {lines:#?}"
        );
    }
}

#[tokio::test]
async fn term_during_the_acquiring_write_releases_the_lock_it_landed() {
    let api = Api::start().await;
    let Some(emu) = api.emulator("late answer to the acquiring write") else {
        return;
    };
    for kind in KINDS {
        let name = api.lock_name("term-write");
        let client = format!("tw-{kind}");
        // The create lands at once; its answer comes 1.5s later.
        emu.add_fault(
            Fault::new(Action::LateAnswer { ms: 1500 })
                .for_client(&client)
                .method("POST")
                .times(1),
        );
        let c = candidate(&api, kind, &name, &client, &FAST, &["sleep", "100"]);
        // The write has landed (the object exists); its answer is still on the way.
        let k = if kind == "lease" {
            kube_emulator::Kind::Lease
        } else {
            kube_emulator::Kind::ConfigMap
        };
        let deadline = std::time::Instant::now() + LONG;
        while emu.with_store(|s| s.get(k, &api.namespace, &name)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the write never landed"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        kill(Pid::from_raw(c.id().unwrap() as i32), Signal::SIGTERM).unwrap();
        let (code, stderr) = exit_of(c, LONG).await;
        assert_eq!(code, 143, "{kind}: {stderr}");
        let held = record(&api, kind, &name).await;
        assert_eq!(held.holder_identity, "", "{kind}: released: {held:?}");
        assert!(
            !stderr.contains("child started"),
            "{kind}: no child: {stderr}"
        );
    }
}

/// The lock's record, read the way inspect reads it.
async fn record(api: &Api, kind: &str, name: &str) -> leaderrun::record::LeaderRecord {
    let mut c = leaderrun();
    c.args([
        "inspect",
        "-o",
        "json",
        "--lock",
        kind,
        "--name",
        name,
        "-n",
        &api.namespace,
    ])
    .arg("--kubeconfig")
    .arg(api.kubeconfig("reader"));
    let out = c.output().await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    leaderrun::record::LeaderRecord {
        holder_identity: v["holderIdentity"].as_str().unwrap_or_default().into(),
        leader_transitions: v["leaderTransitions"].as_i64().unwrap_or(-1) as i32,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_missing_namespace_is_an_error_at_once_naming_it() {
    let api = Api::start().await;
    for kind in KINDS {
        let mut c = leaderrun();
        c.arg("--kubeconfig").arg(api.kubeconfig("typo")).args([
            "--lock",
            kind,
            "--name",
            "x",
            "-n",
            "no-such-namespace-typo",
            "--",
            "true",
        ]);
        let t = std::time::Instant::now();
        let out = tokio::time::timeout(LONG, c.output())
            .await
            .unwrap()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(69), "{kind}: {stderr}");
        assert!(
            stderr.contains("namespace \"no-such-namespace-typo\" does not exist"),
            "{kind}: {stderr}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{kind}: at once, not after retries"
        );
        if let Some(emu) = &api.emulator {
            let creates = emu
                .request_log()
                .iter()
                .filter(|r| {
                    r.client == "typo"
                        && r.verb == "create"
                        && r.path.contains(&format!(
                            "{}s",
                            if kind == "lease" {
                                "lease"
                            } else {
                                "configmap"
                            }
                        ))
                })
                .count();
            assert_eq!(creates, 1, "{kind}: one try, no loop");
        }
    }
}

#[tokio::test]
async fn only_term_int_hup_and_quit_end_the_wait() {
    let api = Api::start().await;
    let name = api.lock_name("waiting-signals");
    let holder = job_candidate(&api, "lease", &name, "w-holder", &FAST, "1000");
    wait_log(&api.log_path(), LONG, |l| l.len() == 1).await;
    let mut waiter = job_candidate(&api, "lease", &name, "w-waiter", &FAST, "1");
    let pid = Pid::from_raw(waiter.id().unwrap() as i32);
    wait_standby(&mut waiter).await;
    for sig in [
        Signal::SIGWINCH,
        Signal::SIGCONT,
        Signal::SIGUSR1,
        Signal::SIGURG,
        Signal::SIGUSR2,
    ] {
        kill(pid, sig).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z ")),
        "still waiting after WINCH, CONT, USR1, URG, USR2"
    );
    kill(pid, Signal::SIGHUP).unwrap();
    let (code, _) = exit_of(waiter, LONG).await;
    assert_eq!(code, 129, "HUP ends the wait: 128+1");
    drop(holder);
}

#[tokio::test]
async fn a_silent_watch_is_replaced_and_a_release_seen_within_a_few_retry_periods() {
    let api = Api::start().await;
    let Some(emu) = api.emulator("stalled watch") else {
        return;
    };
    for kind in KINDS {
        let name = api.lock_name("stalled");
        let log = api.log_path();
        let _ = std::fs::remove_file(&log);
        let leader = job_candidate(&api, kind, &name, &format!("st-leader-{kind}"), &FAST, "2");
        wait_log(&log, LONG, |l| l.len() == 1).await;
        let standby_client = format!("st-standby-{kind}");
        let standby = job_candidate(&api, kind, &name, &standby_client, &FAST, "0.2");
        emu.wait_for_request(LONG, |r| r.client == standby_client && r.verb == "watch")
            .await
            .expect("the standby watches");
        // Its watch goes silent (a half-open connection), for longer than the lease.
        emu.add_fault(
            Fault::new(Action::Stall)
                .for_client(&standby_client)
                .lasting(Duration::from_secs(30)),
        );
        assert_eq!(exit_of(leader, LONG).await.0, 0);
        let (code, stderr) = exit_of(standby, LONG).await;
        assert_eq!(code, 0, "{kind}: {stderr}");
        let lines = read_log(&log);
        assert_eq!(lines.len(), 4, "{kind}: {lines:#?}");
        // The release came at the leader's stop; a standby stuck on its watch would wait a
        // whole lease (4s). Three silent retry periods (1.5s) and a read find it sooner.
        let after = Duration::from_nanos((lines[2].nanos - lines[1].nanos) as u64);
        assert!(
            after < Duration::from_millis(3500),
            "{kind}: the standby started {after:?} after the release"
        );
        emu.clear_faults();
    }
}

#[tokio::test]
async fn absurd_times_in_a_record_are_no_panic() {
    let api = Api::start().await;
    let name = api.lock_name("absurd");
    let client = api.client().await;
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client, &api.namespace);
    let cm = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "annotations": {
            "control-plane.alpha.kubernetes.io/leader":
                "{\"holderIdentity\":\"x\",\"leaseDurationSeconds\":2147483647,\"renewTime\":\"+262142-12-31 23:59:59.000000\"}"
        }}
    }))
    .unwrap();
    cms.create(&Default::default(), &cm).await.unwrap();
    let mut c = leaderrun();
    c.args([
        "inspect",
        "--lock",
        "configmap",
        "--name",
        &name,
        "-n",
        &api.namespace,
        "--kubeconfig",
    ])
    .arg(api.kubeconfig("absurd"));
    let out = c.output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "held by its own clock: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, stderr) = exit_of(
        candidate(
            &api,
            "configmap",
            &name,
            "absurd",
            &["--no-wait"],
            &["true"],
        ),
        LONG,
    )
    .await;
    assert_eq!(code, 75, "held, --no-wait: {stderr}");
}

/// A standby the API server refuses (401, then 403) after it has read the lock, as a
/// restarting API server does until its caches are filled (seen on the real cluster: every
/// standby exited 69 and its container restarted). It waits on, and takes over when the
/// leader releases. A refusal before any answer is still a configuration error (rbac.rs).
#[tokio::test]
async fn a_standby_refused_after_it_was_answered_waits_on() {
    let api = Api::start().await;
    let Some(emu) = api.emulator("refused standby") else {
        return;
    };
    let name = api.lock_name("refused");
    let log = api.log_path();
    let leader = job_candidate(&api, "lease", &name, "r-leader", &FAST, "1000");
    wait_log(&log, LONG, |l| l.len() == 1).await;
    let mut standby = job_candidate(&api, "lease", &name, "r-standby", &FAST, "1");
    wait_standby(&mut standby).await;
    for code in [401, 403] {
        let id = emu.add_fault(
            Fault::new(Action::Error {
                code,
                retry_after: None,
            })
            .for_client("r-standby")
            .lasting(Duration::from_secs(3)),
        );
        // Its watch cut: it must read again, and is refused.
        emu.close_watches(Some("r-standby"));
        let deadline = std::time::Instant::now() + LONG;
        while emu.fault_hits(id) < 2 {
            assert!(
                standby.try_wait().expect("try_wait").is_none(),
                "the standby exited on a {code}: {}",
                stderr_of(&standby)
            );
            assert!(
                std::time::Instant::now() < deadline,
                "no request met the {code}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        emu.remove_fault(id);
    }
    assert!(
        standby.try_wait().expect("try_wait").is_none(),
        "{}",
        stderr_of(&standby)
    );
    kill(
        Pid::from_raw(leader.id().expect("pid") as i32),
        Signal::SIGTERM,
    )
    .expect("TERM");
    assert_eq!(exit_of(leader, LONG).await.0, 143);
    let (code, stderr) = exit_of(standby, LONG).await;
    assert_eq!(code, 0, "the standby took over and ran its job: {stderr}");
    assert_no_overlap(&read_log(&log));
}

/// A leader that loses its lock while the API server is away (`--rejoin`), and rejoins, meets
/// the server's refusals once it is back (401 and 403 while its caches fill): it waits on as a
/// standby and takes the lock again. Found on the real cluster (kube-apiserver stopped 25 s): the
/// rejoined copy exited 69 and kubelet restarted its container, since the answers it had had
/// counted only within one round of waiting.
#[tokio::test]
async fn a_rejoined_copy_refused_by_a_restarting_server_waits_on() {
    let api = Api::start().await;
    let Some(emu) = api.emulator("refused after a rejoin") else {
        return;
    };
    let name = api.lock_name("refused-rejoin");
    let log = api.log_path();
    let mut args = FAST.to_vec();
    args.push("--rejoin");
    let mut leader = job_candidate(&api, "lease", &name, "rr-leader", &args, "1000");
    wait_log(&log, LONG, |l| l.len() == 1).await;
    // The server away: every request fails until the renew deadline has passed.
    let away = emu.add_fault(
        Fault::new(Action::Error {
            code: 503,
            retry_after: None,
        })
        .for_client("rr-leader"),
    );
    emu.close_watches(Some("rr-leader"));
    wait_stderr(&mut leader, "rejoining as a standby", LONG).await;
    for code in [401, 403] {
        let id = emu.add_fault(
            Fault::new(Action::Error {
                code,
                retry_after: None,
            })
            .for_client("rr-leader"),
        );
        if code == 401 {
            emu.remove_fault(away);
        }
        let deadline = std::time::Instant::now() + LONG;
        while emu.fault_hits(id) < 2 {
            assert!(
                leader.try_wait().expect("try_wait").is_none(),
                "the rejoined copy exited on a {code}: {}",
                stderr_of(&leader)
            );
            assert!(
                std::time::Instant::now() < deadline,
                "no request met the {code}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        emu.remove_fault(id);
    }
    // Back in touch, it leads again: a new leadership, after the old one's stop.
    let lines = wait_log(&log, LONG, |l| l.len() >= 3).await;
    assert_eq!(
        lines.iter().map(|l| l.what.as_str()).collect::<Vec<_>>(),
        ["start", "stop", "start"]
    );
    kill(
        Pid::from_raw(leader.id().expect("pid") as i32),
        Signal::SIGTERM,
    )
    .expect("TERM");
    let (code, stderr) = exit_of(leader, LONG).await;
    assert_eq!(code, 143, "{stderr}");
    assert_no_overlap(&read_log(&log));
}

/// A standby whose wait for an expired lease ends while the API server is back but refusing
/// (401/403 while its caches fill): its acquiring write, decided on a view read before, is
/// refused once. It pauses, reads again and takes the lock; refused again after a fresh read,
/// it is RBAC's and exits 69 (rbac.rs). Found by the hour's nemesis on the real cluster
/// (kube-apiserver stopped 13 s): two standbys exited 69 and their containers went into back-off.
#[tokio::test]
async fn an_acquiring_write_refused_once_is_tried_again_after_a_read() {
    let api = Api::start().await;
    let Some(emu) = api.emulator("a refused acquiring write") else {
        return;
    };
    for kind in KINDS {
        let name = api.lock_name("refused-write");
        let log = api.log_path();
        let _ = std::fs::remove_file(&log);
        // Left held by a copy that ended (--no-release): the standby takes it a lease later,
        // by a PUT.
        let mut args = FAST.to_vec();
        args.push("--no-release");
        let old = job_candidate(&api, kind, &name, "rw-old", &args, "0");
        assert_eq!(exit_of(old, LONG).await.0, 0, "{kind}");
        let refused = emu.add_fault(
            Fault::new(Action::Error {
                code: 403,
                retry_after: None,
            })
            .for_client("rw-standby")
            .method("PUT")
            .times(1),
        );
        let standby = job_candidate(&api, kind, &name, "rw-standby", &FAST, "1");
        let (code, stderr) = exit_of(standby, LONG).await;
        assert_eq!(code, 0, "{kind}: took the lock and ran its job: {stderr}");
        assert_eq!(
            emu.fault_hits(refused),
            1,
            "{kind}: the write was refused once"
        );
        assert_eq!(
            read_log(&log).len(),
            4,
            "{kind}: two jobs, one after the other"
        );
        assert_no_overlap(&read_log(&log));
        emu.remove_fault(refused);
    }
}
