//! The object store: one global resourceVersion counter, the registry's create,
//! update, patch and delete rules for the two kinds, and the event history that
//! watches are served from.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use rand::Rng;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::decode::{self, format_time};
use crate::kind::Kind;
use crate::status::{self, ApiError, Cause};
use crate::validation;

mod list;
mod watch;

pub use list::{LabelReq, Page, Selector};
pub use watch::{bookmark, WatchStart};

/// One change, as a watch reports it.
#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub event_type: &'static str,
    pub object: Value,
}

pub enum PatchKind {
    Merge,
    Strategic,
    Json,
}

type Key = (Kind, String, String);

pub struct Store {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Arc<Event>>,
    /// Events at or below this version are gone from the history.
    compacted_rv: u64,
    history_cap: usize,
    namespaces: BTreeSet<String>,
    events: broadcast::Sender<Arc<Event>>,
}

fn meta<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj.pointer(&format!("/metadata/{key}"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn set_meta(obj: &mut Value, key: &str, value: Value) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if value.is_null() {
            m.remove(key);
        } else {
            m.insert(key.to_string(), value);
        }
    }
}

fn new_uid() -> String {
    let b: [u8; 16] = rand::rng().random();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
    )
}

/// Parses a resourceVersion sent by a client; a non-number is a raw strconv
/// error on the real server (500 without a reason).
fn parse_rv(rv: &str) -> Result<u64, ApiError> {
    rv.parse::<u64>().map_err(|_| {
        status::internal_raw(&format!(
            "strconv.ParseUint: parsing {}: invalid syntax",
            status::go_quote(rv)
        ))
    })
}

