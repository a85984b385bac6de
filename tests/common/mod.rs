//! The scenario harness: a Kubernetes API (the emulator, or a real cluster when
//! `LEADERRUN_TEST_KUBECONFIG` names one), candidates running the real binary,
//! and a job script that logs its start and stop with timestamps.
#![allow(dead_code)]

pub mod guard_pipe;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use kube_emulator::{Config, Emulator};
use tokio::process::{Child, Command};

pub const KINDS: [&str; 2] = ["lease", "configmap"];

/// Says that a test did not run, and why, where the run's output shows it: straight to the
/// process's stderr (libtest captures `eprintln!`, so a skip would pass unseen), on a line of
/// its own starting `SKIPPED` (.ci/run counts them).
pub fn skip(what: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {what}: {why}");
}

pub struct Api {
    pub emulator: Option<Emulator>,
    real_kubeconfig: Option<PathBuf>,
    pub namespace: String,
    pub dir: tempfile::TempDir,
}

impl Api {
    pub async fn start() -> Api {
        let mut dir = tempfile::tempdir().expect("tempdir");
        // For a post-mortem: LEADERRUN_KEEP_TEST_DIR=1 keeps logs and stderr files.
        if std::env::var_os("LEADERRUN_KEEP_TEST_DIR").is_some() {
            dir.disable_cleanup(true);
            eprintln!("test files kept in {}", dir.path().display());
        }
        match std::env::var_os("LEADERRUN_TEST_KUBECONFIG") {
            Some(path) => Api {
                emulator: None,
                real_kubeconfig: Some(PathBuf::from(path)),
                namespace: std::env::var("LEADERRUN_TEST_NAMESPACE")
                    .unwrap_or_else(|_| "default".into()),
                dir,
            },
            None => Api {
                emulator: Some(
                    Emulator::start(Config::default())
                        .await
                        .expect("start the emulator"),
                ),
                real_kubeconfig: None,
                namespace: "default".into(),
                dir,
            },
        }
    }

    /// The emulator, or None (with a note) on a real cluster, for fault tests.
    pub fn emulator(&self, test: &str) -> Option<&Emulator> {
        if self.emulator.is_none() {
            skip(test, "needs fault injection, which only the emulator has");
        }
        self.emulator.as_ref()
    }

    /// A kubeconfig for one client; on the emulator its token names the client
    /// in the request log and for faults.
    pub fn kubeconfig(&self, client: &str) -> PathBuf {
        match (&self.emulator, &self.real_kubeconfig) {
            (Some(e), _) => {
                let p = self.dir.path().join(format!("kubeconfig-{client}"));
                std::fs::write(&p, e.kubeconfig(Some(client), &self.namespace))
                    .expect("write kubeconfig");
                p
            }
            (None, Some(real)) => real.clone(),
            (None, None) => unreachable!("Api::start sets one of them"),
        }
    }

    /// A fresh lock name, so that runs against a real cluster do not collide.
    pub fn lock_name(&self, base: &str) -> String {
        format!("{base}-{:08x}", rand::random::<u32>())
    }

    pub async fn client(&self) -> kube::Client {
        let path = self.kubeconfig("test-driver");
        let kc = kube::config::Kubeconfig::read_from(&path).expect("read kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("kubeconfig");
        kube::Client::try_from(cfg).expect("client")
    }

    /// Writes the job script and returns its path.
    pub fn job(&self) -> PathBuf {
        let p = self.dir.path().join("job.sh");
        if !p.exists() {
            std::fs::write(&p, JOB).expect("write job script");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                .expect("chmod job");
        }
        p
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("job.log")
    }
}

/// Logs `start ID TOKEN NANOS` and `stop ID TOKEN NANOS`; stops on TERM.
const JOB: &str = r#"#!/bin/sh
log="$1"; seconds="$2"; code="${3:-0}"
echo "start $LEADERRUN_IDENTITY $LEADERRUN_FENCING_TOKEN $(date +%s%N)" >> "$log"
trap 'echo "stop $LEADERRUN_IDENTITY $LEADERRUN_FENCING_TOKEN $(date +%s%N)" >> "$log"; exit 143' TERM
sleep "$seconds" &
wait $!
echo "stop $LEADERRUN_IDENTITY $LEADERRUN_FENCING_TOKEN $(date +%s%N)" >> "$log"
exit "$code"
"#;

pub fn leaderrun() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_leaderrun"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("LEADERRUN_") || k == "KUBECONFIG" || k == "POD_NAME" {
            c.env_remove(k);
        }
    }
    c.env("RUST_LOG", "leaderrun=debug").kill_on_drop(true);
    c
}

