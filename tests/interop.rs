//! Interop with the Python kubernetes client's LeaderElection and with client-go's
//! leaderelection (Kubernetes 1.20's), on one Lease and on one ConfigMap: never both leading,
//! each takes over from the other, each reads the other's records, and leaderrun's
//! annotations (its writer mark, the last run) disturb neither.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;

const LONG: Duration = Duration::from_secs(90);
/// The Python client needs whole seconds of at least 1.
const TIMING: [&str; 8] = [
    "--lease-duration",
    "6s",
    "--renew-deadline",
    "4s",
    "--retry-period",
    "1s",
    "--kill-grace",
    "1s",
];

fn python() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        std::env::var_os("LEADERRUN_PYTHON").map(PathBuf::from),
        Some(root.join(".venv/bin/python")),
    ];
    candidates.into_iter().flatten().find(|p| {
        p.is_file()
            && std::process::Command::new(p)
                .args(["-c", "import kubernetes.leaderelection"])
                .output()
                .is_ok_and(|o| o.status.success())
    })
}

/// Another client's candidate: `program` run with KUBECONFIG KIND NAME ID LOG 6 4 1 (both
/// candidates take these arguments) and `extra`, its stderr in ID.stderr.
fn client_candidate(
    mut program: tokio::process::Command,
    api: &Api,
    kind: &str,
    name: &str,
    id: &str,
    extra: &[&str],
) -> tokio::process::Child {
    let err = std::fs::File::create(api.dir.path().join(format!("{id}.stderr"))).unwrap();
    program
        .arg(api.kubeconfig(id))
        .args([kind, name, id])
        .arg(api.log_path())
        .args(["6", "4", "1"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .expect("start the other client's candidate")
}

fn py_candidate(py: &Path, api: &Api, kind: &str, name: &str, id: &str) -> tokio::process::Child {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/py_candidate.py");
    let mut c = tokio::process::Command::new(py);
    c.arg(script);
    client_candidate(c, api, kind, name, id, &[])
}

async fn inspect_json(api: &Api, kind: &str, name: &str) -> serde_json::Value {
    let mut c = leaderrun();
    c.args([
        "inspect",
        "-o",
        "json",
        "--lock",
        kind,
        "--name",
        name,
        "--kubeconfig",
    ])
    .arg(api.kubeconfig("inspector"));
    let out = c.output().await.unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_leaderrun_share_a_lock() {
    let Some(py) = python() else {
        assert!(
            std::env::var("LEADERRUN_REQUIRE_REAL_CLIENTS").is_err(),
            "the Python client must be installed in CI"
        );
        skip(
            "interop",
            "no Python with the `kubernetes` package (LEADERRUN_PYTHON, .venv; run .ci/run)",
        );
        return;
    };
    let api = Api::start().await;
    for kind in KINDS {
        let name = api.lock_name("interop");
        let _ = std::fs::remove_file(api.log_path());
        // 1. Python leads; leaderrun reads its record and waits.
        let mut p1 = py_candidate(&py, &api, kind, &name, "py-1");
        wait_log(&api.log_path(), LONG, |l| l.len() == 1).await;
        let v = inspect_json(&api, kind, &name).await;
        assert_eq!(
            (
                v["holderIdentity"].as_str(),
                v["leaseDurationSeconds"].as_i64(),
                v["state"].as_str()
            ),
            (Some("py-1"), Some(6), Some("held")),
            "{kind}: leaderrun reads the Python record: {v}"
        );
        assert!(
            v["renewTime"].as_str().is_some_and(|t| t.starts_with("20")),
            "{v}"
        );
        let l1 = job_candidate(&api, kind, &name, "lr-1", &TIMING, "1000");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            read_log(&api.log_path()).len(),
            1,
            "{kind}: leaderrun waits while Python leads"
        );
        // 2. Python goes away (SIGKILL): leaderrun takes over after the lease duration.
        let killed = now_nanos();
        p1.start_kill().unwrap();
        let _ = p1.wait().await;
        let lines = wait_log(&api.log_path(), LONG, |l| l.iter().any(|x| x.id == "lr-1")).await;
        let took = lines.iter().find(|x| x.id == "lr-1").unwrap().nanos;
        assert!(
            took >= killed,
            "{kind}: leaderrun started only after Python was gone"
        );
        // 3. A new Python candidate reads leaderrun's record and waits while it renews.
        let mut p2 = py_candidate(&py, &api, kind, &name, "py-2");
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(
            !read_log(&api.log_path()).iter().any(|x| x.id == "py-2"),
            "{kind}: Python honours leaderrun's record for longer than a lease duration"
        );
        assert!(
            p2.try_wait().unwrap().is_none(),
            "{kind}: Python did not crash on leaderrun's record: see py-2.stderr"
        );
        // 4. leaderrun stops (TERM): its child ends, it releases, Python takes over.
        term(&l1);
        let (code, stderr) = exit_of(l1, LONG).await;
        assert_eq!(code, 143, "{kind}: {stderr}");
        let lines = wait_log(&api.log_path(), LONG, |l| {
            l.iter().any(|x| x.id == "py-2" && x.what == "start")
        })
        .await;
        term(&p2);
        let _ = tokio::time::timeout(LONG, p2.wait()).await;
        let mut lines = lines;
        // py-1 was SIGKILLed: its job ended with it.
        lines.push(Line {
            what: "stop".into(),
            id: "py-1".into(),
            token: 0,
            nanos: killed,
        });
        lines.sort_by_key(|l| (l.nanos, l.what == "start"));
        let ids: Vec<(&str, &str)> = lines
            .iter()
            .map(|l| (l.what.as_str(), l.id.as_str()))
            .collect();
        assert_eq!(
            &ids[..5],
            [
                ("start", "py-1"),
                ("stop", "py-1"),
                ("start", "lr-1"),
                ("stop", "lr-1"),
                ("start", "py-2")
            ],
            "{kind}: one leader at a time: {lines:#?}"
        );
    }
}

/// The client-go candidate (tests/interop/client-go), built by tests/interop/build-client-go
/// against Kubernetes 1.20's client-go: LEADERRUN_CLIENT_GO names it (CI sets it once the real
/// API server's source tree is built), else the latest one built in the cache.
fn client_go() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LEADERRUN_CLIENT_GO") {
        return Some(PathBuf::from(p));
    }
    let cache = std::env::var_os("LEADERRUN_APISERVER_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/leaderrun")))?;
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(cache)
        .ok()?
        .flatten()
        .filter_map(|d| std::fs::read_dir(d.path().join("bin")).ok())
        .flat_map(|r| r.flatten())
        .filter(|f| {
            f.file_name()
                .to_string_lossy()
                .starts_with("leaderrun-interop-client-go-")
        })
        .filter_map(|f| Some((f.metadata().ok()?.modified().ok()?, f.path())))
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p)
}

