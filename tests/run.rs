//! `leaderrun run` scenarios, for both lock kinds, against the emulator (or a
//! real cluster with LEADERRUN_TEST_KUBECONFIG).

use crate::common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api as KubeApi, ObjectMeta, PostParams};
use kube_emulator::{Action, Fault};
use leaderrun::record::{LeaderRecord, LEADER_ANNOTATION};

const LONG: Duration = Duration::from_secs(60);

async fn record(api: &Api, kind: &str, name: &str) -> Option<LeaderRecord> {
    let client = api.client().await;
    if kind == "lease" {
        let l = KubeApi::<Lease>::namespaced(client, &api.namespace)
            .get_opt(name)
            .await
            .expect("get lease")?;
        Some(LeaderRecord::from_lease_spec(&l.spec.unwrap_or_default()))
    } else {
        let c = KubeApi::<ConfigMap>::namespaced(client, &api.namespace)
            .get_opt(name)
            .await
            .expect("get configmap")?;
        let text = c
            .metadata
            .annotations
            .unwrap_or_default()
            .get(LEADER_ANNOTATION)
            .cloned()?;
        Some(LeaderRecord::from_annotation(&text).expect("our own record reads back"))
    }
}

#[tokio::test]
async fn one_candidate_runs_the_child_returns_its_code_and_releases() {
    let api = Api::start().await;
    for kind in KINDS {
        let name = api.lock_name("one");
        let c = candidate(&api, kind, &name, "solo", &[], &["sh", "-c", "test \"$LEADERRUN_FENCING_TOKEN\" = 0 && test \"$LEADERRUN_NAME\" = \"$0\" && exit 3", &name]);
        let (code, stderr) = exit_of(c, LONG).await;
        assert_eq!(
            code, 3,
            "{kind}: the child's exit code, and the env checks passed: {stderr}"
        );
        assert!(stderr.contains("became leader"), "{stderr}");
        let r = record(&api, kind, &name).await.expect("the lock exists");
        assert_eq!(r.holder_identity, "", "{kind}: released");
        assert_eq!(r.lease_duration_seconds, 1);
        assert_eq!(r.leader_transitions, 0);
        // The object it created says who manages it (for listing by selector).
        let labels = labels(&api, kind, &name).await;
        assert_eq!(
            labels
                .get(leaderrun::lock::MANAGED_BY.0)
                .map(String::as_str),
            Some(leaderrun::lock::MANAGED_BY.1),
            "{kind}: {labels:?}"
        );
    }
}

async fn labels(api: &Api, kind: &str, name: &str) -> std::collections::BTreeMap<String, String> {
    let client = api.client().await;
    let meta = if kind == "lease" {
        KubeApi::<Lease>::namespaced(client, &api.namespace)
            .get(name)
            .await
            .expect("get lease")
            .metadata
    } else {
        KubeApi::<ConfigMap>::namespaced(client, &api.namespace)
            .get(name)
            .await
            .expect("get configmap")
            .metadata
    };
    meta.labels.unwrap_or_default()
}

#[tokio::test]
async fn three_candidates_never_overlap_and_each_standby_takes_over() {
    let api = Api::start().await;
    for kind in KINDS {
        let name = api.lock_name("three");
        let _ = std::fs::remove_file(api.log_path());
        let cs: Vec<_> = ["c1", "c2", "c3"]
            .iter()
            .map(|id| job_candidate(&api, kind, &name, id, &[], "1"))
            .collect();
        for c in cs {
            let (code, stderr) = exit_of(c, LONG).await;
            assert_eq!(code, 0, "{kind}: {stderr}");
        }
        let lines = read_log(&api.log_path());
        assert_eq!(lines.len(), 6, "{kind}: three runs: {lines:#?}");
        assert_no_overlap(&lines);
        let tokens: Vec<i64> = lines
            .iter()
            .filter(|l| l.what == "start")
            .map(|l| l.token)
            .collect();
        assert_eq!(
            tokens,
            [0, 1, 2],
            "{kind}: fencing tokens strictly increase"
        );
    }
}

