//! leaderrun where its users run it: as PID 1 of pods on a real single-node cluster
//! (`tests/real-cluster/run`), from the image `leaderrun:dev`, with deploy/ as shipped (only
//! the image, the namespace and timings substituted). Every worker logs its start and stop
//! with the host's clock (containers share it); the test follows every pod's log and checks
//! that no two workers' lives overlap.
//!
//! Skipped with a note unless `LEADERRUN_TEST_CLUSTER_KUBECONFIG` names such a cluster;
//! `LEADERRUN_REQUIRE_CLUSTER=1` (CI) makes a missing one a failure. Runs as root on the
//! cluster's host: the wedged- and killed-leader scenarios signal the container's processes
//! from the host, as a runtime or the kernel would.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::api::{Api, ListParams};

use common::{assert_no_overlap, now_nanos, skip, Line};
use traffic::{assert_answers_from_running_workers, silence, Prober};
use workers::Workers;

mod faults;
mod nemesis;
mod slow;
mod traffic;
mod workers;

/// The cluster tests share one cluster: one that faults the control plane runs alone.
static CONTROL_PLANE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

const LONG: Duration = Duration::from_secs(180);
/// The deployment's timings are leaderrun's defaults (deploy/deployment.yaml sets none).
const LEASE: Duration = Duration::from_secs(15);

struct Cluster {
    kubeconfig: PathBuf,
    kubectl: PathBuf,
    client: kube::Client,
    ns: String,
}

impl Cluster {
    /// The cluster, with a fresh namespace for this test; None (with a note) when no cluster
    /// is given.
    async fn start(test: &str) -> Option<Cluster> {
        let Some(kubeconfig) = std::env::var_os("LEADERRUN_TEST_CLUSTER_KUBECONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
        else {
            assert!(
                std::env::var("LEADERRUN_REQUIRE_CLUSTER").as_deref() != Ok("1"),
                "{test}: LEADERRUN_REQUIRE_CLUSTER=1 but LEADERRUN_TEST_CLUSTER_KUBECONFIG is not set"
            );
            skip(test, "needs a real cluster (LEADERRUN_TEST_CLUSTER_KUBECONFIG, from tests/real-cluster/run)");
            return None;
        };
        let kubectl = common::kubectl().expect("kubectl (KUBECTL, .ci/tools or PATH)");
        let kc = kube::config::Kubeconfig::read_from(&kubeconfig).expect("read the kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("use the kubeconfig");
        let client = kube::Client::try_from(cfg).expect("a client");
        let ns = format!("lr-{test}-{:06x}", rand::random::<u32>() & 0xff_ffff);
        let c = Cluster {
            kubeconfig,
            kubectl,
            client,
            ns,
        };
        c.kubectl_ok(&["create", "namespace", &c.ns]);
        Some(c)
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        use std::io::Write;
        let mut child = std::process::Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run kubectl");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write to kubectl");
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("kubectl output")
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args, None);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Applies deploy/FILE as shipped, with the namespace and image substituted, and each
    /// `(from, to)` of `timings` (each must be found, so a change to the file is noticed).
    fn apply_deploy(&self, file: &str, timings: &[(&str, &str)]) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy")
            .join(file);
        let mut text = std::fs::read_to_string(&path).expect("read the deploy file");
        let mut swaps = vec![("namespace: jobs", format!("namespace: {}", self.ns))];
        if text.contains("image: registry.example.com/nightly-report:1.0") {
            swaps.push((
                "image: registry.example.com/nightly-report:1.0",
                "image: leaderrun:dev".to_string(),
            ));
        }
        swaps.extend(timings.iter().map(|(a, b)| (*a, b.to_string())));
        for (from, to) in swaps {
            assert!(text.contains(from), "{file} has no {from:?}");
            text = text.replace(from, &to);
        }
        let out = self.kubectl(&["apply", "-f", "-"], Some(&text));
        assert!(
            out.status.success(),
            "kubectl apply {file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The runner's control folder (`tests/real-cluster/run`, KUBECONFIG.control/).
    fn control(&self) -> PathBuf {
        let mut p = self.kubeconfig.clone().into_os_string();
        p.push(".control");
        PathBuf::from(p)
    }

    /// kubelet's pod-log folder as this host reaches it: the cluster's mount namespace has a
    /// folder of its own (tests/real-cluster/run), seen through etcd's root (etcd, unlike the
    /// API server, is never restarted).
    fn pod_logs(&self) -> PathBuf {
        let etcd = faults::pid_of(&self.control(), "etcd");
        let root = PathBuf::from(format!("/proc/{etcd}/root/var/log/pods"));
        assert!(root.is_dir(), "no pod logs at {}", root.display());
        root
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// `leaderrun inspect -o json` from outside the cluster, as an operator runs it.
    fn inspect(&self, name: &str) -> serde_json::Value {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_leaderrun"))
            .args(["inspect", "--kubeconfig"])
            .arg(&self.kubeconfig)
            .args(["-n", &self.ns, "--name", name, "-o", "json"])
            .output()
            .expect("run leaderrun inspect");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "inspect -o json: {e}; stderr {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

/// The test's namespace goes with it, passed or failed (not waited for: its pods go in the
/// background).
impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.kubectl(&["delete", "namespace", &self.ns, "--wait=false"], None);
    }
}

/// The pod an identity (POD_NAME plus `_` and a suffix) belongs to.
fn pod_of(leadership: &str) -> &str {
    let identity = identity_of(leadership);
    identity.rsplit_once('_').map_or(identity, |(pod, _)| pod)
}

/// The identity of a leadership (`IDENTITY#TOKEN`, as `Workers::lines` names them).
fn identity_of(leadership: &str) -> &str {
    leadership.split('#').next().unwrap_or(leadership)
}

/// Host pids of the processes whose environment has `needle` (`POD_NAME=...`,
/// `LEADERRUN_IDENTITY=...`), with their comm.
fn host_pids_with_env(needle: &str) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            out.push((pid, comm.trim().to_string()));
        }
    }
    out
}

