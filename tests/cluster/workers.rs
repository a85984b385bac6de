//! The workers' own lines (start and stop, with the host's clock), read from every pod's
//! container log twice over: streamed through the API server, and from the files kubelet writes
//! on this host. Either alone loses lines under the faults the tests inject: a stream is down
//! while the API server is, and the API gives only a container's previous log, not the one
//! before; a file goes with its pod. The checker sees the union.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::AsyncBufReadExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::faults::{deploy, Fault, Faults};
use super::{
    leaderrun_pid_of, one_leader, pod_of, stop_of, try_leaderrun_pid_of, until, Cluster,
    CONTROL_PLANE, LONG,
};
use crate::common::{assert_no_overlap, Line};

/// Every worker line of every pod in the namespace, read from the pods' logs as they are
/// written (so a pod that is deleted has been read to its end), each line once.
#[derive(Clone, Default)]
pub(super) struct Workers {
    lines: Arc<Mutex<BTreeSet<(u128, String, String)>>>,
    /// Stops the test writes for a worker killed with its whole container (it logs none).
    pub(super) killed: Arc<Mutex<Vec<Line>>>,
}

impl Workers {
    /// Follows, in the background, the logs of `container` in every pod of the test's
    /// namespace that `selector` matches (the streams), and in every pod of the namespace
    /// (the files, which carry no labels: the container's name tells the workers apart).
    pub(super) fn follow(c: &Cluster, selector: &str, container: &str) -> Workers {
        let w = Workers::default();
        tokio::spawn(follow_files(
            c.pod_logs(),
            c.ns.clone(),
            container.to_string(),
            w.clone(),
        ));
        let pods = c.pods();
        let (w2, selector, container) = (w.clone(), selector.to_string(), container.to_string());
        tokio::spawn(async move {
            let mut seen = BTreeSet::new();
            // Ends with the test's runtime.
            loop {
                if let Ok(list) = pods.list(&ListParams::default().labels(&selector)).await {
                    for p in list.items {
                        let name = p.metadata.name.unwrap_or_default();
                        if seen.insert(name.clone()) {
                            tokio::spawn(follow_pod(
                                pods.clone(),
                                name,
                                container.clone(),
                                w2.clone(),
                            ));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        w
    }

    fn add(&self, text: &str) {
        let p: Vec<&str> = text.split_whitespace().collect();
        if p.len() == 4 && (p[0] == "start" || p[0] == "stop") {
            if let Ok(nanos) = p[3].parse::<u128>() {
                self.lines
                    .lock()
                    .unwrap()
                    .insert((nanos, p[0].to_string(), text.to_string()));
            }
        }
    }

    /// All lines, in time order.
    pub(super) fn lines(&self) -> Vec<Line> {
        let mut out: Vec<Line> = self
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, _, text)| {
                let p: Vec<&str> = text.split_whitespace().collect();
                Some(Line {
                    what: p[0].to_string(),
                    // A leadership, not a process: with --rejoin one identity leads again
                    // later, under a new token.
                    id: format!("{}#{}", p[1], p[2]),
                    token: p[2].parse().ok()?,
                    nanos: p[3].parse().ok()?,
                })
            })
            .collect();
        out.extend(self.killed.lock().unwrap().iter().cloned());
        // At the same instant a stop comes first: one worker's stop and the next one's start
        // can share a microsecond.
        out.sort_by_key(|l| (l.nanos, l.what != "stop"));
        out
    }

    /// Waits until the lines satisfy `pred`; returns them.
    pub(super) async fn wait(&self, what: &str, pred: impl Fn(&[Line]) -> bool) -> Vec<Line> {
        let deadline = Instant::now() + LONG;
        loop {
            let lines = self.lines();
            if pred(&lines) {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {lines:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The worker running now (started, not stopped), if any.
    pub(super) fn running(&self) -> Option<Line> {
        let mut running: Option<Line> = None;
        for l in self.lines() {
            match l.what.as_str() {
                "start" => running = Some(l),
                _ if running.as_ref().is_some_and(|r| r.id == l.id) => running = None,
                _ => {}
            }
        }
        running
    }
}

/// Follows one pod's container log through the API server until the pod is gone or has
/// finished: again after each end of the stream (a restarted container, the API server down),
/// each line once (the set drops repeats).
async fn follow_pod(pods: Api<Pod>, name: String, container: String, w: Workers) {
    // Ends when the pod is gone or finished, or with the test's runtime.
    loop {
        // A container that ended while the stream was down (the API server faulted) and was
        // restarted: its last lines are in its log as the previous container's. Read before
        // the stream, which follows the new container for as long as it runs.
        let previous = LogParams {
            container: Some(container.clone()),
            previous: true,
            ..Default::default()
        };
        if let Ok(text) = pods.logs(&name, &previous).await {
            text.lines().for_each(|l| w.add(l));
        }
        let params = LogParams {
            container: Some(container.clone()),
            follow: true,
            ..Default::default()
        };
        if let Ok(stream) = pods.log_stream(&name, &params).await {
            let mut lines = stream.lines();
            while let Some(Ok(line)) = futures::StreamExt::next(&mut lines).await {
                w.add(&line);
            }
        }
        match pods.get_opt(&name).await {
            Ok(None) => return,
            Ok(Some(p)) => {
                let phase = p.status.and_then(|s| s.phase).unwrap_or_default();
                if phase == "Succeeded" || phase == "Failed" {
                    if let Ok(text) = pods
                        .logs(
                            &name,
                            &LogParams {
                                container: Some(container.clone()),
                                ..Default::default()
                            },
                        )
                        .await
                    {
                        text.lines().for_each(|l| w.add(l));
                    }
                    return;
                }
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads the container logs kubelet writes on this host (`/var/log/pods/NS_POD_UID/CONTAINER/
/// N.log`, one file per run of the container) as they grow, every 200 ms: no API server in the
/// way, and every run of a container kubelet keeps, not only the previous one.
async fn follow_files(root: PathBuf, ns: String, container: String, w: Workers) {
    let mut read: BTreeMap<PathBuf, usize> = BTreeMap::new();
    // Ends with the test's runtime.
    loop {
        for file in log_files(&root, &ns, &container) {
            let Ok(bytes) = std::fs::read(&file) else {
                continue;
            };
            // Whole lines only: kubelet may be writing the last one.
            let Some(end) = bytes.iter().rposition(|b| *b == b'\n').map(|i| i + 1) else {
                continue;
            };
            let from = read.get(&file).copied().filter(|&f| f <= end).unwrap_or(0);
            for line in String::from_utf8_lossy(&bytes[from..end]).lines() {
                if let Some(text) = cri_text(line) {
                    w.add(text);
                }
            }
            read.insert(file, end);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The log files of `container` in every pod of `ns` under kubelet's pod-log folder.
fn log_files(root: &Path, ns: &str, container: &str) -> Vec<PathBuf> {
    let prefix = format!("{ns}_");
    let pods = std::fs::read_dir(root).into_iter().flatten().flatten();
    pods.filter(|p| p.file_name().to_string_lossy().starts_with(&prefix))
        .flat_map(|p| {
            std::fs::read_dir(p.path().join(container))
                .into_iter()
                .flatten()
        })
        .flatten()
        .map(|f| f.path())
        .filter(|f| f.extension().is_some_and(|e| e == "log"))
        .collect()
}

/// What the container wrote, from a line of the CRI log format (`TIME STREAM F TEXT`); None
/// for part of a longer line (tag P: a worker's lines are short) or a line not in the format.
fn cri_text(line: &str) -> Option<&str> {
    let mut parts = line.splitn(4, ' ');
    let (_time, _stream, tag) = (parts.next()?, parts.next()?, parts.next()?);
    (tag == "F").then(|| parts.next().unwrap_or(""))
}

#[test]
fn a_cri_log_line_gives_what_the_container_wrote() {
    let line = "2026-12-03T20:15:01.123456789Z stdout F start pod_x 3 1796328034101745781";
    assert_eq!(cri_text(line), Some("start pod_x 3 1796328034101745781"));
    assert_eq!(cri_text("2026-12-03T20:15:01Z stdout P start pod"), None);
    assert_eq!(cri_text("start pod_x 3 1796328034101745781"), None);
}

/// Found by the nemesis in CI (seed 17683803953012208386): the leader frozen, then the API
/// server stopped; kubelet TERMed the frozen leaderrun, whose worker had already logged its
/// stop, and started the container again before the API server was back. The stream then
/// followed the new container, the old one's stop was never read, and the next leader's start
/// looked like a second worker. Here the same path, on purpose: the worker's stop must be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_container_ended_while_the_api_server_was_down_is_read_to_its_stop() {
    let Some(c) = Cluster::start("logs").await else {
        return;
    };
    let _alone = CONTROL_PLANE.write().await;
    let faults = Faults::start(&c).await;
    deploy(&c);
    let w = Workers::follow(&c, "app=nightly-report", "worker");
    let leader = one_leader(&c, &w).await;
    let pod = pod_of(&leader).to_string();
    let pid = leaderrun_pid_of(&pod);
    let n = faults.inject(&Fault::StopApiServer).await;
    // kubelet's TERM: leaderrun stops its worker (which logs its stop), cannot release, exits;
    // kubelet starts the container again without asking the API server.
    nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGTERM).expect("TERM to leaderrun");
    until("the leader's container to run again", || {
        let pod = pod.clone();
        async move { try_leaderrun_pid_of(&pod).is_some_and(|p| p != pid) }
    })
    .await;
    faults.heal(n);
    until("the API server to answer again", || faults.api_ready()).await;
    let lines = w
        .wait("the old worker's stop", |l| stop_of(l, &leader).is_some())
        .await;
    assert_no_overlap(&lines);
    one_leader(&c, &w).await;
    assert_no_overlap(&w.lines());
}