/// How a client-go candidate treats the lock when TERMed.
#[derive(Clone, Copy)]
enum OnTerm {
    /// `ReleaseOnCancel: true`, which client-go 1.20 carries out only sometimes (see
    /// `took_over_from_go`).
    Release,
    /// `ReleaseOnCancel: false`: the lock is left to expire.
    Keep,
}

fn go_candidate(
    bin: &Path,
    api: &Api,
    kind: &str,
    name: &str,
    id: &str,
    on_term: OnTerm,
) -> tokio::process::Child {
    let extra: &[&str] = match on_term {
        OnTerm::Release => &[],
        OnTerm::Keep => &["keep"],
    };
    client_candidate(
        tokio::process::Command::new(bin),
        api,
        kind,
        name,
        id,
        extra,
    )
}

/// After the client-go candidate `go_id` was TERMed (and has exited), `lr_id` took over:
/// checks when, by what the candidate reported of its writes (its stderr).
///
/// client-go 1.20 releases on cancel only sometimes: after the cancel its renew loop may try
/// once more with the cancelled context, and that failed Get empties the lock's cached object,
/// so the release then updates an object with no name ("Failed to release lock: resource name
/// may not be empty" in its stderr). Or a renew cancelled in flight still lands, and the
/// release then meets a 409 ("Failed to release lock: Operation cannot be fulfilled"). Where
/// the TERM falls decides which happens, so both outcomes are accepted, each with its own
/// bound:
/// - released: leaderrun takes the free lock at once (under 3 s of the release);
/// - not released: leaderrun takes it no sooner than a lease after the last change client-go
///   reported sending (no follower can have seen that change before it was sent), and no
///   later than a lease + `EXPIRY_SLACK_NANOS` after it was answered (the slack also covers
///   the cancelled renew that landed unreported, a retry period later).
///
/// In both, leaderrun's job starts after client-go's job logged its stop, which the candidate
/// does before anything can release.
fn took_over_from_go(api: &Api, kind: &str, lines: &[Line], go_id: &str, lr_id: &str) {
    let stop = lines
        .iter()
        .find(|x| x.id == go_id && x.what == "stop")
        .map(|x| x.nanos);
    let took = lines.iter().find(|x| x.id == lr_id).map(|x| x.nanos);
    let (Some(stop), Some(took)) = (stop, took) else {
        panic!("{kind}: {lines:?}")
    };
    assert!(
        took >= stop,
        "{kind}: {lr_id} started before {go_id}'s job stopped"
    );
    let writes = GoWrites::of(&api.dir.path().join(format!("{go_id}.stderr")));
    match writes.released {
        Some(released) => {
            let after = took - released.min(took);
            eprintln!(
                "{kind}: {go_id} released; {lr_id} started {} ms after",
                after / 1_000_000
            );
            assert!(
                after < 3_000_000_000,
                "{kind}: {go_id}'s release was not seen at once ({} ms after it)",
                after / 1_000_000
            );
        }
        None => {
            let (sent, acked) = writes
                .last_renew
                .unwrap_or_else(|| panic!("{kind}: {go_id} led without a write: {writes:?}"));
            eprintln!(
                "{kind}: {go_id} did not release; {lr_id} started {} ms after its last renew",
                (took - sent.min(took)) / 1_000_000
            );
            assert!(
                took >= sent + LEASE_NANOS,
                "{kind}: {lr_id} started {} ms after {go_id}'s last renew, within its lease",
                (took - sent.min(took)) / 1_000_000
            );
            assert!(
                took <= acked + LEASE_NANOS + EXPIRY_SLACK_NANOS,
                "{kind}: {lr_id} started {} ms after {go_id}'s last renew, over a lease + {} ms",
                (took - acked.min(took)) / 1_000_000,
                EXPIRY_SLACK_NANOS / 1_000_000
            );
        }
    }
}