/// The host pid of leaderrun as PID 1 of `pod`'s container.
fn leaderrun_pid_of(pod: &str) -> i32 {
    try_leaderrun_pid_of(pod)
        .unwrap_or_else(|| panic!("no leaderrun as PID 1 of {pod} on this host"))
}

/// As `leaderrun_pid_of`, None while the container is not running.
fn try_leaderrun_pid_of(pod: &str) -> Option<i32> {
    let candidates = host_pids_with_env(&format!("POD_NAME={pod}"));
    candidates
        .iter()
        .find(|(pid, comm)| {
            comm == "leaderrun"
                && std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .unwrap_or_default()
                    .lines()
                    .any(|l| l.starts_with("NSpid:") && l.split_whitespace().last() == Some("1"))
        })
        .map(|(pid, _)| *pid)
}

/// Waits until `pred` holds, polling; panics with `what` after LONG.
async fn until<F, Fut>(what: &str, mut pred: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + LONG;
    while !pred().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn is_live(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// Names of the Ready pods, and of the running (not terminating) ones.
async fn ready_and_live(pods: &Api<Pod>) -> (Vec<String>, Vec<String>) {
    let list = pods
        .list(&ListParams::default().labels("app=nightly-report"))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let name = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
    (
        list.iter().filter(|p| is_ready(p)).map(name).collect(),
        list.iter().filter(|p| is_live(p)).map(name).collect(),
    )
}

/// The leader's worker has started, all three running pods are Ready (leader and standbys
/// alike), and the Service's Endpoints are the leader's address alone (leaderrun's write).
/// Returns the leader's identity.
async fn one_leader(c: &Cluster, w: &Workers) -> String {
    let pods = c.pods();
    let deadline = Instant::now() + LONG;
    let leader = loop {
        if let Some(running) = w.running() {
            let (mut ready, mut live) = ready_and_live(&pods).await;
            ready.sort();
            live.sort();
            if live.len() == 3 && ready == live {
                break running.id;
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for one worker and three Ready pods: {:?} {:?}",
            w.running(),
            ready_and_live(&pods).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The Service's Endpoints hold the leader's address alone.
    let pod_ip = pods
        .get(pod_of(&leader))
        .await
        .expect("the leader's pod")
        .status
        .and_then(|s| s.pod_ip)
        .expect("the leader's pod IP");
    let endpoints: Api<Endpoints> = Api::namespaced(c.client.clone(), &c.ns);
    until("the Service's endpoints to be the leader alone", || {
        let (endpoints, pod_ip) = (endpoints.clone(), pod_ip.clone());
        async move {
            let ips: Vec<String> = endpoints
                .get("nightly-report")
                .await
                .ok()
                .and_then(|e| e.subsets)
                .unwrap_or_default()
                .into_iter()
                .flat_map(|s| s.addresses.unwrap_or_default())
                .map(|a| a.ip)
                .collect();
            ips == [pod_ip]
        }
    })
    .await;
    leader
}

/// `kubectl rollout status` returns, and the Deployment is Available with every replica and
/// not past its progress deadline: what Argo CD and the like read as healthy.
fn assert_rolled_out(c: &Cluster) {
    c.kubectl_ok(&[
        "-n",
        &c.ns,
        "rollout",
        "status",
        "deployment/nightly-report",
        "--timeout=180s",
    ]);
    let d: serde_json::Value = serde_json::from_str(&c.kubectl_ok(&[
        "-n",
        &c.ns,
        "get",
        "deployment",
        "nightly-report",
        "-o",
        "json",
    ]))
    .expect("the Deployment as JSON");
    let condition = |t: &str| {
        d["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|x| x["type"] == t).cloned())
            .unwrap_or_default()
    };
    assert_eq!(condition("Available")["status"], "True", "{d}");
    assert_ne!(
        condition("Progressing")["reason"],
        "ProgressDeadlineExceeded",
        "{d}"
    );
    assert_eq!(d["status"]["availableReplicas"], 3, "{d}");
}

/// The status of GET `path` on `port` of `pod`, through the API server's pod proxy (the pods'
/// network is the cluster's own, not this host's); None when the pod does not answer within a
/// second (a stopped leaderrun accepts the connection and never answers).
async fn http_status(c: &Cluster, pod: &str, port: u16, path: &str) -> Option<u16> {
    let uri = format!("/api/v1/namespaces/{}/pods/{pod}:{port}/proxy{path}", c.ns);
    let request = http::Request::get(uri)
        .body(kube::client::Body::from(Vec::new()))
        .ok()?;
    let answer = tokio::time::timeout(Duration::from_secs(1), c.client.send(request))
        .await
        .ok()?
        .ok()?;
    let code = answer.status().as_u16();
    // The proxy's own failure to reach the pod (502/503 with a Status body) is no answer.
    let body = http_body_util::BodyExt::collect(answer.into_body())
        .await
        .ok()?
        .to_bytes();
    let from_proxy = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .is_some_and(|v| v["kind"] == "Status");
    (!from_proxy).then_some(code)
}

/// The worker that started after `after` nanoseconds, by another identity than `not`.
fn next_start(lines: &[Line], after: u128, not: &str) -> Option<Line> {
    lines
        .iter()
        .find(|l| l.what == "start" && l.nanos > after && l.id != not)
        .cloned()
}

fn stop_of<'a>(lines: &'a [Line], id: &str) -> Option<&'a Line> {
    lines.iter().find(|l| l.what == "stop" && l.id == id)
}

fn secs(nanos: u128) -> f64 {
    nanos as f64 / 1e9
}

/// deploy/deployment.yaml, 3 replicas, with the leader-only Service of service.yaml, through
/// the life a Deployment has: every pod Ready and the rollout complete, kubelet's TERM on pod
/// deletion, a leader killed without grace, a rollout restart, a wedged leaderrun, a
/// step-down, a leader cut off from the API server. Requests to the Service's cluster IP from
/// this host run throughout: every answer must come from the worker running at that moment.
/// deploy/rbac*.yaml are what the pods may do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_keeps_one_worker_through_deletes_kills_rollouts_and_a_wedged_leader() {
    let Some(c) = Cluster::start("deployment").await else {
        return;
    };
    let _shared = CONTROL_PLANE.read().await;
    c.apply_deploy("rbac.yaml", &[]);
    c.apply_deploy("rbac-events.yaml", &[]);
    // Timing substituted: the grace kubelet gives a container (liveness restart of a wedged
    // leaderrun waits it out).
    c.apply_deploy(
        "deployment.yaml",
        &[(
            "terminationGracePeriodSeconds: 30",
            "terminationGracePeriodSeconds: 10",
        )],
    );
    c.apply_deploy("rbac-service.yaml", &[]);
    c.apply_deploy("service.yaml", &[]);
    let services: Api<Service> = Api::namespaced(c.client.clone(), &c.ns);
    let cluster_ip = services
        .get("nightly-report")
        .await
        .expect("the Service")
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("a cluster IP");
    // Clients of the worker, through the Service, from this host, all along.
    let prober = Prober::start(cluster_ip.clone(), 80);
    let w = Workers::follow(&c, "app=nightly-report", "worker");
    let pods = c.pods();

    // a. One worker; every pod Ready, the rollout complete; the Service routes to the leader
    // alone; inspect names it.
    let leader = one_leader(&c, &w).await;
    assert_rolled_out(&c);
    let first = prober.answered_by_other(0, "").await;
    assert_eq!(
        first.from.as_ref().map(|f| f.0.as_str()),
        Some(pod_of(&leader)),
        "the Service's cluster IP reaches the leader"
    );
    let record = c.inspect("nightly-report");
    assert_eq!(
        record["holderIdentity"],
        identity_of(&leader),
        "inspect: {record}"
    );
    assert!(
        leader.starts_with("nightly-report-"),
        "the identity is POD_NAME plus a suffix: {leader}"
    );
    let rss = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().to_string()))
            .unwrap_or_default()
    };
    eprintln!(
        "a. leader {leader}: three pods Ready, rollout status complete, the Service ({cluster_ip}) reaches the leader alone; leaderrun (static, PID 1) resident {}",
        rss(leaderrun_pid_of(pod_of(&leader)))
    );

    // g. --events: "became leader" on the Lease shows in kubectl get events.
    let deadline = Instant::now() + LONG;
    loop {
        let events = c.kubectl_ok(&["-n", &c.ns, "get", "events", "-o", "json"]);
        if events.contains("became leader") && events.contains("\"kind\": \"Lease\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no 'became leader' Event: {events}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "g. in-cluster config, POD_NAME identity, the service account's namespace, Events: ok"
    );

    // b. kubectl delete pod LEADER: kubelet's TERM, the default grace. The lock is released,
    // so another worker starts well within a lease.
    let before = now_nanos();
    c.kubectl_ok(&[
        "-n",
        &c.ns,
        "delete",
        "pod",
        pod_of(&leader),
        "--wait=false",
    ]);
    let lines = w
        .wait("another worker after the deletion", |l| {
            stop_of(l, &leader).is_some() && next_start(l, before, &leader).is_some()
        })
        .await;
    assert_no_overlap(&lines);
    let stopped = stop_of(&lines, &leader)
        .expect("the old worker's stop")
        .nanos;
    let next = next_start(&lines, before, &leader).expect("the next worker");
    let handover = next.nanos - stopped;
    eprintln!(
        "b. pod deleted: old worker stopped {:.3}s after the delete, the next ({}) started {:.3}s after that",
        secs(stopped - before),
        next.id,
        secs(handover)
    );
    assert!(
        handover < (LEASE / 2).as_nanos(),
        "a released lock is taken at once, not after a lease: {:.3}s",
        secs(handover)
    );
    let quiet = service_switch(&prober, before, pod_of(&leader), "b").await;
    assert!(
        quiet < LEASE,
        "a graceful handover reaches the Service within a lease"
    );
    let leader = one_leader(&c, &w).await;

    // c. The leader's container SIGKILLed (its PID 1, so the kernel ends the whole PID
    // namespace): no release; the next worker starts a lease after the last renew it saw.
    let pid = leaderrun_pid_of(pod_of(&leader));
    let job_pids = host_pids_with_env(&format!("LEADERRUN_IDENTITY={}", identity_of(&leader)));
    assert!(!job_pids.is_empty(), "the worker's processes on this host");
    let killed = now_nanos();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL the leader's leaderrun");
    until("the killed leader's worker to be gone", || {
        let job_pids = job_pids.clone();
        async move {
            job_pids
                .iter()
                .all(|(p, _)| !Path::new(&format!("/proc/{p}")).exists())
        }
    })
    .await;
    w.killed.lock().unwrap().push(Line {
        what: "stop".into(),
        id: leader.clone(),
        token: -1,
        nanos: now_nanos(),
    });
    let lines = w
        .wait("a takeover after the kill", |l| {
            next_start(l, killed, &leader).is_some()
        })
        .await;
    assert_no_overlap(&lines);
    let next = next_start(&lines, killed, &leader).expect("the next worker");
    // The last renew the new leader saw is in its takeover's note of the run it replaced: the
    // record's renewTime, stamped by the old leader before it sent that renew (the host's
    // clock, which the containers share), so no standby can have seen it sooner. A bound with
    // no slack, and no poller of the test's own that could miss the last renew.
    let record = c.inspect("nightly-report");
    let last = &record["lastRun"];
    assert_eq!(
        (last["holder"].as_str(), last["outcome"].as_str()),
        (Some(identity_of(&leader)), Some("no-word")),
        "the takeover records the killed leader's run: {record}"
    );
    let last_renew = last["lastRenewed"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .and_then(|t| t.timestamp_nanos_opt())
        .unwrap_or_else(|| panic!("lastRenewed in {record}")) as u128;
    assert!(
        next.nanos >= last_renew + LEASE.as_nanos(),
        "taken over {:.3}s after the last renew, before the lease of {}s ran out",
        secs(next.nanos.saturating_sub(last_renew)),
        LEASE.as_secs()
    );

    eprintln!(
        "c. leader SIGKILLed: the next worker started {:.3}s after the kill, {:.3}s after its last renew (lease {}s)",
        secs(next.nanos - killed),
        secs(next.nanos - last_renew),
        LEASE.as_secs()
    );
    service_switch(&prober, killed, pod_of(&leader), "c").await;
    let leader = one_leader(&c, &w).await;

    // d. kubectl rollout restart: every pod replaced, never two workers.
    let (_, old) = ready_and_live(&pods).await;
    let before = now_nanos();
    c.kubectl_ok(&[
        "-n",
        &c.ns,
        "rollout",
        "restart",
        "deployment/nightly-report",
    ]);
    // Every pod Ready, so `kubectl rollout status` completes (one new pod at a time).
    assert_rolled_out(&c);
    until("every pod replaced and a new worker", || {
        let (pods, old, w) = (pods.clone(), old.clone(), w.clone());
        async move {
            let (_, live) = ready_and_live(&pods).await;
            live.len() == 3
                && live.iter().all(|p| !old.contains(p))
                && w.running()
                    .is_some_and(|r| !old.iter().any(|o| o == pod_of(&r.id)))
        }
    })
    .await;
    let new_leader = w.running().expect("a worker").id;
    let served = prober.answered_by_other(now_nanos(), "").await;
    assert_eq!(
        served.from.as_ref().map(|f| f.0.as_str()),
        Some(pod_of(&new_leader)),
        "after the rollout the Service reaches the new leader"
    );
    let quiet = silence(&prober.answers(), before, served.sent);
    eprintln!(
        "d. rollout restart: rollout status complete; the Service answered nothing for at most {:.3}s",
        quiet.as_secs_f64()
    );
    let lines = w.lines();
    assert_no_overlap(&lines);
    let gap = {
        let stop = stop_of(&lines, &leader)
            .expect("the old leader's worker stopped")
            .nanos;
        let next = next_start(&lines, before, &leader).expect("a new worker");
        next.nanos - stop
    };
    eprintln!(
        "d. rollout restart: no worker for {:.3}s (from the old worker's stop to the new one's start)",
        secs(gap)
    );
    // The bound stated in the README: the old leader's TERM releases the lock to a new pod
    // that is already waiting, or that starts within seconds.
    assert!(
        gap < Duration::from_secs(30).as_nanos(),
        "gap {:.3}s",
        secs(gap)
    );
    let leader = one_leader(&c, &w).await;

    // e. A wedged leader: SIGSTOP to leaderrun. Its guard stops the worker by the deadline,
    // /healthz stops answering, kubelet restarts the container (liveness), another takes over.
    let pod = pods.get(pod_of(&leader)).await.expect("the leader's pod");
    let restarts = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first())
            .map_or(0, |c| c.restart_count)
    };
    let restarts_before = restarts(&pod);
    assert_eq!(
        http_status(&c, pod_of(&leader), 8080, "/healthz").await,
        Some(200)
    );
    let pid = leaderrun_pid_of(pod_of(&leader));
    let stopped_at = now_nanos();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .expect("SIGSTOP the leader's leaderrun");
    let lines = w
        .wait("the wedged leader's worker stopped by its guard", |l| {
            stop_of(l, &leader).is_some()
        })
        .await;
    let guard_stop = stop_of(&lines, &leader).expect("stopped").nanos;
    assert_ne!(
        http_status(&c, pod_of(&leader), 8080, "/healthz").await,
        Some(200),
        "/healthz of a stopped leaderrun"
    );
    let lines = w
        .wait("another worker after the wedged leader", |l| {
            next_start(l, stopped_at, &leader).is_some()
        })
        .await;
    assert_no_overlap(&lines);
    until("kubelet to restart the wedged container (liveness)", || {
        let (pods, name) = (pods.clone(), pod_of(&leader).to_string());
        async move {
            pods.get(&name)
                .await
                .is_ok_and(|p| restarts(&p) > restarts_before)
        }
    })
    .await;
    eprintln!(
        "e. wedged leader: the guard stopped its worker {:.3}s after the SIGSTOP (renew deadline 10s + grace 3s from the last renew); the next worker {:.3}s after it; kubelet restarted the container",
        secs(guard_stop - stopped_at),
        secs(next_start(&lines, stopped_at, &leader).expect("next").nanos - stopped_at),
    );
    assert!(
        guard_stop - stopped_at < Duration::from_secs(13 + 2).as_nanos(),
        "the guard's deadline (renew deadline + kill grace from the last renew)"
    );
    service_switch(&prober, stopped_at, pod_of(&leader), "e").await;
    let leader = one_leader(&c, &w).await;

    // h. leaderrun step-down from outside: the leader stops its worker, takes its address out
    // of the Service and releases; a standby takes over at once.
    let before = now_nanos();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leaderrun"))
        .args(["step-down", "--kubeconfig"])
        .arg(&c.kubeconfig)
        .args(["-n", &c.ns, "--name", "nightly-report"])
        .output()
        .expect("run leaderrun step-down");
    assert!(
        out.status.success(),
        "step-down: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = w
        .wait("another worker after the step-down", |l| {
            next_start(l, before, &leader).is_some()
        })
        .await;
    assert_no_overlap(&lines);
    let quiet = service_switch(&prober, before, pod_of(&leader), "h. step-down").await;
    assert!(
        quiet < LEASE,
        "a step-down reaches the Service within a lease"
    );
    let leader = one_leader(&c, &w).await;

    // i. The leader cut off from the API server (its packets to and from the API server's
    // service address dropped in its pod's network namespace): its guard stops its worker
    // before the lease runs out, another takes over a lease after the last renew it saw and
    // points the Service at itself; the cut-off copy cannot take its address out, and needs
    // not (its worker is gone). Healed after 40 s.
    let cut = now_nanos();
    let api_ip = Api::<Service>::namespaced(c.client.clone(), "default")
        .get("kubernetes")
        .await
        .expect("the kubernetes Service")
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("its cluster IP");
    let pid = leaderrun_pid_of(pod_of(&leader));
    let netns = std::fs::read_link(format!("/proc/{pid}/ns/net")).expect("the pod's netns");
    let rules = [["OUTPUT", "-d"], ["INPUT", "-s"]];
    for [chain, dir] in rules {
        netns_iptables(pid, &["-I", chain, dir, &api_ip, "-j", "DROP"]);
    }
    let lines = w
        .wait("another worker after the cut", |l| {
            stop_of(l, &leader).is_some() && next_start(l, cut, &leader).is_some()
        })
        .await;
    assert_no_overlap(&lines);
    let stop = stop_of(&lines, &leader)
        .expect("the cut-off worker's stop")
        .nanos;
    let next = next_start(&lines, cut, &leader).expect("the next worker");
    assert!(
        next.nanos > stop,
        "the next worker after the cut-off one's stop"
    );
    service_switch(&prober, cut, pod_of(&leader), "i. cut off").await;
    eprintln!(
        "i. leader cut off from the API server: its worker stopped {:.3}s after the cut, the next started {:.3}s after the cut",
        secs(stop - cut),
        secs(next.nanos - cut)
    );
    tokio::time::sleep(
        Duration::from_secs(40).saturating_sub(Duration::from_nanos((now_nanos() - cut) as u64)),
    )
    .await;
    for [chain, dir] in rules {
        // The container may have been restarted meanwhile (leaderrun exits after a loss):
        // the rules are the pod's network namespace's, which outlives it.
        netns_iptables(
            pid_in_netns(&netns),
            &["-D", chain, dir, &api_ip, "-j", "DROP"],
        );
    }
    let _ = one_leader(&c, &w).await;
    assert_rolled_out(&c);

    // Every answer the Service gave came from the worker running at that moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let answers = prober.answers();
    let checked = assert_answers_from_running_workers(&answers, &w.lines());
    eprintln!(
        "j. {checked} answers through the Service ({} requests), each from the worker running when it was sent",
        answers.len()
    );
    assert_no_overlap(&w.lines());
}

/// Waits until the Service answers from another pod than `old` after `from`; says, and
/// returns, the longest time it answered nothing meanwhile.
async fn service_switch(prober: &Prober, from: u128, old: &str, what: &str) -> Duration {
    let next = prober.answered_by_other(from, old).await;
    let quiet = silence(&prober.answers(), from, next.sent);
    eprintln!(
        "{what}: the Service answered from the next leader {:.3}s after the event; no answer for at most {:.3}s",
        secs(next.sent - from),
        quiet.as_secs_f64()
    );
    quiet
}

/// iptables in the network namespace of `pid` (a pod's).
fn netns_iptables(pid: i32, args: &[&str]) {
    let out = std::process::Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "iptables"])
        .args(args)
        .output()
        .expect("run nsenter iptables");
    assert!(
        out.status.success(),
        "iptables {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A process in the network namespace `netns` (a pod's: its sandbox holds it whichever
/// container runs, or none while the container waits to be restarted).
fn pid_in_netns(netns: &Path) -> i32 {
    try_pid_in_netns(netns)
        .unwrap_or_else(|| panic!("no process in {} on this host", netns.display()))
}

/// As `pid_in_netns`, None once the pod is gone.
fn try_pid_in_netns(netns: &Path) -> Option<i32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| std::fs::read_link(format!("/proc/{pid}/ns/net")).is_ok_and(|n| n == netns))
}

