//! `metav1.Status` error bodies, worded as kube-apiserver words them
//! (apimachinery `pkg/api/errors/errors.go`; `tests/differential.rs` holds them to a real
//! kube-apiserver's).

use serde_json::{json, Map, Value};

use crate::kind::Kind;

/// An HTTP answer that is an error: a Status body, or the few plain-text answers
/// the real server gives (404 for unknown paths, 429 from priority and fairness).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub body: ErrorBody,
    pub retry_after: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ErrorBody {
    Status(Value),
    Text(String),
}

/// One entry of `details.causes`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    pub reason: &'static str,
    pub message: String,
    pub field: String,
}

impl Cause {
    pub fn invalid(field: &str, value: impl std::fmt::Display, detail: &str) -> Self {
        Cause {
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {value}: {detail}"),
            field: field.to_string(),
        }
    }
    pub fn required(field: &str, detail: &str) -> Self {
        Cause {
            reason: "FieldValueRequired",
            message: format!("Required value: {detail}"),
            field: field.to_string(),
        }
    }
    pub fn forbidden(field: &str, detail: &str) -> Self {
        Cause {
            reason: "FieldValueForbidden",
            message: format!("Forbidden: {detail}"),
            field: field.to_string(),
        }
    }
    pub fn duplicate(field: &str, value: impl std::fmt::Display) -> Self {
        Cause {
            reason: "FieldValueDuplicate",
            message: format!("Duplicate value: {value}"),
            field: field.to_string(),
        }
    }
    pub fn too_long(field: &str, max: usize) -> Self {
        Cause {
            reason: "FieldValueTooLong",
            message: format!("Too long: may not be more than {max} bytes"),
            field: field.to_string(),
        }
    }
    /// The text a field error prints as: `field: body`, or the body alone for the root.
    fn line(&self) -> String {
        if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }
}

/// Go's `%q` for the strings the validation messages quote.
pub fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

fn status(code: u16, reason: &str, message: String, details: Option<Value>) -> ApiError {
    // Key order as the server writes it: kind, apiVersion, metadata, status, message, reason, details, code.
    let mut m = Map::new();
    m.insert("kind".into(), json!("Status"));
    m.insert("apiVersion".into(), json!("v1"));
    m.insert("metadata".into(), json!({}));
    m.insert("status".into(), json!("Failure"));
    m.insert("message".into(), json!(message));
    if !reason.is_empty() {
        m.insert("reason".into(), json!(reason));
    }
    if let Some(d) = details {
        m.insert("details".into(), d);
    }
    m.insert("code".into(), json!(code));
    ApiError {
        code,
        body: ErrorBody::Status(Value::Object(m)),
        retry_after: None,
    }
}

fn details(kind: Kind, name: &str) -> Map<String, Value> {
    let mut d = Map::new();
    if !name.is_empty() {
        d.insert("name".into(), json!(name));
    }
    if !kind.group().is_empty() {
        d.insert("group".into(), json!(kind.group()));
    }
    d.insert("kind".into(), json!(kind.resource()));
    d
}

pub fn not_found(kind: Kind, name: &str) -> ApiError {
    status(
        404,
        "NotFound",
        format!("{} {} not found", kind.qualified_resource(), go_quote(name)),
        Some(Value::Object(details(kind, name))),
    )
}

pub fn namespace_not_found(ns: &str) -> ApiError {
    status(
        404,
        "NotFound",
        format!("namespaces {} not found", go_quote(ns)),
        Some(json!({"name": ns, "kind": "namespaces"})),
    )
}

pub fn already_exists(kind: Kind, name: &str) -> ApiError {
    status(
        409,
        "AlreadyExists",
        format!(
            "{} {} already exists",
            kind.qualified_resource(),
            go_quote(name)
        ),
        Some(Value::Object(details(kind, name))),
    )
}

/// A stale resourceVersion on update or patch (`OptimisticLockErrorMsg`).
pub fn conflict(kind: Kind, name: &str) -> ApiError {
    conflict_with(
        kind,
        name,
        "the object has been modified; please apply your changes to the latest version and try again",
    )
}

pub fn conflict_with(kind: Kind, name: &str, why: &str) -> ApiError {
    status(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} {}: {}",
            kind.qualified_resource(),
            go_quote(name),
            why
        ),
        Some(Value::Object(details(kind, name))),
    )
}

/// A failed UID or resourceVersion precondition, as the storage layer words it.
pub fn precondition_failed(
    kind: Kind,
    ns: &str,
    name: &str,
    what: &str,
    given: &str,
    actual: &str,
) -> ApiError {
    conflict_with(
        kind,
        name,
        &format!(
            "StorageError: invalid object, Code: 4, Key: /registry/{}/{}/{}, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: {what} in precondition: {given}, {what} in object meta: {actual}",
            kind.resource(),
            ns,
            name
        ),
    )
}

/// 410 for a continue token whose version was compacted away.
pub fn continue_expired() -> ApiError {
    status(
        410,
        "Expired",
        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
        None,
    )
}

/// A failed DELETE precondition: the registry's Delete words it itself and names
/// the Kind, not the resource (`apiserver:pkg/registry/generic/registry/store.go`,
/// Delete; checked against kube-apiserver 1.20 in tests/differential.rs).
pub fn delete_precondition_failed(
    kind: Kind,
    name: &str,
    what: &str,
    given: &str,
    actual: &str,
) -> ApiError {
    let hint = if what == "UID" {
        "The object might have been deleted and then recreated"
    } else {
        "The object might have been modified"
    };
    let mut d = details(kind, name);
    d.insert("kind".into(), json!(kind.kind_name()));
    status(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} {}: the {what} in the precondition ({given}) does not match the {what} in record ({actual}). {hint}",
            kind.qualified_kind(),
            go_quote(name),
        ),
        Some(Value::Object(d)),
    )
}

