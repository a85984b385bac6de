//! What ran, where, and how it ended (the `leaderrun.io/last-run` note on the lock), and
//! `--once-per`. Against kube-emulator, or a real API server with LEADERRUN_TEST_KUBECONFIG.

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::Value;

async fn last_run(api: &Api, kind: &str, name: &str) -> Value {
    let (_, out, err) = tool(
        api,
        &["inspect", "--lock", kind, "--name", name, "-o", "json"],
    )
    .await;
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    v["lastRun"].clone()
}

fn args<'a>(more: &[&'a str]) -> Vec<&'a str> {
    let mut a: Vec<&str> = FAST.to_vec();
    a.extend_from_slice(more);
    a
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_is_recorded_on_the_lock_with_how_it_ended() {
    let api = Api::start().await;
    for kind in KINDS {
        let name = api.lock_name("lastrun");
        let c = candidate(
            &api,
            kind,
            &name,
            "nightly-a",
            &args(&[]),
            &["sh", "-c", "exit 3"],
        );
        let (code, stderr) = exit_of(c, Duration::from_secs(30)).await;
        assert_eq!(code, 3, "{stderr}");
        let run = last_run(&api, kind, &name).await;
        assert_eq!(run["outcome"], "exited", "{kind}: {run}");
        assert_eq!(run["exitCode"], 3, "{kind}: {run}");
        assert_eq!(run["holder"], "nightly-a", "{kind}: {run}");
        assert_eq!(run["fencingToken"], 0, "{kind}: {run}");
        assert!(
            run["host"].is_string() && run["started"].is_string() && run["ended"].is_string(),
            "{kind}: {run}"
        );
        // The text form says it in words.
        let (_, text, _) = tool(&api, &["inspect", "--lock", kind, "--name", &name]).await;
        assert!(
            text.contains("last run:     exited 3; holder nightly-a"),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_leaders_run_is_recorded_by_the_next_leader() {
    let api = Api::start().await;
    for kind in KINDS {
        let name = api.lock_name("lastrun-kill");
        let mut a = candidate(
            &api,
            kind,
            &name,
            "killed-a",
            &args(&[]),
            &["sleep", "1000"],
        );
        wait_leader(&mut a).await;
        a.start_kill().expect("SIGKILL leaderrun");
        let _ = a.wait().await;
        let mut b = candidate(&api, kind, &name, "next-b", &args(&[]), &["sleep", "1000"]);
        wait_leader(&mut b).await;
        let run = last_run(&api, kind, &name).await;
        assert_eq!(run["outcome"], "no-word", "{kind}: {run}");
        assert_eq!(run["holder"], "killed-a", "{kind}: {run}");
        assert_eq!(run["fencingToken"], 0, "{kind}: {run}");
        assert!(run["lastRenewed"].is_string(), "{kind}: {run}");
        let pid = b.id().expect("pid") as i32;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("TERM");
        let (code, stderr) = exit_of(b, Duration::from_secs(30)).await;
        assert_eq!(code, 143, "{stderr}");
        let run = last_run(&api, kind, &name).await;
        assert_eq!(run["outcome"], "signaled", "{kind}: {run}");
        assert_eq!(run["signal"], 15, "{kind}: {run}");
        assert_eq!(run["holder"], "next-b", "{kind}: {run}");
        assert_eq!(run["fencingToken"], 1, "{kind}: {run}");
    }
}

/// The job appends a line to `marker` each time it runs.
fn marking(api: &Api, marker: &std::path::Path, code: u8) -> Vec<String> {
    let _ = api;
    vec![
        "sh".into(),
        "-c".into(),
        format!("echo ran >> {}; exit {code}", marker.display()),
    ]
}

fn runs(marker: &std::path::Path) -> usize {
    std::fs::read_to_string(marker).map_or(0, |s| s.lines().count())
}

#[tokio::test(flavor = "multi_thread")]
async fn once_per_runs_the_job_once_in_a_period_and_again_after_a_failure_or_the_period() {
    let api = Api::start().await;
    for kind in KINDS {
        let name = api.lock_name("once");
        let marker = api.dir.path().join(format!("marker-{kind}"));
        let run = |id: &str, period: &str, code: u8| {
            let cmd = marking(&api, &marker, code);
            let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
            candidate(&api, kind, &name, id, &args(&["--once-per", period]), &cmd)
        };
        // A failed run does not count: the next copy runs.
        let (code, _) = exit_of(run("fails", "1h", 1), Duration::from_secs(30)).await;
        assert_eq!(code, 1);
        let (code, stderr) = exit_of(run("first", "1h", 0), Duration::from_secs(30)).await;
        assert_eq!((code, runs(&marker)), (0, 2), "{stderr}");
        // Within the period: released at once, exit 0, the job not run, and who ran it said.
        let (code, stderr) = exit_of(run("second", "1h", 0), Duration::from_secs(30)).await;
        assert_eq!((code, runs(&marker)), (0, 2), "{stderr}");
        assert!(
            stderr.contains("a run succeeded within --once-per") && stderr.contains("first"),
            "{stderr}"
        );
        let last = last_run(&api, kind, &name).await;
        assert_eq!(last["outcome"], "skipped", "{last}");
        assert_eq!(last["becauseOf"]["holder"], "first", "{last}");
        // A skip stands for the run it deferred to: still within the period.
        let (code, _) = exit_of(run("third", "1h", 0), Duration::from_secs(30)).await;
        assert_eq!((code, runs(&marker)), (0, 2));
        // Past the period: it runs.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (code, _) = exit_of(run("later", "1s", 0), Duration::from_secs(30)).await;
        assert_eq!((code, runs(&marker)), (0, 3));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn copies_started_together_with_once_per_run_the_job_once() {
    let api = Api::start().await;
    for kind in KINDS {
        let name = api.lock_name("once-together");
        let marker = api.dir.path().join(format!("together-{kind}"));
        let cmd = [
            "sh".to_string(),
            "-c".to_string(),
            format!("echo ran >> {}; sleep 1", marker.display()),
        ];
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let copies: Vec<_> = (0..3)
            .map(|i| {
                candidate(
                    &api,
                    kind,
                    &name,
                    &format!("cron-{i}"),
                    &args(&["--once-per", "10m"]),
                    &cmd,
                )
            })
            .collect();
        for c in copies {
            let (code, stderr) = exit_of(c, Duration::from_secs(60)).await;
            assert_eq!(code, 0, "{stderr}");
        }
        assert_eq!(runs(&marker), 1, "{kind}: the job ran more than once");
    }
}
