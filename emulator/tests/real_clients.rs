//! kubectl and the Python kubernetes client against the emulator: the fidelity
//! checks. They need tools that `cargo` cannot install; `.ci/run` installs them
//! and sets `LEADERRUN_REQUIRE_REAL_CLIENTS=1`, which turns a missing tool into a
//! failure. Elsewhere a missing tool skips the suite with a message saying why.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kube_emulator::{Config, Emulator};

fn required() -> bool {
    std::env::var("LEADERRUN_REQUIRE_REAL_CLIENTS").is_ok_and(|v| v == "1")
}

fn skip(suite: &str, why: &str) {
    assert!(
        !required(),
        "{suite}: {why}, and LEADERRUN_REQUIRE_REAL_CLIENTS=1 says it must run"
    );
    eprintln!("SKIPPED {suite}: {why} (run .ci/run to install it)");
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("emulator/ is inside the workspace")
        .to_path_buf()
}

/// `KUBECTL`, else the Debian kubectl that .ci/run unpacks, else `kubectl` on PATH.
fn kubectl() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("KUBECTL").map(PathBuf::from),
        Some(workspace().join(".ci/tools/usr/bin/kubectl")),
    ];
    for c in candidates.into_iter().flatten() {
        if c.is_file() {
            return Some(c);
        }
    }
    Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| PathBuf::from("kubectl"))
}

fn python() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("LEADERRUN_PYTHON").map(PathBuf::from),
        Some(workspace().join(".venv/bin/python")),
    ];
    candidates.into_iter().flatten().find(|p| {
        p.is_file()
            && Command::new(p)
                .args(["-c", "import kubernetes"])
                .output()
                .is_ok_and(|o| o.status.success())
    })
}

struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
}

impl Kubectl {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env("HOME", self.home.path());
        c
    }
    fn run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut c = self.cmd(args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn kubectl");
        if let Some(s) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("piped stdin")
                .write_all(s.as_bytes())
                .expect("write kubectl stdin");
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("kubectl output");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }
}

fn lease_json(holder: &str, rv: Option<&str>) -> String {
    let rv = rv
        .map(|r| format!(",\"resourceVersion\":\"{r}\""))
        .unwrap_or_default();
    format!(
        r#"{{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{{"name":"lock"{rv}}},"spec":{{"holderIdentity":"{holder}","leaseDurationSeconds":15}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_get_apply_replace_watch_delete() {
    let Some(bin) = kubectl() else {
        return skip(
            "kubectl suite",
            "no kubectl found (KUBECTL, .ci/tools, PATH)",
        );
    };
    let e = Emulator::start(Config::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    e.write_kubeconfig(&kubeconfig, None).unwrap();
    let k = Kubectl {
        bin,
        kubeconfig,
        home: tempfile::tempdir().unwrap(),
    };

    let (ok, out, err) = tokio::task::block_in_place(|| {
        k.run(
            &["create", "--validate=false", "-f", "-"],
            Some(&lease_json("a", None)),
        )
    });
    assert!(ok, "kubectl create: {out} {err}");
    let (ok, out, err) =
        tokio::task::block_in_place(|| k.run(&["get", "lease", "lock", "-o", "json"], None));
    assert!(ok, "kubectl get: {err}");
    let got: serde_json::Value = serde_json::from_str(&out).expect("kubectl prints JSON");
    assert_eq!(got["spec"]["holderIdentity"], "a");
    let first_rv = got["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    let (ok, out, err) = tokio::task::block_in_place(|| {
        k.run(
            &["apply", "--validate=false", "-f", "-"],
            Some(&lease_json("b", None)),
        )
    });
    assert!(ok, "kubectl apply: {out} {err}");
    assert_eq!(
        e.with_store(|s| s.get(kube_emulator::Kind::Lease, "default", "lock"))
            .unwrap()["spec"]["holderIdentity"],
        "b"
    );

    let (ok, _, err) = tokio::task::block_in_place(|| {
        k.run(
            &["replace", "--validate=false", "-f", "-"],
            Some(&lease_json("c", Some(&first_rv))),
        )
    });
    assert!(!ok, "a replace with a stale resourceVersion must fail");
    assert!(
        err.contains("the object has been modified"),
        "kubectl shows the Conflict message: {err}"
    );

    // get -w sees an update made while it watches.
    let mut watcher = k
        .cmd(&["get", "lease", "lock", "-w", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    e.wait_for_request(Duration::from_secs(30), |r| r.verb == "watch")
        .await
        .expect("kubectl starts a watch");
    let cur = e
        .with_store(|s| s.get(kube_emulator::Kind::Lease, "default", "lock"))
        .unwrap();
    let rv = cur["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, _, err) = tokio::task::block_in_place(|| {
        k.run(
            &["replace", "--validate=false", "-f", "-"],
            Some(&lease_json("watched", Some(&rv))),
        )
    });
    assert!(ok, "kubectl replace with the current version: {err}");
    let mut stdout = watcher.stdout.take().unwrap();
    let seen = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            match stdout.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if String::from_utf8_lossy(&buf).contains("\"watched\"") {
                return true;
            }
        }
        false
    });
    let seen = tokio::time::timeout(Duration::from_secs(40), seen)
        .await
        .expect("watch output in time")
        .unwrap();
    let _ = watcher.kill();
    let _ = watcher.wait();
    assert!(seen, "kubectl get -w printed the update");

    let (ok, out, err) = tokio::task::block_in_place(|| k.run(&["delete", "lease", "lock"], None));
    assert!(ok && out.contains("deleted"), "kubectl delete: {out} {err}");
    assert!(e
        .with_store(|s| s.get(kube_emulator::Kind::Lease, "default", "lock"))
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_read_replace_conflict_create_conflict() {
    let Some(py) = python() else {
        return skip(
            "Python client suite",
            "no Python with the `kubernetes` package (LEADERRUN_PYTHON, .venv)",
        );
    };
    let e = Emulator::start(Config::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    e.write_kubeconfig(&kubeconfig, None).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python_client.py");
    let out =
        tokio::task::spawn_blocking(move || Command::new(py).arg(script).arg(&kubeconfig).output())
            .await
            .unwrap()
            .unwrap();
    assert!(
        out.status.success(),
        "python client checks failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The client really talked to the emulator: it sends no Content-Type, and its user agent names it.
    let log = e.request_log();
    assert!(log
        .iter()
        .any(|r| r.user_agent.starts_with("OpenAPI-Generator")
            && r.verb == "update"
            && r.status == 409));
}
