//! Watch streams: history from a resourceVersion (410 when it is compacted, a wait then
//! 504 when it is ahead), then live events, bookmarks, the timeout, and the faults that
//! close or stall open watches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::Response;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use crate::faults::{self, ClientId};
use crate::kind::Kind;
use crate::response::{error_response, full, Body};
use crate::routing::{parse_selector, Query};
use crate::state::{lock, Shared};
use crate::status;
use crate::store::{self, WatchStart};

/// The real server picks a watch timeout between 30 and 60 minutes when none is asked.
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);

pub(crate) async fn watch(
    shared: Arc<Shared>,
    kind: Kind,
    ns: Option<&str>,
    name: &str,
    q: &Query,
    client: &ClientId,
    path: &str,
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
    let path = path.to_string();
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
                        // A stalled watch loses what happens, as a half-open connection would.
                        if ev.kind == kind
                            && sel.matches(&ev.namespace, &ev.name, &ev.object)
                            && !faults::stalled(&shared, &client, &path)
                        {
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
