//! HTTP: routing, the verbs, watch streams, faults, the admin endpoint.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use crate::faults::{Action, ActiveFault, ClientId, Fault, LogEntry};
use crate::kind::Kind;
use crate::status::{self, ApiError, ErrorBody};
use crate::store::{self, LabelReq, PatchKind, Selector, WatchStart};
use crate::{lock, Emulator, Shared};

type Body = BoxBody<Bytes, std::io::Error>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// kube-apiserver's `MaxRequestBodyBytes`.
const MAX_BODY: usize = 3 * 1024 * 1024;
/// The real server picks a watch timeout between 30 and 60 minutes when none is asked.
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);

pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: oneshot::Receiver<()>,
) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(_) => continue,
            },
            _ = &mut shutdown => return,
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(shared.clone(), req));
            let builder = hyper::server::conn::http1::Builder::new();
            match tls {
                Some(acceptor) => {
                    if let Ok(s) = acceptor.accept(stream).await {
                        let _ = builder.serve_connection(TokioIo::new(s), svc).await;
                    }
                }
                None => {
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                }
            }
        });
    }
}

pub(crate) fn tls_acceptor() -> Result<(tokio_rustls::TlsAcceptor, String), BoxError> {
    use tokio_rustls::rustls;
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
    let pem = ck.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![ck.cert.der().clone()], key)?;
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), pem))
}

pub(crate) fn add_fault(shared: &Shared, fault: Fault) -> u64 {
    let id = Emulator::next_id(shared);
    if fault.action == Action::Partition {
        // A partitioned client's open watches are cut at once, not ended cleanly.
        let _ = shared.close_watches.send((fault.client.clone(), true));
    }
    let until = fault
        .duration_ms
        .map(|ms| Instant::now() + Duration::from_millis(ms));
    lock(&shared.faults).push(ActiveFault {
        id,
        fault,
        until,
        hits: 0,
    });
    id
}

fn full(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(
        Full::new(body.into())
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/json")),
    );
    r
}

fn json_response(status: u16, v: &Value) -> Response<Body> {
    let mut s = serde_json::to_vec(v).unwrap_or_default();
    s.push(b'\n');
    full(status, "application/json", s)
}

fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = match &e.body {
        ErrorBody::Status(v) => json_response(e.code, v),
        ErrorBody::Text(t) => {
            let mut r = full(e.code, "text/plain; charset=utf-8", t.clone());
            r.headers_mut().insert(
                "x-content-type-options",
                HeaderValue::from_static("nosniff"),
            );
            r
        }
    };
    if let Some(n) = e.retry_after {
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(n));
    }
    r
}

/// What a request addresses.
enum Route {
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

fn discovery_core(addr: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}]})
}

fn group_version() -> Value {
    json!({"groupVersion": "coordination.k8s.io/v1", "version": "v1"})
}

fn route(path: &str, host: &str) -> Route {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let segs: Vec<&str> = if segs.last() == Some(&"") {
        segs[..segs.len() - 1].to_vec()
    } else {
        segs
    };
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
    let (kind, rest) = match segs.as_slice() {
        ["version"] => {
            return Route::Discovery(
                json!({"major": "1", "minor": "37", "gitVersion": "v1.37.0-kube-emulator", "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean", "buildDate": "2026-11-25T00:00:00Z", "goVersion": "go1.25", "compiler": "gc", "platform": "linux/amd64"}),
            )
        }
        ["api"] => return Route::Discovery(discovery_core(host)),
        ["api", "v1"] => {
            return Route::Discovery(
                json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {"name": "configmaps", "singularName": "configmap", "namespaced": true, "kind": "ConfigMap", "verbs": verbs, "shortNames": ["cm"]},
                {"name": "events", "singularName": "event", "namespaced": true, "kind": "Event", "verbs": verbs, "shortNames": ["ev"]}]}),
            )
        }
        ["apis"] => {
            return Route::Discovery(
                json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": "coordination.k8s.io", "versions": [group_version()], "preferredVersion": group_version()}]}),
            )
        }
        ["apis", "coordination.k8s.io"] => {
            return Route::Discovery(
                json!({"kind": "APIGroup", "apiVersion": "v1", "name": "coordination.k8s.io", "versions": [group_version()], "preferredVersion": group_version()}),
            )
        }
        ["apis", "coordination.k8s.io", "v1"] => {
            return Route::Discovery(
                json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "coordination.k8s.io/v1", "resources": [
                {"name": "leases", "singularName": "lease", "namespaced": true, "kind": "Lease", "verbs": verbs}]}),
            )
        }
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

struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Query {
        // Tolerates what kube sends: an empty query and a leading `&`.
        Query(
            form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .filter(|(k, _)| !k.is_empty())
                .collect(),
        )
    }
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }
    fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }
}

fn parse_selector(q: &Query, namespace: Option<&str>) -> Result<Selector, ApiError> {
    let mut sel = Selector {
        namespace: namespace.map(String::from),
        ..Selector::default()
    };
    if let Some(fs) = q.get("fieldSelector").filter(|s| !s.is_empty()) {
        for term in fs.split(',') {
            let (field, value, negate) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f, v, false)
            } else {
                return Err(status::bad_request(format!(
                    "invalid selector: '{fs}'; can't understand '{term}'"
                )));
            };
            match (field.trim(), negate) {
                ("metadata.name", false) => sel.name = Some(value.to_string()),
                ("metadata.name", true) => sel.name_not = Some(value.to_string()),
                ("metadata.namespace", false) => {
                    if sel.namespace.as_deref().is_some_and(|n| n != value) {
                        sel.name = Some("\0no-match".into());
                    }
                    sel.namespace = Some(value.to_string());
                }
                (f, _) => {
                    return Err(status::bad_request(format!(
                        "{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
                        status::go_quote(f)
                    )))
                }
            }
        }
    }
    if let Some(ls) = q.get("labelSelector").filter(|s| !s.is_empty()) {
        for term in ls.split(',') {
            let term = term.trim();
            let req = if let Some((k, v)) = term.split_once("!=") {
                LabelReq::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                LabelReq::Eq(k.trim().into(), v.trim().into())
            } else if let Some(k) = term.strip_prefix('!') {
                LabelReq::NotExists(k.trim().into())
            } else if !term.is_empty() && !term.contains(' ') {
                LabelReq::Exists(term.into())
            } else {
                return Err(status::bad_request(format!("unable to parse requirement: {term}: set-based selectors are not supported by kube-emulator")));
            };
            sel.labels.push(req);
        }
    }
    Ok(sel)
}

