//! Decoding, normalising and validating Lease and ConfigMap bodies the way
//! kube-apiserver does: a typed decode (wrong types and bad times are 400),
//! unknown fields dropped, then the registry's validation (422).

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use crate::kind::Kind;
use crate::status::{self, go_quote, ApiError, Cause};

const MICRO_LAYOUT: &str = "2006-01-02T15:04:05.000000Z07:00";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const CONFIG_KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";
/// `core.MaxSecretSize`, which also bounds ConfigMap data.
const MAX_CONFIGMAP_BYTES: usize = 1024 * 1024;
/// `TotalAnnotationSizeLimitB`.
const MAX_ANNOTATION_BYTES: usize = 256 * 1024;

/// Go's `json: cannot unmarshal` wording, wrapped the way the decode step wraps it.
fn decode_error(kind: Kind, detail: String) -> ApiError {
    status::bad_request(format!(
        "{k} in version \"v1\" cannot be handled as a {k}: {detail}",
        k = kind.kind_name()
    ))
}

fn type_error(kind: Kind, got: &Value, go_field: &str, go_type: &str) -> ApiError {
    let what = match got {
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Null => "null",
    };
    decode_error(
        kind,
        format!("json: cannot unmarshal {what} into Go struct field {go_field} of type {go_type}"),
    )
}

/// Strict MicroTime: exactly six fraction digits and `Z` or `±hh:mm`, as Go's
/// time.Parse with stdFracSecond0 demands. Returns the value re-written in UTC.
pub fn parse_micro_time(s: &str) -> Result<DateTime<Utc>, String> {
    let err = || {
        format!(
            "parsing time {} as {}: cannot parse {} as {}",
            go_quote(s),
            go_quote(MICRO_LAYOUT),
            go_quote(s),
            go_quote(MICRO_LAYOUT)
        )
    };
    let b = s.as_bytes();
    // "2006-01-02T15:04:05" (19) + "." + 6 digits = 26, then the zone.
    if b.len() < 27 || b[19] != b'.' || !b[20..26].iter().all(u8::is_ascii_digit) {
        return Err(err());
    }
    let zone = &s[26..];
    let zone_ok = zone == "Z"
        || (zone.len() == 6
            && (zone.starts_with('+') || zone.starts_with('-'))
            && zone.as_bytes()[3] == b':'
            && zone[1..3].bytes().all(|c| c.is_ascii_digit())
            && zone[4..6].bytes().all(|c| c.is_ascii_digit()));
    if !zone_ok || b[10] != b'T' {
        return Err(err());
    }
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| err())
}

pub fn format_micro_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").map(|n| n.and_utc()))
        .map_err(|_| {
            format!(
                "parsing time {} as \"2006-01-02T15:04:05Z07:00\": cannot parse",
                go_quote(s)
            )
        })
}

fn as_int32(kind: Kind, v: &Value, go_field: &str) -> Result<i64, ApiError> {
    match v.as_i64() {
        Some(n) if n >= i32::MIN as i64 && n <= i32::MAX as i64 => Ok(n),
        Some(_) => Err(decode_error(
            kind,
            format!(
                "json: cannot unmarshal number {v} into Go struct field {go_field} of type int32"
            ),
        )),
        None => Err(type_error(kind, v, go_field, "int32")),
    }
}

fn string_map(
    kind: Kind,
    v: &Value,
    go_field: &str,
) -> Result<Option<Map<String, Value>>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::Object(m) => {
            for val in m.values() {
                if !val.is_string() && !val.is_null() {
                    return Err(type_error(kind, val, go_field, "string"));
                }
            }
            let m: Map<String, Value> = m
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        if v.is_null() {
                            Value::String(String::new())
                        } else {
                            v.clone()
                        },
                    )
                })
                .collect();
            Ok(if m.is_empty() { None } else { Some(m) })
        }
        other => Err(type_error(kind, other, go_field, "map[string]string")),
    }
}

fn opt_string(kind: Kind, v: Option<&Value>, go_field: &str) -> Result<Option<String>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(type_error(kind, other, go_field, "string")),
    }
}

