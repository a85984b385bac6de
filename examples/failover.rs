//! The failover demo: kube-emulator in-process, three real `leaderrun` processes
//! on one Lease over HTTP, the leader SIGKILLed, then the next one stopped with
//! TERM. Prints a timeline and fails if two jobs ever ran at once.
//!
//!     cargo run --example failover

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube_emulator::{Config, Emulator, Kind};

const LEASE: &str = "nightly-report";

fn leaderrun_binary() -> Result<PathBuf, String> {
    // Built here so that `cargo run --example` alone is enough: cargo builds an example's
    // library but not the crate's binaries. In the demo's own profile, so that everything it
    // needs is built already but the binary's last step (with --release: LTO, one codegen
    // unit, a minute or more the first time, said out loud so that it does not look like a hang).
    let mut build = vec!["build", "--bin", "leaderrun"];
    if cfg!(debug_assertions) {
        println!("demo: building the leaderrun binary");
    } else {
        build.push("--release");
        println!(
            "demo: building the leaderrun binary (release: its first link takes a minute or two)"
        );
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(&build)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err("building leaderrun failed".into());
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/PROFILE/examples/failover -> target/PROFILE/leaderrun
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("leaderrun"))
        .ok_or("no target directory")?;
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("{} was not built", bin.display()))
    }
}

fn holder(emu: &Emulator) -> String {
    emu.with_store(|s| s.get(Kind::Lease, "default", LEASE))
        .ok()
        .and_then(|l| {
            l.pointer("/spec/holderIdentity")
                .and_then(|h| h.as_str())
                .map(String::from)
        })
        .unwrap_or_default()
}

fn wait_until(
    what: &str,
    within: Duration,
    mut f: impl FnMut() -> bool,
) -> Result<Duration, String> {
    let t = Instant::now();
    while t.elapsed() < within {
        if f() {
            return Ok(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(format!("timed out waiting for {what}"))
}

/// How many jobs have started, by the jobs' own log.
fn starts(path: &Path) -> usize {
    log_lines(path)
        .iter()
        .filter(|l| l.split(' ').nth(1) == Some("start"))
        .count()
}

fn log_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let bin = leaderrun_binary()?;
    let emu = Emulator::start(Config::default())
        .await
        .map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("leaderrun-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let log = dir.join("jobs.log");
    let start = Instant::now();
    let stamp = move || format!("{:>7.3}s", start.elapsed().as_secs_f64());
    println!(
        "kube-emulator at {} (a Kubernetes API for Leases and ConfigMaps, in this process)",
        emu.url()
    );
    println!("3 candidates: leaderrun --lock lease --name {LEASE} --lease-duration 4s --renew-deadline 2s --retry-period 500ms --kill-grace 1s -- job\n");

    let job = format!(
        "exec 2>/dev/null; echo \"$(date +%s%N) start $LEADERRUN_IDENTITY token=$LEADERRUN_FENCING_TOKEN\" >> {log}; \
         trap 'echo \"$(date +%s%N) stop  $LEADERRUN_IDENTITY\" >> {log}; exit 0' TERM; \
         while :; do sleep 0.1; done",
        log = log.display()
    );
    let mut candidates: Vec<(String, Child)> = Vec::new();
    for id in ["candidate-1", "candidate-2", "candidate-3"] {
        let kc = dir.join(format!("{id}.kubeconfig"));
        std::fs::write(&kc, emu.kubeconfig(Some(id), "default")).map_err(|e| e.to_string())?;
        let child = Command::new(&bin)
            .args([
                "--kubeconfig",
                kc.to_str().unwrap_or_default(),
                "--lock",
                "lease",
                "--name",
                LEASE,
                "--identity",
                id,
            ])
            .args([
                "--lease-duration",
                "4s",
                "--renew-deadline",
                "2s",
                "--retry-period",
                "500ms",
                "--kill-grace",
                "1s",
                "-q",
            ])
            .args(["--", "sh", "-c", &job])
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start leaderrun: {e}"))?;
        candidates.push((id.to_string(), child));
    }

    wait_until("a first leader", Duration::from_secs(30), || {
        starts(&log) == 1
    })?;
    let first = holder(&emu);
    println!("{} {first} leads and runs the job", stamp());
    std::thread::sleep(Duration::from_secs(2));

    println!(
        "{} SIGKILL {first} (its guard sees the lifeline break and stops the job at once)",
        stamp()
    );
    if let Some((_, c)) = candidates.iter_mut().find(|(id, _)| *id == first) {
        let _ = c.kill();
        let _ = c.wait();
    }
    let took = wait_until("a takeover", Duration::from_secs(30), || starts(&log) == 2)?;
    let second = holder(&emu);
    println!("{} {second} took over {:.3}s after the kill (lease duration 4s: the lock expires, then it is taken)", stamp(), took.as_secs_f64());
    std::thread::sleep(Duration::from_secs(2));

    println!(
        "{} TERM {second}: its job stops, the lock is released",
        stamp()
    );
    if let Some((_, c)) = candidates.iter_mut().find(|(id, _)| *id == second) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = c.wait();
    }
    let took = wait_until("a handover", Duration::from_secs(30), || starts(&log) == 3)?;
    let third = holder(&emu);
    println!(
        "{} {third} took over {:.0}ms after the release (seen by watch, not by polling)",
        stamp(),
        took.as_secs_f64() * 1000.0
    );
    std::thread::sleep(Duration::from_secs(1));
    for (_, c) in candidates.iter_mut() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = c.wait();
    }

    println!("\ntimeline of the jobs (from their own log):");
    let lines = log_lines(&log);
    let t0: u128 = lines
        .first()
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let mut running: Option<String> = None;
    let mut overlap = false;
    for l in &lines {
        let mut parts = l.splitn(3, ' ');
        let nanos: u128 = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        let what = parts.next().unwrap_or("");
        let rest = parts.next().unwrap_or("").trim();
        println!(
            "  +{:>7.3}s  {what:<5} {rest}",
            (nanos.saturating_sub(t0)) as f64 / 1e9
        );
        let id = rest.split(' ').next().unwrap_or("").to_string();
        match what {
            "start" if running.is_some() => overlap = true,
            "start" => running = Some(id),
            _ => running = None,
        }
    }
    println!("\nrequests the API served: {}", emu.request_log().len());
    let _ = std::fs::remove_dir_all(&dir);
    if overlap {
        return Err("two jobs ran at once".into());
    }
    println!("one leader at a time: yes");
    Ok(())
}
