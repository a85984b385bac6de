//! deploy/: the manifests parse, and the RBAC rules grant exactly the requests
//! leaderrun makes (from the emulator's request log of full runs).

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use serde_json::Value;

const LONG: Duration = Duration::from_secs(60);

fn docs(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy")
            .join(file),
    )
    .unwrap();
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{file} is not valid YAML: {e}"))
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

/// (verb, resource, restricted to these names or None for any).
fn rules(role: &Value) -> Vec<(String, String, Option<Vec<String>>)> {
    let mut out = Vec::new();
    for r in role["rules"].as_array().unwrap() {
        let names = r
            .get("resourceNames")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|n| n.as_str().unwrap().to_string()).collect());
        for v in r["verbs"].as_array().unwrap() {
            for res in r["resources"].as_array().unwrap() {
                out.push((
                    v.as_str().unwrap().to_string(),
                    res.as_str().unwrap().to_string(),
                    names.clone(),
                ));
            }
        }
    }
    out
}

#[test]
fn manifests_parse_and_fit_together() {
    let rbac = docs("rbac.yaml");
    assert_eq!(rbac.len(), 3);
    let binding = find(&rbac, "RoleBinding");
    assert_eq!(
        binding["roleRef"]["name"],
        find(&rbac, "Role")["metadata"]["name"]
    );
    assert_eq!(
        binding["subjects"][0]["name"],
        find(&rbac, "ServiceAccount")["metadata"]["name"]
    );
    let dep = &docs("deployment.yaml")[0];
    assert_eq!(dep["spec"]["replicas"], 3);
    let pod = &dep["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "leaderrun");
    let c = &pod["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    let cmd: Vec<&str> = c["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(cmd[0], "leaderrun");
    assert!(cmd
        .windows(2)
        .any(|w| w == ["--health-addr", "0.0.0.0:8080"]));
    // The command line parses with the real CLI.
    let args = leaderrun::cli::with_default_subcommand(cmd.iter().map(Into::into).collect());
    assert!(<leaderrun::cli::Cli as clap::Parser>::try_parse_from(args).is_ok());
    let cron = &docs("cronjob.yaml")[0];
    let cc: Vec<&str> = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        ["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let args = leaderrun::cli::with_default_subcommand(cc.iter().map(Into::into).collect());
    assert!(
        <leaderrun::cli::Cli as clap::Parser>::try_parse_from(args).is_ok(),
        "{cc:?}"
    );
    // A duplicate that stood aside exits 0, so it is a Complete Job rather than a Failed one.
    assert!(
        cc.windows(2).any(|w| w == ["--conflict-exit-code", "0"]),
        "{cc:?}"
    );
    // Every copy is Ready, so an ordinary rolling update: one at a time, never fewer Ready.
    let rolling = &dep["spec"]["strategy"]["rollingUpdate"];
    assert_eq!(
        (
            rolling["maxSurge"].as_i64(),
            rolling["maxUnavailable"].as_i64()
        ),
        (Some(1), Some(0))
    );
    // --service: the Service of service.yaml, without a selector, its target port the
    // worker's, and POD_IP from the downward API.
    assert!(
        cmd.windows(2).any(|w| w == ["--service", "nightly-report"]),
        "{cmd:?}"
    );
    assert!(
        cmd.contains(&"--rejoin"),
        "a loss does not restart the container: {cmd:?}"
    );
    let pod_ip = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "POD_IP");
    assert_eq!(
        pod_ip.map(|e| &e["valueFrom"]["fieldRef"]["fieldPath"]),
        Some(&Value::from("status.podIP"))
    );
    let svc = &docs("service.yaml")[0];
    assert_eq!(svc["metadata"]["name"], "nightly-report");
    assert!(
        svc["spec"].get("selector").is_none(),
        "no selector: leaderrun keeps the endpoints"
    );
    let http = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "http")
        .expect("an http port");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], http["containerPort"]);
    assert_eq!(docs("rbac-configmap.yaml").len(), 3);
    // --events needs create on events, granted apart (rbac-events.yaml) to the same account.
    let events = docs("rbac-events.yaml");
    assert_eq!(
        rules(find(&events, "Role")),
        vec![("create".to_string(), "events".to_string(), None)]
    );
    assert_eq!(
        find(&events, "RoleBinding")["subjects"][0]["name"],
        find(&rbac, "ServiceAccount")["metadata"]["name"]
    );
}

/// cronjob-1.20.yaml is cronjob.yaml in batch/v1beta1 (Kubernetes 1.20 and older), nothing more.
#[test]
fn the_1_20_cronjob_differs_only_in_its_api_version() {
    let mut current = docs("cronjob.yaml")[0].clone();
    let old = docs("cronjob-1.20.yaml")[0].clone();
    assert_eq!(current["apiVersion"], "batch/v1");
    assert_eq!(old["apiVersion"], "batch/v1beta1");
    current["apiVersion"] = old["apiVersion"].clone();
    assert_eq!(current, old);
}

