//! The verbs on one resource: get, list, create, update (PUT), patch and delete, as the
//! registry answers them (the rules themselves live in the store).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::header::CONTENT_TYPE;
use hyper::{Request, Response};
use serde_json::{json, Value};

use crate::faults::ClientId;
use crate::kind::Kind;
use crate::query::{parse_selector, Query};
use crate::response::{error_response, json_response, Body, BoxError};
use crate::state::Shared;
use crate::status::{self, ApiError};
use crate::store::{self, PatchKind};
use crate::sync::lock;

/// kube-apiserver's `MaxRequestBodyBytes`.
const MAX_BODY: usize = 3 * 1024 * 1024;

/// A request's body as the verbs take it: as it arrived, or read whole before (a request
/// carried out after its client left, `Action::LateRequest`).
pub(crate) trait RequestBody:
    hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static
{
}

impl<B> RequestBody for B where
    B: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static
{
}

pub(crate) async fn read_body(req: Request<impl RequestBody>) -> Result<Bytes, ApiError> {
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
    req: Request<impl RequestBody>,
    kind: Kind,
    ns: Option<&str>,
    name: &str,
    verb: &str,
    q: &Query,
    client: &ClientId,
) -> (Response<Body>, String) {
    if verb == "watch" {
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        return (
            crate::watch::watch(shared.clone(), kind, ns, name, q, client, &path).await,
            String::new(),
        );
    }
    let content_type = media_type(&req);
    let result = async {
        let body = read_body(req).await?;
        let need_ns = || ns.ok_or_else(status::page_not_found);
        let store = || lock(&shared.store);
        match verb {
            "get" => Ok((200, store().get(kind, need_ns()?, name)?)),
            "list" => Ok((200, store().list(kind, &parse_selector(q, ns)?, &page(q))?)),
            "create" => {
                let ns = need_ns()?;
                // A missing Content-Type is JSON, as the server's negotiation defaults it.
                let obj = crate::decode::decode(kind, &body)?;
                Ok((201, store().create(kind, ns, obj, q.dry_run())?))
            }
            "update" => {
                let ns = need_ns()?;
                let obj = crate::decode::decode(kind, &body)?;
                let (created, obj) = store().update(kind, ns, name, obj, q.dry_run())?;
                Ok((if created { 201 } else { 200 }, obj))
            }
            "patch" => {
                let ns = need_ns()?;
                let how = patch_kind(kind, &content_type, q)?;
                Ok((200, store().patch(kind, ns, name, how, &body, q.dry_run())?))
            }
            "delete" => {
                let ns = need_ns()?;
                let o = DeleteOptions::read(&body, q)?;
                let (uid, rv) = (o.uid.as_deref(), o.resource_version.as_deref());
                Ok((200, store().delete(kind, ns, name, uid, rv, o.dry_run)?))
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

/// The request's media type, lowercased, without parameters (`; charset=...`).
fn media_type<B>(req: &Request<B>) -> String {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// `limit` and `continue` of a list.
fn page(q: &Query) -> store::Page {
    store::Page {
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
    }
}

/// The patch type named by the Content-Type; `force` belongs to server-side apply only.
fn patch_kind(kind: Kind, content_type: &str, q: &Query) -> Result<PatchKind, ApiError> {
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
    match content_type {
        "application/merge-patch+json" => Ok(PatchKind::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
        "application/json-patch+json" => Ok(PatchKind::Json),
        _ => Err(status::unsupported_media_type()),
    }
}

/// What a delete's body (DeleteOptions) and query ask for.
struct DeleteOptions {
    uid: Option<String>,
    resource_version: Option<String>,
    dry_run: bool,
}

impl DeleteOptions {
    fn read(body: &[u8], q: &Query) -> Result<DeleteOptions, ApiError> {
        let opts: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            serde_json::from_slice(body)
                .map_err(|e| status::bad_request(format!("error decoding DeleteOptions: {e}")))?
        };
        let pre = |k: &str| {
            opts.pointer(&format!("/preconditions/{k}"))
                .and_then(Value::as_str)
                .map(String::from)
        };
        let dry_in_body = opts
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "All"));
        Ok(DeleteOptions {
            uid: pre("uid"),
            resource_version: pre("resourceVersion"),
            dry_run: q.dry_run() || dry_in_body,
        })
    }
}
