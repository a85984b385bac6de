//! The child's supervision: grace then KILL, grandchildren, zombies, PID 1,
//! stdin, and a terminal's Ctrl-C.

use crate::common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

const LONG: Duration = Duration::from_secs(60);

fn alive(pid: i32) -> bool {
    // A zombie is not alive: it has exited and only waits to be reaped.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Waits until every pid listed in `file` is gone from /proc: exited *and* reaped
/// (a zombie keeps its entry until its parent, or subreaper, waits for it).
async fn wait_reaped(file: &Path, within: Duration) {
    let pids: Vec<i32> = wait_file(file, within)
        .await
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert!(!pids.is_empty(), "the orphans were recorded");
    let deadline = Instant::now() + within;
    while pids
        .iter()
        .any(|p| Path::new(&format!("/proc/{p}")).exists())
    {
        assert!(
            Instant::now() < deadline,
            "orphans {pids:?} were not reaped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Zombie children of `pid`.
/// Zombies anywhere in the tree below `pid` (leaderrun, its guard, the job's tree).
fn zombies_of(pid: u32) -> Vec<i32> {
    let (mut tree, mut scratch) = (Vec::new(), Vec::new());
    leaderrun::proc_tree::descendants(
        nix::unistd::Pid::from_raw(pid as i32),
        &mut tree,
        &mut scratch,
    );
    tree.into_iter()
        .map(|p| p.as_raw())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|stat| {
                    let rest = &stat[stat.rfind(')')? + 1..];
                    Some(rest.split_whitespace().next()? == "Z")
                })
                .unwrap_or(false)
        })
        .collect()
}

#[tokio::test]
async fn a_child_that_ignores_term_gets_kill_after_the_grace() {
    let api = Api::start().await;
    let name = api.lock_name("stubborn");
    let pidfile = api.dir.path().join("stubborn.pid");
    let script = format!(
        "trap '' TERM; echo $$ > {}; while :; do sleep 0.05; done",
        pidfile.display()
    );
    let leader = candidate(&api, "lease", &name, "s", &FAST, &["sh", "-c", &script]);
    let pid: i32 = wait_file(&pidfile, LONG).await.trim().parse().unwrap();
    take_lock(&api, "lease", &name, "someone-else").await;
    let t = Instant::now();
    let (code, stderr) = exit_of(leader, LONG).await;
    assert_eq!(code, 121, "{stderr}");
    assert!(!alive(pid), "the child is gone");
    // It noticed at its next renew (<= 500ms), then waited the 1s grace before KILL.
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "KILL came only after the grace: {:?}",
        t.elapsed()
    );
    assert!(
        stderr.contains("Signal(9)"),
        "the child died of KILL: {stderr}"
    );
}

