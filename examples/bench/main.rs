//! leaderrun next to the elections a user would pick instead (client-go's leaderelection,
//! kube-lease-manager, kube-leader-election, the Python client's LeaderElection), against
//! kube-emulator and against a real kube-apiserver 1.20.2 (one Lease each, the same
//! 15s/10s/2s timings), with the server's own floor for a handover measured in the same run:
//!
//!     cargo run --release --example bench
//!
//! The real server is `LEADERRUN_TEST_KUBECONFIG` if set, else one started with
//! `tests/real-apiserver/run` (built on first use). Needs the Python client (`.ci/run` makes
//! `.venv`, or set LEADERRUN_PYTHON), Go (client-go's candidate is built from the real server's
//! source tree) and crates.io for the Rust peers' candidates (tests/interop/build-peer). Writes
//! docs/PERFORMANCE.md and docs/performance.png.
//! Knobs: BENCH_GRACEFUL_RUNS (default 10), BENCH_CRASH_RUNS (3), BENCH_LOAD_SECONDS (20),
//! BENCH_COST_SECONDS (60), BENCH_SIZES (1,10,100), BENCH_SERVERS (emulator,real),
//! BENCH_FLOOR_RUNS (20), BENCH_MIXED_ROUNDS (4).

mod floor;
mod mixed;
mod peers;
mod report;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube_emulator::{Action, Config, Emulator, Fault};
use peers::{Impl, Peers};

const LEASE: u64 = 15;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Where the candidates run against.
enum Server {
    Emulator(Emulator),
    Real {
        kubeconfig: PathBuf,
        client: kube::Client,
        /// The process that runs it, when the bench started it.
        _process: Option<KillOnDrop>,
    },
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

/// Requests counted so far: all of them, and writes (PUT, PATCH and apply, POST, DELETE).
#[derive(Clone, Copy, Default)]
struct Counts {
    all: f64,
    puts: f64,
}

impl Server {
    fn label(&self) -> &'static str {
        match self {
            Server::Emulator(_) => "kube-emulator",
            Server::Real { .. } => "kube-apiserver 1.20.2",
        }
    }

    fn kubeconfig(&self, dir: &Path, id: &str) -> Result<PathBuf, String> {
        match self {
            Server::Emulator(e) => {
                let p = dir.join(format!("{id}.kubeconfig"));
                std::fs::write(&p, e.kubeconfig(Some(id), "default")).map_err(|e| e.to_string())?;
                Ok(p)
            }
            Server::Real { kubeconfig, .. } => Ok(kubeconfig.clone()),
        }
    }

    async fn client(&self, dir: &Path) -> Result<kube::Client, String> {
        match self {
            Server::Real { client, .. } => Ok(client.clone()),
            Server::Emulator(_) => client_for(&self.kubeconfig(dir, "bench-watcher")?).await,
        }
    }

    /// Requests the server has answered so far, for the lock kind (leases).
    async fn counts(&self) -> Counts {
        match self {
            Server::Emulator(e) => {
                let log = e.request_log();
                let leases = log.iter().filter(|r| r.resource == "leases");
                let all = leases.clone().count() as f64;
                let puts = leases
                    .filter(|r| matches!(r.method.as_str(), "PUT" | "PATCH" | "POST" | "DELETE"))
                    .count() as f64;
                Counts { all, puts }
            }
            Server::Real { client, .. } => {
                let req = http::Request::get("/metrics")
                    .body(Vec::new())
                    .unwrap_or_default();
                let text = client.request_text(req).await.unwrap_or_default();
                let mut c = Counts::default();
                for line in text
                    .lines()
                    .filter(|l| l.starts_with("apiserver_request_total{"))
                {
                    if !line.contains("resource=\"leases\"") {
                        continue;
                    }
                    let v: f64 = line
                        .rsplit(' ')
                        .next()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0.0);
                    c.all += v;
                    let write = ["PUT", "PATCH", "APPLY", "POST", "DELETE"];
                    if write
                        .iter()
                        .any(|v| line.contains(&format!("verb=\"{v}\"")))
                    {
                        c.puts += v;
                    }
                }
                c
            }
        }
    }
}