/// A candidate: `leaderrun --lock KIND --name NAME --identity ID ARGS -- CMD`.
pub fn candidate(
    api: &Api,
    kind: &str,
    name: &str,
    id: &str,
    args: &[&str],
    cmd: &[&str],
) -> Child {
    let mut c = leaderrun();
    c.arg("--kubeconfig")
        .arg(api.kubeconfig(id))
        .args([
            "--lock",
            kind,
            "--name",
            name,
            "--identity",
            id,
            "-n",
            &api.namespace,
        ])
        .args(args)
        .arg("--")
        .args(cmd);
    c.stdin(Stdio::null()).stdout(Stdio::piped());
    spawn_logged(c, api.dir.path(), id)
}

/// Where each running child spawned by `spawn_logged` writes its stderr, by pid.
static STDERR_FILES: std::sync::Mutex<Vec<(u32, PathBuf)>> = std::sync::Mutex::new(Vec::new());

/// Spawns `c` with its stderr in a file in `dir`, so that a test can wait for a line while
/// the process runs (`wait_stderr`) and `exit_of` still returns the whole of it.
pub fn spawn_logged(mut c: Command, dir: &Path, label: &str) -> Child {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("{label}-{n}.stderr"));
    c.stderr(std::fs::File::create(&path).expect("a stderr file"));
    let child = c.spawn().expect("spawn leaderrun");
    if let Some(pid) = child.id() {
        let mut files = STDERR_FILES.lock().unwrap();
        // A pid used again after a child that was dropped without `exit_of`.
        files.retain(|(p, _)| *p != pid);
        files.push((pid, path));
    }
    child
}

fn stderr_file(child: &Child) -> Option<PathBuf> {
    let pid = child.id()?;
    let files = STDERR_FILES.lock().unwrap();
    files
        .iter()
        .find(|(p, _)| *p == pid)
        .map(|(_, f)| f.clone())
}

/// What a child spawned by `spawn_logged` has written to stderr so far.
pub fn stderr_of(child: &Child) -> String {
    stderr_file(child)
        .and_then(|f| std::fs::read_to_string(f).ok())
        .unwrap_or_default()
}

