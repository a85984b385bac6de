//! kube-emulator: an emulator of the Kubernetes API for `coordination.k8s.io/v1`
//! Leases and core `v1` ConfigMaps, strict where kube-apiserver is strict, with
//! fault injection and a request log. See README.md for what it covers.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let emu = kube_emulator::Emulator::start(kube_emulator::Config::default()).await?;
//! emu.write_kubeconfig(std::path::Path::new("/tmp/kubeconfig"), None)?;
//! # Ok(()) }
//! ```

mod admin;
pub mod decode;
pub mod faults;
pub mod kind;
mod network;
mod query;
mod response;
mod routing;
mod state;
pub mod status;
pub mod store;
mod sync;
mod transport;
pub mod validation;
mod verbs;
mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, oneshot};

pub use faults::{Action, Fault, LogEntry};
pub use kind::Kind;
pub use store::Store;

use state::Shared;
use sync::lock;

/// How to start an emulator.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Serve HTTPS with a generated self-signed certificate.
    pub tls: bool,
    /// Bearer token to user name. When set, every request must carry one of
    /// these tokens (else 401). When empty, any token or none is accepted, and
    /// a token only names the client.
    pub tokens: HashMap<String, String>,
    /// How many events the watch history keeps before older versions get 410.
    pub history: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: false,
            tokens: HashMap::new(),
            history: 10_000,
        }
    }
}

/// A running emulator. Dropping it stops the server.
pub struct Emulator {
    addr: SocketAddr,
    /// When the request log's clock (`at_ms`) started, on the wall clock.
    started_wall: std::time::SystemTime,
    shared: Arc<Shared>,
    ca_pem: Option<String>,
    _shutdown: oneshot::Sender<()>,
}

impl Emulator {
    pub async fn start(config: Config) -> std::io::Result<Emulator> {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let (close_watches, _) = broadcast::channel(64);
        // Read together, so that `wall_time` maps the log's clock onto the wall clock without
        // the time spent below (a TLS certificate takes milliseconds in a debug build).
        let (started, started_wall) = (Instant::now(), std::time::SystemTime::now());
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(config.history)),
            faults: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            next_fault: AtomicU64::new(1),
            close_watches,
            tokens: config.tokens.clone(),
            started,
        });
        let (tls, ca_pem) = if config.tls {
            let (acceptor, pem) = transport::tls_acceptor().map_err(std::io::Error::other)?;
            (Some(acceptor), Some(pem))
        } else {
            (None, None)
        };
        let (tx, rx) = oneshot::channel();
        tokio::spawn(transport::serve(listener, shared.clone(), tls, rx));
        Ok(Emulator {
            addr,
            started_wall,
            shared,
            ca_pem,
            _shutdown: tx,
        })
    }

    /// The wall-clock time of a request log entry's arrival (to within a microsecond).
    pub fn wall_time(&self, entry: &LogEntry) -> std::time::SystemTime {
        self.started_wall + Duration::from_micros(entry.at_us)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// A kubeconfig for this emulator, with `token` as the user's bearer token.
    pub fn kubeconfig(&self, token: Option<&str>, namespace: &str) -> String {
        use base64::Engine;
        let ca = self
            .ca_pem
            .as_ref()
            .map(|pem| {
                format!(
                    "\n    certificate-authority-data: {}",
                    base64::engine::general_purpose::STANDARD.encode(pem)
                )
            })
            .unwrap_or_default();
        let user = match token {
            Some(t) => format!("\n    token: {t}"),
            None => " {}".to_string(),
        };
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-emulator\n  cluster:\n    server: {url}{ca}\ncontexts:\n- name: kube-emulator\n  context:\n    cluster: kube-emulator\n    user: kube-emulator\n    namespace: {namespace}\ncurrent-context: kube-emulator\nusers:\n- name: kube-emulator\n  user:{user}\npreferences: {{}}\n",
            url = self.url()
        )
    }

    pub fn write_kubeconfig(&self, path: &Path, token: Option<&str>) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig(token, "default"))
    }

    /// Adds a fault; returns its id.
    pub fn add_fault(&self, fault: Fault) -> u64 {
        self.shared.add_fault(fault)
    }

    pub fn remove_fault(&self, id: u64) {
        lock(&self.shared.faults).retain(|f| f.id != id);
    }

    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    pub fn request_log(&self) -> Vec<LogEntry> {
        lock(&self.shared.log).clone()
    }

    pub fn clear_log(&self) {
        lock(&self.shared.log).clear();
    }

    /// Ends open watches cleanly (as an API server restart does), of one client or all.
    pub fn close_watches(&self, client: Option<&str>) {
        let _ = self
            .shared
            .close_watches
            .send((client.map(String::from), false));
    }

    /// Forgets the watch history: a watch from any earlier version now gets 410.
    pub fn compact(&self) {
        lock(&self.shared.store).compact();
    }

    pub fn add_namespace(&self, ns: &str) {
        lock(&self.shared.store).add_namespace(ns);
    }

    /// Direct access to the store, for tests that seed or read objects.
    pub fn with_store<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        f(&mut lock(&self.shared.store))
    }

    /// Waits until the request log holds an entry for which `pred` is true.
    pub async fn wait_for_request(
        &self,
        timeout: Duration,
        pred: impl Fn(&LogEntry) -> bool,
    ) -> Option<LogEntry> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = lock(&self.shared.log).iter().find(|e| pred(e)) {
                return Some(e.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn fault_hits(&self, id: u64) -> u64 {
        lock(&self.shared.faults)
            .iter()
            .find(|f| f.id == id)
            .map_or(0, |f| f.hits)
    }
}
