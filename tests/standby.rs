//! The guard started while waiting for the lock (src/standby.rs): it starts nothing before it
//! is armed, nothing when leaderrun goes or gives up first, nothing when it is armed too late;
//! the job it starts gets the win's fencing token; and a copy whose standby died still starts
//! its job after a win. The first tests drive the guard's pipe protocol directly, as leaderrun
//! does; the last run whole copies against an API server.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::guard_pipe::{in_future, PipeGuard as Guard};
use common::*;
use leaderrun::guard::wire::{boottime_now, Command, Report};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const LONG: Duration = Duration::from_secs(60);

fn alive(pid: i32) -> bool {
    // A zombie is dead for our purposes: it runs nothing.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s[s.rfind(')')? + 1..].split_whitespace().next()? != "Z"))
        .unwrap_or(false)
}

/// The children of `pid`, from /proc, with their names.
fn children_of(pid: i32) -> Vec<(i32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let p: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let name = stat[stat.find('(')? + 1..stat.rfind(')')?].to_string();
            let ppid: i32 = stat[stat.rfind(')')? + 1..]
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == pid).then_some((p, name))
        })
        .collect()
}

#[test]
fn an_unarmed_guard_starts_nothing_and_exits_when_leaderrun_goes_asks_or_is_told() {
    let dir = tempfile::tempdir().unwrap();
    for how in ["end of file", "stop", "term"] {
        let marker = dir.path().join(how.replace(' ', "-"));
        let mut g = Guard::start(&format!("touch {}", marker.display()), &[]);
        // Give it time to set up and wait; a guard that ran its job unarmed would by now.
        std::thread::sleep(Duration::from_millis(300));
        match how {
            "end of file" => drop(g.commands.take()),
            "stop" => g.send(&[Command::Stop]),
            _ => kill(Pid::from_raw(g.child.id() as i32), Signal::SIGTERM).unwrap(),
        }
        let (reports, code) = g.finish();
        assert_eq!((reports, code), (vec![], 0), "{how}");
        assert!(!marker.exists(), "{how}: the job ran without a win");
    }
}

#[test]
fn an_armed_guard_starts_the_job_with_the_late_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env");
    let script = format!(
        "echo \"$TOKEN ${{SLOT-unset}} ${{OTHER-unset}}\" > {}",
        out.display()
    );
    let g = Guard::start(&script, &["TOKEN", "SLOT", "OTHER"]);
    // An index past the list is ignored; OTHER is never given.
    g.send(&[
        Command::Env(0, 41),
        Command::Env(7, 1),
        Command::Env(1, 2),
        Command::Env(0, 42),
        in_future(Duration::from_secs(30)),
    ]);
    let (reports, code) = g.finish();
    assert_eq!(code, 0);
    assert!(matches!(reports[0], Report::Started(_)), "{reports:?}");
    assert_eq!(reports[1..], [Report::Exited(0), Report::TreeGone]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "42 2 unset\n");
}

#[test]
fn a_guard_armed_after_its_deadline_starts_nothing() {
    // leaderrun stalled between its win and the arming write: the lock may be another's.
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let g = Guard::start(&format!("touch {}", marker.display()), &[]);
    let past = boottime_now().saturating_sub(Duration::from_millis(1));
    g.send(&[Command::Deadline(past.as_nanos() as u64)]);
    let (reports, code) = g.finish();
    assert_eq!((reports, code), (vec![Report::DeadlinePassed], 0));
    assert!(!marker.exists());
}

#[test]
fn a_stop_in_the_same_write_as_the_arming_deadline_is_carried_out() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("started");
    // The job would run a minute; the stop must end it at once, not when the next write comes.
    let script = format!("touch {}; exec sleep 61", marker.display());
    let g = Guard::start(&script, &[]);
    let t = Instant::now();
    g.send(&[in_future(Duration::from_secs(30)), Command::Stop]);
    let (reports, code) = g.finish();
    assert_eq!(code, 0);
    assert!(matches!(reports[0], Report::Started(_)), "{reports:?}");
    assert_eq!(reports.last(), Some(&Report::TreeGone));
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
}

