//! Routing: what a request addresses (discovery, a resource, the admin endpoint), its query
//! and selectors, who sent it, and the one dispatcher that logs it, applies faults and
//! hands it to the verbs, the watch or the admin endpoint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, USER_AGENT};
use hyper::{Method, Request, Response};
use serde_json::{json, Value};

use crate::faults::{self, ClientId, LogEntry, Outcome};
use crate::kind::Kind;
use crate::query::Query;
use crate::response::BoxError;
use crate::response::{error_response, json_response, Body};
use crate::state::Shared;
use crate::status::{self, ApiError};
use crate::sync::lock;

/// What a request addresses.
pub(crate) enum Route {
    Discovery(Value),
    Resource {
        kind: Kind,
        namespace: Option<String>,
        name: Option<String>,
        /// The deprecated `/watch/` path form.
        watch_path: bool,
    },
    Unknown,
}

pub(crate) fn discovery_core(addr: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}]})
}

pub(crate) fn group_version() -> Value {
    json!({"groupVersion": "coordination.k8s.io/v1", "version": "v1"})
}

/// The discovery document at `segs`, if it is one.
fn discovery(segs: &[&str], host: &str) -> Option<Value> {
    let verbs = json!([
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch"
    ]);
    Some(match segs {
        ["version"] => {
            json!({"major": "1", "minor": "37", "gitVersion": "v1.37.0-kube-emulator", "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean", "buildDate": "2026-11-25T00:00:00Z", "goVersion": "go1.25", "compiler": "gc", "platform": "linux/amd64"})
        }
        ["api"] => discovery_core(host),
        ["api", "v1"] => {
            json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
            {"name": "configmaps", "singularName": "configmap", "namespaced": true, "kind": "ConfigMap", "verbs": verbs, "shortNames": ["cm"]},
            {"name": "events", "singularName": "event", "namespaced": true, "kind": "Event", "verbs": verbs, "shortNames": ["ev"]},
            {"name": "services", "singularName": "service", "namespaced": true, "kind": "Service", "verbs": verbs, "shortNames": ["svc"]},
            {"name": "endpoints", "singularName": "endpoints", "namespaced": true, "kind": "Endpoints", "verbs": verbs, "shortNames": ["ep"]}]})
        }
        ["apis"] => {
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": "coordination.k8s.io", "versions": [group_version()], "preferredVersion": group_version()}]})
        }
        ["apis", "coordination.k8s.io"] => {
            json!({"kind": "APIGroup", "apiVersion": "v1", "name": "coordination.k8s.io", "versions": [group_version()], "preferredVersion": group_version()})
        }
        ["apis", "coordination.k8s.io", "v1"] => {
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "coordination.k8s.io/v1", "resources": [
            {"name": "leases", "singularName": "lease", "namespaced": true, "kind": "Lease", "verbs": verbs}]})
        }
        _ => return None,
    })
}

pub(crate) fn route(path: &str, host: &str) -> Route {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let segs: Vec<&str> = if segs.last() == Some(&"") {
        segs[..segs.len() - 1].to_vec()
    } else {
        segs
    };
    if let Some(doc) = discovery(&segs, host) {
        return Route::Discovery(doc);
    }
    let (kind, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", "coordination.k8s.io", "v1", rest @ ..] => ("coordination.k8s.io", rest),
        _ => return Route::Unknown,
    };
    let (watch_path, rest) = match rest {
        ["watch", r @ ..] => (true, r),
        r => (false, r),
    };
    let group = kind;
    let ok = |resource: &str, ns: Option<&str>, name: Option<&str>| match Kind::from_resource(
        group, resource,
    ) {
        Some(kind) => Route::Resource {
            kind,
            namespace: ns.map(String::from),
            name: name.map(String::from),
            watch_path,
        },
        None => Route::Unknown,
    };
    match rest {
        [r] => ok(r, None, None),
        ["namespaces", ns, r] => ok(r, Some(ns), None),
        ["namespaces", ns, r, name] => ok(r, Some(ns), Some(name)),
        _ => Route::Unknown,
    }
}

pub(crate) fn client_of(
    shared: &Shared,
    req: &Request<Incoming>,
) -> Result<(ClientId, String), ApiError> {
    let ua = req
        .headers()
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let token = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    let user = match (&token, shared.tokens.is_empty()) {
        (Some(t), false) => match shared.tokens.get(t) {
            Some(u) => u.clone(),
            None => return Err(status::unauthorized()),
        },
        (None, false) => return Err(status::unauthorized()),
        (Some(t), true) => t.clone(),
        (None, true) => String::new(),
    };
    let label = if !user.is_empty() {
        user.clone()
    } else if !ua.is_empty() {
        ua.clone()
    } else {
        "anonymous".to_string()
    };
    let user = if user.is_empty() {
        "system:anonymous".to_string()
    } else {
        user
    };
    Ok((
        ClientId {
            label,
            user_agent: ua,
        },
        user,
    ))
}

pub(crate) fn verb_of(method: &Method, name: Option<&str>, watch: bool) -> &'static str {
    match (method.as_str(), name.is_some()) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "",
    }
}

/// What a request addresses, worked out once.
struct Target {
    route: Route,
    kind: Option<Kind>,
    namespace: String,
    name: String,
    verb: &'static str,
    query: Query,
}

impl Target {
    /// What the fault `id` makes of this request, sent by `user`.
    async fn meets(&self, shared: &Shared, id: u64, action: faults::Action, user: &str) -> Outcome {
        faults::outcome(
            &shared.faults,
            id,
            action,
            self.kind,
            &self.namespace,
            &self.name,
            user,
            self.verb,
        )
        .await
    }