/// Decodes a request body into the stored shape: `kind`, `apiVersion`, `metadata`
/// with the fields the emulator keeps, and the kind's own fields. Empty maps and
/// nulls are dropped, as Go's `omitempty` drops them.
pub fn decode(kind: Kind, body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        status::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): couldn't get version/kind; json parse error: {e}",
            kind.kind_name()
        ))
    })?;
    normalize(kind, v)
}

pub fn normalize(kind: Kind, v: Value) -> Result<Value, ApiError> {
    let Value::Object(obj) = v else {
        return Err(status::bad_request(
            "couldn't get version/kind; json parse error: json: cannot unmarshal into Go value of type struct",
        ));
    };
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str) {
        if !av.is_empty() && av != kind.api_version() {
            return Err(status::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                kind.api_version()
            )));
        }
    }
    if let Some(k) = obj.get("kind").and_then(Value::as_str) {
        if !k.is_empty() && k != kind.kind_name() {
            return Err(decode_error(
                kind,
                format!(
                    "no kind \"{k}\" is registered for version \"{}\"",
                    kind.api_version()
                ),
            ));
        }
    }
    let mut out = Map::new();
    out.insert("kind".into(), Value::String(kind.kind_name().into()));
    out.insert(
        "apiVersion".into(),
        Value::String(kind.api_version().into()),
    );
    out.insert(
        "metadata".into(),
        normalize_meta(kind, obj.get("metadata"))?,
    );
    match kind {
        Kind::Lease => {
            out.insert("spec".into(), normalize_lease_spec(obj.get("spec"))?);
        }
        Kind::ConfigMap => {
            if let Some(d) = obj.get("data") {
                if let Some(m) = string_map(kind, d, "ConfigMap.data")? {
                    out.insert("data".into(), Value::Object(m));
                }
            }
            if let Some(d) = obj.get("binaryData") {
                if let Some(m) = string_map(kind, d, "ConfigMap.binaryData")? {
                    use base64::Engine;
                    for (k, val) in &m {
                        let s = val.as_str().unwrap_or_default();
                        if base64::engine::general_purpose::STANDARD.decode(s).is_err() {
                            return Err(decode_error(
                                kind,
                                format!("illegal base64 data in binaryData[{}]", go_quote(k)),
                            ));
                        }
                    }
                    out.insert("binaryData".into(), Value::Object(m));
                }
            }
            match obj.get("immutable") {
                None | Some(Value::Null) => {}
                Some(Value::Bool(b)) => {
                    out.insert("immutable".into(), Value::Bool(*b));
                }
                Some(other) => return Err(type_error(kind, other, "ConfigMap.immutable", "bool")),
            }
        }
        Kind::Event => normalize_event(&obj, &mut out)?,
    }
    Ok(Value::Object(out))
}

/// core/v1 Event: the fields a leader-election recorder writes, typed.
fn normalize_event(obj: &Map<String, Value>, out: &mut Map<String, Value>) -> Result<(), ApiError> {
    let kind = Kind::Event;
    for key in [
        "reason",
        "message",
        "type",
        "action",
        "reportingComponent",
        "reportingInstance",
    ] {
        if let Some(v) = opt_string(kind, obj.get(key), &format!("Event.{key}"))? {
            if !v.is_empty() {
                out.insert(key.into(), Value::String(v));
            }
        }
    }
    for (key, fields) in [
        (
            "involvedObject",
            &[
                "kind",
                "namespace",
                "name",
                "uid",
                "apiVersion",
                "resourceVersion",
                "fieldPath",
            ][..],
        ),
        ("source", &["component", "host"][..]),
    ] {
        match obj.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                let mut o = Map::new();
                for f in fields {
                    if let Some(v) = opt_string(kind, m.get(*f), &format!("Event.{key}.{f}"))? {
                        if !v.is_empty() {
                            o.insert((*f).into(), Value::String(v));
                        }
                    }
                }
                out.insert(key.into(), Value::Object(o));
            }
            Some(other) => return Err(type_error(kind, other, &format!("Event.{key}"), "object")),
        }
    }
    for key in ["firstTimestamp", "lastTimestamp"] {
        if let Some(t) = opt_string(kind, obj.get(key), &format!("Event.{key}"))? {
            let t = parse_time(&t).map_err(|e| decode_error(kind, e))?;
            out.insert(key.into(), Value::String(format_time(&t)));
        }
    }
    if let Some(t) = opt_string(kind, obj.get("eventTime"), "Event.eventTime")? {
        let t = parse_micro_time(&t).map_err(|e| decode_error(kind, e))?;
        out.insert("eventTime".into(), Value::String(format_micro_time(&t)));
    }
    if let Some(v) = obj.get("count").filter(|v| !v.is_null()) {
        out.insert(
            "count".into(),
            Value::from(as_int32(kind, v, "Event.count")?),
        );
    }
    Ok(())
}

