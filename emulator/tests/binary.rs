//! The `kube-emulator` binary: prints its address, writes a kubeconfig that kube
//! accepts (plain and --tls with a token), serves the admin endpoint, stops on TERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};

async fn check(tls: bool) {
    let dir = tempfile::tempdir().unwrap();
    let kc_path = dir.path().join("kubeconfig");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kube-emulator"));
    cmd.args(["--listen", "127.0.0.1:0", "--kubeconfig-out"])
        .arg(&kc_path)
        .stdout(Stdio::piped());
    if tls {
        cmd.arg("--tls");
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let scheme = if tls {
        "https://127.0.0.1:"
    } else {
        "http://127.0.0.1:"
    };
    assert!(
        line.starts_with(&format!("kube-emulator listening on {scheme}")),
        "{line}"
    );
    let port: u16 = line.trim().rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(port, 0, "port 0 picked a free port");

    let kc = Kubeconfig::read_from(&kc_path).unwrap();
    assert_eq!(
        kc.auth_infos[0]
            .auth_info
            .as_ref()
            .is_some_and(|a| a.token.is_some()),
        tls,
        "a token only with --tls"
    );
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    let leases: Api<Lease> = Api::namespaced(Client::try_from(cfg).unwrap(), "default");
    let l = Lease {
        metadata: ObjectMeta {
            name: Some("bin".into()),
            ..Default::default()
        },
        spec: None,
    };
    leases.create(&PostParams::default(), &l).await.unwrap();
    assert!(leases.get_opt("bin").await.unwrap().is_some());

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exits 0 on TERM");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "stops on TERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn plain_http_binary() {
    check(false).await;
}

#[tokio::test]
async fn tls_binary_with_a_generated_token() {
    check(true).await;
}