#[tokio::test]
async fn a_release_is_seen_well_under_a_retry_period() {
    let api = Api::start().await;
    for kind in KINDS {
        let name = api.lock_name("fast");
        let _ = std::fs::remove_file(api.log_path());
        let leader = job_candidate(&api, kind, &name, "leader", &["--retry-period", "2s"], "1");
        wait_log(&api.log_path(), LONG, |l| l.len() == 1).await;
        let standby = job_candidate(&api, kind, &name, "standby", &["--retry-period", "2s"], "0");
        assert_eq!(exit_of(leader, LONG).await.0, 0);
        assert_eq!(exit_of(standby, LONG).await.0, 0);
        let lines = read_log(&api.log_path());
        assert_no_overlap(&lines);
        let gap = Duration::from_nanos((lines[2].nanos - lines[1].nanos) as u64);
        assert!(gap < Duration::from_secs(1), "{kind}: the standby started {gap:?} after the leader's child ended; a watch makes it far less than the 2s retry period");
    }
}

#[tokio::test]
async fn a_partitioned_leader_stops_its_child_before_a_standby_starts() {
    let api = Api::start().await;
    let Some(emu) = api.emulator("partition") else {
        return;
    };
    for kind in KINDS {
        let name = api.lock_name("part");
        let (leader, standby) = leader_then_standby(&api, kind, &name, "p", &FAST, "0").await;
        let fault = emu.add_fault(Fault::new(Action::Partition).for_client("p-leader"));
        let (code, stderr) = exit_of(leader, LONG).await;
        assert_eq!(code, 121, "{kind}: leadership lost: {stderr}");
        assert!(stderr.contains("lost leadership"), "{stderr}");
        assert_eq!(exit_of(standby, LONG).await.0, 0);
        emu.remove_fault(fault);
        let lines = read_log(&api.log_path());
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert_no_overlap(&lines);
        assert_eq!(
            (lines[1].what.as_str(), lines[1].id.as_str()),
            ("stop", "p-leader")
        );
        assert_eq!(lines[2].token, 1);
        // TERM by the renew deadline (2s) from the last renew that reached the lock,
        // and well before the lease (4s) from it could run out.
        let renewed = last_change_by(emu, "p-leader").expect("the leader wrote");
        let stopped = Duration::from_nanos((lines[1].nanos - renewed) as u64);
        assert!(
            stopped < Duration::from_millis(2500),
            "{kind}: the child was stopped {stopped:?} after the last renew; the renew deadline is 2s"
        );
    }
}