fn normalize_meta(kind: Kind, meta: Option<&Value>) -> Result<Value, ApiError> {
    let mut out = Map::new();
    let m = match meta {
        None | Some(Value::Null) => return Ok(Value::Object(out)),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(type_error(
                kind,
                other,
                &format!("{}.metadata", kind.kind_name()),
                "v1.ObjectMeta",
            ))
        }
    };
    for key in [
        "name",
        "generateName",
        "namespace",
        "uid",
        "resourceVersion",
    ] {
        if let Some(s) = opt_string(
            kind,
            m.get(key),
            &format!("{}.metadata.{key}", kind.kind_name()),
        )? {
            if !s.is_empty() {
                out.insert(key.into(), Value::String(s));
            }
        }
    }
    if let Some(ts) = opt_string(
        kind,
        m.get("creationTimestamp"),
        "ObjectMeta.metadata.creationTimestamp",
    )? {
        let t = parse_time(&ts).map_err(|e| decode_error(kind, e))?;
        out.insert("creationTimestamp".into(), Value::String(format_time(&t)));
    }
    for key in ["labels", "annotations"] {
        if let Some(v) = m.get(key) {
            if let Some(map) = string_map(kind, v, &format!("{}.metadata.{key}", kind.kind_name()))?
            {
                out.insert(key.into(), Value::Object(map));
            }
        }
    }
    if let Some(Value::Array(refs)) = m.get("ownerReferences") {
        if !refs.is_empty() {
            out.insert("ownerReferences".into(), Value::Array(refs.clone()));
        }
    }
    Ok(Value::Object(out))
}

fn normalize_lease_spec(spec: Option<&Value>) -> Result<Value, ApiError> {
    let kind = Kind::Lease;
    let mut out = Map::new();
    let s = match spec {
        None | Some(Value::Null) => return Ok(Value::Object(out)),
        Some(Value::Object(s)) => s,
        Some(other) => return Err(type_error(kind, other, "Lease.spec", "v1.LeaseSpec")),
    };
    if let Some(h) = opt_string(
        kind,
        s.get("holderIdentity"),
        "LeaseSpec.spec.holderIdentity",
    )? {
        // A pointer field: an empty string is kept, unlike omitempty strings.
        out.insert("holderIdentity".into(), Value::String(h));
    }
    for key in ["leaseDurationSeconds", "leaseTransitions"] {
        match s.get(key) {
            None | Some(Value::Null) => {}
            Some(v) => {
                let n = as_int32(kind, v, &format!("LeaseSpec.spec.{key}"))?;
                out.insert(key.into(), Value::from(n));
            }
        }
    }
    for key in ["acquireTime", "renewTime"] {
        if let Some(t) = opt_string(kind, s.get(key), &format!("LeaseSpec.spec.{key}"))? {
            let t = parse_micro_time(&t).map_err(|e| decode_error(kind, e))?;
            out.insert(key.into(), Value::String(format_micro_time(&t)));
        }
    }
    // strategy and preferredHolder: the CoordinatedLeaderElection gate is off by
    // default, and the strategy then drops both fields (lease/strategy.go).
    for key in ["strategy", "preferredHolder"] {
        opt_string(kind, s.get(key), &format!("LeaseSpec.spec.{key}"))?;
    }
    Ok(Value::Object(out))
}

fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

fn validate_qualified_name(key: &str, field: &str, causes: &mut Vec<Cause>) {
    let parts: Vec<&str> = key.split('/').collect();
    let (prefix, name) = match parts.as_slice() {
        [n] => (None, *n),
        [p, n] => (Some(*p), *n),
        // More than one '/': apimachinery's IsQualifiedName says so in one message.
        _ => {
            causes.push(Cause::invalid(
                field,
                go_quote(key),
                &format!(
                    "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                    &QUALIFIED_NAME_MSG["name part ".len()..]
                ),
            ));
            return;
        }
    };
    if let Some(p) = prefix {
        if !is_dns1123_subdomain(p) {
            causes.push(Cause::invalid(
                field,
                go_quote(key),
                &format!("prefix part {DNS1123_SUBDOMAIN_MSG}"),
            ));
        }
    }
    if !is_qualified_name_part(name) {
        causes.push(Cause::invalid(field, go_quote(key), QUALIFIED_NAME_MSG));
    }
}

/// The name rules shared by both kinds: path segment, then DNS-1123 subdomain.
pub fn name_causes(name: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    let f = "metadata.name";
    let q = go_quote(name);
    if name == "." || name == ".." {
        causes.push(Cause::invalid(f, &q, &format!("may not be '{name}'")));
    }
    for bad in ["/", "%"] {
        if name.contains(bad) {
            causes.push(Cause::invalid(f, &q, &format!("may not contain '{bad}'")));
        }
    }
    if name.len() > 253 {
        causes.push(Cause::invalid(f, &q, "must be no more than 253 characters"));
    }
    if !name.split('.').all(is_dns1123_label) {
        causes.push(Cause::invalid(f, &q, DNS1123_SUBDOMAIN_MSG));
    }
    causes
}

pub fn namespace_causes(ns: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    if ns.len() > 63 {
        causes.push(Cause::invalid(
            "metadata.namespace",
            go_quote(ns),
            "must be no more than 63 characters",
        ));
    }
    if !is_dns1123_label(ns) {
        causes.push(Cause::invalid(
            "metadata.namespace",
            go_quote(ns),
            DNS1123_LABEL_MSG,
        ));
    }
    causes
}

