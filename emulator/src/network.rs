//! core/v1 Services and Endpoints, as far as `leaderrun --service` uses them: decoded and
//! defaulted as kube-apiserver does (a port's protocol TCP, a Service's targetPort its port,
//! type ClusterIP, a cluster IP assigned), and validated by the rules of ValidateService and
//! ValidateEndpoints that a leader's write could meet.

use std::net::IpAddr;

use serde_json::{json, Map, Value};

use crate::decode::{as_int32, opt_string, string_map, type_error, OBJECT_REFERENCE_FIELDS};
use crate::kind::Kind;
use crate::status::{go_quote, ApiError, Cause};
use crate::validation::is_dns1123_label;

/// A field's array of objects (absent or null: empty).
fn objects<'a>(
    kind: Kind,
    v: Option<&'a Value>,
    go_field: &str,
) -> Result<Vec<&'a Map<String, Value>>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|o| {
                o.as_object()
                    .ok_or_else(|| type_error(kind, o, go_field, "object"))
            })
            .collect(),
        Some(other) => Err(type_error(kind, other, go_field, "array")),
    }
}

/// The string fields `keys` of `m`, the empty ones dropped.
fn strings(
    kind: Kind,
    m: &Map<String, Value>,
    keys: &[&str],
    at: &str,
) -> Result<Map<String, Value>, ApiError> {
    let mut out = Map::new();
    for k in keys {
        if let Some(s) = opt_string(kind, m.get(*k), &format!("{at}.{k}"))? {
            if !s.is_empty() {
                out.insert((*k).into(), Value::String(s));
            }
        }
    }
    Ok(out)
}

/// A port of a Service or of Endpoints: name, port, protocol (TCP by default), appProtocol.
fn port(kind: Kind, p: &Map<String, Value>, at: &str) -> Result<Map<String, Value>, ApiError> {
    let mut out = strings(kind, p, &["name", "protocol", "appProtocol"], at)?;
    out.entry("protocol").or_insert_with(|| "TCP".into());
    if let Some(v) = p.get("port").filter(|v| !v.is_null()) {
        out.insert(
            "port".into(),
            as_int32(kind, v, &format!("{at}.port"))?.into(),
        );
    }
    Ok(out)
}

pub fn normalize_endpoints(
    obj: &Map<String, Value>,
    out: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    let kind = Kind::Endpoints;
    let mut subsets = Vec::new();
    for s in objects(kind, obj.get("subsets"), "Endpoints.subsets")? {
        let mut o = Map::new();
        for key in ["addresses", "notReadyAddresses"] {
            let at = format!("EndpointSubset.{key}");
            let mut list = Vec::new();
            for a in objects(kind, s.get(key), &at)? {
                let mut addr = strings(kind, a, &["ip", "hostname", "nodeName"], &at)?;
                if let Some(r) = a.get("targetRef").filter(|r| !r.is_null()) {
                    let r = r
                        .as_object()
                        .ok_or_else(|| type_error(kind, r, &format!("{at}.targetRef"), "object"))?;
                    addr.insert(
                        "targetRef".into(),
                        Value::Object(strings(kind, r, &OBJECT_REFERENCE_FIELDS, &at)?),
                    );
                }
                list.push(Value::Object(addr));
            }
            if !list.is_empty() {
                o.insert(key.into(), Value::Array(list));
            }
        }
        let ports = objects(kind, s.get("ports"), "EndpointSubset.ports")?;
        let ports: Vec<Value> = ports
            .into_iter()
            .map(|p| port(kind, p, "EndpointPort").map(Value::Object))
            .collect::<Result<_, _>>()?;
        if !ports.is_empty() {
            o.insert("ports".into(), Value::Array(ports));
        }
        subsets.push(Value::Object(o));
    }
    if !subsets.is_empty() {
        out.insert("subsets".into(), Value::Array(subsets));
    }
    Ok(())
}

/// A cluster IP for `namespace/name` in 10.96.0.0/16, the same on every write (the real
/// server keeps the one it assigned; an update that leaves it out keeps it too).
fn cluster_ip(namespace: &str, name: &str) -> String {
    let h = format!("{namespace}/{name}")
        .bytes()
        .fold(2166136261u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(16777619)
        });
    format!("10.96.{}.{}", (h >> 8) % 256, h % 254 + 1)
}

