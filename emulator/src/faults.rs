//! Fault injection and the request log.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

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
