//! The guard's own stop rules, driven through its pipes as leaderrun drives them (no API
//! server): what gets the stop signal, how often, and when KILL follows. Several of these
//! were written for mutants of guard/src that the whole-copy tests let through
//! (docs/RELIABILITY.md, "Mutants").

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::guard_pipe::{in_future, PipeGuard};
use leaderrun::guard::wire::{Command, Report};

const LONG: Duration = Duration::from_secs(60);

fn wait_for(path: &Path) {
    let t = Instant::now();
    while !path.exists() {
        assert!(t.elapsed() < LONG, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_process_told_to_stop_is_told_once_even_after_it_leaves_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let (terms, ready) = (dir.path().join("terms"), dir.path().join("ready"));
    // Outside the job's group: a session of its own (P), and P's child Q in P's group. Q notes
    // each TERM and, at the first, moves to a group of its own, one never told: only the
    // guard's memory of whom it signalled keeps Q from a TERM at every later sweep (20 ms)
    // until the KILL after the grace.
    let perl = format!(
        r#"use POSIX; POSIX::setsid(); if (fork() == 0) {{ $SIG{{TERM}} = sub {{ open(my $h, ">>", "{terms}"); print $h "term\n"; close $h; setpgrp(0, 0); }}; open(my $r, ">", "{ready}"); close $r; sleep 1 while 1; }} sleep 60;"#,
        terms = terms.display(),
        ready = ready.display()
    );
    let script = format!("perl -e '{perl}' & exec sleep 60");
    let g = PipeGuard::with(&script, &[], Duration::from_secs(1));
    g.send(&[in_future(Duration::from_secs(30))]);
    wait_for(&ready);
    let t = Instant::now();
    g.send(&[Command::Stop]);
    let (reports, code) = g.finish();
    assert_eq!(code, 0);
    assert_eq!(reports.last(), Some(&Report::TreeGone), "{reports:?}");
    // Q outlived its TERM: it went at the KILL, a grace after the stop.
    assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(std::fs::read_to_string(&terms).unwrap(), "term\n");
}

/// CPU time (user + system) of a process so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the guard runs");
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    // utime and stime: fields 14 and 15 of stat, 12 and 13 after the command's name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf reads a constant of the system.
    let hz = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// The guard's CPU time over `window` of wall time.
fn cpu_over(pid: u32, window: Duration) -> Duration {
    let before = cpu_time(pid);
    std::thread::sleep(window);
    cpu_time(pid) - before
}

#[test]
fn the_guard_sleeps_while_the_job_runs() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    // A job that ignores TERM: the stop lasts the grace.
    let script = format!(
        "trap '' TERM; touch {}; while :; do sleep 0.1; done",
        ready.display()
    );
    let g = PipeGuard::with(&script, &[], Duration::from_millis(500));
    g.send(&[in_future(Duration::from_secs(30))]);
    wait_for(&ready);
    let pid = g.child.id();
    // A guard that woke at once every time round (its timer unset, or set in the past)
    // would spend most of the window on a CPU; one that waits for its deadline spends none.
    // (While stopping it sweeps /proc every 20 ms, a cost that grows with the host's
    // processes: the pace is checked in timers.rs.)
    let window = Duration::from_secs(1);
    let running = cpu_over(pid, window);
    assert!(
        running < window / 10,
        "{running:?} of CPU in {window:?} while the job ran"
    );
    g.send(&[Command::Stop]);
    let (reports, code) = g.finish();
    assert_eq!(code, 0);
    assert_eq!(reports.last(), Some(&Report::TreeGone), "{reports:?}");
}

#[test]
fn a_guard_left_by_leaderrun_sweeps_at_a_pace_and_does_not_spin() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let script = format!(
        "trap '' TERM; touch {}; while :; do sleep 0.1; done",
        ready.display()
    );
    if std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        assert!(
            std::env::var("LEADERRUN_REQUIRE_REAL_CLIENTS").is_err(),
            "unshare --pid --mount-proc must work in CI"
        );
        common::skip(
            "the guard's pace alone",
            "`unshare --pid` is not permitted here",
        );
        return;
    }
    // Alone in a PID namespace, a sweep reads a handful of processes: a few ms a second.
    let mut g = PipeGuard::alone(&script, Duration::from_secs(2));
    g.send(&[in_future(Duration::from_secs(30))]);
    wait_for(&ready);
    let pid = g.pid();
    // End of file: leaderrun is gone. The guard stops the job, which ignores TERM, so the
    // stop lasts the grace. A guard woken at once by the pipe's hang-up, again and again,
    // would spend most of the window on a CPU.
    drop(g.commands.take());
    let window = Duration::from_secs(1);
    let stopping = cpu_over(pid, window);
    assert!(
        stopping < window / 5,
        "{stopping:?} of CPU in {window:?} after leaderrun went"
    );
    let (reports, code) = g.finish();
    assert_eq!(code, 0);
    assert_eq!(reports.last(), Some(&Report::TreeGone), "{reports:?}");
}

#[test]
fn a_grandchild_that_left_the_group_is_told_at_once_while_its_parent_lives() {
    let dir = tempfile::tempdir().unwrap();
    let (stopped, ready) = (dir.path().join("stopped"), dir.path().join("ready"));
    let deaf = dir.path().join("deaf");
    // The job's shell ignores TERM and lives until the KILL; its child left the group with
    // setsid. Only a scan that follows the chain of parents past the job finds that child
    // while its parent lives: once orphaned it would come to the guard, but only at the KILL,
    // too late for a TERM. (The shell ignores TERM only after starting the child: an ignored
    // signal is inherited, and a shell cannot trap one ignored on entry.)
    let script = format!(
        "setsid sh -c 'trap \"touch {stopped}; exit 0\" TERM; touch {ready}; while :; do sleep 0.05; done' & trap '' TERM; touch {deaf}; while :; do sleep 0.1; done",
        stopped = stopped.display(),
        ready = ready.display(),
        deaf = deaf.display()
    );
    let g = PipeGuard::with(&script, &[], Duration::from_secs(2));
    g.send(&[in_future(Duration::from_secs(30))]);
    wait_for(&ready);
    g.send(&[Command::Stop]);
    let (reports, code) = g.finish();
    assert_eq!(code, 0);
    assert_eq!(reports.last(), Some(&Report::TreeGone), "{reports:?}");
    assert!(
        stopped.exists(),
        "the grandchild got no TERM before the KILL"
    );
}
