//! Decoding and normalising Lease, ConfigMap and Event bodies the way kube-apiserver
//! does: a typed decode (wrong types and bad times are 400), unknown fields dropped,
//! empty maps and nulls dropped as Go's `omitempty` drops them. Validation (422) is
//! `validation.rs`.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use crate::kind::Kind;
use crate::status::{self, go_quote, ApiError};

/// The string fields of a core/v1 ObjectReference (an Event's involvedObject, an
/// Endpoints address's targetRef).
pub(crate) const OBJECT_REFERENCE_FIELDS: [&str; 7] = [
    "kind",
    "namespace",
    "name",
    "uid",
    "apiVersion",
    "resourceVersion",
    "fieldPath",
];

const MICRO_LAYOUT: &str = "2006-01-02T15:04:05.000000Z07:00";

/// Go's `json: cannot unmarshal` wording, wrapped the way the decode step wraps it.
pub(crate) fn decode_error(kind: Kind, detail: String) -> ApiError {
    status::bad_request(format!(
        "{k} in version \"v1\" cannot be handled as a {k}: {detail}",
        k = kind.kind_name()
    ))
}

pub(crate) fn type_error(kind: Kind, got: &Value, go_field: &str, go_type: &str) -> ApiError {
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

pub(crate) fn as_int32(kind: Kind, v: &Value, go_field: &str) -> Result<i64, ApiError> {
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

pub(crate) fn string_map(
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

pub(crate) fn opt_string(
    kind: Kind,
    v: Option<&Value>,
    go_field: &str,
) -> Result<Option<String>, ApiError> {
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
        Kind::ConfigMap => normalize_configmap(&obj, &mut out)?,
        Kind::Event => normalize_event(&obj, &mut out)?,
        Kind::Service => crate::network::normalize_service(&obj, &mut out)?,
        Kind::Endpoints => crate::network::normalize_endpoints(&obj, &mut out)?,
    }
    Ok(Value::Object(out))
}

/// core/v1 ConfigMap: data and binaryData (string maps, binaryData base64), immutable.
fn normalize_configmap(
    obj: &Map<String, Value>,
    out: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    let kind = Kind::ConfigMap;
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
    Ok(())
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
        ("involvedObject", &OBJECT_REFERENCE_FIELDS[..]),
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
}