async fn client_for(kubeconfig: &Path) -> Result<kube::Client, String> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| e.to_string())?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| e.to_string())?;
    kube::Client::try_from(cfg).map_err(|e| e.to_string())
}

/// The real server: LEADERRUN_TEST_KUBECONFIG, else started (and built if need be) here.
async fn real_server(root: &Path, dir: &Path) -> Result<Server, String> {
    let (kubeconfig, process) = match std::env::var_os("LEADERRUN_TEST_KUBECONFIG") {
        Some(p) => (PathBuf::from(p), None),
        None => {
            let out = dir.join("real.kubeconfig");
            eprintln!("starting tests/real-apiserver/run (builds kube-apiserver on first use)");
            let child = Command::new(root.join("tests/real-apiserver/run"))
                .arg("--kubeconfig-out")
                .arg(&out)
                .stdout(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start tests/real-apiserver/run: {e}"))?;
            let guard = KillOnDrop(child);
            wait_for("the real API server", Duration::from_secs(1200), || {
                out.exists()
            })?;
            (out, Some(guard))
        }
    };
    let client = client_for(&kubeconfig).await?;
    Ok(Server::Real {
        kubeconfig,
        client,
        _process: process,
    })
}

/// Observes the lock and notes when each change arrived, on the wall clock: the moment a
/// standby could have seen the leader's last renew.
struct Watcher {
    seen: Arc<Mutex<Vec<(String, u128)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    fn start(rt: &tokio::runtime::Runtime, client: kube::Client, name: &str) -> Watcher {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let out = seen.clone();
        let api: kube::Api<Lease> = kube::Api::namespaced(client, "default");
        let params = kube::api::WatchParams::default().fields(&format!("metadata.name={name}"));
        let task = rt.spawn(async move {
            let Ok(mut stream) = api.watch(&params, "0").await.map(|s| s.boxed()) else {
                return;
            };
            while let Some(Ok(ev)) = stream.next().await {
                if let kube::api::WatchEvent::Added(l) | kube::api::WatchEvent::Modified(l) = ev {
                    let holder = l.spec.and_then(|s| s.holder_identity).unwrap_or_default();
                    out.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((holder, now_nanos()));
                }
            }
        });
        Watcher { seen, task }
    }

    /// When the last change while `holder` held the lock arrived.
    fn last_by(&self, holder: &str) -> Option<u128> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rev()
            .find(|(h, _)| h == holder)
            .map(|(_, t)| *t)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Bench {
    server: Server,
    dir: PathBuf,
    bin: PathBuf,
    peers: Peers,
    counter: u32,
    prefix: String,
}

/// The job: log start, then run `work` seconds (0: until stopped), log stop.
fn job_script(log: &Path, work: f64) -> String {
    let body = if work > 0.0 {
        format!("sleep {work}")
    } else {
        // TERM ends the loop, not the shell, so that the stop line is still written.
        "on=1; trap 'on=0' TERM; while [ $on = 1 ]; do sleep 0.2; done".into()
    };
    format!(
        "echo \"start $LEADERRUN_IDENTITY 0 $(date +%s%N)\" >> {log}; {body}; echo \"stop $LEADERRUN_IDENTITY 0 $(date +%s%N)\" >> {log}",
        log = log.display()
    )
}

fn read_log(path: &Path) -> Vec<(String, String, u128)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let p: Vec<&str> = l.split_whitespace().collect();
            Some((
                p.first()?.to_string(),
                p.get(1)?.to_string(),
                p.get(3)?.parse().ok()?,
            ))
        })
        .collect()
}

fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> Result<(), String> {
    let t = Instant::now();
    while t.elapsed() < within {
        if f() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err(format!("timed out waiting for {what}"))
}

fn stop(mut children: Vec<Child>) {
    for c in children.iter_mut() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    for c in children.iter_mut() {
        let _ = c.wait();
    }
}

/// Resident and proportional set size of a process, in MiB.
fn memory(pid: u32) -> (f64, f64) {
    let field = |file: &str, key: &str| -> f64 {
        std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("status", "VmRSS:"), field("smaps_rollup", "Pss:"))
}

/// The guard (a child named leaderrun-guard) of a leaderrun process, if any.
fn guard_of(pid: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let p: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        let comm = &stat[stat.find('(')? + 1..stat.rfind(')')?];
        let ppid: u32 = stat[stat.rfind(')')? + 1..]
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        (ppid == pid && comm == "leaderrun-guard").then_some(p)
    })
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