#[tokio::test]
async fn a_renew_that_changed_nothing_does_not_extend_the_leaders_deadline() {
    let api = Api::start().await;
    let Some(emu) = api.emulator("no-op renew") else {
        return;
    };
    let name = api.lock_name("noop");
    let _ = std::fs::remove_file(api.log_path());
    // FAST, but renewing every 700ms: a no-op renew then comes 700ms after the
    // change, well clear of the time signal delivery may take.
    let timing = FAST.map(|a| if a == "500ms" { "700ms" } else { a });
    let leader = job_candidate(&api, "configmap", &name, "n-leader", &timing, "1000");
    wait_log(&api.log_path(), LONG, |l| l.len() == 1).await;
    // A ConfigMap record carries seconds: renewing every 700ms, some renews would rewrite
    // the record of the renew before within the same second, a no-op no follower sees.
    // Those are not sent at all (renewTime only ever moves forward). Cut the leader off
    // right after a renew, so that the next tick falls in the same second.
    let give_up = tokio::time::Instant::now() + LONG;
    let versions = loop {
        let versions: Vec<String> = emu
            .request_log()
            .into_iter()
            .filter(|r| r.client == "n-leader" && r.verb == "update" && r.status == 200)
            .map(|r| r.resource_version)
            .collect();
        if versions.len() >= 4 {
            break versions;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "the leader renewed: {versions:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(
        versions.windows(2).all(|w| w[0] != w[1]),
        "no renew rewrote the same record: {versions:?}"
    );
    let fault = emu.add_fault(Fault::new(Action::Partition).for_client("n-leader"));
    let (code, stderr) = exit_of(leader, LONG).await;
    emu.remove_fault(fault);
    assert_eq!(code, 121, "leadership lost: {stderr}");
    assert!(
        stderr.contains("use --retry-period 1s or more"),
        "the short retry period is flagged: {stderr}"
    );
    let changed = last_change_by(emu, "n-leader").expect("the leader wrote");
    let lines = read_log(&api.log_path());
    let stop = lines
        .iter()
        .find(|l| l.what == "stop")
        .expect("the child was stopped");
    // The renew deadline (2s) counts from the last renew that changed the lock,
    // which is when followers started counting; the no-op came 700ms later.
    let after = Duration::from_nanos((stop.nanos - changed) as u64);
    assert!(
        after < Duration::from_millis(2350),
        "the child was stopped {after:?} after the last renew that changed the lock; the deadline is 2s"
    );
}

#[tokio::test]
async fn renew_errors_stop_the_child_at_the_deadline_not_after_kube_retries() {
    let api = Api::start().await;
    let Some(emu) = api.emulator("persistent 503") else {
        return;
    };
    let name = api.lock_name("503");
    let leader = job_candidate(&api, "lease", &name, "r-leader", &FAST, "1000");
    wait_log(&api.log_path(), LONG, |l| l.len() == 1).await;
    // kube would retry a 503 for minutes by default; leaderrun must give up at its deadline.
    emu.add_fault(
        Fault::new(Action::Error {
            code: 503,
            retry_after: None,
        })
        .for_client("r-leader")
        .method("PUT"),
    );
    let t = std::time::Instant::now();
    let (code, _) = exit_of(leader, LONG).await;
    assert_eq!(code, 121);
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "stopped after {:?}",
        t.elapsed()
    );
    let puts_after = emu
        .request_log()
        .iter()
        .filter(|r| r.client == "r-leader" && r.method == "PUT" && r.status == 503)
        .count();
    assert!(
        (2..=20).contains(&puts_after),
        "a few renew tries within the 2s deadline, no retry storm: {puts_after}"
    );
}