    fn of(req: &Request<Incoming>) -> Target {
        let query = Query::parse(req.uri().query());
        let host = req
            .headers()
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1");
        let route = route(req.uri().path(), host);
        let (kind, namespace, name, watch) = match &route {
            Route::Resource {
                kind,
                namespace,
                name,
                watch_path,
            } => (
                Some(*kind),
                namespace.clone().unwrap_or_default(),
                name.clone().unwrap_or_default(),
                *watch_path || query.flag("watch"),
            ),
            _ => (None, String::new(), String::new(), false),
        };
        let verb = match kind {
            Some(_) => verb_of(
                req.method(),
                (!name.is_empty()).then_some(name.as_str()),
                watch,
            ),
            None => "",
        };
        Target {
            route,
            kind,
            namespace,
            name,
            verb,
            query,
        }
    }

    fn log_entry(&self, shared: &Shared, req: &Request<Incoming>) -> LogEntry {
        let at = shared.started.elapsed();
        LogEntry {
            at_ms: at.as_millis() as u64,
            at_us: at.as_micros() as u64,
            method: req.method().to_string(),
            path: req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default(),
            verb: self.verb.to_string(),
            resource: self
                .kind
                .map(|k| k.resource().to_string())
                .unwrap_or_default(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            status: 0,
            latency_ms: 0.0,
            client: String::new(),
            user_agent: String::new(),
            fault: None,
            resource_version: String::new(),
        }
    }
}

/// The dispatcher, in steps: the admin endpoint; what the request addresses; who sent
/// it; the faults it meets; the answer; the log line.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, BoxError> {
    if req.uri().path().starts_with("/_emu/") {
        return Ok(crate::admin::admin(&shared, req).await);
    }
    let arrived = Instant::now();
    let target = Target::of(&req);
    let mut entry = target.log_entry(&shared, &req);
    let (client, user) = match client_of(&shared, &req) {
        Ok(c) => c,
        Err(e) => {
            entry.client = "unauthenticated".into();
            return Ok(answered(&shared, entry, arrived, error_response(&e)));
        }
    };
    entry.client = client.label.clone();
    entry.user_agent = client.user_agent.clone();
    // Latencies add up; the first other matching fault decides what happens.
    let (delay, decided) = faults::matching(&shared.faults, &client, &entry.method, &entry.path);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    entry.fault = decided.as_ref().map(|(id, _)| *id);
    let outcome = match decided {
        Some((_, faults::Action::LateRequest { ms })) => {
            let late = Late {
                target,
                client,
                entry,
                arrived,
            };
            return late.carry_out(shared, req, Duration::from_millis(ms)).await;
        }
        // The request is carried out; only its answer is lost or late.
        Some((_, action)) if action.applies_request() => {
            let (resp, rv) = answer(&shared, req, target, &client).await;
            entry.resource_version = rv;
            match action {
                faults::Action::LateAnswer { ms } => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Outcome::Answer(resp)
                }
                _ => Outcome::Drop,
            }
        }
        Some((id, action)) => target.meets(&shared, id, action, &user).await,
        None => {
            let (resp, rv) = answer(&shared, req, target, &client).await;
            entry.resource_version = rv;
            Outcome::Answer(resp)
        }
    };
    match outcome {
        Outcome::Answer(resp) => Ok(answered(&shared, entry, arrived, resp)),
        Outcome::Drop => {
            finish(&shared, entry, arrived);
            Err("connection dropped by an injected fault".into())
        }
    }
}

/// Logs the request with the status of `resp`, and gives `resp` back.
fn answered(
    shared: &Shared,
    mut entry: LogEntry,
    arrived: Instant,
    resp: Response<Body>,
) -> Response<Body> {
    entry.status = resp.status().as_u16();
    finish(shared, entry, arrived);
    resp
}

/// A request a `lateRequest` fault carries out later.
struct Late {
    target: Target,
    client: ClientId,
    entry: LogEntry,
    arrived: Instant,
}

impl Late {
    /// Reads the request whole now and carries it out after `delay`, in a task of its own:
    /// the client may time out and close the stream meanwhile, and the write lands all the
    /// same.
    async fn carry_out(
        self,
        shared: Arc<Shared>,
        req: Request<Incoming>,
        delay: Duration,
    ) -> Result<Response<Body>, BoxError> {
        let Late {
            target,
            client,
            mut entry,
            arrived,
        } = self;
        let (parts, body) = req.into_parts();
        let body = http_body_util::BodyExt::collect(body).await?.to_bytes();
        let req = Request::from_parts(parts, http_body_util::Full::new(body));
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let (resp, rv) = answer(&shared, req, target, &client).await;
            entry.resource_version = rv;
            entry.status = resp.status().as_u16();
            finish(&shared, entry, arrived);
            let _ = tx.send(resp);
        });
        Ok(rx.await?)
    }
}

/// The answer to a request no fault stopped: discovery, a verb on a resource, or 404.
/// Also the resourceVersion answered, for the log.
async fn answer(
    shared: &Arc<Shared>,
    req: Request<impl crate::verbs::RequestBody>,
    t: Target,
    client: &ClientId,
) -> (Response<Body>, String) {
    match (t.route, t.kind) {
        (Route::Discovery(v), _) if req.method() == Method::GET => {
            (json_response(200, &v), String::new())
        }
        (Route::Resource { namespace, .. }, Some(kind)) => {
            crate::verbs::resource(
                shared,
                req,
                kind,
                namespace.as_deref(),
                &t.name,
                t.verb,
                &t.query,
                client,
            )
            .await
        }
        _ => (error_response(&status::page_not_found()), String::new()),
    }
}

pub(crate) fn finish(shared: &Shared, mut entry: LogEntry, arrived: Instant) {
    entry.latency_ms = arrived.elapsed().as_secs_f64() * 1000.0;
    lock(&shared.log).push(entry);
}
