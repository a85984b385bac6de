//! deploy/'s RBAC on a real kube-apiserver. leaderrun runs as the service account that
//! rbac.yaml (or rbac-configmap.yaml) binds, with a real service-account token (TokenRequest:
//! user `system:serviceaccount:NS:leaderrun`, groups `system:serviceaccounts` and
//! `system:serviceaccounts:NS`), and works with exactly the verbs granted. With one verb taken
//! away it exits with the documented code and a message that names the verb (or, for watch,
//! polls, as documented). And `kubectl apply --dry-run=server` accepts every file in deploy/.
//! Needs `LEADERRUN_TEST_KUBECONFIG` (tests/real-apiserver/run); skips without one.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Event, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ListParams, PostParams};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(60);
const NAME: &str = "nightly-report";

fn deploy_file(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file)
}

fn docs(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(deploy_file(file)).expect("read a deploy file");
    serde_saphyr::from_multiple::<Value>(&text).expect("deploy YAML parses")
}

/// The admin side: a client and the kubeconfig, to make namespaces and service-account ones.
struct Admin {
    client: kube::Client,
    kubeconfig: Value,
    dir: tempfile::TempDir,
}

/// A kube client for the kubeconfig at `path`.
async fn client_from(path: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(path).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kubeconfig");
    kube::Client::try_from(cfg).expect("client")
}

async fn admin(test: &str) -> Option<Admin> {
    let path = real_server(test)?;
    let text = std::fs::read_to_string(&path).expect("read the real kubeconfig");
    let kubeconfig: Value = serde_saphyr::from_str(&text).expect("kubeconfig YAML");
    Some(Admin {
        client: client_from(&path).await,
        kubeconfig,
        dir: tempfile::tempdir().expect("tempdir"),
    })
}

impl Admin {
    async fn namespace(&self, base: &str) -> String {
        let ns = format!("{base}-{:06x}", rand::random::<u32>() & 0xffffff);
        kube::Api::<Namespace>::all(self.client.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("namespace"),
            )
            .await
            .expect("create a namespace");
        ns
    }