#[tokio::test]
async fn no_wait_and_wait_timeout_exit_with_their_codes() {
    let api = Api::start().await;
    for kind in KINDS {
        let name = api.lock_name("busy");
        let _ = std::fs::remove_file(api.log_path());
        let leader = job_candidate(&api, kind, &name, "holder", &[], "1000");
        wait_log(&api.log_path(), LONG, |l| l.len() == 1).await;
        let (code, _) = exit_of(
            candidate(&api, kind, &name, "nw", &["--no-wait"], &["true"]),
            LONG,
        )
        .await;
        assert_eq!(code, 75, "{kind}: default conflict code");
        let (code, _) = exit_of(
            candidate(
                &api,
                kind,
                &name,
                "nw2",
                &["--no-wait", "--conflict-exit-code", "9"],
                &["true"],
            ),
            LONG,
        )
        .await;
        assert_eq!(code, 9);
        let (code, _) = exit_of(
            candidate(
                &api,
                kind,
                &name,
                "wt",
                &["--wait-timeout", "1s"],
                &["true"],
            ),
            LONG,
        )
        .await;
        assert_eq!(code, 124, "{kind}: wait timeout");
        let lines = read_log(&api.log_path());
        assert_eq!(lines.len(), 1, "{kind}: no other child ran: {lines:#?}");
        // TERM to leaderrun reaches the child; it exits 143 (its trap), leaderrun returns that and releases.
        let pid = leader.id().expect("running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let (code, stderr) = exit_of(leader, LONG).await;
        assert_eq!(code, 143, "{kind}: {stderr}");
        assert_eq!(
            read_log(&api.log_path()).len(),
            2,
            "the child logged its stop"
        );
        assert_eq!(record(&api, kind, &name).await.unwrap().holder_identity, "");
    }
}

#[tokio::test]
async fn keep_after_exit_holds_the_lock_and_no_release_leaves_it() {
    let api = Api::start().await;
    for kind in KINDS {
        let name = api.lock_name("keep");
        let first = candidate(
            &api,
            kind,
            &name,
            "cron-a",
            &["--keep-after-exit", "5s"],
            &[
                "sh",
                "-c",
                "echo ran >> \"$0\"",
                api.log_path().to_str().unwrap(),
            ],
        );
        wait_log(&api.log_path(), LONG, |_| {
            std::fs::read_to_string(api.log_path())
                .unwrap_or_default()
                .lines()
                .count()
                == 1
        })
        .await;
        let (code, _) = exit_of(
            candidate(&api, kind, &name, "cron-b", &["--no-wait"], &["true"]),
            LONG,
        )
        .await;
        assert_eq!(code, 75, "{kind}: a late copy does not run the job again");
        let r = record(&api, kind, &name).await.unwrap();
        assert_eq!(
            r.holder_identity, "cron-a",
            "{kind}: still held after the child's exit"
        );
        let (code, _) = exit_of(first, LONG).await;
        assert_eq!(code, 0);
        assert_eq!(
            record(&api, kind, &name).await.unwrap().holder_identity,
            "",
            "{kind}: released when the window ends"
        );
        let (code, _) = exit_of(
            candidate(&api, kind, &name, "cron-c", &["--no-wait"], &["true"]),
            LONG,
        )
        .await;
        assert_eq!(
            code, 0,
            "{kind}: after the window the next run gets the lock"
        );
        let _ = std::fs::remove_file(api.log_path());
    }
    let name = api.lock_name("norel");
    let (code, _) = exit_of(
        candidate(&api, "configmap", &name, "nr", &["--no-release"], &["true"]),
        LONG,
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(
        record(&api, "configmap", &name)
            .await
            .unwrap()
            .holder_identity,
        "nr"
    );
}

#[tokio::test]
async fn no_wait_confirms_a_lock_abandoned_long_ago_and_takes_it() {
    let api = Api::start().await;
    for kind in KINDS {
        let name = api.lock_name("stale");
        // Left by a copy that died ten minutes ago without releasing.
        let t = chrono::Utc::now() - chrono::Duration::minutes(10);
        let stale = LeaderRecord {
            holder_identity: "crashed".into(),
            lease_duration_seconds: 4,
            acquire_time: Some(t),
            renew_time: Some(t),
            leader_transitions: 3,
        };
        let client = api.client().await;
        if kind == "lease" {
            let l = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    ..Default::default()
                },
                spec: Some(stale.to_lease_spec(None)),
            };
            KubeApi::<Lease>::namespaced(client, &api.namespace)
                .create(&PostParams::default(), &l)
                .await
                .unwrap();
        } else {
            let c = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    annotations: Some(
                        [(LEADER_ANNOTATION.to_string(), stale.to_annotation())].into(),
                    ),
                    ..Default::default()
                },
                ..Default::default()
            };
            KubeApi::<ConfigMap>::namespaced(client, &api.namespace)
                .create(&PostParams::default(), &c)
                .await
                .unwrap();
        }
        let t0 = std::time::Instant::now();
        let (code, stderr) = exit_of(
            candidate(
                &api,
                kind,
                &name,
                "next-day",
                &[&["--no-wait"][..], &FAST[..]].concat(),
                &["sh", "-c", "test \"$LEADERRUN_FENCING_TOKEN\" = 4"],
            ),
            LONG,
        )
        .await;
        assert_eq!(code, 0, "{kind}: {stderr}");
        assert!(
            t0.elapsed() >= Duration::from_secs(4),
            "{kind}: it waited one lease duration of its own observation first"
        );
    }
}