/// The lease both candidates use (TIMING, and "6" given to the other clients).
const LEASE_NANOS: u128 = 6_000_000_000;
/// How late after a lease leaderrun may take an unreleased lock: its wait is a timer from
/// the change it observed (watch delivery: milliseconds), then one write; a retry period
/// (1 s) covers a renew that client-go cancelled in flight and did not report, which landed
/// anyway, and another one a watch event that came late and was caught by a poll.
const EXPIRY_SLACK_NANOS: u128 = 3_000_000_000;

/// What the client-go candidate reports on stderr of its accepted writes.
#[derive(Debug, Default)]
struct GoWrites {
    /// The last write of its own record that changed it: (sent, acknowledged), nanoseconds.
    last_renew: Option<(u128, u128)>,
    /// When its release was acknowledged, if one was.
    released: Option<u128>,
}

impl GoWrites {
    fn of(stderr: &Path) -> GoWrites {
        let text = std::fs::read_to_string(stderr).unwrap_or_default();
        let mut w = GoWrites::default();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|n| n.parse::<u128>().ok());
            match f.first() {
                Some(&"renew") => w.last_renew = num(1).zip(num(2)).or(w.last_renew),
                Some(&"released") => w.released = num(1).or(w.released),
                _ => {}
            }
        }
        w
    }
}