    /// Applies `files` from deploy/ to `ns` (their "jobs" namespace replaced), without
    /// `drop_verb` in any rule, and returns a kubeconfig holding the bound service account's token.
    /// Waits until the token authenticates and every granted verb is allowed: the real server
    /// learns of new service accounts and bindings through informers, so they take effect a
    /// little after their create returns (longer on a loaded machine).
    async fn service_account(&self, ns: &str, files: &[&str], drop_verb: Option<&str>) -> PathBuf {
        let mut grants = Vec::new();
        for file in files {
            for mut doc in docs(file) {
                doc["metadata"]["namespace"] = json!(ns);
                if let Some(subjects) = doc.get_mut("subjects").and_then(Value::as_array_mut) {
                    for s in subjects {
                        s["namespace"] = json!(ns);
                    }
                }
                if let (Some(verb), Some(rules)) = (
                    drop_verb,
                    doc.get_mut("rules").and_then(Value::as_array_mut),
                ) {
                    for r in rules.iter_mut() {
                        if let Some(v) = r["verbs"].as_array_mut() {
                            v.retain(|x| x != verb);
                        }
                    }
                    rules.retain(|r| r["verbs"].as_array().is_some_and(|v| !v.is_empty()));
                }
                grants.extend(granted(&doc, ns));
                let pp = PostParams::default();
                let client = self.client.clone();
                let result = match doc["kind"].as_str() {
                    Some("ServiceAccount") => kube::Api::<ServiceAccount>::namespaced(client, ns)
                        .create(&pp, &serde_json::from_value(doc).expect("ServiceAccount"))
                        .await
                        .map(|_| ()),
                    Some("Role") => kube::Api::<Role>::namespaced(client, ns)
                        .create(&pp, &serde_json::from_value(doc).expect("Role"))
                        .await
                        .map(|_| ()),
                    Some("RoleBinding") => kube::Api::<RoleBinding>::namespaced(client, ns)
                        .create(&pp, &serde_json::from_value(doc).expect("RoleBinding"))
                        .await
                        .map(|_| ()),
                    other => panic!("{file}: unexpected kind {other:?}"),
                };
                match result {
                    Ok(()) => {}
                    // The ServiceAccount is in both files.
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => panic!("{file}: {e}"),
                }
            }
        }
        let token = kube::Api::<ServiceAccount>::namespaced(self.client.clone(), ns)
            .create_token_request(
                "leaderrun",
                &PostParams::default(),
                &TokenRequest {
                    spec: Some(TokenRequestSpec {
                        audiences: Some(vec!["https://kubernetes.default.svc".into()]),
                        expiration_seconds: Some(3600),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
            .await
            .expect("a token for the service account")
            .status
            .expect("the token")
            .token;
        let mut kc = self.kubeconfig.clone();
        kc["users"] = json!([{"name": "leaderrun", "user": {"token": token}}]);
        kc["contexts"][0]["context"]["user"] = json!("leaderrun");
        kc["contexts"][0]["context"]["namespace"] = json!(ns);
        let path = self
            .dir
            .path()
            .join(format!("{ns}-{}.kubeconfig", drop_verb.unwrap_or("all")));
        std::fs::write(&path, kc.to_string()).expect("write the kubeconfig");
        wait_until_allowed(&path, &grants).await;
        path
    }

    /// Starts `leaderrun ARGS` with `kubeconfig`, its stderr kept for `wait_stderr`.
    fn spawn_as<S: AsRef<std::ffi::OsStr>>(
        &self,
        kubeconfig: &Path,
        args: &[S],
        label: &str,
    ) -> tokio::process::Child {
        let mut c = leaderrun();
        c.args(args)
            .env("LEADERRUN_KUBECONFIG", kubeconfig)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null());
        spawn_logged(c, self.dir.path(), label)
    }

    /// Runs `leaderrun ARGS` with `kubeconfig` to its end; returns (code, stderr).
    async fn run_as(&self, kubeconfig: &Path, args: &[&str]) -> (i32, String) {
        exit_of(self.spawn_as(kubeconfig, args, "run"), LONG).await
    }

    /// A job that runs until the test calls `go` (which writes the returned path).
    fn gated_job(&self, ns: &str) -> (PathBuf, String) {
        let go = self.dir.path().join(format!("{ns}.go"));
        let job = format!("until [ -e '{}' ]; do sleep 0.05; done", go.display());
        (go, job)
    }

    /// Creates a free lock record as an operator would (so that taking it needs update).
    async fn free_lock(&self, kind: &str, ns: &str) {
        let (path, body) = if kind == "lease" {
            (
                format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"),
                json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": NAME}, "spec": {"holderIdentity": "", "leaseDurationSeconds": 1}}),
            )
        } else {
            (
                format!("/api/v1/namespaces/{ns}/configmaps"),
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": NAME}}),
            )
        };
        let req = http::Request::post(path)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).expect("json"))
            .expect("request");
        self.client
            .request_text(req)
            .await
            .expect("create the lock as admin");
    }
}

/// The resource attributes a Role document grants, one per verb, resource and name.
fn granted(doc: &Value, ns: &str) -> Vec<ResourceAttributes> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    if doc["kind"] != "Role" {
        return out;
    }
    for rule in doc["rules"].as_array().into_iter().flatten() {
        let names = strings(&rule["resourceNames"]);
        let names: Vec<Option<String>> = if names.is_empty() {
            vec![None]
        } else {
            names.into_iter().map(Some).collect()
        };
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    for name in &names {
                        out.push(ResourceAttributes {
                            group: Some(group.clone()),
                            resource: Some(resource.clone()),
                            verb: Some(verb.clone()),
                            name: name.clone(),
                            namespace: Some(ns.to_string()),
                            ..Default::default()
                        });
                    }
                }
            }
        }
    }
    out
}