impl Bench {
    fn name(&mut self, base: &str) -> String {
        self.counter += 1;
        format!("{}-{base}-{}", self.prefix, self.counter)
    }

    fn candidate(
        &self,
        which: Impl,
        name: &str,
        id: &str,
        log: &Path,
        work: f64,
    ) -> Result<Child, String> {
        let kc = self.server.kubeconfig(&self.dir, id)?;
        let mut cmd = match self.peers.command(which, &kc, name, id, log, work) {
            Some(c) => c,
            None => {
                let mut c = Command::new(&self.bin);
                c.arg("--kubeconfig").arg(&kc).args([
                    "--name",
                    name,
                    "-n",
                    "default",
                    "--identity",
                    id,
                    "-q",
                    "--",
                    "sh",
                    "-c",
                    &job_script(log, work),
                ]);
                c
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start a candidate: {e}"))
    }

    /// The leader lets go: its job ends on its own (leaderrun, Python) or it is asked to with
    /// TERM (the peers' candidates stop their job, then release). From the leader's job's
    /// last line to the standby's job's first.
    fn graceful(&mut self, which: Impl) -> Result<Duration, String> {
        let name = self.name("graceful");
        let log = self.dir.join(format!("{name}.log"));
        let work = if which.job_ends_itself() { 3.0 } else { 0.0 };
        let a = self.candidate(which, &name, &format!("{name}-a"), &log, work)?;
        wait_for("the first leader", Duration::from_secs(60), || {
            read_log(&log).len() == 1
        })?;
        let b = self.candidate(which, &name, &format!("{name}-b"), &log, work.min(0.5))?;
        if !which.job_ends_itself() {
            // As long as leaderrun's standby has before its leader's job ends.
            std::thread::sleep(Duration::from_secs(3));
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(a.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        wait_for("the handover", Duration::from_secs(120), || {
            read_log(&log).len() >= 3
        })?;
        let lines = read_log(&log);
        stop(vec![a, b]);
        Ok(Duration::from_nanos((lines[2].2 - lines[1].2) as u64))
    }

    /// The leader is SIGKILLed: (kill to takeover, last renew seen to takeover), each minus
    /// the lease duration, in seconds.
    fn crash(&mut self, rt: &tokio::runtime::Runtime, which: Impl) -> Result<(f64, f64), String> {
        let name = self.name("crash");
        let log = self.dir.join(format!("{name}.log"));
        let client = rt.block_on(self.server.client(&self.dir))?;
        let watcher = Watcher::start(rt, client, &name);
        let a_id = format!("{name}-a");
        let mut a = self.candidate(which, &name, &a_id, &log, 0.0)?;
        wait_for("the first leader", Duration::from_secs(60), || {
            read_log(&log).len() == 1
        })?;
        let b = self.candidate(which, &name, &format!("{name}-b"), &log, 0.0)?;
        // The standby has seen the lock and is waiting; kill at a random point of the renew cycle.
        std::thread::sleep(Duration::from_millis(4000 + (now_nanos() % 2000) as u64));
        let killed_at = now_nanos();
        let _ = a.kill();
        let _ = a.wait();
        let started = || {
            read_log(&log)
                .iter()
                .find(|l| l.0 == "start" && l.1.ends_with("-b"))
                .map(|l| l.2)
        };
        wait_for("the takeover", Duration::from_secs(120), || {
            started().is_some()
        })?;
        let started = started().unwrap_or(killed_at);
        stop(vec![b]);
        let after_expiry = watcher.last_by(&a_id).map_or(f64::NAN, |t| {
            (started as f64 - t as f64) / 1e9 - LEASE as f64
        });
        Ok((
            (started as f64 - killed_at as f64) / 1e9 - LEASE as f64,
            after_expiry,
        ))
    }

    /// Requests per second with `n` candidates, and PUTs per second (the leader's renews).
    fn load(
        &mut self,
        rt: &tokio::runtime::Runtime,
        which: Impl,
        n: usize,
        seconds: u64,
    ) -> Result<(f64, f64), String> {
        let name = self.name("load");
        let log = self.dir.join(format!("{name}.log"));
        let fault = match (&self.server, which) {
            (Server::Emulator(e), Impl::LeaderrunPolling) => Some(
                e.add_fault(
                    Fault::new(Action::Error {
                        code: 403,
                        retry_after: None,
                    })
                    .path_contains("watch="),
                ),
            ),
            _ => None,
        };
        let mut children = Vec::new();
        for i in 0..n {
            children.push(self.candidate(which, &name, &format!("{name}-{i}"), &log, 0.0)?);
        }
        wait_for("a leader", Duration::from_secs(300), || {
            read_log(&log).len() == 1
        })?;
        // Let every candidate read the lock and settle on its watch (or poll), then count.
        std::thread::sleep(Duration::from_secs(3 + n as u64 / 10));
        let before = rt.block_on(self.server.counts());
        std::thread::sleep(Duration::from_secs(seconds));
        let after = rt.block_on(self.server.counts());
        stop(children);
        if let (Server::Emulator(e), Some(id)) = (&self.server, fault) {
            e.remove_fault(id);
        }
        let s = seconds as f64;
        Ok(((after.all - before.all) / s, (after.puts - before.puts) / s))
    }

    /// Resident memory (MiB, RSS and PSS, with the guard) and CPU seconds per hour of a leader.
    fn cost(&mut self, which: Impl, seconds: u64) -> Result<Cost, String> {
        let name = self.name("cost");
        let log = self.dir.join(format!("{name}.log"));
        let mut a = self.candidate(which, &name, &format!("{name}-a"), &log, 0.0)?;
        wait_for("the leader", Duration::from_secs(60), || {
            read_log(&log).len() == 1
        })?;
        let pid = a.id();
        let guard = guard_of(pid);
        let cpu = || cpu_seconds(pid) + guard.map_or(0.0, cpu_seconds);
        let c0 = cpu();
        let mut worst = Cost::default();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(seconds) {
            let (rss, pss) = memory(pid);
            let (grss, gpss) = guard.map_or((0.0, 0.0), memory);
            worst.rss = worst.rss.max(rss + grss);
            worst.pss = worst.pss.max(pss + gpss);
            worst.guard_rss = worst.guard_rss.max(grss);
            std::thread::sleep(Duration::from_millis(500));
        }
        worst.cpu_per_hour = (cpu() - c0) / t.elapsed().as_secs_f64() * 3600.0;
        let _ = a.kill();
        let _ = a.wait();
        Ok(worst)
    }

    /// Wall time of `leaderrun inspect` on an existing lock, in ms.
    fn inspect_ms(&mut self) -> Result<f64, String> {
        let name = self.name("inspect");
        let log = self.dir.join(format!("{name}.log"));
        let a = self.candidate(Impl::Leaderrun, &name, &format!("{name}-a"), &log, 0.0)?;
        wait_for("the leader", Duration::from_secs(60), || {
            read_log(&log).len() == 1
        })?;
        let kc = self.server.kubeconfig(&self.dir, "inspector")?;
        let mut v = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            let out = Command::new(&self.bin)
                .args([
                    "inspect",
                    "-q",
                    "--name",
                    &name,
                    "-n",
                    "default",
                    "--kubeconfig",
                ])
                .arg(&kc)
                .output()
                .map_err(|e| e.to_string())?;
            if out.status.code() != Some(0) {
                return Err(format!("inspect: {}", String::from_utf8_lossy(&out.stderr)));
            }
            v.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        stop(vec![a]);
        Ok(median(&mut v))
    }

    /// Wall time of a one-shot `leaderrun --no-wait -- true`, median of 20 (ms): on a free
    /// lock (it wins, runs `true` and releases) and on one another copy holds (it loses, 75).
    fn one_shot(&mut self) -> Result<(f64, f64), String> {
        let name = self.name("oneshot");
        let log = self.dir.join(format!("{name}.log"));
        let kc = self.server.kubeconfig(&self.dir, "oneshot")?;
        let run = |expect: i32| -> Result<f64, String> {
            let mut v = Vec::new();
            for _ in 0..20 {
                let t = Instant::now();
                let out = Command::new(&self.bin)
                    .arg("--kubeconfig")
                    .arg(&kc)
                    .args(["--name", &name, "-n", "default", "--identity", "oneshot"])
                    .args(["-q", "--no-wait", "--", "true"])
                    .output()
                    .map_err(|e| e.to_string())?;
                v.push(t.elapsed().as_secs_f64() * 1000.0);
                if out.status.code() != Some(expect) {
                    return Err(format!(
                        "--no-wait: exit {:?}, expected {expect}: {}",
                        out.status.code(),
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
            }
            Ok(median(&mut v))
        };
        let wins = run(0)?;
        let a = self.candidate(Impl::Leaderrun, &name, &format!("{name}-a"), &log, 0.0)?;
        wait_for("the leader", Duration::from_secs(60), || {
            read_log(&log).len() == 1
        })?;
        let loses = run(75);
        stop(vec![a]);
        Ok((wins, loses?))
    }

    /// `step-down` on a leader with a waiting standby: from the command to the standby's start.
    fn step_down(&mut self) -> Result<Duration, String> {
        let name = self.name("stepdown");
        let log = self.dir.join(format!("{name}.log"));
        let a = self.candidate(Impl::Leaderrun, &name, &format!("{name}-a"), &log, 0.0)?;
        wait_for("the leader", Duration::from_secs(60), || {
            read_log(&log).len() == 1
        })?;
        let b = self.candidate(Impl::Leaderrun, &name, &format!("{name}-b"), &log, 0.0)?;
        std::thread::sleep(Duration::from_secs(2));
        let kc = self.server.kubeconfig(&self.dir, "operator")?;
        let asked = now_nanos();
        let out = Command::new(&self.bin)
            .args([
                "step-down",
                "-q",
                "--name",
                &name,
                "-n",
                "default",
                "--kubeconfig",
            ])
            .arg(&kc)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.code() != Some(0) {
            return Err(format!(
                "step-down: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let started = || {
            read_log(&log)
                .iter()
                .find(|l| l.0 == "start" && l.1.ends_with("-b"))
                .map(|l| l.2)
        };
        wait_for("the standby's start", Duration::from_secs(60), || {
            started().is_some()
        })?;
        let took = started().unwrap_or(asked) - asked;
        stop(vec![a, b]);
        Ok(Duration::from_nanos(took as u64))
    }
}

#[derive(Clone, Copy, Default)]
pub struct Cost {
    pub rss: f64,
    pub pss: f64,
    pub guard_rss: f64,
    pub cpu_per_hour: f64,
}

/// A figure's median, p95 and number of runs.
#[derive(Clone, Copy)]
pub struct Spread {
    pub median: f64,
    pub p95: f64,
    pub runs: usize,
}

impl Spread {
    fn of(mut v: Vec<f64>) -> Spread {
        Spread {
            median: median(&mut v),
            p95: p95(&mut v),
            runs: v.len(),
        }
    }
}

/// Every figure measured against one server.
pub struct Figures {
    pub server: String,
    pub floor: Spread,
    /// A child process's own share of a handover (`floor::process_floor`).
    pub process: Spread,
    pub handover: Vec<(Impl, Spread)>,
    pub crash: Vec<(Impl, Spread)>,
    pub expiry: Vec<(Impl, Spread)>,
    pub load: Vec<(Impl, Vec<(f64, f64)>)>,
    pub cost: Vec<(Impl, Cost)>,
    pub respect: Vec<(Impl, mixed::Respect)>,
    pub inspect_ms: f64,
    pub step_down_ms: f64,
    /// `--no-wait -- true`: (wins, loses), ms.
    pub one_shot: (f64, f64),
    /// What a winning one-shot asks of the API, in process (`floor::one_shot_floor`).
    pub one_shot_floor: Spread,
    pub seconds: f64,
}

/// The systems to measure: BENCH_IMPLS (labels' first words, e.g. "leaderrun,client-go"),
/// else all of them.
fn columns() -> Vec<Impl> {
    let wanted = std::env::var("BENCH_IMPLS").unwrap_or_default();
    Impl::COLUMNS
        .into_iter()
        .filter(|w| {
            wanted.is_empty()
                || wanted
                    .split(',')
                    .any(|k| w.label().split(' ').next() == Some(k.trim()))
        })
        .collect()
}

fn spread_of(
    label: &str,
    what: &str,
    which: Impl,
    runs: u64,
    mut one: impl FnMut() -> Result<f64, String>,
) -> Result<Spread, String> {
    let mut v = Vec::new();
    for _ in 0..runs {
        v.push(one()?);
        eprintln!(
            "{label}: {what} {}: {:.1} ms",
            which.label(),
            v.last().unwrap_or(&0.0)
        );
    }
    Ok(Spread::of(v))
}

fn measure(
    b: &mut Bench,
    rt: &tokio::runtime::Runtime,
    sizes: &[usize],
) -> Result<Figures, String> {
    let started = Instant::now();
    let label = b.server.label().to_string();
    // kube-emulator has no server-side apply, which kube-lease-manager's acquisition needs.
    let impls: Vec<Impl> = columns()
        .into_iter()
        .filter(|w| !(matches!(b.server, Server::Emulator(_)) && *w == Impl::LeaseManager))
        .collect();
    let graceful_runs = env_num("BENCH_GRACEFUL_RUNS", 10);
    let crash_runs = env_num("BENCH_CRASH_RUNS", 3);
    let load_seconds = env_num("BENCH_LOAD_SECONDS", 20);
    let cost_seconds = env_num("BENCH_COST_SECONDS", 60);
    let floor_runs = env_num("BENCH_FLOOR_RUNS", 20) as usize;
    let rounds = env_num("BENCH_MIXED_ROUNDS", 4) as usize;
    let (ka, kb) = (
        b.server.kubeconfig(&b.dir, "floor-a")?,
        b.server.kubeconfig(&b.dir, "floor-b")?,
    );
    let floor = Spread::of(rt.block_on(floor::floor(&ka, &kb, &b.prefix, floor_runs))?);
    eprintln!(
        "{label}: the floor: {:.2} ms (p95 {:.2})",
        floor.median, floor.p95
    );
    let process = Spread::of(floor::process_floor(&b.dir, floor_runs)?);
    eprintln!(
        "{label}: a child process's own cost: {:.2} ms (p95 {:.2})",
        process.median, process.p95
    );
    let one_shot_floor = Spread::of(rt.block_on(floor::one_shot_floor(
        &ka,
        &format!("{}-one-shot-floor", b.prefix),
        floor_runs,
    ))?);
    eprintln!(
        "{label}: a one-shot's requests on a new connection: {:.2} ms (p95 {:.2})",
        one_shot_floor.median, one_shot_floor.p95
    );
    let mut f = Figures {
        server: label.clone(),
        floor,
        process,
        handover: Vec::new(),
        crash: Vec::new(),
        expiry: Vec::new(),
        load: Vec::new(),
        cost: Vec::new(),
        respect: Vec::new(),
        inspect_ms: f64::NAN,
        step_down_ms: f64::NAN,
        one_shot: (f64::NAN, f64::NAN),
        one_shot_floor,
        seconds: 0.0,
    };
    for &which in &impls {
        // Where a handover waits out the lease, 3 runs are enough to show it.
        let runs = if which.handover_waits_for_expiry() {
            graceful_runs.min(3)
        } else {
            graceful_runs
        };
        let s = spread_of(&label, "graceful", which, runs, || {
            Ok(b.graceful(which)?.as_secs_f64() * 1000.0)
        })?;
        f.handover.push((which, s));
    }
    for &which in &impls {
        let mut from_renew = Vec::new();
        let s = spread_of(&label, "crash, kill + lease", which, crash_runs, || {
            let (from_kill, renew) = b.crash(rt, which)?;
            from_renew.push(renew * 1000.0);
            Ok(from_kill * 1000.0)
        })?;
        f.crash.push((which, s));
        f.expiry.push((which, Spread::of(from_renew)));
    }
    let mut loaded = impls.clone();
    if matches!(b.server, Server::Emulator(_)) {
        loaded.insert(1, Impl::LeaderrunPolling);
    }
    for which in loaded {
        let mut row = Vec::new();
        for &n in sizes {
            let r = b.load(rt, which, n, load_seconds)?;
            eprintln!(
                "{label}: load {} n={n}: {:.2} req/s ({:.2} PUT/s)",
                which.label(),
                r.0,
                r.1
            );
            row.push(r);
        }
        f.load.push((which, row));
    }
    for &which in &impls {
        let c = b.cost(which, cost_seconds)?;
        eprintln!(
            "{label}: cost {}: {:.1} MiB RSS, {:.1} MiB PSS, {:.1} CPU s/h",
            which.label(),
            c.rss,
            c.pss,
            c.cpu_per_hour
        );
        f.cost.push((which, c));
    }
    for &which in impls.iter().filter(|&&w| w != Impl::Leaderrun) {
        let r = b.respect(which, rounds)?;
        eprintln!("{label}: one lock with {}: {}", which.label(), r.summary());
        f.respect.push((which, r));
    }
    if impls.contains(&Impl::Leaderrun) {
        f.inspect_ms = b.inspect_ms()?;
        eprintln!("{label}: inspect {:.1} ms", f.inspect_ms);
        f.one_shot = b.one_shot()?;
        eprintln!(
            "{label}: --no-wait -- true: {:.1} ms winning, {:.1} ms losing",
            f.one_shot.0, f.one_shot.1
        );
        let mut sd = Vec::new();
        for _ in 0..3 {
            sd.push(b.step_down()?.as_secs_f64() * 1000.0);
        }
        f.step_down_ms = median(&mut sd);
        eprintln!(
            "{label}: step-down to the standby's start {:.1} ms",
            f.step_down_ms
        );
    }
    f.seconds = started.elapsed().as_secs_f64();
    Ok(f)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

fn p95(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 * 0.95).ceil() as usize).clamp(1, v.len()) - 1]
}

fn main() -> Result<(), String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ok = Command::new(cargo)
        .args(["build", "--release", "--quiet", "--bin", "leaderrun"])
        .status()
        .map_err(|e| e.to_string())?
        .success();
    if !ok {
        return Err("building leaderrun failed".into());
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("leaderrun"))
        .ok_or("no target dir")?;
    let peers = Peers::build(&root)?;
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("leaderrun-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "1,10,100".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let servers = std::env::var("BENCH_SERVERS").unwrap_or_else(|_| "emulator,real".into());
    let started = Instant::now();
    let mut figures = Vec::new();
    for which in servers.split(',').map(str::trim) {
        let server = match which {
            "emulator" => Server::Emulator(
                rt.block_on(Emulator::start(Config::default()))
                    .map_err(|e| e.to_string())?,
            ),
            "real" => rt.block_on(real_server(&root, &dir))?,
            other => return Err(format!("BENCH_SERVERS: unknown server {other:?}")),
        };
        let mut b = Bench {
            server,
            dir: dir.clone(),
            bin: bin.clone(),
            peers: peers.clone(),
            counter: 0,
            prefix: format!("b{:04x}", rand::random::<u16>()),
        };
        figures.push(measure(&mut b, &rt, &sizes)?);
    }
    let md = report::report(&figures, &sizes, started.elapsed().as_secs_f64());
    print!("{md}");
    let docs = root.join("docs");
    std::fs::create_dir_all(&docs).map_err(|e| e.to_string())?;
    std::fs::write(docs.join("PERFORMANCE.md"), &md).map_err(|e| e.to_string())?;
    report::chart(&figures, &docs.join("performance.png"))?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
