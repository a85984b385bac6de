//! Fault injection (what a fault is, which requests it matches, what it does to them)
//! and the request log.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::kind::Kind;
use crate::response::{error_response, full, Body};
use crate::status::{self, ErrorBody};
use crate::sync::lock;

/// A fault: what to do to the requests it matches, for how many or how long.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    /// Only requests from this client: its bearer token's user (or, in open
    /// mode, the token itself), or a substring of its User-Agent. None: all.
    #[serde(default)]
    pub client: Option<String>,
    /// Only this HTTP method (GET, PUT, ...).
    #[serde(default)]
    pub method: Option<String>,
    /// Only requests whose path and query contain this text.
    #[serde(default)]
    pub path_contains: Option<String>,
    pub action: Action,
    /// Hit this many requests, then disappear.
    #[serde(default)]
    pub count: Option<u64>,
    /// Last this long from when it was added, then disappear.
    #[serde(default)]
    pub duration_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum Action {
    /// Answer normally, this much later.
    Latency { ms: u64 },
    /// Answer with this status: 500, 503 and 504 as JSON Status bodies, 429 as the
    /// plain-text priority-and-fairness answer with `Retry-After`, 401 and 403 as
    /// the authentication and RBAC answers.
    Error {
        code: u16,
        #[serde(default, rename = "retryAfter")]
        retry_after: Option<u32>,
    },
    /// Answer this status with this body as text/plain (what a proxy or a
    /// broken server might send: not JSON at all).
    Raw { code: u16, body: String },
    /// Never answer; the connection is closed when the fault ends.
    Hang,
    /// Close the connection without an answer.
    Drop,
    /// Drop every request of the client and cut its open watches, for as long
    /// as the fault lasts: the client is cut off from the API.
    Partition,
    /// Open watches of the client send nothing, yet stay open, for as long as the fault
    /// lasts (a half-open connection: the client cannot tell). New requests are served.
    Stall,
    /// Carry the request out, then close the connection without its answer: the write
    /// landed, but the client times out not knowing.
    LoseAnswer,
    /// Carry the request out, then answer this much later (past the client's timeout,
    /// the write landed all the same).
    LateAnswer { ms: u64 },
    /// Carry the request out only this much later, whether or not its client still waits:
    /// a server whose storage is slow finishes a write whose client timed out and went on.
    LateRequest { ms: u64 },
}

impl Action {
    /// Actions that let the request through and change only its answer.
    pub fn applies_request(&self) -> bool {
        matches!(
            self,
            Action::LoseAnswer | Action::LateAnswer { .. } | Action::LateRequest { .. }
        )
    }
}

impl Fault {
    pub fn new(action: Action) -> Self {
        Fault {
            client: None,
            method: None,
            path_contains: None,
            action,
            count: None,
            duration_ms: None,
        }
    }
    pub fn for_client(mut self, client: impl Into<String>) -> Self {
        self.client = Some(client.into());
        self
    }
    pub fn method(mut self, m: impl Into<String>) -> Self {
        self.method = Some(m.into());
        self
    }
    pub fn path_contains(mut self, p: impl Into<String>) -> Self {
        self.path_contains = Some(p.into());
        self
    }
    pub fn times(mut self, n: u64) -> Self {
        self.count = Some(n);
        self
    }
    pub fn lasting(mut self, d: Duration) -> Self {
        self.duration_ms = Some(d.as_millis() as u64);
        self
    }
}

pub(crate) struct ActiveFault {
    pub id: u64,
    pub fault: Fault,
    pub until: Option<Instant>,
    pub hits: u64,
}

/// Who sent a request, for scoping faults and for the log.
#[derive(Debug, Clone)]
pub struct ClientId {
    pub label: String,
    pub user_agent: String,
}

impl ClientId {
    pub fn matches(&self, scope: &str) -> bool {
        self.label == scope || (!self.user_agent.is_empty() && self.user_agent.contains(scope))
    }
}

impl ActiveFault {
    pub fn live(&self, now: Instant) -> bool {
        self.until.is_none_or(|u| now < u) && self.fault.count.is_none_or(|c| self.hits < c)
    }
    pub fn matches(&self, client: &ClientId, method: &str, path: &str) -> bool {
        self.fault
            .client
            .as_deref()
            .is_none_or(|c| client.matches(c))
            && self
                .fault
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self
                .fault
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p))
    }
}