fn meta_str<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj.pointer(&format!("/metadata/{key}"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// ValidateObjectMeta plus the kind's own validation, for create and update.
pub fn validate(kind: Kind, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = meta_str(obj, "name");
    if name.is_empty() {
        causes.push(Cause::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        causes.extend(name_causes(name));
    }
    let ns = meta_str(obj, "namespace");
    if ns.is_empty() {
        causes.push(Cause::required("metadata.namespace", ""));
    } else {
        causes.extend(namespace_causes(ns));
    }
    if let Some(Value::Object(labels)) = obj.pointer("/metadata/labels") {
        for (k, v) in labels {
            validate_qualified_name(k, "metadata.labels", &mut causes);
            let v = v.as_str().unwrap_or_default();
            if !(v.is_empty() || is_qualified_name_part(v)) {
                causes.push(Cause::invalid(
                    "metadata.labels",
                    go_quote(v),
                    LABEL_VALUE_MSG,
                ));
            }
        }
    }
    if let Some(Value::Object(ann)) = obj.pointer("/metadata/annotations") {
        let mut total = 0;
        for (k, v) in ann {
            validate_qualified_name(&k.to_lowercase(), "metadata.annotations", &mut causes);
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if total > MAX_ANNOTATION_BYTES {
            causes.push(Cause::too_long(
                "metadata.annotations",
                MAX_ANNOTATION_BYTES,
            ));
        }
    }
    match kind {
        Kind::Lease => {
            if let Some(n) = obj
                .pointer("/spec/leaseDurationSeconds")
                .and_then(Value::as_i64)
            {
                if n <= 0 {
                    causes.push(Cause::invalid(
                        "spec.leaseDurationSeconds",
                        n,
                        "must be greater than 0",
                    ));
                }
            }
            if let Some(n) = obj
                .pointer("/spec/leaseTransitions")
                .and_then(Value::as_i64)
            {
                if n < 0 {
                    causes.push(Cause::invalid(
                        "spec.leaseTransitions",
                        n,
                        "must be greater than or equal to 0",
                    ));
                }
            }
        }
        Kind::Event => {
            let ns = meta_str(obj, "namespace");
            let involved = obj
                .pointer("/involvedObject/namespace")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !involved.is_empty() && involved != ns {
                causes.push(Cause::invalid(
                    "involvedObject.namespace",
                    go_quote(involved),
                    "does not match event.namespace",
                ));
            }
        }
        Kind::ConfigMap => {
            let mut total = 0;
            for (field, map) in [
                ("data", obj.get("data")),
                ("binaryData", obj.get("binaryData")),
            ] {
                if let Some(Value::Object(m)) = map {
                    for (k, v) in m {
                        let f = format!("{field}[{k}]");
                        if k.len() > 253 {
                            causes.push(Cause::invalid(
                                &f,
                                go_quote(k),
                                "must be no more than 253 characters",
                            ));
                        }
                        let key_ok = !k.is_empty()
                            && k.bytes().all(|c| {
                                c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')
                            });
                        if !key_ok {
                            causes.push(Cause::invalid(&f, go_quote(k), CONFIG_KEY_MSG));
                        }
                        if field == "data"
                            && obj
                                .pointer(&format!(
                                    "/binaryData/{}",
                                    k.replace('~', "~0").replace('/', "~1")
                                ))
                                .is_some()
                        {
                            causes.push(Cause::invalid(
                                &f,
                                go_quote(k),
                                "duplicate of key present in binaryData",
                            ));
                        }
                        total += v.as_str().map_or(0, str::len);
                    }
                }
            }
            if total > MAX_CONFIGMAP_BYTES {
                causes.push(Cause::too_long("", MAX_CONFIGMAP_BYTES));
            }
        }
    }
    causes
}

/// ValidateConfigMapUpdate's immutability rule; Leases have no update-only rules
/// beyond those the store enforces (name, uid, creationTimestamp are kept).
pub fn validate_update(kind: Kind, old: &Value, new: &Value) -> Vec<Cause> {
    let mut causes = validate(kind, new);
    if kind == Kind::ConfigMap && old.get("immutable") == Some(&Value::Bool(true)) {
        if new.get("immutable") != Some(&Value::Bool(true)) {
            causes.push(Cause::forbidden(
                "immutable",
                "field is immutable when `immutable` is set",
            ));
        }
        for f in ["data", "binaryData"] {
            if old.get(f) != new.get(f) {
                causes.push(Cause::forbidden(
                    f,
                    "field is immutable when `immutable` is set",
                ));
            }
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_time_needs_exactly_six_digits() {
        assert!(parse_micro_time("2026-11-25T02:50:36.526130Z").is_ok());
        assert!(parse_micro_time("2026-11-25T02:50:36.526130+01:00").is_ok());
        assert!(parse_micro_time("2026-11-25T02:50:36.526Z").is_err());
        assert!(parse_micro_time("2026-11-25T02:50:36Z").is_err());
        assert!(parse_micro_time("2026-11-25T02:50:36.5261301Z").is_err());
        assert!(parse_micro_time("2026-11-25 02:50:36.526130").is_err());
        assert!(parse_micro_time("2026-13-25T02:50:36.526130Z").is_err());
    }

    #[test]
    fn micro_time_is_written_back_in_utc() {
        let t = parse_micro_time("2026-11-25T03:50:36.000001+01:00").unwrap();
        assert_eq!(format_micro_time(&t), "2026-11-25T02:50:36.000001Z");
    }

    #[test]
    fn names_follow_dns1123_subdomain() {
        assert!(name_causes("nightly-report.v1").is_empty());
        assert!(!name_causes("Upper").is_empty());
        assert!(!name_causes("test_").is_empty());
        assert!(!name_causes("-a").is_empty());
        assert!(!name_causes(&"a".repeat(254)).is_empty());
        assert!(!name_causes("..").is_empty());
    }
}
