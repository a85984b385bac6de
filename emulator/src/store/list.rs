//! Lists: which objects a selector picks, and pages with the API server's continue tokens.

use serde_json::{Map, Value};

use super::Store;
use crate::kind::Kind;
use crate::status::{self, ApiError};

/// Which objects a list or watch selects.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub name_not: Option<String>,
    pub labels: Vec<LabelReq>,
}

#[derive(Debug, Clone)]
pub enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    Exists(String),
    NotExists(String),
}

impl Selector {
    pub fn matches(&self, kind_ns: &str, name: &str, obj: &Value) -> bool {
        if self.namespace.as_deref().is_some_and(|n| n != kind_ns)
            || self.name.as_deref().is_some_and(|n| n != name)
            || self.name_not.as_deref() == Some(name)
        {
            return false;
        }
        let label = |k: &str| {
            obj.pointer("/metadata/labels")
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
        };
        self.labels.iter().all(|r| match r {
            LabelReq::Eq(k, v) => label(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => label(k) != Some(v.as_str()),
            LabelReq::Exists(k) => label(k).is_some(),
            LabelReq::NotExists(k) => label(k).is_none(),
        })
    }
}

/// Which page of a list: `?limit=` and `?continue=`.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

/// The apiserver's continue token: base64 of `{"v":"meta.k8s.io/v1","rv":N,"start":KEY\0}`,
/// where the zero byte makes the next page start just after KEY.
fn encode_continue(rv: u64, last_key: &str) -> String {
    use base64::Engine;
    let json =
        serde_json::json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{last_key}\u{0}")});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
}

fn decode_continue(token: &str) -> Result<(u64, String), ApiError> {
    use base64::Engine;
    let bad = |why: String| status::bad_request(format!("invalid continue token: {why}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|e| {
            bad(format!(
                "continue key is not valid: illegal base64 data ({e})"
            ))
        })?;
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| bad(format!("continue key is not valid: {e}")))?;
    if v.get("v").and_then(Value::as_str) != Some("meta.k8s.io/v1") {
        return Err(bad("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)".into()));
    }
    let rv = v.get("rv").and_then(Value::as_u64).filter(|rv| *rv > 0);
    let start = v.get("start").and_then(Value::as_str);
    match (rv, start) {
        (Some(rv), Some(start)) if !start.is_empty() => Ok((rv, start.to_string())),
        _ => Err(bad("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)".into())),
    }
}

impl Store {
    pub fn list(&self, kind: Kind, sel: &Selector, page: &Page) -> Result<Value, ApiError> {
        let (list_rv, after) = match &page.continue_token {
            Some(token) => {
                let (rv, start) = decode_continue(token)?;
                if rv < self.compacted_rv {
                    return Err(status::continue_expired());
                }
                (rv, Some(start))
            }
            None => (self.rv, None),
        };
        let mut items: Vec<(String, Value)> = self
            .objects
            .iter()
            .filter(|((k, ns, name), obj)| *k == kind && sel.matches(ns, name, obj))
            .map(|((_, ns, name), obj)| {
                // The key relative to the resource's prefix, as etcd orders it.
                let key = if sel.namespace.is_some() {
                    name.clone()
                } else {
                    format!("{ns}/{name}")
                };
                (key, obj)
            })
            .filter(|(key, _)| after.as_ref().is_none_or(|a| key.as_str() >= a.as_str()))
            .map(|(key, obj)| {
                // Items of built-in lists carry no kind or apiVersion.
                let mut o = obj.clone();
                if let Some(m) = o.as_object_mut() {
                    m.remove("kind");
                    m.remove("apiVersion");
                }
                (key, o)
            })
            .collect();
        let mut metadata = Map::new();
        metadata.insert("resourceVersion".into(), Value::String(list_rv.to_string()));
        if let Some(limit) = page.limit.filter(|l| *l > 0 && *l < items.len()) {
            let remaining = items.len() - limit;
            items.truncate(limit);
            let last = items.last().map(|(k, _)| k.clone()).unwrap_or_default();
            metadata.insert(
                "continue".into(),
                Value::String(encode_continue(list_rv, &last)),
            );
            metadata.insert("remainingItemCount".into(), Value::from(remaining as u64));
        }
        Ok(serde_json::json!({
            "kind": kind.list_kind(),
            "apiVersion": kind.api_version(),
            "metadata": metadata,
            "items": items.into_iter().map(|(_, o)| o).collect::<Vec<_>>(),
        }))
    }
}
