//! `--events`: Kubernetes Events on the lock object, as client-go's leader
//! election records them, so `kubectl describe lease NAME` tells who led when.
//! Recording is best effort: it never delays or changes the election.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Recorder {
    api: Api<Event>,
    namespace: String,
    identity: String,
}

impl Recorder {
    pub fn new(client: Client, namespace: &str, identity: &str) -> Recorder {
        Recorder {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            identity: identity.to_string(),
        }
    }

    /// Records `message` about `target` with reason LeaderElection; `warning` for a loss.
    pub async fn record(&self, target: ObjectReference, warning: bool, message: String) {
        let now = Timestamp::now();
        let name = format!(
            "{}.{:x}",
            target.name.clone().unwrap_or_default(),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(self.namespace.clone()),
                ..Default::default()
            },
            involved_object: target,
            reason: Some("LeaderElection".into()),
            message: Some(message),
            type_: Some(if warning { "Warning" } else { "Normal" }.into()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            source: Some(EventSource {
                component: Some("leaderrun".into()),
                host: None,
            }),
            reporting_component: Some("leaderrun".into()),
            reporting_instance: Some(self.identity.clone()),
            ..Default::default()
        };
        match tokio::time::timeout(TIMEOUT, self.api.create(&PostParams::default(), &event)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not record an event (RBAC: create on events?)")
            }
            Err(_) => tracing::warn!("recording an event timed out"),
        }
    }
}