#[tokio::test]
async fn an_unreadable_configmap_record_is_reported_and_never_overwritten() {
    let api = Api::start().await;
    let name = api.lock_name("corrupt");
    let cms = KubeApi::<ConfigMap>::namespaced(api.client().await, &api.namespace);
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            annotations: Some(
                [
                    (LEADER_ANNOTATION.to_string(), "not json".to_string()),
                    ("other".to_string(), "kept".to_string()),
                ]
                .into(),
            ),
            ..Default::default()
        },
        data: Some([("k".to_string(), "v".to_string())].into()),
        ..Default::default()
    };
    let before = cms.create(&PostParams::default(), &cm).await.unwrap();
    let (code, stderr) = exit_of(
        candidate(&api, "configmap", &name, "x", &[], &["true"]),
        LONG,
    )
    .await;
    assert_eq!(code, 69, "{stderr}");
    assert!(
        stderr.contains(&format!("configmap {}/{name}", api.namespace))
            && stderr.contains("not JSON")
            && stderr.contains("will not overwrite"),
        "{stderr}"
    );
    let after = cms.get(&name).await.unwrap();
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "not written"
    );
}

#[tokio::test]
async fn configmap_lock_leaves_data_and_other_annotations_alone() {
    let api = Api::start().await;
    let name = api.lock_name("shared");
    let cms = KubeApi::<ConfigMap>::namespaced(api.client().await, &api.namespace);
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            annotations: Some([("other".to_string(), "kept".to_string())].into()),
            ..Default::default()
        },
        data: Some([("k".to_string(), "v".to_string())].into()),
        ..Default::default()
    };
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let (code, _) = exit_of(
        candidate(&api, "configmap", &name, "x", &[], &["true"]),
        LONG,
    )
    .await;
    assert_eq!(code, 0);
    let after = cms.get(&name).await.unwrap();
    assert_eq!(after.data.unwrap()["k"], "v");
    let ann = after.metadata.annotations.unwrap();
    assert_eq!(ann["other"], "kept");
    assert!(ann.contains_key(LEADER_ANNOTATION));
}

#[tokio::test]
async fn bad_settings_are_rejected_before_any_api_call() {
    let api = Api::start().await;
    let Some(emu) = api.emulator("no request made") else {
        return;
    };
    let cases: [(&[&str], &str); 4] = [
        (&["--lease-duration", "12s"], "--renew-deadline"),
        (&["--retry-period", "9s"], "--retry-period"),
        (&["--lease-duration", "0s"], "greater than zero"),
        (&["--lease-duration", "soon"], "not a duration"),
    ];
    for (args, needle) in cases {
        let (code, stderr) = exit_of(
            candidate(&api, "lease", "ok-name", "x", args, &["true"]),
            LONG,
        )
        .await;
        assert_eq!(code, 64, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    let (code, stderr) = exit_of(
        candidate(&api, "lease", "Bad_Name", "x", &[], &["true"]),
        LONG,
    )
    .await;
    assert_eq!(code, 64);
    assert!(stderr.contains("lock name"), "{stderr}");
    let mut c = leaderrun();
    c.arg("--kubeconfig").arg(api.kubeconfig("x")).args([
        "--name",
        "x",
        "--namespace",
        "Bad_NS",
        "--",
        "true",
    ]);
    let out = c.output().await.unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid namespace"));
    let mut c = leaderrun();
    c.args(["--name", "x", "--"]);
    let out = c.output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(64),
        "a missing command is a usage error"
    );
    assert!(
        emu.request_log().is_empty(),
        "no request was made: {:?}",
        emu.request_log()
    );
}

#[tokio::test]
async fn with_watch_forbidden_a_standby_polls_and_still_takes_over() {
    let api = Api::start().await;
    let Some(emu) = api.emulator("watch forbidden") else {
        return;
    };
    let name = api.lock_name("nowatch");
    emu.add_fault(
        Fault::new(Action::Error {
            code: 403,
            retry_after: None,
        })
        .for_client("poller")
        .path_contains("watch="),
    );
    let leader = job_candidate(
        &api,
        "lease",
        &name,
        "w-leader",
        &["--retry-period", "1s"],
        "1",
    );
    wait_log(&api.log_path(), LONG, |l| l.len() == 1).await;
    let standby = job_candidate(
        &api,
        "lease",
        &name,
        "poller",
        &["--retry-period", "1s"],
        "0",
    );
    assert_eq!(exit_of(leader, LONG).await.0, 0);
    let (code, stderr) = exit_of(standby, LONG).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("polling"), "it says it polls: {stderr}");
    let lines = read_log(&api.log_path());
    assert_no_overlap(&lines);
    let watches = emu
        .request_log()
        .iter()
        .filter(|r| r.client == "poller" && r.verb == "watch")
        .count();
    assert_eq!(watches, 1, "a forbidden watch is not retried");
}

