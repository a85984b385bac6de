//! The record in a coordination.k8s.io/v1 Lease's spec.

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::ObjectMeta;

use std::time::Duration;

use super::LockObject;
use crate::record::{LeaderRecord, RecordError};

impl LockObject for Lease {
    const KIND: &'static str = "lease";
    const RESOURCE: &'static str = "leases";
    const GROUP: &'static str = "coordination.k8s.io";
    /// MicroTime.
    const TIME_RESOLUTION: Duration = Duration::from_micros(1);

    fn read_record(&self) -> Result<LeaderRecord, RecordError> {
        Ok(self
            .spec
            .as_ref()
            .map(LeaderRecord::from_lease_spec)
            .unwrap_or_default())
    }

    fn with_record(&self, record: &LeaderRecord) -> Self {
        let mut l = self.clone();
        l.spec = Some(record.to_lease_spec(self.spec.as_ref()));
        l
    }

    fn new_with_record(name: &str, record: &LeaderRecord) -> Self {
        Lease {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(super::created_labels()),
                ..Default::default()
            },
            spec: Some(record.to_lease_spec(None)),
        }
    }
}