fn term(child: &tokio::process::Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().expect("running") as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("TERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_go_and_leaderrun_share_a_lock() {
    let Some(bin) = client_go() else {
        assert!(
            std::env::var("LEADERRUN_REQUIRE_CLIENT_GO").is_err(),
            "the client-go candidate must be built in CI (tests/interop/build-client-go)"
        );
        skip("interop with client-go", "build it with tests/interop/build-client-go (needs the real API server's source tree) or set LEADERRUN_CLIENT_GO");
        return;
    };
    let api = Api::start().await;
    for kind in KINDS {
        let name = api.lock_name("interop-go");
        let log = api.log_path();
        let _ = std::fs::remove_file(&log);
        // 1. client-go leads; leaderrun reads its record and waits.
        let g1 = go_candidate(&bin, &api, kind, &name, "cg-1", OnTerm::Release);
        wait_log(&log, LONG, |l| l.len() == 1).await;
        let v = inspect_json(&api, kind, &name).await;
        assert_eq!(
            (
                v["holderIdentity"].as_str(),
                v["leaseDurationSeconds"].as_i64(),
                v["state"].as_str()
            ),
            (Some("cg-1"), Some(6), Some("held")),
            "{kind}: leaderrun reads client-go's record: {v}"
        );
        let l1 = job_candidate(&api, kind, &name, "lr-1", &TIMING, "1000");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            read_log(&log).len(),
            1,
            "{kind}: leaderrun waits while client-go leads"
        );
        // 2. client-go stops (TERM): leaderrun takes over, at once or after the lease.
        term(&g1);
        let _ = tokio::time::timeout(LONG, g1.wait_with_output()).await;
        let lines = wait_log(&log, LONG, |l| l.iter().any(|x| x.id == "lr-1")).await;
        took_over_from_go(&api, kind, &lines, "cg-1", "lr-1");
        // 3. A new client-go candidate honours leaderrun's record (marks and all). This one
        //    keeps the lock when TERMed, so that the unreleased path of step 2 runs every time.
        let mut g2 = go_candidate(&bin, &api, kind, &name, "cg-2", OnTerm::Keep);
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(
            !read_log(&log).iter().any(|x| x.id == "cg-2"),
            "{kind}: client-go honours leaderrun's record for longer than a lease duration"
        );
        assert!(
            g2.try_wait().unwrap().is_none(),
            "{kind}: client-go crashed: see cg-2.stderr"
        );
        // 4. leaderrun stops (TERM): it releases with its last run; client-go takes over and
        //    keeps the note (it writes the object it read).
        term(&l1);
        let (code, stderr) = exit_of(l1, LONG).await;
        assert_eq!(code, 143, "{kind}: {stderr}");
        wait_log(&log, LONG, |l| {
            l.iter().any(|x| x.id == "cg-2" && x.what == "start")
        })
        .await;
        let v = inspect_json(&api, kind, &name).await;
        assert_eq!(v["holderIdentity"], "cg-2", "{kind}: {v}");
        assert_eq!(
            v["lastRun"]["holder"], "lr-1",
            "{kind}: client-go dropped the note: {v}"
        );
        // 5. client-go stops (TERM) without releasing: a waiting leaderrun takes over a lease
        //    after client-go's last renew.
        let l2 = job_candidate(&api, kind, &name, "lr-2", &TIMING, "1000");
        tokio::time::sleep(Duration::from_secs(2)).await;
        term(&g2);
        let _ = tokio::time::timeout(LONG, g2.wait_with_output()).await;
        let lines = wait_log(&log, LONG, |l| l.iter().any(|x| x.id == "lr-2")).await;
        took_over_from_go(&api, kind, &lines, "cg-2", "lr-2");
        assert!(
            GoWrites::of(&api.dir.path().join("cg-2.stderr"))
                .released
                .is_none(),
            "{kind}: cg-2 was told to keep the lock"
        );
        term(&l2);
        let (code, stderr) = exit_of(l2, LONG).await;
        assert_eq!(code, 143, "{kind}: {stderr}");
        let mut lines = read_log(&log);
        lines.sort_by_key(|l| (l.nanos, l.what == "start"));
        let ids: Vec<(&str, &str)> = lines
            .iter()
            .map(|l| (l.what.as_str(), l.id.as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                ("start", "cg-1"),
                ("stop", "cg-1"),
                ("start", "lr-1"),
                ("stop", "lr-1"),
                ("start", "cg-2"),
                ("stop", "cg-2"),
                ("start", "lr-2"),
                ("stop", "lr-2")
            ],
            "{kind}: one leader at a time: {lines:#?}"
        );
    }
}
