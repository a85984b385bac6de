//! `kube-emulator`: serves the emulated API until TERM or INT.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use kube_emulator::{Config, Emulator};

/// An emulator of the Kubernetes API for Leases and ConfigMaps.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Write a kubeconfig for kube, kubectl and the Python client here.
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
    /// Serve HTTPS with a generated self-signed certificate and require a bearer token.
    #[arg(long)]
    tls: bool,
    /// Require this bearer token (repeatable; `TOKEN` or `TOKEN=USER`).
    #[arg(long = "token")]
    tokens: Vec<String>,
    /// Namespaces that exist besides default, kube-system, kube-public and kube-node-lease.
    #[arg(long = "namespace")]
    namespaces: Vec<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let mut tokens: HashMap<String, String> = args
        .tokens
        .iter()
        .map(|t| match t.split_once('=') {
            Some((tok, user)) => (tok.to_string(), user.to_string()),
            None => (t.clone(), t.clone()),
        })
        .collect();
    let mut kubeconfig_token = tokens.keys().next().cloned();
    if args.tls && tokens.is_empty() {
        let t = format!("emu-{:032x}", rand::random::<u128>());
        tokens.insert(t.clone(), "kube-emulator-admin".to_string());
        kubeconfig_token = Some(t);
    }
    let config = Config {
        listen: args.listen,
        tls: args.tls,
        tokens,
        ..Config::default()
    };
    let emu = match Emulator::start(config).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("kube-emulator: cannot listen on {}: {e}", args.listen);
            return std::process::ExitCode::from(1);
        }
    };
    for ns in &args.namespaces {
        emu.add_namespace(ns);
    }
    if let Some(path) = &args.kubeconfig_out {
        if let Err(e) = emu.write_kubeconfig(path, kubeconfig_token.as_deref()) {
            eprintln!(
                "kube-emulator: cannot write kubeconfig {}: {e}",
                path.display()
            );
            return std::process::ExitCode::from(1);
        }
    }
    println!("kube-emulator listening on {}", emu.url());
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kube-emulator: cannot handle TERM: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    std::process::ExitCode::SUCCESS
}
