//! `--service`: a Service without a selector whose Endpoints are the leader's address alone,
//! written when leadership begins, taken out when it ends, replaced by the next leader; and
//! a Service leaderrun cannot keep is a clear error before anything is written.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::{Api as KubeApi, PostParams};
use kube_emulator::{Action, Fault};

const LONG: Duration = Duration::from_secs(60);

/// Creates a Service: `selector` none for leaderrun's kind, `target` its target port.
async fn service(client: &kube::Client, ns: &str, name: &str, selector: bool, target: &str) {
    let mut spec = serde_json::json!({"ports": [{"name": "http", "port": 80, "targetPort": 8081}]});
    if selector {
        spec["selector"] = serde_json::json!({"app": "x"});
    }
    if let Ok(n) = target.parse::<i32>() {
        spec["ports"][0]["targetPort"] = n.into();
    } else {
        spec["ports"][0]["targetPort"] = target.into();
    }
    let svc: Service = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))
    .expect("a Service");
    KubeApi::<Service>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &svc)
        .await
        .expect("create the Service");
}

/// The ready (ip, port) pairs of the Endpoints, or None when there are none.
async fn endpoints(client: &kube::Client, ns: &str, name: &str) -> Option<Vec<(String, i32)>> {
    let e = KubeApi::<Endpoints>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .expect("read the Endpoints")?;
    let mut out = Vec::new();
    for s in e.subsets.unwrap_or_default() {
        for a in s.addresses.unwrap_or_default() {
            for p in s.ports.iter().flatten() {
                out.push((a.ip.clone(), p.port));
            }
        }
    }
    Some(out)
}