fn client_of(shared: &Shared, req: &Request<Incoming>) -> Result<(ClientId, String), ApiError> {
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

fn verb_of(method: &Method, name: Option<&str>, watch: bool) -> &'static str {
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

enum Outcome {
    Answer(Response<Body>),
    /// Close the connection without an answer.
    Drop,
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, BoxError> {
    let path = req.uri().path().to_string();
    if path.starts_with("/_emu/") {
        return Ok(admin(&shared, req).await);
    }
    let arrived = Instant::now();
    let method = req.method().clone();
    let path_q = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let query = Query::parse(req.uri().query());
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string();
    let r = route(&path, &host);
    let (kind, ns, name, watch) = match &r {
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
    let verb = if kind.is_some() {
        verb_of(&method, (!name.is_empty()).then_some(name.as_str()), watch)
    } else {
        ""
    };
    let mut entry = LogEntry {
        at_ms: shared.started.elapsed().as_millis() as u64,
        method: method.to_string(),
        path: path_q,
        verb: verb.to_string(),
        resource: kind.map(|k| k.resource().to_string()).unwrap_or_default(),
        namespace: ns.clone(),
        name: name.clone(),
        status: 0,
        latency_ms: 0.0,
        client: String::new(),
        user_agent: String::new(),
        fault: None,
        resource_version: String::new(),
    };

    let (client, user) = match client_of(&shared, &req) {
        Ok(c) => c,
        Err(e) => {
            entry.status = e.code;
            entry.client = "unauthenticated".into();
            finish(&shared, entry, arrived);
            return Ok(error_response(&e));
        }
    };
    entry.client = client.label.clone();
    entry.user_agent = client.user_agent.clone();

    // Faults: latencies add up; the first other matching fault decides the answer.
    let mut delay = Duration::ZERO;
    let mut decided: Option<(u64, Action)> = None;
    {
        let now = Instant::now();
        let mut faults = lock(&shared.faults);
        for f in faults.iter_mut() {
            if !f.live(now) || !f.matches(&client, method.as_str(), &entry.path) {
                continue;
            }
            match &f.fault.action {
                Action::Latency { ms } => {
                    f.hits += 1;
                    delay += Duration::from_millis(*ms);
                }
                other if decided.is_none() => {
                    f.hits += 1;
                    decided = Some((f.id, other.clone()));
                }
                _ => {}
            }
        }
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let outcome = match decided {
        Some((id, action)) => {
            entry.fault = Some(id);
            fault_outcome(&shared, id, action, kind, &ns, &name, &user, verb).await
        }
        None => Outcome::Answer(match (r, kind) {
            (Route::Discovery(v), _) if method == Method::GET => json_response(200, &v),
            (Route::Resource { namespace, .. }, Some(kind)) => {
                let (resp, rv) = resource(
                    &shared,
                    req,
                    kind,
                    namespace.as_deref(),
                    &name,
                    verb,
                    &query,
                    &client,
                )
                .await;
                entry.resource_version = rv;
                resp
            }
            _ => error_response(&status::page_not_found()),
        }),
    };
    match outcome {
        Outcome::Answer(resp) => {
            entry.status = resp.status().as_u16();
            finish(&shared, entry, arrived);
            Ok(resp)
        }
        Outcome::Drop => {
            finish(&shared, entry, arrived);
            Err("connection dropped by an injected fault".into())
        }
    }
}

fn finish(shared: &Shared, mut entry: LogEntry, arrived: Instant) {
    entry.latency_ms = arrived.elapsed().as_secs_f64() * 1000.0;
    lock(&shared.log).push(entry);
}

#[allow(clippy::too_many_arguments)]
async fn fault_outcome(
    shared: &Shared,
    id: u64,
    action: Action,
    kind: Option<Kind>,
    ns: &str,
    name: &str,
    user: &str,
    verb: &str,
) -> Outcome {
    match action {
        Action::Latency { .. } => unreachable!("latencies are summed, never chosen"),
        Action::Drop | Action::Partition => Outcome::Drop,
        Action::Raw { code, body } => {
            Outcome::Answer(full(code, "text/plain; charset=utf-8", body))
        }
        Action::Hang => {
            // Hang while the fault lasts (an hour at most), then drop the connection.
            let until = lock(&shared.faults)
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

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(status::too_large()),
        Err(e) => Err(status::bad_request(format!(
            "error reading request body: {e}"
        ))),
    }
}

#[allow(clippy::too_many_arguments)]
async fn resource(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    kind: Kind,
    ns: Option<&str>,
    name: &str,
    verb: &str,
    q: &Query,
    client: &ClientId,
) -> (Response<Body>, String) {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if verb == "watch" {
        return (
            watch(shared.clone(), kind, ns, name, q, client).await,
            String::new(),
        );
    }
    let result: Result<(u16, Value), ApiError> = async {
        let body = read_body(req).await?;
        let need_ns = || ns.ok_or_else(status::page_not_found);
        match verb {
            "get" => Ok((200, lock(&shared.store).get(kind, need_ns()?, name)?)),
            "list" => {
                let sel = parse_selector(q, ns)?;
                let page = store::Page {
                    // The server reads limit as an int64 and ignores values <= 0.
                    limit: q
                        .get("limit")
                        .and_then(|l| l.parse::<i64>().ok())
                        .filter(|l| *l > 0)
                        .map(|l| l as usize),
                    continue_token: q
                        .get("continue")
                        .filter(|c| !c.is_empty())
                        .map(String::from),
                };
                Ok((200, lock(&shared.store).list(kind, &sel, &page)?))
            }
            "create" => {
                let ns = need_ns()?;
                // A missing Content-Type is JSON, as the server's negotiation defaults it.
                let obj = crate::object::decode(kind, &body)?;
                Ok((201, lock(&shared.store).create(kind, ns, obj, q.dry_run())?))
            }
            "update" => {
                let ns = need_ns()?;
                let obj = crate::object::decode(kind, &body)?;
                let (created, obj) =
                    lock(&shared.store).update(kind, ns, name, obj, q.dry_run())?;
                Ok((if created { 201 } else { 200 }, obj))
            }
            "patch" => {
                let ns = need_ns()?;
                if q.get("force").is_some() {
                    return Err(status::invalid(
                        kind,
                        "PatchOptions.meta.k8s.io",
                        "",
                        &[status::Cause::forbidden(
                            "force",
                            "may not be specified for non-apply patch",
                        )],
                    ));
                }
                let how = match content_type.as_str() {
                    "application/merge-patch+json" => PatchKind::Merge,
                    "application/strategic-merge-patch+json" => PatchKind::Strategic,
                    "application/json-patch+json" => PatchKind::Json,
                    _ => return Err(status::unsupported_media_type()),
                };
                Ok((
                    200,
                    lock(&shared.store).patch(kind, ns, name, how, &body, q.dry_run())?,
                ))
            }
            "delete" => {
                let ns = need_ns()?;
                let opts: Value = if body.iter().all(u8::is_ascii_whitespace) {
                    json!({})
                } else {
                    serde_json::from_slice(&body).map_err(|e| {
                        status::bad_request(format!("error decoding DeleteOptions: {e}"))
                    })?
                };
                let pre = |k: &str| {
                    opts.pointer(&format!("/preconditions/{k}"))
                        .and_then(Value::as_str)
                        .map(String::from)
                };
                let dry = q.dry_run()
                    || opts
                        .get("dryRun")
                        .and_then(Value::as_array)
                        .is_some_and(|a| a.iter().any(|v| v == "All"));
                Ok((
                    200,
                    lock(&shared.store).delete(
                        kind,
                        ns,
                        name,
                        pre("uid").as_deref(),
                        pre("resourceVersion").as_deref(),
                        dry,
                    )?,
                ))
            }
            m => Err(status::method_not_allowed(m)),
        }
    }
    .await;
    match result {
        Ok((code, v)) => {
            let rv = v
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            (json_response(code, &v), rv)
        }
        Err(e) => (error_response(&e), String::new()),
    }
}

async fn watch(
    shared: Arc<Shared>,
    kind: Kind,
    ns: Option<&str>,
    name: &str,
    q: &Query,
    client: &ClientId,
) -> Response<Body> {
    let mut sel = match parse_selector(q, ns) {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    if !name.is_empty() {
        sel.name = Some(name.to_string());
    }
    let from = match q.get("resourceVersion").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match s.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                return error_response(&status::bad_request(format!(
                    "resourceVersion: Invalid value: {}: must be a non-negative integer",
                    status::go_quote(s)
                )))
            }
        },
    };
    let send_initial = q.flag("sendInitialEvents");
    let bookmarks = q.flag("allowWatchBookmarks");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|n| *n > 0)
        .map_or(DEFAULT_WATCH_TIMEOUT, Duration::from_secs);
    // A version from the future: the real server waits about 3 s for it, then 504.
    let deadline = Instant::now() + Duration::from_secs(3);
    let (initial, mut rx, start_rv) = loop {
        let start = { lock(&shared.store).watch(kind, &sel, from, send_initial) };
        match start {
            WatchStart::Ok { initial, rx } => {
                let rv = from
                    .filter(|n| *n > 0)
                    .unwrap_or_else(|| lock(&shared.store).current_rv());
                break (initial, rx, rv);
            }
            WatchStart::Expired { oldest } => {
                let ev =
                    json!({"type": "ERROR", "object": status::expired(from.unwrap_or(0), oldest)});
                let mut s = serde_json::to_vec(&ev).unwrap_or_default();
                s.push(b'\n');
                return full(200, "application/json", s);
            }
            WatchStart::TooLarge { current } => {
                if Instant::now() >= deadline {
                    return error_response(&status::rv_too_large(from.unwrap_or(0), current));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let (tx, out) = mpsc::channel::<Result<Bytes, std::io::Error>>(256);
    let mut close = shared.close_watches.subscribe();
    let client = client.clone();
    let line = |typ: &str, obj: &Value| -> Result<Bytes, std::io::Error> {
        let mut s = serde_json::to_vec(&json!({"type": typ, "object": obj})).unwrap_or_default();
        s.push(b'\n');
        Ok(Bytes::from(s))
    };
    tokio::spawn(async move {
        let mut last_rv = start_rv;
        for ev in &initial {
            last_rv = last_rv.max(ev.rv);
            if tx.send(line(ev.event_type, &ev.object)).await.is_err() {
                return;
            }
        }
        if send_initial {
            let _ = tx
                .send(line("BOOKMARK", &store::bookmark(kind, last_rv, true)))
                .await;
        }
        let end = tokio::time::Instant::now() + timeout;
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        if ev.kind == kind && sel.matches(&ev.namespace, &ev.name, &ev.object) {
                            last_rv = ev.rv;
                            if tx.send(line(ev.event_type, &ev.object)).await.is_err() {
                                return;
                            }
                        }
                    }
                    // Too slow a reader, or the server is going away: end the stream
                    // and let the client resume from its last version.
                    Err(_) => return,
                },
                _ = tick.tick(), if bookmarks => {
                    if tx.send(line("BOOKMARK", &store::bookmark(kind, last_rv, false))).await.is_err() {
                        return;
                    }
                }
                c = close.recv() => {
                    if let Ok((scope, abrupt)) = c {
                        if scope.as_deref().is_none_or(|s| client.matches(s)) {
                            if abrupt {
                                let _ = tx.send(Err(std::io::Error::other("watch cut by a partition"))).await;
                            }
                            return;
                        }
                    }
                }
                _ = tokio::time::sleep_until(end) => return,
            }
        }
    });
    let body = StreamBody::new(ReceiverStream::new(out).map(|r| r.map(Frame::data)));
    let mut resp = Response::new(BodyExt::boxed(body));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The admin endpoint, off the `/api` and `/apis` prefixes so it cannot shadow them.
async fn admin(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_string();
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(e) => return error_response(&e),
    };
    match (method.as_str(), path.as_str()) {
        ("GET", "/_emu/log") => json_response(
            200,
            &serde_json::to_value(&*lock(&shared.log)).unwrap_or_default(),
        ),
        ("DELETE", "/_emu/log") => {
            lock(&shared.log).clear();
            json_response(200, &json!({}))
        }
        ("GET", "/_emu/faults") => {
            let v: Vec<Value> = lock(&shared.faults)
                .iter()
                .map(|f| json!({"id": f.id, "hits": f.hits, "fault": f.fault}))
                .collect();
            json_response(200, &Value::Array(v))
        }
        ("POST", "/_emu/faults") => match serde_json::from_slice::<Fault>(&body) {
            Ok(f) => json_response(201, &json!({"id": add_fault(shared, f)})),
            Err(e) => json_response(400, &json!({"error": format!("invalid fault: {e}")})),
        },
        ("DELETE", "/_emu/faults") => {
            lock(&shared.faults).clear();
            json_response(200, &json!({}))
        }
        ("DELETE", p) if p.starts_with("/_emu/faults/") => {
            match p["/_emu/faults/".len()..].parse::<u64>() {
                Ok(id) => {
                    lock(&shared.faults).retain(|f| f.id != id);
                    json_response(200, &json!({}))
                }
                Err(_) => json_response(400, &json!({"error": "fault id must be a number"})),
            }
        }
        ("POST", "/_emu/close-watches") => {
            // Optional body {"client": "..."}; without it, every watch ends.
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let client = v.get("client").and_then(Value::as_str).map(String::from);
            let _ = shared.close_watches.send((client, false));
            json_response(200, &json!({}))
        }
        ("POST", "/_emu/compact") => {
            lock(&shared.store).compact();
            json_response(200, &json!({}))
        }
        ("POST", p) if p.starts_with("/_emu/namespaces/") => {
            lock(&shared.store).add_namespace(&p["/_emu/namespaces/".len()..]);
            json_response(200, &json!({}))
        }
        ("GET", "/_emu/objects") => json_response(200, &Value::Array(lock(&shared.store).dump())),
        _ => json_response(
            404,
            &json!({"error": "unknown admin path; see emulator/README.md"}),
        ),
    }
}
