//! leaderrun as the kubectl plugin `kubectl leaderrun`: installed or linked as
//! `kubectl-leaderrun` on PATH, run through kubectl with kubectl's flags (`--kubeconfig`, `-n`,
//! `-o json`), against kube-emulator or the real API server.

use crate::common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;

const LONG: Duration = Duration::from_secs(60);

/// kubectl, with a folder on PATH where `kubectl-leaderrun` links to the binary under test;
/// None (with a note) without kubectl.
fn kubectl_with_plugin(dir: &std::path::Path) -> Option<(PathBuf, String)> {
    let Some(kubectl) = kubectl() else {
        assert!(
            std::env::var("LEADERRUN_REQUIRE_REAL_CLIENTS").as_deref() != Ok("1"),
            "LEADERRUN_REQUIRE_REAL_CLIENTS=1 but kubectl was not found"
        );
        skip(
            "kubectl plugin",
            "needs kubectl (KUBECTL, .ci/tools or PATH)",
        );
        return None;
    };
    let bin = dir.join("plugins");
    std::fs::create_dir_all(&bin).expect("plugin folder");
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_leaderrun"),
        bin.join(leaderrun::cli::KUBECTL_PLUGIN),
    )
    .expect("link kubectl-leaderrun");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Some((kubectl, path))
}

// Several threads: the kubectl calls block, and the in-process emulator must answer meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_leaderrun_inspects_a_lock_with_kubectls_flags() {
    let api = Api::start().await;
    let Some((kubectl, path)) = kubectl_with_plugin(api.dir.path()) else {
        return;
    };
    let name = api.lock_name("plugin");
    let mut leader = job_candidate(&api, "lease", &name, "plugin-leader", &[], "1000");
    wait_leader(&mut leader).await;

    let run = |args: &[&str]| {
        let out = std::process::Command::new(&kubectl)
            .args(args)
            .env("PATH", &path)
            .output()
            .expect("run kubectl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // kubectl finds it.
    let (_, listed, _) = run(&["plugin", "list"]);
    assert!(
        listed.contains("kubectl-leaderrun"),
        "plugin list: {listed}"
    );
    // kubectl passes its flags through: --kubeconfig, -n, -o json.
    let kubeconfig = api.kubeconfig("operator");
    let (code, out, err) = run(&[
        "leaderrun",
        "inspect",
        "--kubeconfig",
        kubeconfig.to_str().expect("utf-8 path"),
        "-n",
        &api.namespace,
        "--name",
        &name,
        "-o",
        "json",
    ]);
    assert_eq!(code, 0, "held: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["holderIdentity"], "plugin-leader", "{v}");
    // Help and errors name it as kubectl does.
    let (_, help, _) = run(&["leaderrun", "--help"]);
    assert!(help.contains("Usage: kubectl leaderrun"), "{help}");
    let (code, _, err) = run(&["leaderrun", "inspect", "--no-such-flag"]);
    assert_eq!(code, i32::from(leaderrun::exit::USAGE), "{err}");
    assert!(err.contains("kubectl leaderrun inspect"), "{err}");

    leader.start_kill().expect("stop the leader");
    let _ = exit_of(leader, LONG).await;
}