/// Waits until a child spawned by `spawn_logged` writes `needle` to stderr.
pub async fn wait_stderr(child: &mut Child, needle: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while !stderr_of(child).contains(needle) {
        let exited = child.try_wait().ok().flatten();
        assert!(
            exited.is_none() && Instant::now() < deadline,
            "waited for {needle:?} (exited: {exited:?}); stderr: {}",
            stderr_of(child)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until a candidate has read the lock and found it held by another.
pub async fn wait_standby(child: &mut Child) {
    wait_stderr(child, "waiting: the lock is held by another", LONG_WAIT).await;
}

/// Waits until a candidate holds the lock.
pub async fn wait_leader(child: &mut Child) {
    wait_stderr(child, "became leader", LONG_WAIT).await;
}

const LONG_WAIT: Duration = Duration::from_secs(60);

/// Waits until `path` holds a complete line (a writer's `echo` has finished) and returns it.
pub async fn wait_file(path: &Path, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if s.ends_with('\n') {
                return s;
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A candidate whose child is the job script.
pub fn job_candidate(
    api: &Api,
    kind: &str,
    name: &str,
    id: &str,
    args: &[&str],
    seconds: &str,
) -> Child {
    let job = api.job();
    let log = api.log_path();
    candidate(
        api,
        kind,
        name,
        id,
        args,
        &[job.to_str().unwrap(), log.to_str().unwrap(), seconds],
    )
}

/// With a fresh job log: `id` holds the lock, and its job (of 1000 s) has started.
pub async fn leader_running(api: &Api, kind: &str, name: &str, id: &str, args: &[&str]) -> Child {
    let log = api.log_path();
    let _ = std::fs::remove_file(&log);
    let leader = job_candidate(api, kind, name, id, args, "1000");
    wait_log(&log, LONG_WAIT, |l| l.len() == 1).await;
    leader
}

/// The common opening of a handover scenario, with a fresh job log: `TAG-leader` holds the
/// lock with a job of 1000 s, and `TAG-standby` (a job of `standby_job` seconds) has read
/// the lock and is waiting.
pub async fn leader_then_standby(
    api: &Api,
    kind: &str,
    name: &str,
    tag: &str,
    args: &[&str],
    standby_job: &str,
) -> (Child, Child) {
    let leader = leader_running(api, kind, name, &format!("{tag}-leader"), args).await;
    let mut standby = job_candidate(
        api,
        kind,
        name,
        &format!("{tag}-standby"),
        args,
        standby_job,
    );
    wait_standby(&mut standby).await;
    (leader, standby)
}

/// Waits for a candidate to exit; returns its code and stderr.
pub async fn exit_of(child: Child, within: Duration) -> (i32, String) {
    let file = stderr_file(&child);
    let out = tokio::time::timeout(within, child.wait_with_output())
        .await
        .expect("leaderrun exits in time")
        .expect("wait for leaderrun");
    let stderr = match file {
        Some(f) => {
            STDERR_FILES.lock().unwrap().retain(|(_, g)| *g != f);
            std::fs::read_to_string(&f).unwrap_or_default()
        }
        None => String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (out.status.code().unwrap_or(-1), stderr)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub what: String,
    pub id: String,
    pub token: i64,
    pub nanos: u128,
}

pub fn read_log(path: &Path) -> Vec<Line> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let p: Vec<&str> = l.split_whitespace().collect();
            Some(Line {
                what: p.first()?.to_string(),
                id: p.get(1)?.to_string(),
                token: p.get(2)?.parse().ok()?,
                nanos: p.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

/// Waits until the job log satisfies `pred`.
pub async fn wait_log(path: &Path, within: Duration, pred: impl Fn(&[Line]) -> bool) -> Vec<Line> {
    let deadline = Instant::now() + within;
    loop {
        let lines = read_log(path);
        if pred(&lines) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting on the job log: {lines:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Run intervals per start, asserting that no two overlap: every start comes
/// after the previous run's stop.
pub fn assert_no_overlap(lines: &[Line]) {
    let mut running: Option<&Line> = None;
    for l in lines {
        match (l.what.as_str(), running) {
            ("start", None) => running = Some(l),
            ("start", Some(r)) => panic!("{} started while {} was running: {lines:#?}", l.id, r.id),
            ("stop", Some(r)) if r.id == l.id => running = None,
            ("stop", _) => panic!("unexpected stop of {}: {lines:#?}", l.id),
            _ => {}
        }
    }
    let mut sorted = lines.to_vec();
    sorted.sort_by_key(|l| l.nanos);
    assert_eq!(sorted, lines, "the log is in time order");
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// GET over plain HTTP/1.1; None while nothing listens.
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.ok()?;
    let status = raw.split(' ').nth(1)?.parse().ok()?;
    Some((status, raw.split_once("\r\n\r\n")?.1.to_string()))
}

/// Polls `path` until `pred` holds on the answer.
pub async fn wait_http(
    port: u16,
    path: &str,
    within: Duration,
    pred: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let deadline = Instant::now() + within;
    loop {
        if let Some((code, body)) = http_get(port, path).await {
            if pred(code, &body) {
                return (code, body);
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting on {path}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Short timings that still pass the safety rule, for tests that wait out deadlines.
pub const FAST: [&str; 8] = [
    "--lease-duration",
    "4s",
    "--renew-deadline",
    "2s",
    "--retry-period",
    "500ms",
    "--kill-grace",
    "1s",
];

/// Writes `holder` into the lock with a whole-object PUT, as `kubectl replace`
/// or `edit` would; reads again when a renew lands between the read and the write.
pub async fn take_lock(api: &Api, kind: &str, name: &str, holder: &str) {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api as KubeApi, PostParams};
    use leaderrun::record::{LeaderRecord, LEADER_ANNOTATION};
    let client = api.client().await;
    for _ in 0..50 {
        let written = if kind == "lease" {
            let leases = KubeApi::<Lease>::namespaced(client.clone(), &api.namespace);
            let mut l = leases.get(name).await.expect("read the lease");
            l.spec.get_or_insert_with(Default::default).holder_identity = Some(holder.into());
            leases
                .replace(name, &PostParams::default(), &l)
                .await
                .is_ok()
        } else {
            let cms = KubeApi::<ConfigMap>::namespaced(client.clone(), &api.namespace);
            let mut c = cms.get(name).await.expect("read the configmap");
            let ann = c.metadata.annotations.get_or_insert_with(Default::default);
            let mut r = ann
                .get(LEADER_ANNOTATION)
                .and_then(|t| LeaderRecord::from_annotation(t).ok())
                .unwrap_or_default();
            r.holder_identity = holder.into();
            ann.insert(LEADER_ANNOTATION.into(), r.to_annotation());
            cms.replace(name, &PostParams::default(), &c).await.is_ok()
        };
        if written {
            return;
        }
    }
    panic!("could not write {holder} into {kind} {name}");
}

/// When the emulator received `client`'s last write that changed the object: a
/// write answered with an unchanged resourceVersion (a ConfigMap record rewritten
/// within the same second) is a no-op that no follower could have seen.
/// In nanoseconds since the epoch, like the job log.
pub fn last_change_by(emu: &Emulator, client: &str) -> Option<u128> {
    let writes: Vec<_> = emu
        .request_log()
        .into_iter()
        .filter(|r| r.client == client && matches!(r.verb.as_str(), "create" | "update"))
        .filter(|r| r.status == 200 || r.status == 201)
        .collect();
    let last = writes.last()?;
    writes
        .iter()
        .find(|r| r.resource_version == last.resource_version)
        .and_then(|r| emu.wall_time(r).duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
}

/// The real API server's admin kubeconfig (`LEADERRUN_TEST_KUBECONFIG`), or None with a
/// note; under `LEADERRUN_REQUIRE_REAL_SERVER=1` (CI) a missing one is a failure.
pub fn real_server(test: &str) -> Option<PathBuf> {
    match std::env::var_os("LEADERRUN_TEST_KUBECONFIG").filter(|v| !v.is_empty()) {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            assert!(
                std::env::var("LEADERRUN_REQUIRE_REAL_SERVER").as_deref() != Ok("1"),
                "{test}: LEADERRUN_REQUIRE_REAL_SERVER=1 but LEADERRUN_TEST_KUBECONFIG is not set"
            );
            skip(test, "needs a real API server (LEADERRUN_TEST_KUBECONFIG, from tests/real-apiserver/run)");
            None
        }
    }
}

/// `KUBECTL`, else the Debian kubectl that .ci/run unpacks, else `kubectl` on PATH.
pub fn kubectl() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        std::env::var_os("KUBECTL").map(PathBuf::from),
        Some(root.join(".ci/tools/usr/bin/kubectl")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_file())
    .or_else(|| {
        std::process::Command::new("kubectl")
            .args(["version", "--client"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|_| PathBuf::from("kubectl"))
    })
}

/// Runs a leaderrun subcommand as an operator: the subcommand first, then the connection,
/// then the rest (which may end in `-- CMD`). Returns the exit code, stdout and stderr.
pub async fn tool(api: &Api, args: &[&str]) -> (i32, String, String) {
    let mut c = leaderrun();
    c.arg(args[0])
        .arg("--kubeconfig")
        .arg(api.kubeconfig("operator"))
        .args(["-n", &api.namespace])
        .args(&args[1..]);
    let out = tokio::time::timeout(LONG_WAIT, c.output())
        .await
        .expect("in time")
        .expect("run leaderrun");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Wall-clock nanoseconds, as the job script logs them.
pub fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}
