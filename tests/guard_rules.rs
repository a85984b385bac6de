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