#[tokio::test]
async fn the_bearer_token_never_appears_in_logs() {
    let api = Api::start().await;
    let Some(emu) = api.emulator("token in logs") else {
        return;
    };
    let token = "s3cr3t-token-do-not-log";
    let kc = api.dir.path().join("secret-kubeconfig");
    std::fs::write(&kc, emu.kubeconfig(Some(token), "default")).unwrap();
    // Every level of every crate, and a failure path (401) that logs errors.
    emu.add_fault(
        Fault::new(Action::Error {
            code: 401,
            retry_after: None,
        })
        .times(1),
    );
    for args in [
        &["--name", "tok", "-vv"][..],
        &["--name", "tok", "-vv", "--log-format", "json"][..],
    ] {
        let mut c = leaderrun();
        c.env("RUST_LOG", "trace")
            .arg("--kubeconfig")
            .arg(&kc)
            .args(args)
            .args(["--", "true"]);
        let out = c.output().await.unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains(token), "the token leaked into the logs");
        assert!(all.contains("tok"), "logs were written: {all}");
    }
}

#[tokio::test]
async fn a_sigkilled_leaders_child_dies_and_the_standby_waits_out_the_lease() {
    let api = Api::start().await;
    for kind in KINDS {
        let name = api.lock_name("kill9");
        let _ = std::fs::remove_file(api.log_path());
        let pidfile = api.dir.path().join(format!("{kind}.pid"));
        let cmd = format!(
            "echo $$ > {}; exec {} {} 1000",
            pidfile.display(),
            api.job().display(),
            api.log_path().display()
        );
        let leader = candidate(&api, kind, &name, "k-leader", &FAST, &["sh", "-c", &cmd]);
        wait_log(&api.log_path(), LONG, |l| l.len() == 1).await;
        let mut standby = job_candidate(&api, kind, &name, "k-standby", &FAST, "0");
        wait_standby(&mut standby).await;
        let child_pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let killed_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(leader.id().unwrap() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let mut leader = leader;
        // Not `exit_of`: the job's own `sleep` outlives it (no parent-death signal is
        // inherited by grandchildren) and keeps the output pipes open.
        let status = tokio::time::timeout(LONG, leader.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.code(), None, "killed by a signal");
        // The parent-death signal kills the child; it is gone within moments.
        let gone = (0..500).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(child_pid), None).is_err()
        });
        assert!(gone, "{kind}: the child died with its leaderrun");
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(child_pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        assert_eq!(exit_of(standby, LONG).await.0, 0);
        let lines = read_log(&api.log_path());
        let start = lines
            .iter()
            .find(|l| l.id == "k-standby" && l.what == "start")
            .expect("the standby ran");
        // Not before the lease ran out from the leader's last renew that changed the
        // lock: on the emulator its log gives that renew (arrival, a little before the
        // write); elsewhere, it was at most the renew deadline (2s) before the kill.
        let last_renew = api
            .emulator
            .as_ref()
            .and_then(|e| last_change_by(e, "k-leader"))
            .unwrap_or(killed_at - 2_000_000_000);
        let waited = Duration::from_nanos((start.nanos - last_renew) as u64);
        assert!(
            waited >= Duration::from_secs(4),
            "{kind}: took over {waited:?} after the leader's last renew, before the 4s lease ran out"
        );
    }
}

