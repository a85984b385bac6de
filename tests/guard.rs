//! Nothing of a leadership outlives it, even when leaderrun itself is killed, stopped or
//! busy: the guard process between leaderrun and the job (guard/src/lib.rs). Each test is one
//! of the cases that used to leave a job running: leaderrun SIGKILLed with the work in a
//! grandchild, processes that left the job's group, leaderrun SIGSTOPped, exec credential
//! plugins whose exit status leaderrun stole, Ctrl-Z in a terminal, PID 1.

use crate::common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use kube_emulator::{Action, Fault};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const LONG: Duration = Duration::from_secs(60);

fn alive(pid: i32) -> bool {
    // A zombie is dead for our purposes: it runs nothing.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 1..];
            Some(rest.split_whitespace().next()? != "Z")
        })
        .unwrap_or(false)
}

/// Waits until `pid` is gone; returns how long that took.
async fn wait_gone(pid: i32, within: Duration) -> Duration {
    let t = Instant::now();
    while alive(pid) {
        assert!(
            t.elapsed() < within,
            "process {pid} still alive after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    t.elapsed()
}

fn pid_in(text: &str) -> i32 {
    text.trim().parse().expect("a pid")
}

#[tokio::test]
async fn sigkill_of_leaderrun_stops_the_work_in_a_grandchild_before_a_standby_can_start() {
    let api = Api::start().await;
    for kind in KINDS {
        let name = api.lock_name("k9");
        let pidfile = api.dir.path().join(format!("k9-{kind}.pid"));
        let log = api.log_path();
        let _ = std::fs::remove_file(&log);
        // The shape of a cron job: the work runs in a grandchild (`sh -c './extract; ./load'`).
        let script = format!(
            "echo start $LEADERRUN_IDENTITY $LEADERRUN_FENCING_TOKEN $(date +%s%N) >> {log}; sleep 71 & echo $! > {pid}; wait; :",
            log = log.display(),
            pid = pidfile.display()
        );
        let mut leader = candidate(&api, kind, &name, "k-leader", &FAST, &["sh", "-c", &script]);
        let work = pid_in(&wait_file(&pidfile, LONG).await);
        let standby = job_candidate(&api, kind, &name, "k-standby", &FAST, "0.2");
        leader.start_kill().expect("SIGKILL leaderrun");
        let took = wait_gone(work, Duration::from_secs(2)).await;
        eprintln!("{kind}: the grandchild was gone {took:?} after leaderrun's SIGKILL");
        let (code, stderr) = exit_of(standby, LONG).await;
        assert_eq!(code, 0, "{stderr}");
        let lines = read_log(&log);
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert_eq!(lines[1].id, "k-standby");
        // The grandchild was dead long before the standby could start (after a 4s lease).
        assert!(
            took < Duration::from_secs(2),
            "{kind}: the work was stopped {took:?} after the kill"
        );
    }
}

#[tokio::test]
async fn a_setsid_process_is_stopped_on_lost_leadership() {
    let api = Api::start().await;
    for kind in KINDS {
        let name = api.lock_name("setsid-lost");
        let pidfile = api.dir.path().join(format!("setsid-{kind}.pid"));
        // Leaves the job's process group and session at once.
        let script = format!(
            "setsid sh -c 'echo $$ > {pid}; exec sleep 72' & wait",
            pid = pidfile.display()
        );
        let leader = candidate(&api, kind, &name, "s-leader", &FAST, &["sh", "-c", &script]);
        let escaped = pid_in(&wait_file(&pidfile, LONG).await);
        let pgid = nix::unistd::getpgid(Some(Pid::from_raw(escaped))).unwrap();
        assert_eq!(pgid.as_raw(), escaped, "it has a group of its own");
        take_lock(&api, kind, &name, "someone-else").await;
        let (code, stderr) = exit_of(leader, LONG).await;
        assert_eq!(code, 121, "{kind}: {stderr}");
        assert!(
            !alive(escaped),
            "{kind}: the setsid'd process was stopped too"
        );
    }
}

#[tokio::test]
async fn the_job_inherits_none_of_the_guards_descriptors() {
    // The guard talks to leaderrun on descriptors 3 and 4; a job that wrote to the report
    // pipe would be read as the guard. The job must see only what leaderrun was given.
    let api = Api::start().await;
    let script = "for fd in 3 4 5 6 7 8 9; do [ -e /proc/$$/fd/$fd ] && echo \"open: $fd\"; done; echo checked";
    let mut leader = candidate(
        &api,
        "lease",
        &api.lock_name("fds"),
        "fds",
        &FAST,
        &["sh", "-c", script],
    );
    let mut stdout = leader.stdout.take().expect("piped stdout");
    let (code, stderr) = exit_of(leader, LONG).await;
    let mut out = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut out)
        .await
        .expect("read the job's output");
    assert_eq!(out, "checked\n", "{stderr}");
    assert_eq!(code, 0, "{stderr}");
}

/// One that left the job's group and ignores the stop signal gets the KILL after the grace:
/// the group's KILL cannot reach it, only the one sent to every descendant (found untested by
/// cargo-mutants: with that KILL gone, nothing failed).
#[tokio::test]
async fn a_setsid_process_that_ignores_term_is_killed_after_the_grace() {
    let api = Api::start().await;
    for kind in KINDS {
        let name = api.lock_name("setsid-deaf");
        let pidfile = api.dir.path().join(format!("deaf-{kind}.pid"));
        let script = format!(
            "setsid sh -c 'trap \"\" TERM; echo $$ > {pid}; while :; do sleep 0.05; done' & sleep 0.2; exit 0",
            pid = pidfile.display()
        );
        let started = Instant::now();
        let leader = candidate(&api, kind, &name, "deaf", &FAST, &["sh", "-c", &script]);
        let (code, stderr) = exit_of(leader, LONG).await;
        assert_eq!(code, 0, "{kind}: {stderr}");
        let escaped = pid_in(&std::fs::read_to_string(&pidfile).unwrap());
        assert!(!alive(escaped), "{kind}: the leftover was killed");
        // The job's 0.2 s, then the stop, which it ignores, and the KILL a grace (1 s) later.
        assert!(
            started.elapsed() >= Duration::from_millis(1200),
            "{kind}: {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn a_setsid_process_left_behind_is_stopped_before_the_lock_is_released() {
    let api = Api::start().await;
    let Some(emu) = api.emulator("release after leftovers") else {
        return;
    };
    for kind in KINDS {
        let name = api.lock_name("setsid-left");
        let pidfile = api.dir.path().join(format!("left-{kind}.pid"));
        let stopped = api.dir.path().join(format!("left-{kind}.stopped"));
        // The child exits at once; what it started in a session of its own runs on, and on
        // TERM shuts down in a process it starts then (300ms), which notes when it is done.
        // That process is new in a group already told: it is left to finish (a TERM to it
        // too, found by CI at random, left the note unwritten).
        let script = format!(
            "setsid sh -c 'trap \"sh -c \\\"sleep 0.3; date +%s%N > {stopped}\\\"; exit 0\" TERM; echo $$ > {pid}; while :; do sleep 0.05; done' & sleep 0.2; exit 0",
            pid = pidfile.display(),
            stopped = stopped.display()
        );
        let client = format!("left-{kind}");
        let (code, stderr) = exit_of(
            candidate(&api, kind, &name, &client, &FAST, &["sh", "-c", &script]),
            LONG,
        )
        .await;
        assert_eq!(code, 0, "{kind}: {stderr}");
        let escaped = pid_in(&std::fs::read_to_string(&pidfile).unwrap());
        assert!(!alive(escaped), "{kind}: the leftover was stopped");
        let stopped_at: u128 = std::fs::read_to_string(&stopped)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The release is the last write of this client; it came after the leftover ended.
        let release = emu
            .request_log()
            .into_iter()
            .rfind(|r| r.client == client && r.verb == "update" && r.status == 200)
            .expect("a release");
        let released_at = emu
            .wall_time(&release)
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        assert!(
            released_at + 1_000_000 >= stopped_at,
            "{kind}: released at {released_at}, before the leftover finished at {stopped_at}"
        );
        assert!(stderr.contains("left processes"), "{kind}: {stderr}");
    }
}

#[tokio::test]
async fn a_stopped_leaderrun_is_covered_by_the_guards_deadline() {
    let api = Api::start().await;
    let Some(emu) = api.emulator("SIGSTOP") else {
        return;
    };
    for kind in KINDS {
        let name = api.lock_name("stopped");
        let log = api.log_path();
        let _ = std::fs::remove_file(&log);
        let leader = job_candidate(
            &api,
            kind,
            &name,
            &format!("z-leader-{kind}"),
            &FAST,
            "1000",
        );
        wait_log(&log, LONG, |l| l.len() == 1).await;
        let standby = job_candidate(&api, kind, &name, "z-standby", &FAST, "0.2");
        // The standby is waiting (it has read the lock) before the leader freezes.
        emu.wait_for_request(LONG, |r| r.client == "z-standby")
            .await
            .expect("the standby reads the lock");
        let pid = Pid::from_raw(leader.id().unwrap() as i32);
        kill(pid, Signal::SIGSTOP).unwrap();
        // The guard stops the job at the deadline, on its own.
        let lines = wait_log(&log, LONG, |l| l.len() >= 2).await;
        assert_eq!(
            (lines[1].what.as_str(), lines[1].id.as_str()),
            ("stop", lines[0].id.as_str())
        );
        let renewed = last_change_by(emu, &format!("z-leader-{kind}")).expect("the leader wrote");
        let after = Duration::from_nanos((lines[1].nanos - renewed) as u64);
        // renew deadline 2s + kill grace 1s from the last renew that moved the deadline
        // (the job stops on TERM, at the deadline itself).
        assert!(
            after < Duration::from_millis(3000),
            "{kind}: stopped {after:?} after the last renew"
        );
        let (code, stderr) = exit_of(standby, LONG).await;
        assert_eq!(code, 0, "{stderr}");
        let lines = read_log(&log);
        assert_no_overlap(&lines);
        kill(pid, Signal::SIGCONT).unwrap();
        let (code, stderr) = exit_of(leader, LONG).await;
        assert_eq!(code, 121, "{kind}: leadership lost while stopped: {stderr}");
    }
}

/// A kubeconfig for the emulator whose user gets its token from an exec plugin: a token
/// that expires every second, so kube runs the plugin again and again.
fn exec_kubeconfig(api: &Api, runs: &Path, orphan: bool) -> std::path::PathBuf {
    let plugin = api.dir.path().join("credential-plugin.sh");
    std::fs::write(
        &plugin,
        format!(
            "#!/bin/sh\necho run >> {runs}\n{orphan}exp=$(date -u -d '+1 second' +%Y-%m-%dT%H:%M:%SZ)\nprintf '{{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"t-%s\",\"expirationTimestamp\":\"%s\"}}}}\\n' \"$(date +%s%N)\" \"$exp\"\n",
            runs = runs.display(),
            // A plugin that leaves a process behind: it comes to leaderrun (a subreaper).
            orphan = if orphan { "(sleep 0.2 &)\n" } else { "" },
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let base = api
        .emulator
        .as_ref()
        .expect("an emulator")
        .kubeconfig(None, &api.namespace);
    let exec = format!(
        "  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: {}\n",
        plugin.display()
    );
    let kc = api.dir.path().join(format!("exec-{orphan}.kubeconfig"));
    std::fs::write(&kc, base.replace("  user: {}\n", &exec)).unwrap();
    kc
}

#[tokio::test]
async fn exec_credential_plugins_keep_their_exit_status_while_the_job_forks() {
    let api = Api::start().await;
    let Some(emu) = api.emulator("exec plugin") else {
        return;
    };
    let runs = api.dir.path().join("plugin.runs");
    let kc = exec_kubeconfig(&api, &runs, false);
    let name = api.lock_name("exec");
    let mut c = leaderrun();
    c.arg("--kubeconfig")
        .arg(&kc)
        .args(["--name", &name, "-n", &api.namespace])
        .args([
            "--lease-duration",
            "4s",
            "--renew-deadline",
            "2s",
            "--retry-period",
            "250ms",
            "--kill-grace",
            "1s",
        ])
        // A job that forks every 10ms.
        .args(["--", "sh", "-c", "while :; do sleep 0.01; done"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let leader = c.spawn().unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    kill(Pid::from_raw(leader.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let (code, stderr) = exit_of(leader, LONG).await;
    assert_eq!(code, 143, "TERM ended the job: {stderr}");
    assert!(!stderr.contains("renew failed"), "{stderr}");
    assert!(!stderr.contains("No child processes"), "{stderr}");
    let puts: Vec<u16> = emu
        .request_log()
        .into_iter()
        .filter(|r| r.user_agent.starts_with("leaderrun/") && r.verb == "update")
        .map(|r| r.status)
        .collect();
    assert!(
        puts.len() >= 40,
        "renewed every 250ms for 20s: {}",
        puts.len()
    );
    assert!(
        puts.iter().all(|s| *s == 200),
        "every renew succeeded: {puts:?}"
    );
    let plugin_runs = std::fs::read_to_string(&runs).unwrap().lines().count();
    assert!(
        plugin_runs >= 10,
        "the plugin ran again and again: {plugin_runs}"
    );
}

#[tokio::test]
async fn as_pid_1_strays_of_an_exec_plugin_are_reaped_in_every_phase() {
    if std::process::Command::new("unshare")
        .args(["--pid", "--fork", "true"])
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        assert!(
            std::env::var("LEADERRUN_REQUIRE_REAL_CLIENTS").is_err(),
            "unshare --pid must work in CI"
        );
        skip(
            "PID 1 strays",
            "`unshare --pid --fork` is not permitted here",
        );
        return;
    }
    let api = Api::start().await;
    if api.emulator("strays").is_none() {
        return;
    }
    let runs = api.dir.path().join("strays.runs");
    let kc = exec_kubeconfig(&api, &runs, true);
    let name = api.lock_name("strays");
    // Another holder first, so leaderrun waits (phase 1), then leads for a while
    // (phase 2), then keeps the lock after the job (phase 3).
    let holder = job_candidate(&api, "lease", &name, "strays-holder", &FAST, "3");
    wait_log(&api.log_path(), LONG, |l| l.len() == 1).await;
    let mut cmd = tokio::process::Command::new("unshare");
    cmd.args([
        "--pid",
        "--fork",
        env!("CARGO_BIN_EXE_leaderrun"),
        "--kubeconfig",
    ])
    .arg(&kc)
    .args(["--name", &name, "-n", &api.namespace])
    .args(FAST)
    .args(["--keep-after-exit", "3s", "--", "sleep", "3"])
    .env_remove("KUBECONFIG")
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let unshare = cmd.spawn().unwrap();
    let upid = unshare.id().unwrap() as i32;
    // Every zombie under leaderrun is reaped within a few seconds, whatever the phase.
    let mut seen: std::collections::BTreeMap<i32, Instant> = Default::default();
    let mut longest = Duration::ZERO;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(9) {
        let (mut tree, mut scratch) = (Vec::new(), Vec::new());
        leaderrun::proc_tree::descendants(Pid::from_raw(upid), &mut tree, &mut scratch);
        let zombies: Vec<i32> = tree
            .iter()
            .map(|p| p.as_raw())
            .filter(|p| !alive(*p) && std::path::Path::new(&format!("/proc/{p}")).exists())
            .collect();
        for z in &zombies {
            let first = *seen.entry(*z).or_insert_with(Instant::now);
            longest = longest.max(first.elapsed());
        }
        seen.retain(|p, _| zombies.contains(p));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, stderr) = exit_of(unshare, LONG).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(exit_of(holder, LONG).await.0, 0);
    let plugin_runs = std::fs::read_to_string(&runs).unwrap().lines().count();
    assert!(
        plugin_runs >= 4,
        "the plugin ran in every phase: {plugin_runs}"
    );
    assert!(
        longest < Duration::from_secs(4),
        "a zombie stayed {longest:?}: strays are reaped"
    );
}

/// tmux with an interactive shell, for job control.
struct Terminal {
    session: String,
}

impl Terminal {
    fn start() -> Option<Terminal> {
        if std::process::Command::new("tmux")
            .arg("-V")
            .output()
            .is_err()
        {
            assert!(
                std::env::var("LEADERRUN_REQUIRE_REAL_CLIENTS").is_err(),
                "tmux must be installed in CI"
            );
            skip("terminal test", "no tmux (run .ci/run to install it)");
            return None;
        }
        let t = Terminal {
            session: format!(
                "leaderrun-guard-{}-{}",
                std::process::id(),
                rand::random::<u32>()
            ),
        };
        assert!(t
            .tmux(&[
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                "200",
                "-y",
                "40",
                "bash --norc --noprofile -i"
            ])
            .success());
        Some(t)
    }

    fn tmux(&self, args: &[&str]) -> std::process::ExitStatus {
        std::process::Command::new("tmux")
            .args(["-L", &self.session])
            .args(args)
            .output()
            .unwrap()
            .status
    }

    fn line(&self, text: &str) {
        assert!(self
            .tmux(&["send-keys", "-t", "t", text, "Enter"])
            .success());
    }

    fn keys(&self, keys: &str) {
        assert!(self.tmux(&["send-keys", "-t", "t", keys]).success());
    }

    /// What the terminal shows (leaderrun logs there), for failure messages.
    fn screen(&self) -> String {
        std::process::Command::new("tmux")
            .args([
                "-L",
                &self.session,
                "capture-pane",
                "-p",
                "-t",
                "t",
                "-S",
                "-200",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

fn state_of(pid: i32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s[s.rfind(')')? + 1..]
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// Waits until `pid` is in `state`; on failure says which states it passed through and
/// what the terminal showed.
async fn wait_state(t: &Terminal, pid: i32, state: char) {
    let deadline = Instant::now() + LONG;
    let mut seen: Vec<Option<char>> = Vec::new();
    loop {
        let now = state_of(pid);
        if now == Some(state) {
            return;
        }
        if seen.last() != Some(&now) {
            seen.push(now);
        }
        assert!(
            Instant::now() < deadline,
            "{pid} never reached state {state} (states seen: {seen:?}); the terminal:\n{}",
            t.screen()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Starts `leaderrun -- job` in the terminal; the job writes its pid, then beats. The job is
/// bash, not sh: dash starts commands with vfork, and a Ctrl-Z that lands between its vfork
/// and the exec stops the vforked child while dash waits for it in state D and never stops
/// (so its shell, or leaderrun, never sees the job stop). A plain `sh -c` loop in bash without
/// leaderrun hung so 5 times in 100 Ctrl-Zs on a loaded machine; bash's fork, 0 in 100.
async fn interactive_job(
    api: &Api,
    t: &Terminal,
    tag: &str,
    timing: &[&str],
) -> (i32, std::path::PathBuf, std::path::PathBuf) {
    let dir = api.dir.path();
    let (pidfile, beats, result) = (
        dir.join(format!("{tag}.pid")),
        dir.join(format!("{tag}.beats")),
        dir.join(format!("{tag}.result")),
    );
    t.line(&format!(
        "'{bin}' --kubeconfig '{kc}' --name {name} -n {ns} {fast} -- bash -c 'echo $$ > {pid}; while :; do date +%s%N >> {beats}; sleep 0.05; done'",
        bin = env!("CARGO_BIN_EXE_leaderrun"),
        kc = api.kubeconfig(tag).display(),
        name = api.lock_name(tag),
        ns = api.namespace,
        fast = timing.join(" "),
        pid = pidfile.display(),
        beats = beats.display(),
    ));
    let job = pid_in(&wait_file(&pidfile, LONG).await);
    (job, beats, result)
}

// Multi-threaded: the tmux calls block, and the emulator must answer renews meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_z_stops_job_and_leaderrun_and_fg_renews_before_the_job_goes_on() {
    let Some(t) = Terminal::start() else {
        return;
    };
    let api = Api::start().await;
    if api.emulator("ctrl-z renews first").is_none() {
        return;
    }
    let (job, beat_file, result) = interactive_job(&api, &t, "ctrlz", &FAST).await;
    t.keys("C-z");
    wait_state(&t, job, 'T').await;
    // The shell's prompt is back: it runs the next command.
    let prompt = api.dir.path().join("prompt");
    t.line(&format!("echo back > {}", prompt.display()));
    wait_file(&prompt, LONG).await;
    // The renew after `fg` is answered 300 ms late: a job that went on before the answer
    // (say, on the shell's CONT to leaderrun) would beat meanwhile.
    let emu = api.emulator.as_ref().expect("the emulator");
    emu.add_fault(
        Fault::new(Action::Latency { ms: 300 })
            .for_client("ctrlz")
            .method("PUT")
            .times(1),
    );
    let nanos =
        |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let fg_at = nanos(std::time::SystemTime::now());
    t.line("fg");
    // The first beat whose clock was read after `fg`: one read before the Ctrl-Z and
    // written after the CONT carries the old time, and says nothing of when it went on.
    let deadline = Instant::now() + LONG;
    let first_beat = loop {
        let fresh = std::fs::read_to_string(&beat_file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse::<u128>().ok())
            .find(|b| *b >= fg_at);
        if let Some(b) = fresh {
            break b;
        }
        assert!(Instant::now() < deadline, "the job never went on after fg");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // It went on only after the answer to a renew sent since `fg` (logged once answered).
    let renew_after_fg = |log: &[kube_emulator::LogEntry]| {
        log.iter()
            .filter(|r| r.client == "ctrlz" && r.verb == "update" && r.status == 200)
            .map(|r| nanos(emu.wall_time(r)) + (r.latency_ms * 1e6) as u128)
            .find(|t| *t >= fg_at)
    };
    let (log, answered) = loop {
        let log = emu.request_log();
        if let Some(t) = renew_after_fg(&log) {
            break (log, t);
        }
        assert!(Instant::now() < deadline, "no renew after fg: {log:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        answered <= first_beat + 1_000_000,
        "renew answered at {answered}, the job went on at {first_beat}; fg at {fg_at}; the requests: {:#?}; the terminal:\n{}",
        log.iter()
            .map(|r| (r.verb.as_str(), r.status, nanos(emu.wall_time(r)), r.latency_ms))
            .collect::<Vec<_>>(),
        t.screen()
    );
    t.keys("C-c");
    // Read by the shell once leaderrun is done.
    t.line(&format!("echo \"exit=$?\" > {}", result.display()));
    assert_eq!(wait_file(&result, LONG).await.trim(), "exit=130");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_z_for_longer_than_the_deadline_loses_leadership_and_fg_exits_121() {
    let Some(t) = Terminal::start() else {
        return;
    };
    let api = Api::start().await;
    // A wider deadline than FAST: the stopped job is there to be seen for seconds, and a
    // loaded machine does not lose leadership before the Ctrl-Z.
    let timing = [
        "--lease-duration",
        "8s",
        "--renew-deadline",
        "4s",
        "--retry-period",
        "1s",
        "--kill-grace",
        "1s",
    ];
    let (job, _beats, result) = interactive_job(&api, &t, "ctrlz-lost", &timing).await;
    t.keys("C-z");
    wait_state(&t, job, 'T').await;
    let prompt = api.dir.path().join("prompt-lost");
    t.line(&format!("echo back > {}", prompt.display()));
    wait_file(&prompt, LONG).await;
    // leaderrun is stopped too: no renews. The guard stops the job at the deadline.
    wait_gone(job, LONG).await;
    t.line("fg");
    t.line(&format!("echo \"exit=$?\" > {}", result.display()));
    assert_eq!(wait_file(&result, LONG).await.trim(), "exit=121");
}

#[tokio::test]
async fn a_fault_free_partition_still_stops_the_whole_tree_at_the_deadline() {
    // The guard's deadline also covers a leaderrun that is alive but cut off: the tree
    // (here a setsid'd worker) is gone within the renew deadline + grace.
    let api = Api::start().await;
    let Some(emu) = api.emulator("partition with setsid worker") else {
        return;
    };
    let name = api.lock_name("cut");
    let pidfile = api.dir.path().join("cut.pid");
    let script = format!(
        "setsid sh -c 'echo $$ > {pid}; exec sleep 73' & while :; do sleep 0.05; done",
        pid = pidfile.display()
    );
    let leader = candidate(&api, "lease", &name, "cut", &FAST, &["sh", "-c", &script]);
    let escaped = pid_in(&wait_file(&pidfile, LONG).await);
    emu.add_fault(Fault::new(Action::Partition).for_client("cut"));
    wait_gone(escaped, LONG).await;
    let (code, _) = exit_of(leader, LONG).await;
    assert_eq!(code, 121);
}
