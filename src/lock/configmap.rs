//! The record in a ConfigMap annotation; data and other annotations are never touched.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;

use std::time::Duration;

use super::LockObject;
use crate::record::{LeaderRecord, RecordError, LEADER_ANNOTATION};

impl LockObject for ConfigMap {
    const KIND: &'static str = "configmap";
    const RESOURCE: &'static str = "configmaps";
    const GROUP: &'static str = "";
    /// metav1.Time in the annotation: whole seconds.
    const TIME_RESOLUTION: Duration = Duration::from_secs(1);

    fn read_record(&self) -> Result<LeaderRecord, RecordError> {
        match self
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(LEADER_ANNOTATION))
        {
            None => Ok(LeaderRecord::default()),
            Some(text) => LeaderRecord::from_annotation(text),
        }
    }

    fn with_record(&self, record: &LeaderRecord) -> Self {
        let mut c = self.clone();
        c.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(LEADER_ANNOTATION.to_string(), record.to_annotation());
        c
    }

    fn new_with_record(name: &str, record: &LeaderRecord) -> Self {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                annotations: Some([(LEADER_ANNOTATION.to_string(), record.to_annotation())].into()),
                labels: Some(super::created_labels()),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}
