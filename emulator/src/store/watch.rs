//! Watches: where one starts (history, synthetic ADDED events, 410), and bookmarks.

use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::broadcast;

use super::{meta, Event, Selector, Store};
use crate::kind::Kind;

/// How a watch may start (api-concepts "Semantics for watch").
pub enum WatchStart {
    Ok {
        initial: Vec<Arc<Event>>,
        rx: broadcast::Receiver<Arc<Event>>,
    },
    /// The asked version is older than the history kept: one ERROR 410 event.
    Expired { oldest: u64 },
    /// The asked version is newer than any write.
    TooLarge { current: u64 },
}

impl Store {
    /// Starts a watch. Subscribing under the store's lock means no event falls
    /// between the initial ones and the live ones.
    pub fn watch(
        &self,
        kind: Kind,
        sel: &Selector,
        from: Option<u64>,
        send_initial: bool,
    ) -> WatchStart {
        let matching =
            |ev: &Event| ev.kind == kind && sel.matches(&ev.namespace, &ev.name, &ev.object);
        let rx = self.events.subscribe();
        let synthetic = || -> Vec<Arc<Event>> {
            self.objects
                .iter()
                .filter(|((k, ns, name), obj)| *k == kind && sel.matches(ns, name, obj))
                .map(|((k, ns, name), obj)| {
                    Arc::new(Event {
                        rv: meta(obj, "resourceVersion").parse().unwrap_or(0),
                        kind: *k,
                        namespace: ns.clone(),
                        name: name.clone(),
                        event_type: "ADDED",
                        object: obj.clone(),
                    })
                })
                .collect()
        };
        match from {
            None | Some(0) => WatchStart::Ok {
                initial: synthetic(),
                rx,
            },
            Some(n) if n < self.compacted_rv => WatchStart::Expired {
                oldest: self.compacted_rv,
            },
            Some(n) if n > self.rv => WatchStart::TooLarge { current: self.rv },
            Some(n) => {
                let mut initial = if send_initial {
                    synthetic()
                } else {
                    Vec::new()
                };
                if !send_initial {
                    initial.extend(
                        self.history
                            .iter()
                            .filter(|e| e.rv > n && matching(e))
                            .cloned(),
                    );
                }
                WatchStart::Ok { initial, rx }
            }
        }
    }
}

/// Builds the object a watch event carries for a bookmark.
pub fn bookmark(kind: Kind, rv: u64, initial_end: bool) -> Value {
    let mut m = Map::new();
    m.insert("resourceVersion".into(), Value::String(rv.to_string()));
    if initial_end {
        m.insert(
            "annotations".into(),
            serde_json::json!({"k8s.io/initial-events-end": "true"}),
        );
    }
    serde_json::json!({"kind": kind.kind_name(), "apiVersion": kind.api_version(), "metadata": Value::Object(m)})
}
