//! `--events`: "became leader", "stopped leading" and "lost leadership" recorded
//! on the lock object.

use crate::common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api as KubeApi, ListParams};

const LONG: Duration = Duration::from_secs(60);

async fn events_about(api: &Api, name: &str) -> Vec<Event> {
    let all = KubeApi::<Event>::namespaced(api.client().await, &api.namespace)
        .list(&ListParams::default())
        .await
        .unwrap();
    all.items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .collect()
}

#[tokio::test]
async fn leadership_changes_are_recorded_as_events_on_the_lease() {
    let api = Api::start().await;
    let name = api.lock_name("events");
    let (code, _) = exit_of(
        candidate(&api, "lease", &name, "ev-a", &["--events"], &["true"]),
        LONG,
    )
    .await;
    assert_eq!(code, 0);
    let leader = job_candidate(
        &api,
        "lease",
        &name,
        "ev-b",
        &[&["--events"][..], &FAST[..]].concat(),
        "1000",
    );
    wait_log(&api.log_path(), LONG, |l| l.len() == 1).await;
    let leases = KubeApi::<Lease>::namespaced(api.client().await, &api.namespace);
    // Another writer takes the lock; ev-b loses it at its next renew.
    take_lock(&api, "lease", &name, "someone").await;
    assert_eq!(exit_of(leader, LONG).await.0, 121);
    let uid = leases.get(&name).await.unwrap().metadata.uid;
    let events = events_about(&api, &name).await;
    let mut seen: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e.type_.clone().unwrap_or_default(),
                e.message.clone().unwrap_or_default(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(
        seen.contains(&("Normal".into(), "ev-a became leader".into())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("Normal".into(), "ev-a stopped leading".into())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("Normal".into(), "ev-b became leader".into())),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|(t, m)| t == "Warning"
            && m.starts_with("ev-b lost leadership")
            && m.contains("someone")),
        "{seen:?}"
    );
    for e in &events {
        assert_eq!(e.reason.as_deref(), Some("LeaderElection"));
        assert_eq!(e.involved_object.kind.as_deref(), Some("Lease"));
        assert_eq!(
            e.involved_object.api_version.as_deref(),
            Some("coordination.k8s.io/v1")
        );
        assert_eq!(e.involved_object.uid, uid);
    }
}

#[tokio::test]
async fn without_the_flag_no_event_is_written() {
    let api = Api::start().await;
    let Some(emu) = api.emulator("request log") else {
        return;
    };
    let (code, _) = exit_of(
        candidate(&api, "configmap", "quiet", "q", &[], &["true"]),
        LONG,
    )
    .await;
    assert_eq!(code, 0);
    assert!(
        emu.request_log().iter().all(|r| r.resource == "configmaps"),
        "{:?}",
        emu.request_log()
    );
}
