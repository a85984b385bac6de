//! Bad input and a misbehaving API: a clear message, the documented exit code,
//! no request where none should be made, and never a panic.

use crate::common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api as KubeApi, ObjectMeta, PostParams};
use kube_emulator::{Action, Fault};

const LONG: Duration = Duration::from_secs(60);

async fn run_raw(args: &[&str]) -> (i32, String) {
    let out = tokio::time::timeout(LONG, leaderrun().args(args).output())
        .await
        .expect("in time")
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code().unwrap_or(-1), stderr)
}

#[tokio::test]
async fn bad_values_are_usage_errors_without_requests() {
    let api = Api::start().await;
    let Some(emu) = api.emulator("request log") else {
        return;
    };
    let kc = api.kubeconfig("x");
    let kc = kc.to_str().unwrap();
    let cases: [(&[&str], &str); 7] = [
        (&["--retry-period=-1s"], "negative"),
        (&["--renew-deadline", "0s"], "greater than zero"),
        (&["--kill-grace", "1x"], "unknown unit"),
        (&["--lease-duration", "15"], "no unit"),
        (&["--identity", ""], "--identity must not be empty"),
        (&["--lock", "etcd"], "invalid value 'etcd'"),
        (&["--conflict-exit-code", "9"], "--no-wait"),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["--kubeconfig", kc, "--name", "ok"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "true"]);
        let (code, stderr) = run_raw(&args).await;
        assert_eq!(code, 64, "{extra:?}: {stderr}");
        assert!(stderr.contains(needle), "{extra:?}: {stderr}");
    }
    let long = "x".repeat(2000);
    let (code, stderr) = run_raw(&[
        "--kubeconfig",
        kc,
        "--name",
        "ok",
        "--identity",
        &long,
        "--",
        "true",
    ])
    .await;
    assert_eq!(code, 64);
    assert!(stderr.contains("2000 bytes"), "{stderr}");
    let (code, stderr) =
        run_raw(&["--kubeconfig", kc, "--name", &"a".repeat(254), "--", "true"]).await;
    assert_eq!(code, 64);
    assert!(stderr.contains("longer than 253"), "{stderr}");
    assert!(emu.request_log().is_empty(), "{:?}", emu.request_log());
}

#[tokio::test]
async fn kubeconfig_problems_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = run_raw(&[
        "--kubeconfig",
        "/nonexistent/kubeconfig",
        "--name",
        "x",
        "--",
        "true",
    ])
    .await;
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("/nonexistent/kubeconfig"), "{stderr}");
    let corrupt = dir.path().join("corrupt");
    std::fs::write(&corrupt, "clusters: [ {{{ not yaml").unwrap();
    let (code, stderr) = run_raw(&[
        "--kubeconfig",
        corrupt.to_str().unwrap(),
        "--name",
        "x",
        "--",
        "true",
    ])
    .await;
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("cannot read kubeconfig"), "{stderr}");
    let api = Api::start().await;
    let kc = api.kubeconfig("x");
    let (code, stderr) = run_raw(&[
        "--kubeconfig",
        kc.to_str().unwrap(),
        "--context",
        "nope",
        "--name",
        "x",
        "--",
        "true",
    ])
    .await;
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("nope"), "{stderr}");
}

#[tokio::test]
async fn an_unreachable_api_is_retried_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kc");
    let port = free_port();
    std::fs::write(&kc, format!("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user: {{}}\n")).unwrap();
    let (code, stderr) = run_raw(&[
        "--kubeconfig",
        kc.to_str().unwrap(),
        "--name",
        "x",
        "--retry-period",
        "500ms",
        "--wait-timeout",
        "3s",
        "--",
        "true",
    ])
    .await;
    assert_eq!(code, 124, "gave up at --wait-timeout: {stderr}");
    let tries = stderr.matches("cannot read the lock; retrying").count();
    assert!(tries >= 2, "retried: {stderr}");
    assert!(
        stderr.contains("cannot reach the API server to get the lease default/x"),
        "{stderr}"
    );
}

