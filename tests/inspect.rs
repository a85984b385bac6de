//! `inspect` and `force-release` against held, free, expired and missing locks of both kinds.

use crate::common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api as KubeApi, ObjectMeta, PostParams};
use kube_emulator::{Action, Fault};
use leaderrun::record::{LeaderRecord, LEADER_ANNOTATION};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(60);

/// Writes a record as another client would.
async fn put_record(api: &Api, kind: &str, name: &str, r: &LeaderRecord) {
    let client = api.client().await;
    if kind == "lease" {
        let l = Lease {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(r.to_lease_spec(None)),
        };
        KubeApi::<Lease>::namespaced(client, &api.namespace)
            .create(&PostParams::default(), &l)
            .await
            .expect("create lease");
    } else {
        let c = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: Some(
                    [
                        (LEADER_ANNOTATION.to_string(), r.to_annotation()),
                        ("keep".to_string(), "me".to_string()),
                    ]
                    .into(),
                ),
                ..Default::default()
            },
            data: Some([("k".to_string(), "v".to_string())].into()),
            ..Default::default()
        };
        KubeApi::<ConfigMap>::namespaced(client, &api.namespace)
            .create(&PostParams::default(), &c)
            .await
            .expect("create configmap");
    }
}

fn held(by: &str, renewed_secs_ago: i64, transitions: i32) -> LeaderRecord {
    let t = chrono::Utc::now() - chrono::Duration::seconds(renewed_secs_ago);
    LeaderRecord {
        holder_identity: by.into(),
        lease_duration_seconds: 15,
        acquire_time: Some(t),
        renew_time: Some(t),
        leader_transitions: transitions,
    }
}

#[tokio::test]
async fn inspect_reports_held_free_expired_and_missing() {
    let api = Api::start().await;
    for kind in KINDS {
        let cases = [
            ("held", held("host-a", 2, 4), 0, "held"),
            (
                "free",
                LeaderRecord {
                    lease_duration_seconds: 1,
                    ..Default::default()
                },
                3,
                "free",
            ),
            ("old", held("host-b", 600, 2), 3, "expired"),
        ];
        for (base, record, code, state) in cases {
            let name = api.lock_name(base);
            put_record(&api, kind, &name, &record).await;
            let (c, out, err) = tool(
                &api,
                &["inspect", "--lock", kind, "--name", &name, "-o", "json"],
            )
            .await;
            assert_eq!(c, code, "{kind} {base}: {err}");
            let v: Value = serde_json::from_str(&out).expect("one JSON object");
            assert_eq!(v["state"], state);
            assert_eq!(v["exists"], true);
            assert_eq!(v["kind"], kind);
            assert_eq!(v["name"], name);
            assert_eq!(v["leaderTransitions"], record.leader_transitions);
            assert_eq!(v["holderIdentity"], record.holder_identity);
            for key in [
                "acquireTime",
                "renewTime",
                "acquiredAgoSeconds",
                "renewedAgoSeconds",
                "leaseDurationSeconds",
                "timeLeftSeconds",
                "resourceVersion",
            ] {
                assert!(v.get(key).is_some(), "schema has {key}: {v}");
            }
            let (c, out, _) = tool(&api, &["inspect", "--lock", kind, "--name", &name]).await;
            assert_eq!(c, code);
            assert!(out.contains(&format!("state:        {state}")), "{out}");
            if state == "held" {
                assert!(
                    out.contains("host-a") && out.contains("ago") && out.contains("record's clock"),
                    "{out}"
                );
            }
        }
        let (c, out, _) = tool(
            &api,
            &[
                "inspect",
                "--lock",
                kind,
                "--name",
                "never-made",
                "-o",
                "json",
            ],
        )
        .await;
        assert_eq!(c, 4);
        assert_eq!(
            serde_json::from_str::<Value>(&out).unwrap()["state"],
            "missing"
        );
    }
}