/// One line of the request log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    /// Milliseconds since the emulator started, when the request arrived.
    pub at_ms: u64,
    /// The same, in microseconds (what `Emulator::wall_time` uses).
    #[serde(default)]
    pub at_us: u64,
    pub method: String,
    /// Path and query as sent.
    pub path: String,
    /// The Kubernetes verb (get, list, watch, create, update, patch, delete), or
    /// empty for discovery and unknown paths.
    pub verb: String,
    /// `leases`, `configmaps`, or empty.
    pub resource: String,
    pub namespace: String,
    pub name: String,
    /// The status sent, or 0 when the connection was dropped or hung.
    pub status: u16,
    /// Until the answer's head was sent.
    pub latency_ms: f64,
    pub client: String,
    pub user_agent: String,
    /// Set when an injected fault decided the answer.
    pub fault: Option<u64>,
    /// The resourceVersion answered (of the object, or of the list), else empty. A
    /// write answered with the version it was sent with changed nothing: the
    /// server's no-op, which no watcher sees.
    #[serde(default)]
    pub resource_version: String,
}

/// What a fault makes of a request.
pub(crate) enum Outcome {
    Answer(Response<Body>),
    /// Close the connection without an answer.
    Drop,
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn outcome(
    faults: &Mutex<Vec<ActiveFault>>,
    id: u64,
    action: Action,
    kind: Option<Kind>,
    ns: &str,
    name: &str,
    user: &str,
    verb: &str,
) -> Outcome {
    match action {
        Action::Latency { .. } | Action::Stall => {
            unreachable!("latencies are summed and stalls apply to open watches; never chosen")
        }
        Action::LoseAnswer | Action::LateAnswer { .. } | Action::LateRequest { .. } => {
            unreachable!("the request is carried out first (routing::handle)")
        }
        Action::Drop | Action::Partition => Outcome::Drop,
        Action::Raw { code, body } => {
            Outcome::Answer(full(code, "text/plain; charset=utf-8", body))
        }
        Action::Hang => {
            // Hang while the fault lasts (an hour at most), then drop the connection.
            let until = lock(faults)
                .iter()
                .find(|f| f.id == id)
                .and_then(|f| f.until);
            let wait = until.map_or(Duration::from_secs(3600), |u| {
                u.saturating_duration_since(Instant::now())
            });
            tokio::time::sleep(wait).await;
            Outcome::Drop
        }
        Action::Error { code, retry_after } => {
            let mut e = match (code, kind) {
                (429, _) => status::too_many_requests(retry_after.unwrap_or(1)),
                (401, _) => status::unauthorized(),
                (403, Some(k)) => status::forbidden(k, name, ns, user, verb),
                (503, _) => status::service_unavailable(),
                (504, _) => status::timeout(),
                (409, Some(k)) => status::conflict(k, name),
                _ => status::internal("injected fault"),
            };
            if code != 429 && retry_after.is_some() {
                e.retry_after = retry_after;
            }
            if !matches!(code, 429 | 401 | 403 | 503 | 504 | 409) {
                e.code = code;
                if let ErrorBody::Status(v) = &mut e.body {
                    v["code"] = json!(code);
                }
            }
            Outcome::Answer(error_response(&e))
        }
    }
}

/// The faults a request from `client` meets: the sum of the latencies, and the first
/// other live fault that decides the answer (its id and action). Counts the hits.
pub(crate) fn matching(
    faults: &Mutex<Vec<ActiveFault>>,
    client: &ClientId,
    method: &str,
    path: &str,
) -> (Duration, Option<(u64, Action)>) {
    let mut delay = Duration::ZERO;
    let mut decided: Option<(u64, Action)> = None;
    let now = Instant::now();
    let mut faults = lock(faults);
    for f in faults.iter_mut() {
        if !f.live(now) || !f.matches(client, method, path) {
            continue;
        }
        match &f.fault.action {
            Action::Latency { ms } => {
                f.hits += 1;
                delay += Duration::from_millis(*ms);
            }
            // A stall is for open watches (`stalled`), not for new requests.
            Action::Stall => {}
            other if decided.is_none() => {
                f.hits += 1;
                decided = Some((f.id, other.clone()));
            }
            _ => {}
        }
    }
    (delay, decided)
}

/// True while a live `Stall` fault matches this client's watch on `path`: its open
/// watches send nothing (a half-open connection), but stay open.
pub(crate) fn stalled(faults: &Mutex<Vec<ActiveFault>>, client: &ClientId, path: &str) -> bool {
    let now = Instant::now();
    lock(faults)
        .iter()
        .any(|f| f.fault.action == Action::Stall && f.live(now) && f.matches(client, "GET", path))
}