/// The namespace check shared by create and update: empty takes the URL's, a different one is 400.
fn ensure_namespace(obj: &mut Value, ns: &str) -> Result<(), ApiError> {
    match meta(obj, "namespace") {
        "" => {
            set_meta(obj, "namespace", Value::String(ns.to_string()));
            Ok(())
        }
        n if n == ns => Ok(()),
        _ => Err(status::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
    }
}

fn check_name(obj: &Value, name: &str) -> Result<(), ApiError> {
    let body_name = meta(obj, "name");
    if body_name != name {
        return Err(status::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    Ok(())
}

/// The stored form without the version, to spot writes that change nothing.
fn without_rv(obj: &Value) -> Value {
    let mut o = obj.clone();
    set_meta(&mut o, "resourceVersion", Value::Null);
    o
}

impl Store {
    pub fn new(history_cap: usize) -> Self {
        let (events, _) = broadcast::channel(4096);
        // A random large start, so that no client can rely on small or fixed numbers.
        let rv = rand::rng().random_range(1_000..1_000_000);
        Store {
            rv,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            compacted_rv: rv,
            history_cap,
            namespaces: ["default", "kube-system", "kube-public", "kube-node-lease"]
                .into_iter()
                .map(String::from)
                .collect(),
            events,
        }
    }

    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    pub fn add_namespace(&mut self, ns: &str) {
        self.namespaces.insert(ns.to_string());
    }

    /// Forgets the event history, so that a watch from any earlier version gets 410.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted_rv = self.rv;
    }

    fn record(
        &mut self,
        kind: Kind,
        ns: &str,
        name: &str,
        event_type: &'static str,
        object: Value,
    ) {
        let ev = Arc::new(Event {
            rv: self.rv,
            kind,
            namespace: ns.to_string(),
            name: name.to_string(),
            event_type,
            object,
        });
        self.history.push_back(ev.clone());
        while self.history.len() > self.history_cap {
            if let Some(old) = self.history.pop_front() {
                self.compacted_rv = old.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(ev);
    }

    fn commit(
        &mut self,
        kind: Kind,
        ns: &str,
        name: &str,
        mut obj: Value,
        event_type: &'static str,
    ) -> Value {
        self.rv += 1;
        set_meta(
            &mut obj,
            "resourceVersion",
            Value::String(self.rv.to_string()),
        );
        self.objects
            .insert((kind, ns.to_string(), name.to_string()), obj.clone());
        self.record(kind, ns, name, event_type, obj.clone());
        obj
    }

    pub fn get(&self, kind: Kind, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&(kind, ns.to_string(), name.to_string()))
            .cloned()
            .ok_or_else(|| status::not_found(kind, name))
    }

    /// A list, paged as the real server pages from etcd: `limit` items in key order
    /// (namespace, then name), and a `continue` token that resumes after the last one
    /// at the first page's resourceVersion. Unlike etcd, later pages show the objects
    /// as they are now, not as they were at that version.
    fn prepare_create(&self, kind: Kind, ns: &str, obj: &mut Value) -> Result<(), ApiError> {
        ensure_namespace(obj, ns)?;
        if meta(obj, "name").is_empty() && !meta(obj, "generateName").is_empty() {
            const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
            let mut rng = rand::rng();
            let suffix: String = (0..5)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                .collect();
            let name = format!("{}{suffix}", meta(obj, "generateName"));
            set_meta(obj, "name", Value::String(name));
        }
        let causes = validation::validate(kind, obj);
        if !causes.is_empty() {
            return Err(status::invalid_object(kind, meta(obj, "name"), &causes));
        }
        if !self.namespaces.contains(ns) {
            return Err(status::namespace_not_found(ns));
        }
        let name = meta(obj, "name").to_string();
        if self
            .objects
            .contains_key(&(kind, ns.to_string(), name.clone()))
        {
            return Err(status::already_exists(kind, &name));
        }
        set_meta(obj, "uid", Value::String(new_uid()));
        set_meta(
            obj,
            "creationTimestamp",
            Value::String(format_time(&chrono::Utc::now())),
        );
        Ok(())
    }

    /// POST: 201 with the stored object.
    pub fn create(
        &mut self,
        kind: Kind,
        ns: &str,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        self.prepare_create(kind, ns, &mut obj)?;
        if !meta(&obj, "resourceVersion").is_empty() {
            return Err(status::internal_raw(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let name = meta(&obj, "name").to_string();
        if dry_run {
            return Ok(obj);
        }
        Ok(self.commit(kind, ns, &name, obj, "ADDED"))
    }

    /// PUT: returns (created, object). Follows the store's Update in order.
    pub fn update(
        &mut self,
        kind: Kind,
        ns: &str,
        name: &str,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<(bool, Value), ApiError> {
        ensure_namespace(&mut obj, ns)?;
        check_name(&obj, name)?;
        let key = (kind, ns.to_string(), name.to_string());
        let Some(old) = self.objects.get(&key).cloned() else {
            // The uid in the body is a precondition, checked against the empty object
            // before create-on-update or NotFound is considered: a leader renewing a
            // deleted lock gets 409 on a real server, for both kinds (etcd3 store's
            // GuaranteedUpdate checks preconditions on the missing object's zero value).
            let uid = meta(&obj, "uid");
            if !uid.is_empty() {
                return Err(status::precondition_failed(kind, ns, name, "UID", uid, ""));
            }
            if !kind.allow_create_on_update() {
                return Err(status::not_found(kind, name));
            }
            // Create-on-update ignores the body's resourceVersion.
            set_meta(&mut obj, "resourceVersion", Value::Null);
            set_meta(&mut obj, "uid", Value::Null);
            self.prepare_create(kind, ns, &mut obj)?;
            if dry_run {
                return Ok((true, obj));
            }
            return Ok((true, self.commit(kind, ns, name, obj, "ADDED")));
        };
        self.update_existing(kind, ns, name, old, obj, dry_run)
    }

    fn update_existing(
        &mut self,
        kind: Kind,
        ns: &str,
        name: &str,
        old: Value,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<(bool, Value), ApiError> {
        let old_uid = meta(&old, "uid").to_string();
        let uid = meta(&obj, "uid").to_string();
        if !uid.is_empty() && uid != old_uid {
            return Err(status::precondition_failed(
                kind, ns, name, "UID", &uid, &old_uid,
            ));
        }
        let old_rv = meta(&old, "resourceVersion").to_string();
        let rv = meta(&obj, "resourceVersion").to_string();
        if rv.is_empty() || rv == "0" {
            if !kind.allow_unconditional_update() {
                return Err(status::invalid(
                    kind,
                    &kind.qualified_resource(),
                    name,
                    &[Cause::invalid(
                        "metadata.resourceVersion",
                        0,
                        "must be specified for an update",
                    )],
                ));
            }
        } else if parse_rv(&rv)? != parse_rv(&old_rv)? {
            return Err(status::conflict(kind, name));
        }
        // System fields come from the stored object, whatever the body said.
        set_meta(&mut obj, "uid", Value::String(old_uid));
        set_meta(
            &mut obj,
            "creationTimestamp",
            old.pointer("/metadata/creationTimestamp")
                .cloned()
                .unwrap_or(Value::Null),
        );
        set_meta(&mut obj, "resourceVersion", Value::String(old_rv));
        let causes = validation::validate_update(kind, &old, &obj);
        if !causes.is_empty() {
            return Err(status::invalid_object(kind, name, &causes));
        }
        if without_rv(&obj) == without_rv(&old) || dry_run {
            // A write that changes nothing keeps the version and sends no event.
            return Ok((false, obj));
        }
        Ok((false, self.commit(kind, ns, name, obj, "MODIFIED")))
    }

    /// PATCH with a merge, strategic-merge or JSON patch; 404 when missing, for both kinds.
    pub fn patch(
        &mut self,
        kind: Kind,
        ns: &str,
        name: &str,
        how: PatchKind,
        body: &[u8],
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let key = (kind, ns.to_string(), name.to_string());
        let Some(old) = self.objects.get(&key).cloned() else {
            return Err(status::not_found(kind, name));
        };
        let mut doc = old.clone();
        match how {
            PatchKind::Merge | PatchKind::Strategic => {
                let p: Value = serde_json::from_slice(body)
                    .map_err(|e| status::bad_request(format!("error decoding patch: {e}")))?;
                if !p.is_object() {
                    return Err(status::bad_request("json: cannot unmarshal array into Go value of type map[string]interface {}"));
                }
                // No patch strategy markers touch Lease or ConfigMap fields, so a
                // strategic merge is a plain merge here; `$patch` directives are not supported.
                json_patch::merge(&mut doc, &p);
            }
            PatchKind::Json => {
                let p: json_patch::Patch = serde_json::from_slice(body)
                    .map_err(|e| status::bad_request(format!("error decoding patch: {e}")))?;
                if p.0.len() > 10_000 {
                    return Err(status::too_large());
                }
                json_patch::patch(&mut doc, &p.0).map_err(|_| status::generic_invalid())?;
            }
        }
        let mut obj = decode::normalize(kind, doc)?;
        if meta(&obj, "namespace").is_empty() {
            set_meta(&mut obj, "namespace", Value::String(ns.to_string()));
        }
        check_name(&obj, name)?;
        ensure_namespace(&mut obj, ns)?;
        // A resourceVersion in the patched object is a precondition; none means "latest".
        let rv = meta(&obj, "resourceVersion").to_string();
        if rv.is_empty() {
            set_meta(
                &mut obj,
                "resourceVersion",
                Value::String(meta(&old, "resourceVersion").to_string()),
            );
        }
        self.update_existing(kind, ns, name, old, obj, dry_run)
            .map(|(_, o)| o)
    }

    /// DELETE with optional uid and resourceVersion preconditions.
    pub fn delete(
        &mut self,
        kind: Kind,
        ns: &str,
        name: &str,
        pre_uid: Option<&str>,
        pre_rv: Option<&str>,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let key = (kind, ns.to_string(), name.to_string());
        let Some(old) = self.objects.get(&key).cloned() else {
            return Err(status::not_found(kind, name));
        };
        let uid = meta(&old, "uid").to_string();
        if let Some(want) = pre_uid.filter(|u| !u.is_empty()) {
            if want != uid {
                return Err(status::delete_precondition_failed(
                    kind, name, "UID", want, &uid,
                ));
            }
        }
        if let Some(want) = pre_rv.filter(|r| !r.is_empty()) {
            let have = meta(&old, "resourceVersion");
            if want != have {
                return Err(status::delete_precondition_failed(
                    kind,
                    name,
                    "ResourceVersion",
                    want,
                    have,
                ));
            }
        }
        if !dry_run {
            self.objects.remove(&key);
            self.rv += 1;
            let mut last = old;
            set_meta(
                &mut last,
                "resourceVersion",
                Value::String(self.rv.to_string()),
            );
            self.record(kind, ns, name, "DELETED", last);
        }
        Ok(status::delete_success(kind, name, &uid))
    }

    /// Every stored object, for the admin dump.
    pub fn dump(&self) -> Vec<Value> {
        self.objects.values().cloned().collect()
    }
}