/// Runs what a deployment does (acquire by create, renew, follow with a watch,
/// take over, release, inspect, force-release) and checks each request against the Role.
async fn check_rbac_covers_requests(kind: &str, file: &str, resource: &str) {
    let api = Api::start().await;
    let Some(emu) = api.emulator("RBAC against the request log") else {
        return;
    };
    let name = "nightly-report";
    let a = job_candidate(&api, kind, name, "a", &["--retry-period", "500ms"], "2");
    wait_log(&api.log_path(), LONG, |l| l.len() == 1).await;
    let b = job_candidate(&api, kind, name, "b", &["--retry-period", "500ms"], "1");
    assert_eq!(exit_of(a, LONG).await.0, 0);
    assert_eq!(exit_of(b, LONG).await.0, 0);
    let (code, _) = exit_of(
        candidate(
            &api,
            kind,
            name,
            "c",
            &["--keep-after-exit", "1s"],
            &["true"],
        ),
        LONG,
    )
    .await;
    assert_eq!(code, 0);
    let mut c = leaderrun();
    c.args(["inspect", "--lock", kind, "--name", name, "--kubeconfig"])
        .arg(api.kubeconfig("a"));
    assert_eq!(c.output().await.unwrap().status.code(), Some(3));
    let mut c = leaderrun();
    c.args([
        "force-release",
        "--yes",
        "--lock",
        kind,
        "--name",
        name,
        "--kubeconfig",
    ])
    .arg(api.kubeconfig("a"));
    assert_eq!(c.output().await.unwrap().status.code(), Some(0));

    let role = docs(file)
        .into_iter()
        .find(|d| d["kind"] == "Role")
        .unwrap();
    let granted = rules(&role);
    let mut used = BTreeSet::new();
    for r in emu.request_log() {
        assert_eq!(
            r.resource, resource,
            "only the lock's resource is touched: {r:?}"
        );
        // A watch of the one object names it through its field selector.
        let object = if r.verb == "watch" {
            assert!(
                r.path
                    .contains(&format!("fieldSelector=metadata.name%3D{name}")),
                "{r:?}"
            );
            name.to_string()
        } else {
            r.name.clone()
        };
        let allowed = granted.iter().any(|(v, res, names)| {
            *v == r.verb && *res == r.resource && names.as_ref().is_none_or(|n| n.contains(&object))
        });
        assert!(
            allowed,
            "{file} does not allow {} {} {object:?}",
            r.verb, r.resource
        );
        used.insert(r.verb.clone());
    }
    let granted_verbs: BTreeSet<String> = granted.iter().map(|(v, _, _)| v.clone()).collect();
    assert_eq!(
        used, granted_verbs,
        "{file} grants exactly the verbs leaderrun uses"
    );
}

#[tokio::test]
async fn lease_rbac_covers_exactly_the_requests_made() {
    check_rbac_covers_requests("lease", "rbac.yaml", "leases").await;
}

#[tokio::test]
async fn configmap_rbac_covers_exactly_the_requests_made() {
    check_rbac_covers_requests("configmap", "rbac-configmap.yaml", "configmaps").await;
}

/// `--service` through a handover and an exit, each request against rbac-service.yaml; and
/// every verb it grants is used.
#[tokio::test]
async fn service_rbac_covers_exactly_the_requests_made() {
    let api = Api::start().await;
    let Some(emu) = api.emulator("RBAC against the request log") else {
        return;
    };
    let name = "nightly-report";
    let client = api.client().await;
    let svc: k8s_openapi::api::core::v1::Service =
        serde_json::from_value(docs("service.yaml")[0].clone()).expect("a Service");
    let mut svc = svc;
    svc.metadata.namespace = Some(api.namespace.clone());
    kube::Api::<k8s_openapi::api::core::v1::Service>::namespaced(client, &api.namespace)
        .create(&Default::default(), &svc)
        .await
        .expect("create the Service");
    emu.clear_log();
    let args = |ip: &'static str| ["--retry-period", "500ms", "--service", name, "--pod-ip", ip];
    let a = job_candidate(&api, "lease", name, "a", &args("10.1.0.1"), "2");
    wait_log(&api.log_path(), LONG, |l| l.len() == 1).await;
    let b = job_candidate(&api, "lease", name, "b", &args("10.1.0.2"), "1");
    assert_eq!(exit_of(a, LONG).await.0, 0);
    assert_eq!(exit_of(b, LONG).await.0, 0);
    let role = find(&docs("rbac-service.yaml"), "Role").clone();
    let granted = rules(&role);
    let mut used = BTreeSet::new();
    for r in emu.request_log() {
        if r.resource != "services" && r.resource != "endpoints" {
            continue;
        }
        let allowed = granted.iter().any(|(v, res, names)| {
            *v == r.verb && *res == r.resource && names.as_ref().is_none_or(|n| n.contains(&r.name))
        });
        assert!(
            allowed,
            "rbac-service.yaml does not allow {} {} {:?}",
            r.verb, r.resource, r.name
        );
        used.insert((r.verb.clone(), r.resource.clone()));
    }
    let granted: BTreeSet<(String, String)> = granted.into_iter().map(|(v, r, _)| (v, r)).collect();
    assert_eq!(
        used, granted,
        "rbac-service.yaml grants exactly what --service uses"
    );
}