#[tokio::test]
async fn refused_requests_name_what_to_grant() {
    let api = Api::start().await;
    let Some(emu) = api.emulator("401/403") else {
        return;
    };
    emu.add_fault(
        Fault::new(Action::Error {
            code: 403,
            retry_after: None,
        })
        .for_client("no-rbac"),
    );
    let (code, stderr) = exit_of(
        candidate(&api, "lease", "x", "no-rbac", &[], &["true"]),
        LONG,
    )
    .await;
    assert_eq!(code, 69, "{stderr}");
    assert!(stderr.contains("Grant the identity RBAC verb \"get\" on resource \"leases\" in API group \"coordination.k8s.io\" in namespace \"default\""), "{stderr}");
    emu.add_fault(
        Fault::new(Action::Error {
            code: 403,
            retry_after: None,
        })
        .for_client("no-create")
        .method("POST"),
    );
    let (code, stderr) = exit_of(
        candidate(&api, "configmap", "y", "no-create", &[], &["true"]),
        LONG,
    )
    .await;
    assert_eq!(code, 69);
    assert!(
        stderr.contains("verb \"create\" on resource \"configmaps\" in API group \"\""),
        "{stderr}"
    );
    emu.add_fault(
        Fault::new(Action::Error {
            code: 401,
            retry_after: None,
        })
        .for_client("bad-token"),
    );
    let (code, stderr) = exit_of(
        candidate(&api, "lease", "z", "bad-token", &[], &["true"]),
        LONG,
    )
    .await;
    assert_eq!(code, 69);
    assert!(
        stderr.contains("401") && stderr.contains("credentials"),
        "{stderr}"
    );
}

#[tokio::test]
async fn answers_that_are_not_json_are_errors_not_panics() {
    let api = Api::start().await;
    let Some(emu) = api.emulator("raw answers") else {
        return;
    };
    emu.add_fault(
        Fault::new(Action::Raw {
            code: 200,
            body: "<html>proxy login</html>".into(),
        })
        .for_client("html"),
    );
    let (code, stderr) = exit_of(candidate(&api, "lease", "x", "html", &[], &["true"]), LONG).await;
    assert_eq!(code, 69, "{stderr}");
    assert!(stderr.contains("not a valid lease"), "{stderr}");
    // A 502 from a proxy is transient: retried until the wait timeout.
    emu.add_fault(
        Fault::new(Action::Raw {
            code: 502,
            body: "Bad Gateway".into(),
        })
        .for_client("proxy"),
    );
    let (code, stderr) = exit_of(
        candidate(
            &api,
            "lease",
            "x",
            "proxy",
            &["--retry-period", "500ms", "--wait-timeout", "2s"],
            &["true"],
        ),
        LONG,
    )
    .await;
    assert_eq!(code, 124, "{stderr}");
    assert!(stderr.contains("502"), "{stderr}");
}

#[tokio::test]
async fn a_lease_with_missing_spec_fields_is_free() {
    let api = Api::start().await;
    let name = api.lock_name("bare");
    let leases = KubeApi::<Lease>::namespaced(api.client().await, &api.namespace);
    leases
        .create(
            &PostParams::default(),
            &Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    ..Default::default()
                },
                spec: None,
            },
        )
        .await
        .unwrap();
    let (code, stderr) = exit_of(
        candidate(
            &api,
            "lease",
            &name,
            "x",
            &[],
            &["sh", "-c", "test \"$LEADERRUN_FENCING_TOKEN\" = 1"],
        ),
        LONG,
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
}

#[tokio::test]
async fn without_any_kubeconfig_outside_a_cluster_it_says_what_to_do() {
    let home = tempfile::tempdir().unwrap();
    let mut c = leaderrun();
    // No $KUBECONFIG, an empty home, and none of the in-cluster service variables.
    c.env("HOME", home.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .args(["--name", "x", "--", "true"]);
    let out = tokio::time::timeout(LONG, c.output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("no kubeconfig found") && stderr.contains("--kubeconfig"),
        "{stderr}"
    );
    let mut c = leaderrun();
    c.env("HOME", home.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .args(["--name", "x", "--context", "prod", "--", "true"]);
    let out = c.output().await.unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("--context \"prod\" was given but no kubeconfig was found"));
}
