//! The two resources the emulator serves, and what differs between them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    Lease,
    ConfigMap,
    /// core/v1 Events, so that a leader's "became leader" can be recorded on its lock.
    Event,
    /// core/v1 Services and their Endpoints, for `leaderrun --service`.
    Service,
    Endpoints,
}

impl Kind {
    pub fn group(self) -> &'static str {
        match self {
            Kind::Lease => "coordination.k8s.io",
            _ => "",
        }
    }
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Lease => "coordination.k8s.io/v1",
            _ => "v1",
        }
    }
    pub fn resource(self) -> &'static str {
        match self {
            Kind::Lease => "leases",
            Kind::ConfigMap => "configmaps",
            Kind::Event => "events",
            Kind::Service => "services",
            Kind::Endpoints => "endpoints",
        }
    }
    pub fn kind_name(self) -> &'static str {
        match self {
            Kind::Lease => "Lease",
            Kind::ConfigMap => "ConfigMap",
            Kind::Event => "Event",
            Kind::Service => "Service",
            Kind::Endpoints => "Endpoints",
        }
    }
    pub fn list_kind(self) -> &'static str {
        match self {
            Kind::Lease => "LeaseList",
            Kind::ConfigMap => "ConfigMapList",
            Kind::Event => "EventList",
            Kind::Service => "ServiceList",
            Kind::Endpoints => "EndpointsList",
        }
    }
    /// `leases.coordination.k8s.io` or `configmaps`: how NotFound and Conflict name it.
    pub fn qualified_resource(self) -> String {
        if self.group().is_empty() {
            self.resource().to_string()
        } else {
            format!("{}.{}", self.resource(), self.group())
        }
    }
    /// `Lease.coordination.k8s.io` or `ConfigMap`: how strategy validation names it.
    pub fn qualified_kind(self) -> String {
        if self.group().is_empty() {
            self.kind_name().to_string()
        } else {
            format!("{}.{}", self.kind_name(), self.group())
        }
    }
    /// The lease strategy answers true (a PUT to a missing Lease creates it);
    /// the configmap strategy false (404). Source: the registry strategies.
    pub fn allow_create_on_update(self) -> bool {
        matches!(self, Kind::Lease)
    }
    /// ConfigMap, Event and Endpoints PUTs without a resourceVersion overwrite
    /// unconditionally; Lease and Service PUTs get 422.
    pub fn allow_unconditional_update(self) -> bool {
        matches!(self, Kind::ConfigMap | Kind::Event | Kind::Endpoints)
    }

    /// The kind served under a group's resource name.
    pub fn from_resource(group: &str, resource: &str) -> Option<Kind> {
        [
            Kind::Lease,
            Kind::ConfigMap,
            Kind::Event,
            Kind::Service,
            Kind::Endpoints,
        ]
        .into_iter()
        .find(|k| k.group() == group && k.resource() == resource)
    }
}
