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

/// The system's certificate store is read only when the kubeconfig gives no CA for an https
/// server: a plain-http server (`kubectl proxy`) or one with its CA given needs none of it,
/// and reading and parsing it cost a one-shot milliseconds. The store here is a FIFO that
/// nobody writes, so a read of it hangs the copy.
#[tokio::test]
async fn the_system_certificate_store_is_not_read_when_the_kubeconfig_decides_trust() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("ca-certificates.crt");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRUSR).unwrap();
    let store = dir.path().join("certs");
    std::fs::create_dir(&store).unwrap();
    let mut tls = Config {
        tls: true,
        ..Config::default()
    };
    tls.tokens.insert("tls-token".into(), "admin".into());
    let with_ca = Emulator::start(tls).await.unwrap();
    let plain = Emulator::start(Config::default()).await.unwrap();
    for (name, emu, token) in [
        ("plain-http", &plain, None),
        ("https-with-ca", &with_ca, Some("tls-token")),
    ] {
        let kubeconfig = dir.path().join(name);
        std::fs::write(&kubeconfig, emu.kubeconfig(token, "default")).unwrap();
        let mut c = leaderrun();
        c.arg("--kubeconfig")
            .arg(&kubeconfig)
            .env("SSL_CERT_FILE", &fifo)
            .env("SSL_CERT_DIR", &store)
            .args(["--name", name, "--no-wait", "--", "true"]);
        let out = tokio::time::timeout(LONG, c.output())
            .await
            .unwrap_or_else(|_| panic!("{name}: the copy hung reading the system's store"))
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
