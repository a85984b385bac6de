//! Interop with the Python kubernetes client's LeaderElection and with client-go's
//! leaderelection (Kubernetes 1.20's), on one Lease and on one ConfigMap: never both leading,
//! each takes over from the other, each reads the other's records, and leaderrun's
//! annotations (its writer mark, the last run) disturb neither.

mod common;

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
/// candidates take these arguments), its stderr in ID.stderr.
fn client_candidate(
    mut program: tokio::process::Command,
    api: &Api,
    kind: &str,
    name: &str,
    id: &str,
) -> tokio::process::Child {
    let err = std::fs::File::create(api.dir.path().join(format!("{id}.stderr"))).unwrap();
    program
        .arg(api.kubeconfig(id))
        .args([kind, name, id])
        .arg(api.log_path())
        .args(["6", "4", "1"])
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
    client_candidate(c, api, kind, name, id)
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
        eprintln!("SKIPPED interop: no Python with the `kubernetes` package (LEADERRUN_PYTHON, .venv; run .ci/run)");
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

fn go_candidate(bin: &Path, api: &Api, kind: &str, name: &str, id: &str) -> tokio::process::Child {
    client_candidate(tokio::process::Command::new(bin), api, kind, name, id)
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
        eprintln!("SKIPPED interop with client-go: build it with tests/interop/build-client-go (needs the real API server's source tree) or set LEADERRUN_CLIENT_GO");
        return;
    };
    let api = Api::start().await;
    for kind in KINDS {
        let name = api.lock_name("interop-go");
        let log = api.log_path();
        let _ = std::fs::remove_file(&log);
        // 1. client-go leads; leaderrun reads its record and waits.
        let g1 = go_candidate(&bin, &api, kind, &name, "cg-1");
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
        // 2. client-go stops (TERM) and releases: leaderrun takes over at once.
        term(&g1);
        let lines = wait_log(&log, LONG, |l| l.iter().any(|x| x.id == "lr-1")).await;
        let stop = lines
            .iter()
            .find(|x| x.id == "cg-1" && x.what == "stop")
            .map(|x| x.nanos);
        let took = lines.iter().find(|x| x.id == "lr-1").map(|x| x.nanos);
        let (Some(stop), Some(took)) = (stop, took) else {
            panic!("{kind}: {lines:?}")
        };
        assert!(
            took >= stop,
            "{kind}: leaderrun started before client-go's job stopped"
        );
        assert!(
            took - stop < 3_000_000_000,
            "{kind}: client-go's release was not seen at once ({} ms)",
            (took - stop) / 1_000_000
        );
        // 3. A new client-go candidate honours leaderrun's record (marks and all).
        let mut g2 = go_candidate(&bin, &api, kind, &name, "cg-2");
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
        term(&g2);
        let _ = tokio::time::timeout(LONG, g2.wait()).await;
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
                ("stop", "cg-2")
            ],
            "{kind}: one leader at a time: {lines:#?}"
        );
    }
}
