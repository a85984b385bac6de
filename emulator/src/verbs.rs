//! The verbs on one resource: get, list, create, update (PUT), patch and delete, as the
//! registry answers them (the rules themselves live in the store).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Request, Response};
use serde_json::{json, Value};

use crate::faults::ClientId;
use crate::kind::Kind;
use crate::response::{error_response, json_response, Body};
use crate::routing::{parse_selector, Query};
use crate::state::{lock, Shared};
use crate::status::{self, ApiError};
use crate::store::{self, PatchKind};

/// kube-apiserver's `MaxRequestBodyBytes`.
const MAX_BODY: usize = 3 * 1024 * 1024;

pub(crate) async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(status::too_large()),
        Err(e) => Err(status::bad_request(format!(
            "error reading request body: {e}"
        ))),
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn resource(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    kind: Kind,
    ns: Option<&str>,
    name: &str,
    verb: &str,
    q: &Query,
    client: &ClientId,
) -> (Response<Body>, String) {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
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
            crate::watch::watch(shared.clone(), kind, ns, name, q, client, &path).await,
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
                let obj = crate::decode::decode(kind, &body)?;
                Ok((201, lock(&shared.store).create(kind, ns, obj, q.dry_run())?))
            }
            "update" => {
                let ns = need_ns()?;
                let obj = crate::decode::decode(kind, &body)?;
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