#[tokio::test]
async fn writes_to_other_fields_of_the_lock_do_not_postpone_a_takeover() {
    let api = Api::start().await;
    let client = api.client().await;
    for kind in KINDS {
        let name = api.lock_name("busy");
        let _ = std::fs::remove_file(api.log_path());
        // The leader's job ends and it leaves the lock held, to expire.
        let mut args = FAST.to_vec();
        args.push("--no-release");
        let leader = job_candidate(&api, kind, &name, "w-leader", &args, "1");
        wait_log(&api.log_path(), LONG, |l| l.len() == 1).await;
        let standby = job_candidate(&api, kind, &name, "w-standby", &FAST, "0");
        assert_eq!(exit_of(leader, LONG).await.0, 0);
        // Another client keeps labelling the object (an app using the ConfigMap's
        // data would look the same) far more often than the 4s lease, for up to 20s.
        let patch = |i: u32| {
            kube::api::Patch::Merge(serde_json::json!({
                "metadata": {"labels": {"touched": i.to_string()}}
            }))
        };
        let pp = kube::api::PatchParams::default();
        let started = |lines: &[Line]| lines.iter().any(|l| l.id == "w-standby");
        let mut writes = 0;
        while writes < 100 && !started(&read_log(&api.log_path())) {
            if kind == "lease" {
                KubeApi::<Lease>::namespaced(client.clone(), &api.namespace)
                    .patch(&name, &pp, &patch(writes))
                    .await
                    .expect("label the lease");
            } else {
                KubeApi::<ConfigMap>::namespaced(client.clone(), &api.namespace)
                    .patch(&name, &pp, &patch(writes))
                    .await
                    .expect("label the configmap");
            }
            writes += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            started(&read_log(&api.log_path())),
            "{kind}: the standby took over while the object kept changing ({writes} writes)"
        );
        assert!(
            writes >= 3,
            "{kind}: the writes went on during the wait: {writes}"
        );
        assert_eq!(exit_of(standby, LONG).await.0, 0);
    }
}

#[tokio::test]
async fn another_writer_taking_the_lock_stops_the_leaders_child() {
    let api = Api::start().await;
    for kind in KINDS {
        let name = api.lock_name("intruder");
        let _ = std::fs::remove_file(api.log_path());
        let leader = job_candidate(&api, kind, &name, "i-leader", &FAST, "1000");
        wait_log(&api.log_path(), LONG, |l| l.len() == 1).await;
        take_lock(&api, kind, &name, "intruder").await;
        let (code, stderr) = exit_of(leader, LONG).await;
        assert_eq!(code, 121, "{kind}: {stderr}");
        assert!(
            stderr.contains("intruder"),
            "the log names the new holder: {stderr}"
        );
        let lines = read_log(&api.log_path());
        assert_eq!(
            lines.last().map(|l| l.what.as_str()),
            Some("stop"),
            "{kind}: the child was stopped: {lines:#?}"
        );
    }
}