pub fn normalize_service(
    obj: &Map<String, Value>,
    out: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    let kind = Kind::Service;
    let empty = Map::new();
    let spec = match obj.get("spec") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(other) => return Err(type_error(kind, other, "Service.spec", "v1.ServiceSpec")),
    };
    let mut o = strings(kind, spec, &["type", "sessionAffinity"], "ServiceSpec")?;
    o.entry("type").or_insert_with(|| "ClusterIP".into());
    o.entry("sessionAffinity").or_insert_with(|| "None".into());
    let mut ports = Vec::new();
    for p in objects(kind, spec.get("ports"), "ServiceSpec.ports")? {
        let mut sp = port(kind, p, "ServicePort")?;
        match p.get("targetPort") {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) if n.as_i64() == Some(0) => {}
            Some(t @ (Value::Number(_) | Value::String(_))) => {
                sp.insert("targetPort".into(), t.clone());
            }
            Some(other) => {
                return Err(type_error(
                    kind,
                    other,
                    "ServicePort.targetPort",
                    "intstr.IntOrString",
                ))
            }
        }
        if !sp.contains_key("targetPort") {
            let port = sp.get("port").cloned().unwrap_or(Value::from(0));
            sp.insert("targetPort".into(), port);
        }
        ports.push(Value::Object(sp));
    }
    if !ports.is_empty() {
        o.insert("ports".into(), Value::Array(ports));
    }
    if let Some(sel) = spec.get("selector") {
        if let Some(m) = string_map(kind, sel, "ServiceSpec.selector")? {
            o.insert("selector".into(), Value::Object(m));
        }
    }
    let meta = |k: &str| {
        out.get("metadata")
            .and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let ip = cluster_ip(meta("namespace"), meta("name"));
    o.insert("clusterIP".into(), ip.clone().into());
    o.insert("clusterIPs".into(), json!([ip]));
    out.insert("spec".into(), Value::Object(o));
    Ok(())
}

/// Port numbers 1-65535, protocols TCP, UDP or SCTP, and names (DNS labels) required and
/// unique when there is more than one port.
fn ports(list: &[Value], at: &str, causes: &mut Vec<Cause>) {
    let mut names = Vec::new();
    for (i, p) in list.iter().enumerate() {
        let f = format!("{at}[{i}]");
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&port) {
            causes.push(Cause::invalid(
                &format!("{f}.port"),
                port,
                "must be between 1 and 65535, inclusive",
            ));
        }
        let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("");
        if !["TCP", "UDP", "SCTP"].contains(&proto) {
            causes.push(Cause::invalid(
                &format!("{f}.protocol"),
                go_quote(proto),
                "supported values: \"SCTP\", \"TCP\", \"UDP\"",
            ));
        }
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() && list.len() > 1 {
            causes.push(Cause::required(&format!("{f}.name"), ""));
        } else if !name.is_empty() && !is_dns1123_label(name) {
            causes.push(Cause::invalid(&format!("{f}.name"), go_quote(name), "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'"));
        } else if !name.is_empty() && names.contains(&name) {
            causes.push(Cause::duplicate(&format!("{f}.name"), go_quote(name)));
        }
        names.push(name);
    }
}

pub fn validate_endpoints(obj: &Value, causes: &mut Vec<Cause>) {
    let none = Vec::new();
    let subsets = obj
        .get("subsets")
        .and_then(Value::as_array)
        .unwrap_or(&none);
    for (i, s) in subsets.iter().enumerate() {
        let at = format!("subsets[{i}]");
        let list = |k: &str| {
            s.get(k)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let (ready, not_ready) = (list("addresses"), list("notReadyAddresses"));
        if ready.is_empty() && not_ready.is_empty() {
            causes.push(Cause::required(
                &at,
                "must specify `addresses` or `notReadyAddresses`",
            ));
        }
        for (key, addrs) in [("addresses", &ready), ("notReadyAddresses", &not_ready)] {
            for (j, a) in addrs.iter().enumerate() {
                let ip = a.get("ip").and_then(Value::as_str).unwrap_or("");
                let f = format!("{at}.{key}[{j}].ip");
                match ip.parse::<IpAddr>() {
                    Err(_) => causes.push(Cause::invalid(
                        &f,
                        go_quote(ip),
                        "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                    )),
                    Ok(a) if a.is_unspecified() => causes.push(Cause::invalid(
                        &f,
                        go_quote(ip),
                        "may not be unspecified (0.0.0.0)",
                    )),
                    Ok(a) if a.is_loopback() => causes.push(Cause::invalid(
                        &f,
                        go_quote(ip),
                        "may not be in the loopback range (127.0.0.0/8, ::1/128)",
                    )),
                    Ok(a) if a.is_multicast() => causes.push(Cause::invalid(
                        &f,
                        go_quote(ip),
                        "may not be in the multicast range (224.0.0.0/4, ff00::/8)",
                    )),
                    Ok(IpAddr::V4(v4)) if v4.is_link_local() => causes.push(Cause::invalid(
                        &f,
                        go_quote(ip),
                        "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
                    )),
                    Ok(_) => {}
                }
            }
        }
        let p = list("ports");
        if p.is_empty() {
            causes.push(Cause::required(&format!("{at}.ports"), ""));
        }
        ports(&p, &format!("{at}.ports"), causes);
    }
}

pub fn validate_service(obj: &Value, causes: &mut Vec<Cause>) {
    let p = obj
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let kind = obj
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if p.is_empty() && kind != "ExternalName" {
        causes.push(Cause::required("spec.ports", ""));
    }
    ports(&p, "spec.ports", causes);
}