#[tokio::test]
async fn inspect_reads_the_python_clients_records() {
    let api = Api::start().await;
    let name = api.lock_name("py");
    let cms = KubeApi::<ConfigMap>::namespaced(api.client().await, &api.namespace);
    let text = r#"{"holderIdentity": "py-candidate-1", "leaseDurationSeconds": "17", "acquireTime": "2026-11-25 02:49:18.686520", "renewTime": "2026-11-25 02:49:20.123456"}"#;
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            annotations: Some([(LEADER_ANNOTATION.to_string(), text.to_string())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let (_, out, err) = tool(
        &api,
        &[
            "inspect",
            "--lock",
            "configmap",
            "--name",
            &name,
            "-o",
            "json",
        ],
    )
    .await;
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    assert_eq!(v["holderIdentity"], "py-candidate-1");
    assert_eq!(v["leaseDurationSeconds"], 17);
    assert_eq!(v["renewTime"], "2026-11-25T02:49:20.123456Z");
}

#[tokio::test]
async fn an_api_error_is_an_error_not_free() {
    let api = Api::start().await;
    let Some(emu) = api.emulator("api error") else {
        return;
    };
    emu.add_fault(
        Fault::new(Action::Error {
            code: 403,
            retry_after: None,
        })
        .for_client("operator"),
    );
    let (c, _, err) = tool(&api, &["inspect", "--name", "x"]).await;
    assert_eq!(c, 69, "{err}");
    assert!(
        err.contains("Grant the identity RBAC verb \"get\" on resource \"leases\""),
        "{err}"
    );
}

#[tokio::test]
async fn force_release_checks_holder_and_confirmation_and_keeps_transitions() {
    let api = Api::start().await;
    for kind in KINDS {
        let name = api.lock_name("stuck");
        put_record(&api, kind, &name, &held("gone-host", 1, 7)).await;
        let (c, _, err) = tool(&api, &["force-release", "--lock", kind, "--name", &name]).await;
        assert_eq!(c, 5, "refused without --holder or --yes: {err}");
        assert!(err.contains("--yes"));
        let (c, _, err) = tool(
            &api,
            &[
                "force-release",
                "--lock",
                kind,
                "--name",
                &name,
                "--holder",
                "someone-else",
            ],
        )
        .await;
        assert_eq!(c, 5);
        assert!(err.contains("gone-host"), "{err}");
        let (c, out, err) = tool(
            &api,
            &[
                "force-release",
                "--lock",
                kind,
                "--name",
                &name,
                "--holder",
                "gone-host",
            ],
        )
        .await;
        assert_eq!(c, 0, "{err}");
        assert!(
            out.contains("previous holder \"gone-host\"") && out.contains("transitions 7"),
            "{out}"
        );
        let (_, out, _) = tool(
            &api,
            &["inspect", "--lock", kind, "--name", &name, "-o", "json"],
        )
        .await;
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (v["state"].as_str(), v["leaderTransitions"].as_i64()),
            (Some("free"), Some(7))
        );
        if kind == "configmap" {
            let cm = KubeApi::<ConfigMap>::namespaced(api.client().await, &api.namespace)
                .get(&name)
                .await
                .unwrap();
            assert_eq!(cm.data.unwrap()["k"], "v");
            assert_eq!(cm.metadata.annotations.unwrap()["keep"], "me");
        }
        // The next leader's fencing token continues from 7.
        let (c, _, err) = tool(
            &api,
            &[
                "run",
                "--lock",
                kind,
                "--name",
                &name,
                "--",
                "sh",
                "-c",
                "test \"$LEADERRUN_FENCING_TOKEN\" = 8",
            ],
        )
        .await;
        assert_eq!(c, 0, "fencing token 8 after 7: {err}");
    }
}

#[tokio::test]
async fn force_release_reports_a_concurrent_write() {
    let api = Api::start().await;
    let Some(emu) = api.emulator("409 during force-release") else {
        return;
    };
    let name = api.lock_name("race");
    put_record(&api, "lease", &name, &held("h", 1, 1)).await;
    emu.add_fault(
        Fault::new(Action::Error {
            code: 409,
            retry_after: None,
        })
        .for_client("operator")
        .method("PUT")
        .times(1),
    );
    let (c, _, err) = tool(&api, &["force-release", "--name", &name, "--yes"]).await;
    assert_eq!(c, 6, "{err}");
    assert!(err.contains("409 Conflict"), "{err}");
    let puts = emu
        .request_log()
        .iter()
        .filter(|r| r.method == "PUT")
        .count();
    assert_eq!(puts, 1, "not retried blindly");
}

#[tokio::test]
async fn after_force_release_the_leader_stops_and_a_waiting_candidate_takes_over_at_once() {
    let api = Api::start().await;
    for kind in KINDS {
        let name = api.lock_name("fr");
        // A long lease: the takeover must not wait it out.
        let args = [
            "--lease-duration",
            "60s",
            "--renew-deadline",
            "10s",
            "--retry-period",
            "1s",
        ];
        let (leader, standby) = leader_then_standby(&api, kind, &name, "fr", &args, "0").await;
        let t = std::time::Instant::now();
        let (c, _, err) = tool(
            &api,
            &[
                "force-release",
                "--lock",
                kind,
                "--name",
                &name,
                "--holder",
                "fr-leader",
            ],
        )
        .await;
        assert_eq!(c, 0, "{err}");
        let (code, stderr) = exit_of(leader, LONG).await;
        assert_eq!(
            code, 121,
            "{kind}: the old leader stops its child at its next renew: {stderr}"
        );
        assert!(
            stderr.contains("cleared the holder"),
            "the log says why: {stderr}"
        );
        assert_eq!(exit_of(standby, LONG).await.0, 0);
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no lease duration was waited out: {:?}",
            t.elapsed()
        );
        // force-release overrides the lease: the old child may run on until the
        // old leader's next renew, so only the order and the tokens are checked.
        let lines = read_log(&api.log_path());
        let starts: Vec<(String, i64)> = lines
            .iter()
            .filter(|l| l.what == "start")
            .map(|l| (l.id.clone(), l.token))
            .collect();
        assert_eq!(
            starts,
            [("fr-leader".to_string(), 0), ("fr-standby".to_string(), 1)],
            "{kind}: {lines:#?}"
        );
    }
}

