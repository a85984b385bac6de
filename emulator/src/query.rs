//! A request's query: its parameters, and the field and label selectors of a list or watch.

use crate::status::{self, ApiError};
use crate::store::{LabelReq, Selector};

pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(q: Option<&str>) -> Query {
        // Tolerates what kube sends: an empty query and a leading `&`.
        Query(
            form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .filter(|(k, _)| !k.is_empty())
                .collect(),
        )
    }
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    pub(crate) fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }
    pub(crate) fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }
}

pub(crate) fn parse_selector(q: &Query, namespace: Option<&str>) -> Result<Selector, ApiError> {
    let mut sel = Selector {
        namespace: namespace.map(String::from),
        ..Selector::default()
    };
    if let Some(fs) = q.get("fieldSelector").filter(|s| !s.is_empty()) {
        for term in fs.split(',') {
            let (field, value, negate) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f, v, false)
            } else {
                return Err(status::bad_request(format!(
                    "invalid selector: '{fs}'; can't understand '{term}'"
                )));
            };
            match (field.trim(), negate) {
                ("metadata.name", false) => sel.name = Some(value.to_string()),
                ("metadata.name", true) => sel.name_not = Some(value.to_string()),
                ("metadata.namespace", false) => {
                    if sel.namespace.as_deref().is_some_and(|n| n != value) {
                        sel.name = Some("\0no-match".into());
                    }
                    sel.namespace = Some(value.to_string());
                }
                (f, _) => {
                    return Err(status::bad_request(format!(
                        "{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
                        status::go_quote(f)
                    )))
                }
            }
        }
    }
    if let Some(ls) = q.get("labelSelector").filter(|s| !s.is_empty()) {
        for term in ls.split(',') {
            let term = term.trim();
            let req = if let Some((k, v)) = term.split_once("!=") {
                LabelReq::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                LabelReq::Eq(k.trim().into(), v.trim().into())
            } else if let Some(k) = term.strip_prefix('!') {
                LabelReq::NotExists(k.trim().into())
            } else if !term.is_empty() && !term.contains(' ') {
                LabelReq::Exists(term.into())
            } else {
                return Err(status::bad_request(format!("unable to parse requirement: {term}: set-based selectors are not supported by kube-emulator")));
            };
            sel.labels.push(req);
        }
    }
    Ok(sel)
}