/// 422 Invalid. `qualified` is either the resource form (from the store) or the
/// Kind form (from strategy validation): the real server uses both.
pub fn invalid(kind: Kind, qualified: &str, name: &str, causes: &[Cause]) -> ApiError {
    let mut lines: Vec<String> = Vec::new();
    for c in causes {
        let l = c.line();
        if !lines.contains(&l) {
            lines.push(l);
        }
    }
    let joined = if lines.len() == 1 {
        lines[0].clone()
    } else {
        format!("[{}]", lines.join(", "))
    };
    let mut d = Map::new();
    d.insert("name".into(), json!(name));
    if !kind.group().is_empty() {
        d.insert("group".into(), json!(kind.group()));
    }
    d.insert(
        "kind".into(),
        json!(if qualified.starts_with(kind.kind_name()) {
            kind.kind_name()
        } else {
            kind.resource()
        }),
    );
    d.insert(
        "causes".into(),
        Value::Array(
            causes
                .iter()
                .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                .collect(),
        ),
    );
    status(
        422,
        "Invalid",
        format!("{qualified} {} is invalid: {joined}", go_quote(name)),
        Some(Value::Object(d)),
    )
}

/// Validation errors from the strategy name the Kind (`Lease.coordination.k8s.io`).
pub fn invalid_object(kind: Kind, name: &str, causes: &[Cause]) -> ApiError {
    invalid(kind, &kind.qualified_kind(), name, causes)
}

pub fn bad_request(message: impl Into<String>) -> ApiError {
    status(400, "BadRequest", message.into(), None)
}

pub fn generic_invalid() -> ApiError {
    status(
        422,
        "Invalid",
        "the server rejected our request due to an error in our request".into(),
        Some(json!({})),
    )
}

pub fn unsupported_media_type() -> ApiError {
    status(
        415,
        "UnsupportedMediaType",
        // kube-apiserver 1.20's wording for a PATCH with an unknown Content-Type.
        "415: Unsupported Media Type".into(),
        None,
    )
}

pub fn method_not_allowed(method: &str) -> ApiError {
    status(
        405,
        "MethodNotAllowed",
        format!("the server does not allow this method on the requested resource ({method})"),
        Some(json!({})),
    )
}

pub fn too_large() -> ApiError {
    status(
        413,
        "RequestEntityTooLarge",
        "Request entity too large: limit is 3145728".into(),
        None,
    )
}

pub fn unauthorized() -> ApiError {
    status(401, "Unauthorized", "Unauthorized".into(), None)
}

/// RBAC denial: names the user, verb and resource, as the authorizer's message does.
pub fn forbidden(kind: Kind, name: &str, ns: &str, user: &str, verb: &str) -> ApiError {
    let subject = if name.is_empty() {
        kind.qualified_resource()
    } else {
        format!("{} {}", kind.qualified_resource(), go_quote(name))
    };
    let ns_part = if ns.is_empty() {
        String::new()
    } else {
        format!(" in the namespace {}", go_quote(ns))
    };
    status(
        403,
        "Forbidden",
        format!(
            "{subject} is forbidden: User {} cannot {verb} resource {} in API group {}{ns_part}",
            go_quote(user),
            go_quote(kind.resource()),
            go_quote(kind.group()),
        ),
        Some(Value::Object(details(kind, name))),
    )
}

pub fn internal(message: &str) -> ApiError {
    status(
        500,
        "InternalError",
        format!("Internal error occurred: {message}"),
        Some(json!({"causes": [{"message": message}]})),
    )
}

/// A Go error that is not an API error: 500 with no reason (`status.go` default branch).
pub fn internal_raw(message: &str) -> ApiError {
    status(500, "", message.into(), None)
}

pub fn service_unavailable() -> ApiError {
    status(
        503,
        "ServiceUnavailable",
        "the server is currently unable to handle the request".into(),
        Some(json!({})),
    )
}

pub fn timeout() -> ApiError {
    status(
        504,
        "Timeout",
        "Timeout: request did not complete within the allotted timeout".into(),
        Some(json!({})),
    )
}

pub fn rv_too_large(asked: u64, current: u64) -> ApiError {
    let mut e = status(
        504,
        "Timeout",
        format!("Timeout: Too large resource version: {asked}, current: {current}"),
        Some(
            json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}),
        ),
    );
    e.retry_after = Some(1);
    e
}

/// The realistic 429: priority-and-fairness answers in plain text.
pub fn too_many_requests(retry_after: u32) -> ApiError {
    ApiError {
        code: 429,
        body: ErrorBody::Text("Too many requests, please try again later.\n".into()),
        retry_after: Some(retry_after),
    }
}

/// Go's `http.NotFound` for a path no handler serves.
pub fn page_not_found() -> ApiError {
    ApiError {
        code: 404,
        body: ErrorBody::Text("404 page not found\n".into()),
        retry_after: None,
    }
}

/// The Status inside a watch ERROR event for a resourceVersion that is compacted away.
pub fn expired(asked: u64, oldest: u64) -> Value {
    match status(
        410,
        "Expired",
        format!("too old resource version: {asked} ({oldest})"),
        None,
    )
    .body
    {
        ErrorBody::Status(v) => v,
        ErrorBody::Text(_) => unreachable!("status() always builds a Status body"),
    }
}

/// The body of a successful delete.
pub fn delete_success(kind: Kind, name: &str, uid: &str) -> Value {
    let mut d = details(kind, name);
    d.insert("uid".into(), json!(uid));
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": Value::Object(d)})
}