#[tokio::test]
async fn signals_reach_the_child_and_grandchildren_then_the_lock_is_released() {
    let api = Api::start().await;
    for (kind, sig) in [
        ("lease", "TERM"),
        ("configmap", "INT"),
        ("lease", "HUP"),
        ("configmap", "USR1"),
        ("lease", "USR2"),
        ("configmap", "PWR"),
    ] {
        let name = api.lock_name("sig");
        let log = api.dir.path().join(format!("sig-{sig}.log"));
        // The grandchild runs in the foreground of the child shell, so INT is not
        // ignored in it (a shell ignores INT in background jobs).
        let script = format!(
            "trap 'echo child-{sig} >> {log}; exit 7' {sig}; sh -c 'trap \"echo grandchild-{sig} >> {log}; exit 0\" {sig}; echo ready >> {log}; while :; do sleep 0.05; done'",
            log = log.display()
        );
        let c = candidate(&api, kind, &name, "s-leader", &[], &["sh", "-c", &script]);
        let pid = c.id().unwrap() as i32;
        let deadline = std::time::Instant::now() + LONG;
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("ready")
        {
            assert!(std::time::Instant::now() < deadline, "the job started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let signal: nix::sys::signal::Signal = format!("SIG{sig}").parse().unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).unwrap();
        let (code, stderr) = exit_of(c, LONG).await;
        assert_eq!(
            code, 7,
            "{sig}: leaderrun exits with the child's status: {stderr}"
        );
        let seen = std::fs::read_to_string(&log).unwrap();
        assert!(
            seen.contains(&format!("child-{sig}")) && seen.contains(&format!("grandchild-{sig}")),
            "{sig}: {seen}"
        );
        assert_eq!(
            record(&api, kind, &name).await.unwrap().holder_identity,
            "",
            "{sig}: released"
        );
    }
}

#[tokio::test]
async fn a_missing_or_unexecutable_command_is_127_or_126_and_the_lock_is_released() {
    let api = Api::start().await;
    let not_exec = api.dir.path().join("not-executable.sh");
    std::fs::write(&not_exec, "#!/bin/sh\nexit 0\n").unwrap();
    for kind in KINDS {
        for (cmd, want, says) in [
            ("no-such-command-xyz", 127, "command not found"),
            (not_exec.to_str().unwrap(), 126, "not executable"),
        ] {
            let name = api.lock_name("spawn");
            let (code, stderr) =
                exit_of(candidate(&api, kind, &name, "x", &[], &[cmd]), LONG).await;
            assert_eq!(code, want, "{kind} {cmd}: {stderr}");
            assert!(stderr.contains(says), "{stderr}");
            assert_eq!(
                record(&api, kind, &name).await.unwrap().holder_identity,
                "",
                "{kind}: released"
            );
        }
    }
}

#[tokio::test]
async fn the_leader_renews_with_one_put_per_retry_period_and_no_get() {
    let api = Api::start().await;
    let Some(emu) = api.emulator("request counting") else {
        return;
    };
    for kind in KINDS {
        let name = api.lock_name("quiet");
        let id = format!("q-{kind}");
        let (code, _) = exit_of(
            job_candidate(&api, kind, &name, &id, &["--retry-period", "500ms"], "3"),
            LONG,
        )
        .await;
        assert_eq!(code, 0);
        let mine: Vec<_> = emu
            .request_log()
            .into_iter()
            .filter(|r| r.client == id)
            .collect();
        let count = |verb: &str| mine.iter().filter(|r| r.verb == verb).count();
        // One read before acquiring; none while renewing. The release may need one
        // more if a renew was in flight when the child exited (its answer is lost).
        assert!((1..=2).contains(&count("get")), "{kind}: {mine:#?}");
        assert_eq!(count("create"), 1);
        // 3s of leading at 500ms, plus the release; jitter-free for the leader. A ConfigMap
        // record holds whole seconds, so its renews write only when the second changes: the
        // 3s enter 3 new seconds, the last of which may come after the child's exit.
        let least = if kind == "lease" { 4 } else { 3 };
        assert!(
            (least..=9).contains(&count("update")),
            "{kind}: {} updates",
            count("update")
        );
    }
}
