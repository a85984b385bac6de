//! A slow API server, as the pods see it: a TCP relay in the cluster's network namespace that
//! holds every chunk it passes on for a set time, each way, and a DNAT rule there that turns the
//! pods' connections to the API server's service address to it. The relay is in the path from
//! the start, passing bytes at once; the fault is only its delay, so connections live through
//! it as they would through a slow server (no reset, no new handshake). TLS stays end to end.
//! netem would do this in the kernel; this one has none.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

pub(super) struct SlowApi {
    netns: PathBuf,
    rule: Vec<String>,
    /// The delay each way, in microseconds, read as each chunk arrives.
    delay_us: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
}

impl SlowApi {
    /// Starts the relay in `netns` (a path such as /proc/PID/ns/net of a control-plane
    /// process), on `node_ip`, passing to `node_ip`:6443, and turns connections to
    /// `api_ip`:443 (the `kubernetes` Service) to it.
    pub(super) fn start(netns: &Path, node_ip: &str, api_ip: &str) -> SlowApi {
        let delay_us = Arc::new(AtomicU64::new(0));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let (ns, ip, delay) = (netns.to_path_buf(), node_ip.to_string(), delay_us.clone());
        // A thread of its own: setns moves only the calling thread, and every socket this
        // thread's runtime makes is then the cluster's.
        std::thread::spawn(move || {
            let f = std::fs::File::open(&ns).expect("the cluster's network namespace");
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the relay");
            rt.block_on(async move {
                let listener = TcpListener::bind((ip.as_str(), 0))
                    .await
                    .expect("the relay's port");
                let _ = port_tx.send(listener.local_addr().expect("its address").port());
                tokio::select! {
                    _ = stop_rx => {}
                    _ = serve(listener, format!("{ip}:6443"), delay) => {}
                }
            });
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the relay started");
        let rule: Vec<String> = [
            "PREROUTING",
            "-d",
            api_ip,
            "-p",
            "tcp",
            "--dport",
            "443",
            "-j",
            "DNAT",
            "--to-destination",
            &format!("{node_ip}:{port}"),
        ]
        .map(String::from)
        .to_vec();
        let slow = SlowApi {
            netns: netns.to_path_buf(),
            rule,
            delay_us,
            stop: Some(stop_tx),
        };
        slow.iptables("-I");
        slow
    }

    /// Every chunk either way waits `each_way` from now on: a request is answered twice that
    /// later than before.
    pub(super) fn set(&self, each_way: Duration) {
        self.delay_us
            .store(each_way.as_micros() as u64, Ordering::SeqCst);
    }

    fn iptables(&self, op: &str) {
        let out = std::process::Command::new("nsenter")
            .arg(format!("--net={}", self.netns.display()))
            .args(["iptables", "-t", "nat", op])
            .args(&self.rule)
            .output()
            .expect("run nsenter iptables");
        assert!(
            out.status.success(),
            "iptables {op} {:?}: {}",
            self.rule,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The rule goes with the test, passed or failed (the runner's cleanup removes the whole
/// namespace, and it with it, in any case).
impl Drop for SlowApi {
    fn drop(&mut self) {
        self.set(Duration::ZERO);
        let _ = std::process::Command::new("nsenter")
            .arg(format!("--net={}", self.netns.display()))
            .args(["iptables", "-t", "nat", "-D"])
            .args(&self.rule)
            .output();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn serve(listener: TcpListener, upstream: String, delay_us: Arc<AtomicU64>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let (upstream, delay_us) = (upstream.clone(), delay_us.clone());
        tokio::spawn(async move {
            // A stopped API server refuses: the client's connection ends as it would have.
            let Ok(server) = TcpStream::connect(&upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            // Either way ending ends both: an API server gone, or a client gone.
            tokio::select! {
                _ = pass(cr, sw, delay_us.clone()) => {}
                _ = pass(sr, cw, delay_us) => {}
            }
        });
    }
}

/// Reads from `from` and writes each chunk to `to` once it has waited the delay that held
/// when it was read, in order.
async fn pass(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay_us: Arc<AtomicU64>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let delay = Duration::from_micros(delay_us.load(Ordering::SeqCst));
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    };
    // The writer drains what was read before an end.
    let (_, _) = tokio::join!(reader, writer);
}
