//! Validation, as the registry strategies and apimachinery's validators word it: names,
//! namespaces, label and annotation keys and values, ConfigMap keys and sizes, Lease
//! fields, immutable ConfigMaps.

use serde_json::Value;

use crate::kind::Kind;
use crate::status::{go_quote, Cause};

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const CONFIG_KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";
/// `core.MaxSecretSize`, which also bounds ConfigMap data.
const MAX_CONFIGMAP_BYTES: usize = 1024 * 1024;
/// `TotalAnnotationSizeLimitB`.
const MAX_ANNOTATION_BYTES: usize = 256 * 1024;

pub(crate) fn is_dns1123_label(s: &str) -> bool {
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
    let mut causes = object_meta(obj);
    match kind {
        Kind::Lease => lease(obj, &mut causes),
        Kind::Event => event(obj, &mut causes),
        Kind::ConfigMap => config_map(obj, &mut causes),
        Kind::Service => crate::network::validate_service(obj, &mut causes),
        Kind::Endpoints => crate::network::validate_endpoints(obj, &mut causes),
    }
    causes
}

/// ValidateObjectMeta: name, namespace, labels, annotations.
fn object_meta(obj: &Value) -> Vec<Cause> {
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
    causes
}

fn lease(obj: &Value, causes: &mut Vec<Cause>) {
    let spec = |k: &str| obj.pointer(&format!("/spec/{k}")).and_then(Value::as_i64);
    if let Some(n) = spec("leaseDurationSeconds").filter(|n| *n <= 0) {
        causes.push(Cause::invalid(
            "spec.leaseDurationSeconds",
            n,
            "must be greater than 0",
        ));
    }
    if let Some(n) = spec("leaseTransitions").filter(|n| *n < 0) {
        causes.push(Cause::invalid(
            "spec.leaseTransitions",
            n,
            "must be greater than or equal to 0",
        ));
    }
}

fn event(obj: &Value, causes: &mut Vec<Cause>) {
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

/// Keys of data and binaryData, no key in both, and the 1 MiB limit on their sum.
fn config_map(obj: &Value, causes: &mut Vec<Cause>) {
    let mut total = 0;
    for field in ["data", "binaryData"] {
        let Some(Value::Object(m)) = obj.get(field) else {
            continue;
        };
        for (k, v) in m {
            let f = format!("{field}[{k}]");
            causes.extend(config_key_causes(&f, k));
            let in_binary = obj
                .get("binaryData")
                .and_then(Value::as_object)
                .is_some_and(|b| b.contains_key(k));
            if field == "data" && in_binary {
                causes.push(Cause::invalid(
                    &f,
                    go_quote(k),
                    "duplicate of key present in binaryData",
                ));
            }
            total += v.as_str().map_or(0, str::len);
        }
    }
    if total > MAX_CONFIGMAP_BYTES {
        causes.push(Cause::too_long("", MAX_CONFIGMAP_BYTES));
    }
}

/// IsConfigMapKey: at most 253 characters of alphanumerics, '-', '_' and '.'.
fn config_key_causes(field: &str, k: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    if k.len() > 253 {
        causes.push(Cause::invalid(
            field,
            go_quote(k),
            "must be no more than 253 characters",
        ));
    }
    let key_ok = !k.is_empty()
        && k.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if !key_ok {
        causes.push(Cause::invalid(field, go_quote(k), CONFIG_KEY_MSG));
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
    fn names_follow_dns1123_subdomain() {
        assert!(name_causes("nightly-report.v1").is_empty());
        assert!(!name_causes("Upper").is_empty());
        assert!(!name_causes("test_").is_empty());
        assert!(!name_causes("-a").is_empty());
        assert!(!name_causes(&"a".repeat(254)).is_empty());
        assert!(!name_causes("..").is_empty());
    }
}
