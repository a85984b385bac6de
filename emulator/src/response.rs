//! Building answers: bodies, JSON, and API errors (Status bodies or plain text).

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};
use serde_json::Value;

use crate::status::{ApiError, ErrorBody};

/// Any error a connection handler can end with.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) type Body = BoxBody<Bytes, std::io::Error>;

pub(crate) fn full(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
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

pub(crate) fn json_response(status: u16, v: &Value) -> Response<Body> {
    let mut s = serde_json::to_vec(v).unwrap_or_default();
    s.push(b'\n');
    full(status, "application/json", s)
}

pub(crate) fn error_response(e: &ApiError) -> Response<Body> {
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
