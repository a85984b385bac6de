//! `--health-addr`: /leaderz follows leadership, /readyz says a copy takes part (leader or
//! standby, in touch with the API server), health fails when the leader is overdue on
//! renewing, and /metrics counts what happened.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use kube_emulator::{Action, Fault};

const LONG: Duration = Duration::from_secs(60);

/// The value of an unlabelled metric in Prometheus text, or -1 when absent.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(-1.0)
}

#[tokio::test]
async fn leaderz_only_on_the_leader_readyz_on_every_copy_and_metrics_count_renews() {
    let api = Api::start().await;
    let name = api.lock_name("health");
    let (p1, p2) = (free_port(), free_port());
    let leader = job_candidate(
        &api,
        "lease",
        &name,
        "h-leader",
        &[
            "--retry-period",
            "500ms",
            "--health-addr",
            &format!("127.0.0.1:{p1}"),
        ],
        "1000",
    );
    wait_log(&api.log_path(), LONG, |l| l.len() == 1).await;
    let standby = job_candidate(
        &api,
        "lease",
        &name,
        "h-standby",
        &[
            "--retry-period",
            "500ms",
            "--health-addr",
            &format!("127.0.0.1:{p2}"),
        ],
        // Runs until stopped: its health server must outlive the checks below.
        "1000",
    );
    assert_eq!(
        wait_http(p1, "/leaderz", LONG, |c, _| c == 200).await.1,
        "leader\n"
    );
    assert_eq!(
        wait_http(p1, "/readyz", LONG, |_, _| true).await,
        (200, "ready: leader\n".to_string())
    );
    let (code, body) = wait_http(p2, "/leaderz", LONG, |_, _| true).await;
    assert_eq!((code, body.as_str()), (503, "not leader\n"));
    // A standby that has read the lock is ready: it takes part.
    assert_eq!(
        wait_http(p2, "/readyz", LONG, |c, _| c == 200).await.1,
        "ready: standby\n"
    );
    assert_eq!(wait_http(p1, "/healthz", LONG, |_, _| true).await.0, 200);
    assert_eq!(
        wait_http(p2, "/healthz", LONG, |_, _| true).await.0,
        200,
        "a follower is healthy"
    );
    let (_, metrics) = wait_http(p1, "/metrics", LONG, |_, b| {
        metric(b, "leaderrun_renew_attempts_total") >= 2.0
    })
    .await;
    assert!(
        metrics.contains("leaderrun_is_leader 1")
            && metrics.contains("leaderrun_child_starts_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE leaderrun_renew_duration_seconds histogram"),
        "{metrics}"
    );
    // The leader is stopped (TERM: its job ends, it releases); the standby becomes ready.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(leader.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    wait_http(p2, "/leaderz", LONG, |c, _| c == 200).await;
    let (_, metrics) = wait_http(p2, "/metrics", LONG, |_, _| true).await;
    assert!(
        metrics.contains("leaderrun_leader_transitions 1"),
        "{metrics}"
    );
    assert_eq!(exit_of(leader, LONG).await.0, 143, "the job's TERM status");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(standby.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(exit_of(standby, LONG).await.0, 143);
    assert_eq!(
        http_get(p1, "/healthz").await,
        None,
        "gone with its process"
    );
}

#[tokio::test]
async fn healthz_fails_while_an_overdue_leader_stops_its_child() {
    let api = Api::start().await;
    let Some(emu) = api.emulator("overdue leader") else {
        return;
    };
    let name = api.lock_name("overdue");
    let port = free_port();
    let log = api.log_path();
    // A child that ignores TERM: stopping it takes the whole kill grace.
    let script = format!(
        "trap '' TERM; echo start x 0 $(date +%s%N) >> {}; while :; do sleep 0.05; done",
        log.display()
    );
    let leader = candidate(
        &api,
        "lease",
        &name,
        "o-leader",
        &[
            "--lease-duration",
            "8s",
            "--renew-deadline",
            "2s",
            "--retry-period",
            "500ms",
            "--kill-grace",
            "3s",
            "--health-addr",
            &format!("127.0.0.1:{port}"),
        ],
        &["sh", "-c", &script],
    );
    wait_log(&log, LONG, |l| l.len() == 1).await;
    assert_eq!(wait_http(port, "/healthz", LONG, |_, _| true).await.0, 200);
    emu.add_fault(
        Fault::new(Action::Hang)
            .for_client("o-leader")
            .method("PUT")
            .lasting(Duration::from_secs(60)),
    );
    let (_, body) = wait_http(port, "/healthz", LONG, |c, _| c == 503).await;
    assert!(body.contains("overdue"), "{body}");
    assert_eq!(
        http_get(port, "/leaderz").await.map(|r| r.0),
        Some(503),
        "not leader once leadership is lost"
    );
    assert_eq!(
        http_get(port, "/readyz").await.map(|r| r.0),
        Some(503),
        "not ready while overdue"
    );
    let (_, metrics) = wait_http(port, "/metrics", LONG, |_, _| true).await;
    assert!(
        !metrics.contains("leaderrun_renew_failures_total 0"),
        "{metrics}"
    );
    let (code, _) = exit_of(leader, LONG).await;
    assert_eq!(code, 121);
}

/// A standby cut off from the API server (its requests dropped, its watch cut) stops being ready once it
/// has heard nothing for a lease duration, and is ready again when the server answers.
#[tokio::test]
async fn a_standby_cut_off_from_the_api_server_is_not_ready_until_it_hears_again() {
    let api = Api::start().await;
    let Some(emu) = api.emulator("cut-off standby") else {
        return;
    };
    let name = api.lock_name("cutoff");
    let port = free_port();
    let timing = FAST;
    let leader = job_candidate(&api, "lease", &name, "c-leader", &timing, "1000");
    wait_log(&api.log_path(), LONG, |l| l.len() == 1).await;
    let health = format!("127.0.0.1:{port}");
    let mut args = timing.to_vec();
    args.extend(["--health-addr", &health]);
    let mut standby = job_candidate(&api, "lease", &name, "c-standby", &args, "1000");
    wait_standby(&mut standby).await;
    wait_http(port, "/readyz", LONG, |c, _| c == 200).await;
    let cut = Instant::now();
    emu.add_fault(
        Fault::new(Action::Partition)
            .for_client("c-standby")
            .lasting(Duration::from_secs(8)),
    );
    let (_, body) = wait_http(port, "/readyz", LONG, |c, _| c == 503).await;
    assert!(body.contains("no answer from the API server"), "{body}");
    assert!(
        cut.elapsed() >= Duration::from_secs(4) - Duration::from_millis(600),
        "ready for a lease duration after the last answer: {:?}",
        cut.elapsed()
    );
    assert_eq!(
        http_get(port, "/healthz").await.map(|r| r.0),
        Some(200),
        "alive all the same"
    );
    wait_http(port, "/readyz", LONG, |c, _| c == 200).await;
    for c in [leader, standby] {
        let pid = nix::unistd::Pid::from_raw(c.id().expect("pid") as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("TERM");
        exit_of(c, LONG).await;
    }
}

#[tokio::test]
async fn a_health_address_in_use_is_a_clear_error() {
    let api = Api::start().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, stderr) = exit_of(
        candidate(
            &api,
            "lease",
            &api.lock_name("busy-port"),
            "x",
            &["--health-addr", &addr],
            &["true"],
        ),
        LONG,
    )
    .await;
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("--health-addr") && stderr.contains(&addr),
        "{stderr}"
    );
}
