//! kubectl and the Python kubernetes client against the emulator, and against a real
//! kube-apiserver when `LEADERRUN_TEST_KUBECONFIG` names one: the same checks pass on both.
//! They need tools that `cargo` cannot install; `.ci/run` installs them and sets
//! `LEADERRUN_REQUIRE_REAL_CLIENTS=1`, which turns a missing tool into a failure.
//! Elsewhere a missing tool skips the suite with a message saying why.

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
    // Past libtest's capture, so that the run's output shows the skip.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIPPED {suite}: {why} (run .ci/run to install it)"
    );
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

/// Where a suite runs: the emulator, then the real server if there is one (in a fresh namespace).
struct Target {
    label: &'static str,
    kubeconfig: PathBuf,
    namespace: String,
    emulator: Option<Emulator>,
    _dir: tempfile::TempDir,
}

async fn targets() -> Vec<Target> {
    let dir = tempfile::tempdir().unwrap();
    let e = Emulator::start(Config::default()).await.unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    e.write_kubeconfig(&kubeconfig, None).unwrap();
    let mut out = vec![Target {
        label: "emulator",
        kubeconfig,
        namespace: "default".into(),
        emulator: Some(e),
        _dir: dir,
    }];
    if let Some(real) = std::env::var_os("LEADERRUN_TEST_KUBECONFIG").filter(|v| !v.is_empty()) {
        let kubeconfig = PathBuf::from(real);
        let yaml = std::fs::read_to_string(&kubeconfig).expect("read LEADERRUN_TEST_KUBECONFIG");
        let kc = kube::config::Kubeconfig::from_yaml(&yaml).expect("kubeconfig parses");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("kubeconfig");
        let client = kube::Client::try_from(cfg).expect("client");
        let namespace = format!("clients-{:08x}", rand::random::<u32>());
        let nss: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
        nss.create(
            &Default::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}})).unwrap(),
        )
        .await
        .expect("create a namespace on the real server");
        out.push(Target {
            label: "real",
            kubeconfig,
            namespace,
            emulator: None,
            _dir: tempfile::tempdir().unwrap(),
        });
    }
    out
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
    for t in targets().await {
        kubectl_suite(&bin, &t).await;
    }
}

async fn kubectl_suite(bin: &Path, t: &Target) {
    let k = Kubectl {
        bin: bin.to_path_buf(),
        kubeconfig: t.kubeconfig.clone(),
        home: tempfile::tempdir().unwrap(),
    };
    let ns = t.namespace.as_str();
    let label = t.label;
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut all = vec!["-n", ns];
        all.extend_from_slice(args);
        tokio::task::block_in_place(|| k.run(&all, stdin))
    };
    let holder = || {
        let (ok, out, err) = run(&["get", "lease", "lock", "-o", "json"], None);
        assert!(ok, "{label}: kubectl get: {err}");
        let got: serde_json::Value = serde_json::from_str(&out).expect("kubectl prints JSON");
        got
    };

    let (ok, out, err) = run(
        &["create", "--validate=false", "-f", "-"],
        Some(&lease_json("a", None)),
    );
    assert!(ok, "{label}: kubectl create: {out} {err}");
    let got = holder();
    assert_eq!(got["spec"]["holderIdentity"], "a");
    let first_rv = got["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    let (ok, out, err) = run(
        &["apply", "--validate=false", "-f", "-"],
        Some(&lease_json("b", None)),
    );
    assert!(ok, "{label}: kubectl apply: {out} {err}");
    assert_eq!(holder()["spec"]["holderIdentity"], "b");

    let (ok, _, err) = run(
        &["replace", "--validate=false", "-f", "-"],
        Some(&lease_json("c", Some(&first_rv))),
    );
    assert!(
        !ok,
        "{label}: a replace with a stale resourceVersion must fail"
    );
    assert!(
        err.contains("the object has been modified"),
        "{label}: kubectl shows the Conflict message: {err}"
    );

    // get -w prints the object, then watches; an update made meanwhile shows up.
    let mut watcher = k
        .cmd(&["-n", ns, "get", "lease", "lock", "-w", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = watcher.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut chunk) {
            if n == 0
                || tx
                    .send(String::from_utf8_lossy(&chunk[..n]).into_owned())
                    .is_err()
            {
                break;
            }
        }
    });
    let mut printed = String::new();
    let wait_for = |printed: &mut String,
                    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
                    what: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !printed.contains(what) && Instant::now() < deadline {
            match tokio::task::block_in_place(|| {
                std::thread::sleep(Duration::from_millis(20));
                rx.try_recv()
            }) {
                Ok(s) => printed.push_str(&s),
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {}
                Err(_) => break,
            }
        }
        printed.contains(what)
    };
    assert!(
        wait_for(&mut printed, &mut rx, "\"b\""),
        "{label}: kubectl get -w printed the object first"
    );
    if let Some(e) = &t.emulator {
        e.wait_for_request(Duration::from_secs(30), |r| r.verb == "watch")
            .await
            .expect("kubectl starts a watch");
    }
    let rv = holder()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, _, err) = run(
        &["replace", "--validate=false", "-f", "-"],
        Some(&lease_json("watched", Some(&rv))),
    );
    assert!(
        ok,
        "{label}: kubectl replace with the current version: {err}"
    );
    let seen = wait_for(&mut printed, &mut rx, "\"watched\"");
    let _ = watcher.kill();
    let _ = watcher.wait();
    assert!(seen, "{label}: kubectl get -w printed the update");

    let (ok, out, err) = run(&["delete", "lease", "lock"], None);
    assert!(
        ok && out.contains("deleted"),
        "{label}: kubectl delete: {out} {err}"
    );
    let (ok, _, err) = run(&["get", "lease", "lock", "-o", "json"], None);
    assert!(
        !ok && err.contains("NotFound"),
        "{label}: gone after delete: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_read_replace_conflict_create_conflict() {
    let Some(py) = python() else {
        return skip(
            "Python client suite",
            "no Python with the `kubernetes` package (LEADERRUN_PYTHON, .venv)",
        );
    };
    for t in targets().await {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python_client.py");
        let (py, kubeconfig, ns) = (py.clone(), t.kubeconfig.clone(), t.namespace.clone());
        let out = tokio::task::spawn_blocking(move || {
            Command::new(py)
                .arg(script)
                .arg(&kubeconfig)
                .arg(&ns)
                .output()
        })
        .await
        .unwrap()
        .unwrap();
        assert!(
            out.status.success(),
            "{}: python client checks failed:\n{}\n{}",
            t.label,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The client really talked to the emulator: its user agent names it.
        if let Some(e) = &t.emulator {
            assert!(e
                .request_log()
                .iter()
                .any(|r| r.user_agent.starts_with("OpenAPI-Generator")
                    && r.verb == "update"
                    && r.status == 409));
        }
    }
}