#[tokio::test]
async fn inspect_watch_prints_a_line_per_change_until_interrupted() {
    use tokio::io::AsyncBufReadExt;
    let api = Api::start().await;
    let name = api.lock_name("watched");
    put_record(
        &api,
        "lease",
        &name,
        &LeaderRecord {
            lease_duration_seconds: 1,
            ..Default::default()
        },
    )
    .await;
    let mut c = leaderrun();
    c.args([
        "inspect",
        "--watch",
        "-o",
        "json",
        "--name",
        &name,
        "-n",
        &api.namespace,
    ])
    .arg("--kubeconfig")
    .arg(api.kubeconfig("watcher"));
    c.stdout(std::process::Stdio::piped());
    let mut watcher = c.spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(watcher.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(first["state"], "free");
    let (code, _, _) = tool(
        &api,
        &[
            "run",
            "--name",
            &name,
            "--identity",
            "w-leader",
            "--",
            "true",
        ],
    )
    .await;
    assert_eq!(code, 0);
    let mut holders = Vec::new();
    while holders.len() < 2 {
        let line = tokio::time::timeout(LONG, lines.next_line())
            .await
            .expect("a line per change")
            .unwrap()
            .expect("still watching");
        let v: Value = serde_json::from_str(&line).unwrap();
        holders.push(v["holderIdentity"].as_str().unwrap().to_string());
    }
    assert_eq!(holders, ["w-leader", ""], "acquired, then released");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(watcher.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(LONG, watcher.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        status.code(),
        Some(3),
        "the exit status of the first look (free)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn inspect_without_a_name_lists_the_locks_leaderrun_manages() {
    let api = Api::start().await;
    let ok = api.lock_name("listed-ok");
    let failed = api.lock_name("listed-failed");
    let foreign = api.lock_name("listed-foreign");
    let c = candidate(&api, "lease", &ok, "lister-a", &FAST, &["true"]);
    assert_eq!(exit_of(c, LONG).await.0, 0);
    let c = candidate(
        &api,
        "configmap",
        &failed,
        "lister-b",
        &FAST,
        &["sh", "-c", "exit 2"],
    );
    assert_eq!(exit_of(c, LONG).await.0, 2);
    // Written by another client: not leaderrun's, not listed.
    put_record(&api, "lease", &foreign, &held("someone", 0, 1)).await;

    let (code, out, err) = tool(&api, &["inspect", "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).expect("JSON");
    let locks = v["locks"].as_array().expect("a list of locks");
    let find = |name: &str| locks.iter().find(|l| l["name"] == name).cloned();
    let a = find(&ok).unwrap_or_else(|| panic!("{ok} not listed: {out}"));
    assert_eq!(a["kind"], "lease");
    assert_eq!(a["state"], "free");
    assert_eq!(a["lastRun"]["exitCode"], 0, "{a}");
    let b = find(&failed).unwrap_or_else(|| panic!("{failed} not listed: {out}"));
    assert_eq!(b["kind"], "configmap");
    assert_eq!(b["lastRun"]["exitCode"], 2, "{b}");
    assert!(
        find(&foreign).is_none(),
        "an object leaderrun did not create is listed: {out}"
    );

    let (code, text, err) = tool(&api, &["inspect"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("LAST RUN"), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains(&failed))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("configmap") && line.contains("exited 2, lister-b"),
        "{line}"
    );
    assert!(!text.contains(&foreign), "{text}");

    // -A: every namespace the identity may list.
    let (code, out, err) = tool(&api, &["inspect", "-A", "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&ok) && out.contains(&failed), "{out}");
}

#[tokio::test]
async fn every_subcommand_but_inspect_needs_a_name() {
    for sub in [
        vec!["run", "--", "true"],
        vec!["force-release", "--yes"],
        vec!["step-down"],
    ] {
        let out = leaderrun()
            .args(&sub)
            .output()
            .await
            .expect("run leaderrun");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{sub:?}: {err}");
        assert!(err.contains("--name"), "{sub:?}: {err}");
    }
}