#[tokio::test]
async fn grandchildren_left_behind_are_stopped_before_the_release() {
    let api = Api::start().await;
    let name = api.lock_name("gc");
    let gcfile = api.dir.path().join("gc.pid");
    let script = format!("sleep 1000 & echo $! > {}; exit 0", gcfile.display());
    let (code, stderr) = exit_of(
        candidate(&api, "lease", &name, "g", &[], &["sh", "-c", &script]),
        LONG,
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let gc: i32 = std::fs::read_to_string(&gcfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!alive(gc), "the grandchild was stopped with the group");
    assert!(stderr.contains("left processes in its group"), "{stderr}");
}

#[tokio::test]
async fn orphans_are_reaped_while_the_child_runs() {
    let api = Api::start().await;
    let name = api.lock_name("orphans");
    let ready = api.dir.path().join("orphans.ready");
    let orphans = api.dir.path().join("orphans.pids");
    // Each subshell leaves an orphan `sleep`, which comes to leaderrun (a subreaper) to be reaped.
    let script = format!(
        "for i in 1 2 3; do (sleep 0.1 & echo $! >> {orphans}); done; echo ok > {ready}; while :; do sleep 0.05; done",
        orphans = orphans.display(),
        ready = ready.display()
    );
    let mut c = candidate(&api, "lease", &name, "o", &[], &["sh", "-c", &script]);
    wait_file(&ready, LONG).await;
    wait_reaped(&orphans, LONG).await;
    let pid = c.id().unwrap();
    assert_eq!(
        zombies_of(pid),
        Vec::<i32>::new(),
        "no zombies under leaderrun"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(LONG, c.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(143));
}

#[tokio::test]
async fn as_pid_1_it_reaps_orphans_and_forwards_term() {
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
        skip("PID 1 test", "`unshare --pid --fork` is not permitted here");
        return;
    }
    let api = Api::start().await;
    let name = api.lock_name("pid1");
    let ready = api.dir.path().join("pid1.ready");
    let script = format!("for i in 1 2 3; do (sleep 0.1 &); done; trap 'exit 0' TERM; echo $$ > {}; while :; do sleep 0.05; done", ready.display());
    let mut cmd = tokio::process::Command::new("unshare");
    cmd.args([
        "--pid",
        "--fork",
        env!("CARGO_BIN_EXE_leaderrun"),
        "--kubeconfig",
    ])
    .arg(api.kubeconfig("pid1"))
    .args([
        "--name",
        &name,
        "-n",
        &api.namespace,
        "--",
        "sh",
        "-c",
        &script,
    ])
    .env_remove("KUBECONFIG")
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let unshare = cmd.spawn().unwrap();
    wait_file(&ready, LONG).await;
    // leaderrun's PID outside the namespace: the only child of unshare.
    let upid = unshare.id().unwrap();
    let leaderrun_pid = only_child(upid).expect("unshare runs leaderrun");
    let status = std::fs::read_to_string(format!("/proc/{leaderrun_pid}/status")).unwrap();
    let nspid = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .unwrap_or_default();
    assert_eq!(
        nspid.split_whitespace().last(),
        Some("1"),
        "leaderrun is PID 1 in its namespace: {nspid}"
    );
    // The orphans exit after 0.1s; a PID 1 that did not reap would keep them as zombies.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let deadline = Instant::now() + LONG;
    while !zombies_of(leaderrun_pid).is_empty() {
        assert!(Instant::now() < deadline, "PID 1 did not reap the orphans");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(leaderrun_pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let (code, stderr) = exit_of(unshare, LONG).await;
    assert_eq!(code, 0, "TERM reached the child, which exited 0: {stderr}");
}

/// The one child of `pid`, from /proc (the kernel here may lack task/*/children).
fn only_child(pid: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let p: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        let ppid: u32 = stat[stat.rfind(')')? + 1..]
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        (ppid == pid).then_some(p)
    })
}

#[tokio::test]
async fn stdin_is_passed_through() {
    let api = Api::start().await;
    let mut c = leaderrun();
    c.arg("--kubeconfig").arg(api.kubeconfig("stdin")).args([
        "--name",
        &api.lock_name("stdin"),
        "-n",
        &api.namespace,
        "--",
        "sh",
        "-c",
        "read x; test \"$x\" = hello",
    ]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    use tokio::io::AsyncWriteExt;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello\n")
        .await
        .unwrap();
    let (code, stderr) = exit_of(child, LONG).await;
    assert_eq!(code, 0, "the child read stdin: {stderr}");
}

#[tokio::test]
async fn ctrl_c_in_a_terminal_stops_the_job_and_leaderrun() {
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
        return;
    }
    let api = Api::start().await;
    let name = api.lock_name("tty");
    let started = api.dir.path().join("tty.started");
    let result = api.dir.path().join("tty.result");
    let session = format!("leaderrun-test-{}", std::process::id());
    let script = api.dir.path().join("tty.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n'{bin}' --kubeconfig '{kc}' --name {name} -n {ns} -- sh -c 'echo started > {started}; while :; do sleep 0.05; done'\necho \"exit=$?\" > {result}\n",
            bin = env!("CARGO_BIN_EXE_leaderrun"),
            kc = api.kubeconfig("tty").display(),
            ns = api.namespace,
            started = started.display(),
            result = result.display(),
        ),
    )
    .unwrap();
    let tmux = |args: &[&str]| {
        std::process::Command::new("tmux")
            .args(["-L", &session])
            .args(args)
            .output()
            .unwrap()
            .status
    };
    assert!(tmux(&[
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "120",
        "-y",
        "30",
        &format!("sh {}", script.display())
    ])
    .success());
    wait_file(&started, LONG).await;
    assert!(tmux(&["send-keys", "-t", "t", "C-c"]).success());
    let got = wait_file(&result, LONG).await;
    let _ = tmux(&["kill-server"]);
    assert_eq!(
        got.trim(),
        "exit=130",
        "Ctrl-C ended the job (SIGINT: 128+2) and leaderrun with it"
    );
}