/// The guard a waiting copy started, once it is there.
async fn standby_guard(copy: &tokio::process::Child) -> i32 {
    let pid = copy.id().expect("running") as i32;
    let t = Instant::now();
    loop {
        let guards: Vec<i32> = children_of(pid)
            .into_iter()
            .filter(|(_, name)| name == "leaderrun-guard")
            .map(|(p, _)| p)
            .collect();
        if let [g] = guards[..] {
            return g;
        }
        assert!(t.elapsed() < LONG, "no guard under {pid}: {guards:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_gone(pid: i32, within: Duration) {
    let t = Instant::now();
    while alive(pid) {
        assert!(t.elapsed() < within, "{pid} still alive after {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A waiting copy whose job notes its parent (its guard), then runs the job script.
fn noting_copy(api: &Api, kind: &str, name: &str, id: &str, ppid: &Path) -> tokio::process::Child {
    let script = format!(
        "echo $PPID > {}; exec {} {} 0.2",
        ppid.display(),
        api.job().display(),
        api.log_path().display()
    );
    candidate(api, kind, name, id, &FAST, &["sh", "-c", &script])
}

#[tokio::test]
async fn a_waiting_copy_starts_its_job_through_the_guard_it_readied_with_the_wins_token() {
    let api = Api::start().await;
    for kind in KINDS {
        let name = api.lock_name("readied");
        let leader = leader_running(&api, kind, &name, "r-leader", &FAST).await;
        let log = api.log_path();
        let ppid = api.dir.path().join(format!("readied-{kind}.ppid"));
        let mut standby = noting_copy(&api, kind, &name, "r-standby", &ppid);
        wait_standby(&mut standby).await;
        let guard = standby_guard(&standby).await;
        // Ready, and nothing of the job: the guard has no child, the job wrote nothing.
        assert!(children_of(guard).is_empty(), "{:?}", children_of(guard));
        assert!(!ppid.exists());
        kill(Pid::from_raw(leader.id().unwrap() as i32), Signal::SIGTERM).unwrap();
        let (code, stderr) = exit_of(standby, LONG).await;
        assert_eq!(code, 0, "{kind}: {stderr}");
        assert_eq!(wait_file(&ppid, LONG).await.trim(), guard.to_string());
        let lines = read_log(&log);
        assert_no_overlap(&lines);
        let ids: Vec<&str> = lines.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, ["r-leader", "r-leader", "r-standby", "r-standby"]);
        assert_eq!(lines[2].token, lines[0].token + 1, "{kind}: {lines:#?}");
        let (code, stderr) = exit_of(leader, LONG).await;
        assert_eq!(code, 143, "{kind}: {stderr}");
    }
}

#[tokio::test]
async fn a_waiting_copy_killed_or_stopped_leaves_no_guard_and_no_job() {
    let api = Api::start().await;
    let name = api.lock_name("gone-waiting");
    let leader = leader_running(&api, "lease", &name, "w-leader", &FAST).await;
    let log = api.log_path();
    for signal in [Signal::SIGKILL, Signal::SIGTERM] {
        let ppid = api.dir.path().join(format!("w-{signal}.ppid"));
        let mut standby = noting_copy(&api, "lease", &name, "w-standby", &ppid);
        wait_standby(&mut standby).await;
        let guard = standby_guard(&standby).await;
        kill(Pid::from_raw(standby.id().unwrap() as i32), signal).unwrap();
        wait_gone(guard, Duration::from_secs(10)).await;
        let (code, _) = exit_of(standby, LONG).await;
        let expected = if signal == Signal::SIGKILL { -1 } else { 143 };
        assert_eq!(code, expected, "{signal}");
        assert!(!ppid.exists(), "{signal}: the job ran");
    }
    // The lock was never the standbys' to take: the leader still runs, alone.
    kill(Pid::from_raw(leader.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let (code, stderr) = exit_of(leader, LONG).await;
    assert_eq!(code, 143, "{stderr}");
    let ids: Vec<String> = read_log(&log).into_iter().map(|l| l.id).collect();
    assert_eq!(ids, ["w-leader", "w-leader"]);
}

#[tokio::test]
async fn a_copy_whose_readied_guard_died_starts_its_job_through_a_new_one() {
    let api = Api::start().await;
    let name = api.lock_name("guard-died");
    let leader = leader_running(&api, "lease", &name, "d-leader", &FAST).await;
    let log = api.log_path();
    let ppid = api.dir.path().join("d.ppid");
    let mut standby = noting_copy(&api, "lease", &name, "d-standby", &ppid);
    wait_standby(&mut standby).await;
    let guard = standby_guard(&standby).await;
    kill(Pid::from_raw(guard), Signal::SIGKILL).unwrap();
    wait_gone(guard, Duration::from_secs(10)).await;
    kill(Pid::from_raw(leader.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let (code, stderr) = exit_of(standby, LONG).await;
    assert_eq!(code, 0, "{stderr}");
    assert_ne!(wait_file(&ppid, LONG).await.trim(), guard.to_string());
    let lines = read_log(&log);
    assert_no_overlap(&lines);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    let _ = exit_of(leader, LONG).await;
}

#[tokio::test]
async fn a_one_shot_starts_no_guard_ahead_and_a_waiting_copy_does() {
    let api = Api::start().await;
    let name = api.lock_name("one-shot");
    let leader = leader_running(&api, "lease", &name, "o-leader", &FAST).await;
    let ready = "guard started, waiting to be armed";
    let mut waiting = candidate(&api, "lease", &name, "o-waiting", &FAST, &["true"]);
    wait_stderr(&mut waiting, ready, LONG).await;
    let args = [&FAST[..], &["--no-wait"]].concat();
    let one_shot = candidate(&api, "lease", &name, "o-shot", &args, &["true"]);
    let (code, stderr) = exit_of(one_shot, LONG).await;
    assert_eq!(code, 75, "{stderr}");
    assert!(!stderr.contains(ready), "{stderr}");
    drop((leader, waiting));
}