/// deploy/cronjob-1.20.yaml (the cluster is 1.20: batch/v1beta1), every minute, with a report
/// longer than the interval and `concurrencyPolicy: Allow`: pods overlap, reports never do,
/// and the copy that finds the lock held is a Complete Job, not a Failed one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cronjob_runs_one_report_at_a_time_and_its_duplicates_do_not_fail() {
    let Some(c) = Cluster::start("cronjob").await else {
        return;
    };
    let _shared = CONTROL_PLANE.read().await;
    c.apply_deploy("rbac.yaml", &[]);
    // Timings substituted: every minute, and the winner keeps the lock 20 s after its 90 s
    // report (so the job a minute later finds it held, the one after that runs).
    c.apply_deploy(
        "cronjob-1.20.yaml",
        &[
            ("schedule: \"0 2 * * *\"", "schedule: \"* * * * *\""),
            (
                "\"--keep-after-exit\", \"10m\"",
                "\"--keep-after-exit\", \"20s\"",
            ),
        ],
    );
    let w = Workers::follow(&c, "job-name", "report");
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(c.client.clone(), &c.ns);
    let mut finished: BTreeMap<String, (i32, i32)> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    // Until the first report has finished and a later job has finished without one.
    loop {
        let list = jobs.list(&ListParams::default()).await.expect("list jobs");
        finished.clear();
        for j in list.items {
            let s = j.status.unwrap_or_default();
            if s.succeeded.unwrap_or(0) + s.failed.unwrap_or(0) > 0 {
                finished.insert(
                    j.metadata.name.unwrap_or_default(),
                    (s.succeeded.unwrap_or(0), s.failed.unwrap_or(0)),
                );
            }
        }
        let lines = w.lines();
        let reports_done = lines.iter().filter(|l| l.what == "stop").count();
        if reports_done >= 1 && finished.len() >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out: finished jobs {finished:?}, report lines {lines:#?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let lines = w.lines();
    assert_no_overlap(&lines);
    assert!(
        finished.values().all(|(_, failed)| *failed == 0),
        "no Job failed: {finished:?}"
    );
    let starts = lines.iter().filter(|l| l.what == "start").count();
    assert!(
        finished.len() > starts - usize::from(w.running().is_some()),
        "a job finished without running the report (the duplicate): {finished:?} {lines:#?}"
    );
    eprintln!(
        "f. cronjob: {} jobs finished, none failed; {starts} report(s), never two at once",
        finished.len()
    );
}
