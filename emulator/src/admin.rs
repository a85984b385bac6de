//! The admin endpoint under `/_emu/`: faults, the request log, closing watches,
//! compaction, namespaces, a dump of the objects. Not logged, not subject to faults or auth.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{json, Value};

use crate::faults::Fault;
use crate::response::{error_response, json_response, Body};
use crate::state::Shared;
use crate::sync::lock;
use crate::verbs::read_body;

/// The admin endpoint, off the `/api` and `/apis` prefixes so it cannot shadow them.
pub(crate) async fn admin(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
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
            Ok(f) => json_response(201, &json!({"id": shared.add_fault(f)})),
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