/// Asks the server, as the kubeconfig's user, whether each grant is allowed, until all are.
async fn wait_until_allowed(kubeconfig: &Path, grants: &[ResourceAttributes]) {
    let reviews = kube::Api::<SelfSubjectAccessReview>::all(client_from(kubeconfig).await);
    let deadline = std::time::Instant::now() + LONG;
    for grant in grants {
        loop {
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(grant.clone()),
                    ..Default::default()
                },
                ..Default::default()
            };
            let answer = reviews.create(&PostParams::default(), &review).await;
            let allowed = matches!(&answer, Ok(r) if r.status.as_ref().is_some_and(|s| s.allowed));
            if allowed {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the service account was never allowed {grant:?}: last answer {answer:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn rbac_file(kind: &str) -> &'static str {
    if kind == "lease" {
        "rbac.yaml"
    } else {
        "rbac-configmap.yaml"
    }
}

#[tokio::test]
async fn with_exactly_the_verbs_granted_run_inspect_force_release_and_events_work() {
    let Some(admin) = admin("real RBAC, all verbs").await else {
        return;
    };
    for kind in KINDS {
        let ns = admin.namespace("rbac").await;
        let kc = admin
            .service_account(&ns, &[rbac_file(kind), "rbac-events.yaml"], None)
            .await;
        let base = ["--lock", kind, "--name", NAME, "-n", &ns];
        let timing = [
            "--lease-duration",
            "4s",
            "--renew-deadline",
            "2s",
            "--retry-period",
            "500ms",
            "--kill-grace",
            "1s",
        ];
        // A leader that creates the lock, and a standby that watches it and takes over. The
        // leader's job ends when the test says so, once the standby is waiting.
        let (go, wait_for_go) = admin.gated_job(&ns);
        let args = |id: &str, job: &[&str]| -> Vec<String> {
            let mut v: Vec<String> = base.iter().chain(&timing).map(|s| s.to_string()).collect();
            v.extend(["--identity", id, "--events", "--"].map(String::from));
            v.extend(job.iter().map(|s| s.to_string()));
            v
        };
        let mut a = admin.spawn_as(&kc, &args("a", &["sh", "-c", &wait_for_go]), "a");
        wait_leader(&mut a).await;
        let mut b = admin.spawn_as(&kc, &args("b", &["true"]), "b");
        wait_standby(&mut b).await;
        std::fs::write(&go, "").expect("tell a's job to end");
        let (a_code, a_err) = exit_of(a, LONG).await;
        let (b_code, b_err) = exit_of(b, LONG).await;
        assert_eq!(a_code, 0, "{kind}: leader as the service account: {a_err}");
        assert_eq!(b_code, 0, "{kind}: standby as the service account: {b_err}");
        for err in [&a_err, &b_err] {
            assert!(
                // Not a bare "403": a log line's timestamp can hold those digits (CI saw
                // 11:14:14.640403Z). A refusal reads "(403 Forbidden)".
                !err.contains("not allowed") && !err.contains("Forbidden"),
                "{kind}: nothing was refused: {err}"
            );
            assert!(
                !err.contains("could not record an event"),
                "{kind}: events were recorded: {err}"
            );
        }
        let events = kube::Api::<Event>::namespaced(admin.client.clone(), &ns)
            .list(&ListParams::default())
            .await
            .expect("list events as admin");
        assert!(
            events.items.iter().any(|e| e
                .message
                .as_deref()
                .is_some_and(|m| m.contains("b became leader"))),
            "{kind}: the events were written"
        );
        let (code, err) = admin
            .run_as(&kc, &["inspect", "--lock", kind, "--name", NAME, "-n", &ns])
            .await;
        assert_eq!(
            code, 3,
            "{kind}: inspect as the service account sees a free lock: {err}"
        );
        let (code, err) = admin
            .run_as(
                &kc,
                &[
                    "force-release",
                    "--yes",
                    "--lock",
                    kind,
                    "--name",
                    NAME,
                    "-n",
                    &ns,
                ],
            )
            .await;
        assert_eq!(
            code, 0,
            "{kind}: force-release as the service account: {err}"
        );
    }
}

#[tokio::test]
async fn with_one_verb_taken_away_the_exit_code_and_message_name_it() {
    let Some(admin) = admin("real RBAC, one verb taken away").await else {
        return;
    };
    for kind in KINDS {
        let base = ["--lock", kind, "--name", NAME];
        let resource = if kind == "lease" {
            "leases"
        } else {
            "configmaps"
        };
        // Without get: nothing can start; run and inspect exit 69 and name the verb.
        let ns = admin.namespace("rbac-noget").await;
        let kc = admin
            .service_account(&ns, &[rbac_file(kind)], Some("get"))
            .await;
        for args in [vec!["run"], vec!["inspect"]] {
            let mut a: Vec<&str> = args.clone();
            a.extend(base);
            a.extend(["-n", &ns]);
            if args == ["run"] {
                a.extend(["--", "true"]);
            }
            let (code, err) = admin.run_as(&kc, &a).await;
            assert_eq!(code, 69, "{kind} {args:?} without get: {err}");
            assert!(
                err.contains(&format!(
                    "Grant the identity RBAC verb \"get\" on resource \"{resource}\""
                )),
                "{kind} {args:?}: the message names the verb: {err}"
            );
        }
        // Without create: a lock that does not exist yet cannot be taken.
        let ns = admin.namespace("rbac-nocreate").await;
        let kc = admin
            .service_account(&ns, &[rbac_file(kind)], Some("create"))
            .await;
        let (code, err) = admin
            .run_as(
                &kc,
                &["--lock", kind, "--name", NAME, "-n", &ns, "--", "true"],
            )
            .await;
        assert_eq!(code, 69, "{kind} without create: {err}");
        assert!(
            err.contains("RBAC verb \"create\""),
            "{kind}: names create: {err}"
        );
        // Without update: an existing lock cannot be taken, nor released by force.
        let ns = admin.namespace("rbac-noupdate").await;
        let kc = admin
            .service_account(&ns, &[rbac_file(kind)], Some("update"))
            .await;
        admin.free_lock(kind, &ns).await;
        let (code, err) = admin
            .run_as(
                &kc,
                &["--lock", kind, "--name", NAME, "-n", &ns, "--", "true"],
            )
            .await;
        assert_eq!(code, 69, "{kind} without update: {err}");
        assert!(
            err.contains("RBAC verb \"update\""),
            "{kind}: names update: {err}"
        );
        // Without watch: a standby polls instead, as documented, and still takes over.
        let ns = admin.namespace("rbac-nowatch").await;
        let kc = admin
            .service_account(&ns, &[rbac_file(kind)], Some("watch"))
            .await;
        let timing = [
            "--lease-duration",
            "4s",
            "--renew-deadline",
            "2s",
            "--retry-period",
            "500ms",
            "--kill-grace",
            "1s",
        ];
        let mut a_args: Vec<&str> =
            vec!["--lock", kind, "--name", NAME, "-n", &ns, "--identity", "a"];
        a_args.extend(timing);
        // a's job ends once b has said that it polls.
        let (go, wait_for_go) = admin.gated_job(&ns);
        a_args.extend(["--", "sh", "-c", &wait_for_go]);
        let mut a = admin.spawn_as(&kc, &a_args, "a");
        // b must find the lock held, so that it has to poll.
        wait_leader(&mut a).await;
        let mut b_args: Vec<&str> =
            vec!["--lock", kind, "--name", NAME, "-n", &ns, "--identity", "b"];
        b_args.extend(timing);
        b_args.extend(["--", "true"]);
        let mut b = admin.spawn_as(&kc, &b_args, "b");
        wait_stderr(&mut b, "watching is not allowed; polling", LONG).await;
        std::fs::write(&go, "").expect("tell a's job to end");
        let (a_code, a_err) = exit_of(a, LONG).await;
        let (b_code, b_err) = exit_of(b, LONG).await;
        assert_eq!(
            (a_code, b_code),
            (0, 0),
            "{kind} without watch:\n{a_err}\n{b_err}"
        );
        assert!(
            b_err.contains("watching is not allowed; polling"),
            "{kind}: the standby says it polls: {b_err}"
        );
        // --events without rbac-events.yaml: a warning, and the job still runs.
        let (code, err) = admin
            .run_as(
                &kc,
                &[
                    "--lock", kind, "--name", NAME, "-n", &ns, "--events", "--", "true",
                ],
            )
            .await;
        assert_eq!(code, 0, "{kind}: events are best effort: {err}");
        assert!(
            err.contains("could not record an event"),
            "{kind}: says so: {err}"
        );
    }
}

#[tokio::test]
async fn every_deploy_file_passes_a_server_side_dry_run() {
    let Some(admin) = admin("kubectl apply --dry-run=server").await else {
        return;
    };
    let Some(kubectl) = kubectl() else {
        assert!(
            std::env::var("LEADERRUN_REQUIRE_REAL_CLIENTS").as_deref() != Ok("1"),
            "no kubectl, and LEADERRUN_REQUIRE_REAL_CLIENTS=1"
        );
        skip("dry run", "no kubectl");
        return;
    };
    let kc = admin.dir.path().join("admin.kubeconfig");
    std::fs::write(&kc, admin.kubeconfig.to_string()).expect("write kubeconfig");
    // The manifests name namespace "jobs".
    let _ = kube::Api::<Namespace>::all(admin.client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "jobs"}})).expect("namespace"),
        )
        .await;
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_file(""))
        .expect("deploy/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    for f in files {
        let out = std::process::Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&kc)
            .args(["apply", "--dry-run=server", "-f"])
            .arg(&f)
            .output()
            .expect("run kubectl");
        let err = String::from_utf8_lossy(&out.stderr);
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name == "cronjob.yaml" && !out.status.success() {
            // batch/v1 CronJob is GA from Kubernetes 1.21; the test server is 1.20.
            assert!(
                err.contains("no matches for kind \"CronJob\" in version \"batch/v1\""),
                "cronjob.yaml fails only for want of batch/v1 on 1.20: {err}"
            );
            eprintln!("NOTE cronjob.yaml: batch/v1 CronJob needs Kubernetes 1.21 or later; the test server is 1.20.2");
            continue;
        }
        assert!(
            out.status.success(),
            "{name}: kubectl apply --dry-run=server: {err}"
        );
    }
}

