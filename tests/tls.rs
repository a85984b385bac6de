//! TLS is verified unless the kubeconfig says otherwise.

use crate::common;

use std::time::Duration;

use common::*;
use kube_emulator::{Config, Emulator};

const LONG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn certificates_are_verified_unless_the_kubeconfig_skips_it() {
    let mut cfg = Config {
        tls: true,
        ..Config::default()
    };
    cfg.tokens.insert("tls-token".into(), "admin".into());
    let emu = Emulator::start(cfg).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let with_ca = emu.kubeconfig(Some("tls-token"), "default");
    assert!(with_ca.contains("certificate-authority-data"));
    let without_ca: String = with_ca
        .lines()
        .filter(|l| !l.contains("certificate-authority-data"))
        .map(|l| format!("{l}\n"))
        .collect();
    let skip = without_ca.replace(
        "    server: https://",
        "    insecure-skip-tls-verify: true\n    server: https://",
    );
    let run = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let mut c = leaderrun();
        c.arg("--kubeconfig").arg(&path).args([
            "--name",
            name,
            "--retry-period",
            "500ms",
            "--wait-timeout",
            "2s",
            "--",
            "true",
        ]);
        c
    };
    let out = run("with-ca", &with_ca).output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tokio::time::timeout(LONG, run("unknown-ca", &without_ca).output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(124), "never connects: {stderr}");
    assert!(
        stderr.to_lowercase().contains("certificate"),
        "the message says why: {stderr}"
    );
    assert!(
        !emu.request_log().iter().any(|r| r.name == "unknown-ca"),
        "no request got through"
    );
    let out = run("skip-verify", &skip).output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "insecure-skip-tls-verify is honoured: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
