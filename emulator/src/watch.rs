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
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use crate::faults::{self, ClientId};
use crate::kind::Kind;
use crate::query::{parse_selector, Query};
use crate::response::{error_response, full, Body};
use crate::state::Shared;
use crate::status;
use crate::store::{self, WatchStart};
use crate::sync::lock;

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
    let params = match Params::read(q, ns, name) {
        Ok(p) => p,
        Err(e) => return error_response(&e),
    };
    let (initial, rx, start_rv) = match start(&shared, kind, &params).await {
        Ok(started) => started,
        Err(resp) => return resp,
    };
    let (tx, out) = mpsc::channel::<Result<Bytes, std::io::Error>>(256);
    let stream = Stream {
        close: shared.close_watches.subscribe(),
        shared,
        kind,
        client: client.clone(),
        path: path.to_string(),
        tx,
        last_rv: start_rv,
    };
    tokio::spawn(stream.run(initial, rx, params));
    let body = StreamBody::new(ReceiverStream::new(out).map(|r| r.map(Frame::data)));
    let mut resp = Response::new(BodyExt::boxed(body));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// What the query asks of a watch.
struct Params {
    sel: store::Selector,
    from: Option<u64>,
    send_initial: bool,
    bookmarks: bool,
    timeout: Duration,
}

impl Params {
    fn read(q: &Query, ns: Option<&str>, name: &str) -> Result<Params, status::ApiError> {
        let mut sel = parse_selector(q, ns)?;
        if !name.is_empty() {
            sel.name = Some(name.to_string());
        }
        let from = match q.get("resourceVersion").filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(s.parse::<u64>().map_err(|_| {
                status::bad_request(format!(
                    "resourceVersion: Invalid value: {}: must be a non-negative integer",
                    status::go_quote(s)
                ))
            })?),
        };
        Ok(Params {
            sel,
            from,
            send_initial: q.flag("sendInitialEvents"),
            bookmarks: q.flag("allowWatchBookmarks"),
            timeout: q
                .get("timeoutSeconds")
                .and_then(|s| s.parse::<u64>().ok())
                .filter(|n| *n > 0)
                .map_or(DEFAULT_WATCH_TIMEOUT, Duration::from_secs),
        })
    }
}

type Started = (
    Vec<Arc<store::Event>>,
    broadcast::Receiver<Arc<store::Event>>,
    u64,
);

/// The history to send and the live events after it, from the asked version: an ERROR
/// 410 event when it was compacted; when it is ahead, a wait of about 3 s (as the real
/// server) and then 504.
async fn start(shared: &Shared, kind: Kind, p: &Params) -> Result<Started, Response<Body>> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let start = { lock(&shared.store).watch(kind, &p.sel, p.from, p.send_initial) };
        match start {
            WatchStart::Ok { initial, rx } => {
                let rv = p
                    .from
                    .filter(|n| *n > 0)
                    .unwrap_or_else(|| lock(&shared.store).current_rv());
                return Ok((initial, rx, rv));
            }
            WatchStart::Expired { oldest } => {
                let expired = status::expired(p.from.unwrap_or(0), oldest);
                let mut s = serde_json::to_vec(&json!({"type": "ERROR", "object": expired}))
                    .unwrap_or_default();
                s.push(b'\n');
                return Err(full(200, "application/json", s));
            }
            WatchStart::TooLarge { current } => {
                if Instant::now() >= deadline {
                    let e = status::rv_too_large(p.from.unwrap_or(0), current);
                    return Err(error_response(&e));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One open watch: writes its events, bookmarks and end into the response body.
struct Stream {
    shared: Arc<Shared>,
    kind: Kind,
    client: ClientId,
    path: String,
    close: broadcast::Receiver<(Option<String>, bool)>,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    last_rv: u64,
}

impl Stream {
    /// Sends one event line; false when the client has gone.
    async fn send(&self, typ: &str, obj: &Value) -> bool {
        let mut s = serde_json::to_vec(&json!({"type": typ, "object": obj})).unwrap_or_default();
        s.push(b'\n');
        self.tx.send(Ok(Bytes::from(s))).await.is_ok()
    }

    async fn run(
        mut self,
        initial: Vec<Arc<store::Event>>,
        mut rx: broadcast::Receiver<Arc<store::Event>>,
        p: Params,
    ) {
        for ev in &initial {
            self.last_rv = self.last_rv.max(ev.rv);
            if !self.send(ev.event_type, &ev.object).await {
                return;
            }
        }
        if p.send_initial {
            let mark = store::bookmark(self.kind, self.last_rv, true);
            self.send("BOOKMARK", &mark).await;
        }
        let end = tokio::time::Instant::now() + p.timeout;
        let first_tick = tokio::time::Instant::now() + BOOKMARK_EVERY;
        let mut tick = tokio::time::interval_at(first_tick, BOOKMARK_EVERY);
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        // A stalled watch loses what happens, as a half-open connection would.
                        if ev.kind == self.kind
                            && p.sel.matches(&ev.namespace, &ev.name, &ev.object)
                            && !faults::stalled(&self.shared.faults, &self.client, &self.path)
                        {
                            self.last_rv = ev.rv;
                            if !self.send(ev.event_type, &ev.object).await {
                                return;
                            }
                        }
                    }
                    // Too slow a reader, or the server is going away: end the stream
                    // and let the client resume from its last version.
                    Err(_) => return,
                },
                _ = tick.tick(), if p.bookmarks => {
                    let mark = store::bookmark(self.kind, self.last_rv, false);
                    if !self.send("BOOKMARK", &mark).await {
                        return;
                    }
                }
                c = self.close.recv() => {
                    if let Ok((scope, abrupt)) = c {
                        if scope.as_deref().is_none_or(|s| self.client.matches(s)) {
                            if abrupt {
                                let cut = std::io::Error::other("watch cut by a partition");
                                let _ = self.tx.send(Err(cut)).await;
                            }
                            return;
                        }
                    }
                }
                _ = tokio::time::sleep_until(end) => return,
            }
        }
    }
}