async fn wait_endpoints(client: &kube::Client, ns: &str, name: &str, want: &[(&str, i32)]) {
    let want: Vec<(String, i32)> = want.iter().map(|(i, p)| (i.to_string(), *p)).collect();
    let deadline = Instant::now() + LONG;
    loop {
        let got = endpoints(client, ns, name).await.unwrap_or_default();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "endpoints {got:?}, waited for {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The leader's address (the Service's target port) while it leads, out again when it stops,
/// the next leader's after it; a former leader taking its address out later (its write
/// delayed by a partition) leaves the next leader's.
#[tokio::test]
async fn the_service_reaches_the_leader_alone_through_a_handover() {
    let api = Api::start().await;
    let client = api.client().await;
    let ns = api.namespace.clone();
    let name = api.lock_name("svc");
    service(&client, &ns, &name, false, "8081").await;
    let with = |ip: &str| {
        vec![
            "--service".to_string(),
            name.clone(),
            "--pod-ip".into(),
            ip.into(),
        ]
    };
    let (a_args, b_args) = (with("10.1.0.1"), with("10.1.0.2"));
    let refs = |v: &[String]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (a_refs, b_refs) = (refs(&a_args), refs(&b_args));
    let a_refs: Vec<&str> = a_refs.iter().map(String::as_str).collect();
    let b_refs: Vec<&str> = b_refs.iter().map(String::as_str).collect();
    let leader = job_candidate(&api, "lease", &name, "svc-a", &a_refs, "1000");
    wait_log(&api.log_path(), LONG, |l| l.len() == 1).await;
    wait_endpoints(&client, &ns, &name, &[("10.1.0.1", 8081)]).await;
    let mut standby = job_candidate(&api, "lease", &name, "svc-b", &b_refs, "1000");
    wait_standby(&mut standby).await;
    // TERM: the job ends, the leader takes its address out, then releases the lock.
    let pid = nix::unistd::Pid::from_raw(leader.id().expect("pid") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("TERM");
    let (code, stderr) = exit_of(leader, LONG).await;
    assert_eq!(code, 143, "{stderr}");
    let out = stderr.find("the Service no longer routes to this pod");
    let released = stderr.find("leadership ends");
    assert!(
        out.is_some() && out < released,
        "out of the Service before the release: {stderr}"
    );
    wait_leader(&mut standby).await;
    wait_endpoints(&client, &ns, &name, &[("10.1.0.2", 8081)]).await;
    // The former leader's withdrawal, landing now, removes only its own address.
    let late = leaderrun::service::LeaderService::open(
        client.clone(),
        &ns,
        &name,
        Some("10.1.0.1".parse().expect("ip")),
        None,
    )
    .await
    .expect("open the Service");
    assert!(
        !late.withdraw().await.expect("withdraw"),
        "nothing of A to take out"
    );
    assert_eq!(
        endpoints(&client, &ns, &name).await,
        Some(vec![("10.1.0.2".into(), 8081)])
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(standby.id().expect("pid") as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("TERM");
    assert_eq!(exit_of(standby, LONG).await.0, 143);
    assert_eq!(
        endpoints(&client, &ns, &name).await,
        Some(vec![]),
        "no leader, no endpoints"
    );
    assert_no_overlap(&read_log(&api.log_path()));
}

/// A Service leaderrun cannot keep: said at once, with the exit code for configuration, and
/// the lock never written.
#[tokio::test]
async fn a_service_that_cannot_be_kept_is_a_clear_error_and_writes_nothing() {
    let api = Api::start().await;
    let client = api.client().await;
    let ns = api.namespace.clone();
    let with_selector = api.lock_name("svc-sel");
    service(&client, &ns, &with_selector, true, "8081").await;
    let named = api.lock_name("svc-named");
    service(&client, &ns, &named, false, "web").await;
    let missing = api.lock_name("svc-none");
    let cases: [(&str, Vec<&str>, i32, &str); 5] = [
        (
            &missing,
            vec!["--pod-ip", "10.1.0.1"],
            78,
            "there is no Service",
        ),
        (
            &with_selector,
            vec!["--pod-ip", "10.1.0.1"],
            78,
            "has a selector",
        ),
        (
            &named,
            vec!["--pod-ip", "10.1.0.1"],
            78,
            "named targetPort \"web\"",
        ),
        (&named, vec![], 78, "POD_IP"),
        (
            &named,
            vec!["--pod-ip", "10.1.0.1", "--slots", "2"],
            64,
            "--slots",
        ),
    ];
    for (svc, extra, want, says) in cases {
        let lock = api.lock_name("svc-lock");
        let mut args = vec!["--service", svc];
        args.extend(extra);
        let (code, stderr) = exit_of(
            candidate(&api, "lease", &lock, "bad", &args, &["true"]),
            LONG,
        )
        .await;
        assert_eq!(code, want, "{svc}: {stderr}");
        assert!(stderr.contains(says), "{svc}: wanted {says:?} in {stderr}");
        let leases: KubeApi<Lease> = KubeApi::namespaced(client.clone(), &ns);
        assert!(
            leases.get_opt(&lock).await.expect("read").is_none(),
            "{svc}: nothing written to the lock"
        );
        assert!(
            endpoints(&client, &ns, svc).await.is_none(),
            "{svc}: no Endpoints written"
        );
    }
}

/// With --keep-after-exit the lock outlives the job: the address goes out of the Service when
/// the job ends (nothing answers there any more), while the lock is still held.
#[tokio::test]
async fn the_address_goes_when_the_job_ends_though_the_lock_is_kept() {
    let api = Api::start().await;
    let client = api.client().await;
    let ns = api.namespace.clone();
    let name = api.lock_name("svc-keep");
    service(&client, &ns, &name, false, "8081").await;
    let args = [
        "--service",
        &name,
        "--pod-ip",
        "10.1.0.3",
        "--keep-after-exit",
        "1m",
    ];
    let leader = job_candidate(&api, "lease", &name, "svc-keep", &args, "2");
    wait_endpoints(&client, &ns, &name, &[("10.1.0.3", 8081)]).await;
    wait_log(&api.log_path(), LONG, |l| {
        l.iter().any(|l| l.what == "stop")
    })
    .await;
    wait_endpoints(&client, &ns, &name, &[]).await;
    let lease = KubeApi::<Lease>::namespaced(client.clone(), &ns)
        .get(&name)
        .await
        .expect("the lock");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("svc-keep"),
        "the lock is still held"
    );
    let pid = nix::unistd::Pid::from_raw(leader.id().expect("pid") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("TERM");
    exit_of(leader, LONG).await;
}

/// A Service read refused right after the API server was out of reach is a restarting
/// server's (its RBAC caches still filling): tried again, and the job starts. A refusal with
/// no outage before it is RBAC's: exit 69 at once, nothing written. (Found by the nemesis on
/// the real cluster: a pod restarted while kube-apiserver restarted exited 69.)
#[tokio::test]
async fn a_service_refused_just_after_an_outage_is_tried_again_and_alone_is_an_error() {
    let api = Api::start().await;
    let Some(emu) = api.emulator("--service refused after an outage") else {
        return;
    };
    let client = api.client().await;
    let svc = api.lock_name("svc-restart");
    service(&client, &api.namespace, &svc, false, "8081").await;
    let forbidden = || {
        Fault::new(Action::Error {
            code: 403,
            retry_after: None,
        })
        .path_contains(format!("services/{svc}"))
    };
    emu.add_fault(forbidden().for_client("svc-alone").times(1));
    let args = [&FAST[..], &["--service", &svc, "--pod-ip", "10.1.0.1"]].concat();
    let lock = api.lock_name("svc-alone");
    let alone = candidate(&api, "lease", &lock, "svc-alone", &args, &["true"]);
    let (code, stderr) = exit_of(alone, LONG).await;
    assert_eq!(code, 69, "{stderr}");
    assert!(stderr.contains("403"), "{stderr}");
    let leases: KubeApi<Lease> = KubeApi::namespaced(client.clone(), &api.namespace);
    assert!(leases.get_opt(&lock).await.expect("read").is_none());
    let drop = Fault::new(Action::Drop).path_contains(format!("services/{svc}"));
    emu.add_fault(drop.for_client("svc-back").times(1));
    emu.add_fault(forbidden().for_client("svc-back").times(2));
    let lock = api.lock_name("svc-back");
    let back = candidate(&api, "lease", &lock, "svc-back", &args, &["true"]);
    let (code, stderr) = exit_of(back, LONG).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("restarting?"), "{stderr}");
}