/// `--service` as the service account of rbac.yaml and rbac-service.yaml: a leader points the
/// Service at itself, takes its address out and releases, a standby takes over and does the
/// same, and nothing is refused. Without get on services, run exits 69 and names the verb.
#[tokio::test]
async fn service_rbac_is_enough_for_service_and_its_absence_is_named() {
    use k8s_openapi::api::core::v1::{Endpoints, Service};
    let Some(admin) = admin("real RBAC, --service").await else {
        return;
    };
    let ns = admin.namespace("rbac-svc").await;
    let kc = admin
        .service_account(&ns, &["rbac.yaml", "rbac-service.yaml"], None)
        .await;
    let mut svc: Service =
        serde_json::from_value(docs("service.yaml")[0].clone()).expect("a Service");
    svc.metadata.namespace = Some(ns.clone());
    kube::Api::<Service>::namespaced(admin.client.clone(), &ns)
        .create(&PostParams::default(), &svc)
        .await
        .expect("create the Service as admin");
    let endpoints = || async {
        kube::Api::<Endpoints>::namespaced(admin.client.clone(), &ns)
            .get_opt(NAME)
            .await
            .expect("read the Endpoints as admin")
            .and_then(|e| e.subsets)
            .unwrap_or_default()
            .into_iter()
            .flat_map(|s| s.addresses.unwrap_or_default())
            .map(|a| a.ip)
            .collect::<Vec<_>>()
    };
    let (go, wait_for_go) = admin.gated_job(&ns);
    let args = |id: &str, ip: &str, job: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "--lock",
            "lease",
            "--name",
            NAME,
            "-n",
            &ns,
            "--identity",
            id,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(["--service", NAME, "--pod-ip", ip, "--"].map(String::from));
        v.extend(job.iter().map(|s| s.to_string()));
        v
    };
    let mut a = admin.spawn_as(
        &kc,
        &args("a", "10.1.0.1", &["sh", "-c", &wait_for_go]),
        "a",
    );
    wait_stderr(&mut a, "the Service now routes to this pod", LONG).await;
    assert_eq!(endpoints().await, ["10.1.0.1"]);
    let (go_b, wait_for_go_b) = admin.gated_job(&format!("{ns}-b"));
    let mut b = admin.spawn_as(
        &kc,
        &args("b", "10.1.0.2", &["sh", "-c", &wait_for_go_b]),
        "b",
    );
    wait_standby(&mut b).await;
    std::fs::write(&go, "").expect("tell a's job to end");
    let (a_code, a_err) = exit_of(a, LONG).await;
    wait_stderr(&mut b, "the Service now routes to this pod", LONG).await;
    assert_eq!(endpoints().await, ["10.1.0.2"]);
    std::fs::write(&go_b, "").expect("tell b's job to end");
    let (b_code, b_err) = exit_of(b, LONG).await;
    assert_eq!((a_code, b_code), (0, 0), "a: {a_err}\nb: {b_err}");
    for err in [&a_err, &b_err] {
        assert!(
            err.contains("the Service now routes to this pod")
                && err.contains("the Service no longer routes to this pod")
                && !err.contains("Forbidden")
                && !err.contains("cannot point"),
            "each leader pointed the Service at itself and took its address out: {err}"
        );
    }
    assert!(endpoints().await.is_empty(), "no leader, no address");

    let ns = admin.namespace("rbac-svc-noget").await;
    let kc = admin
        .service_account(&ns, &["rbac.yaml", "rbac-service.yaml"], Some("get"))
        .await;
    let a = [
        "--lock",
        "lease",
        "--name",
        NAME,
        "-n",
        &ns,
        "--service",
        NAME,
    ];
    let mut a = a.to_vec();
    a.extend(["--pod-ip", "10.1.0.1", "--", "true"]);
    let (code, err) = admin.run_as(&kc, &a).await;
    assert_eq!(code, 69, "without get: {err}");
    assert!(
        err.contains("Grant the identity RBAC verb \"get\" on resource \"services\""),
        "the message names the verb and resource: {err}"
    );
}
