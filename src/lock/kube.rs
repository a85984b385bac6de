//! The lock over `kube::Api`: a Lease or a ConfigMap (lease.rs, configmap.rs say how each
//! carries the record), and `AnyLock`, the one dispatch by kind.

use std::fmt::Debug;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use kube::api::{PostParams, WatchEvent, WatchParams};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::{error_chain, within, Call};
use super::{Change, Kind, Lock, LockError, Notes, Observed};
use crate::record::{LeaderRecord, RecordError};

/// The object kinds that carry a record.
pub trait LockObject:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// `lease` or `configmap`, for messages and RBAC hints.
    const KIND: &'static str;
    /// The plural resource and API group, for RBAC hints.
    const RESOURCE: &'static str;
    const GROUP: &'static str;
    /// The finest step of time the record keeps (a ConfigMap's record: whole seconds).
    const TIME_RESOLUTION: Duration;
    /// The record this object holds (the default record when it holds none).
    fn read_record(&self) -> Result<LeaderRecord, RecordError>;
    /// This object with `record` in it, everything else unchanged.
    fn with_record(&self, record: &LeaderRecord) -> Self;
    /// A new object holding only `record`.
    fn new_with_record(name: &str, record: &LeaderRecord) -> Self;

    /// A reference to this object, for Events about it.
    fn reference(&self) -> ObjectReference {
        let m = self.meta();
        ObjectReference {
            kind: Some(Self::kind(&()).into_owned()),
            api_version: Some(Self::api_version(&()).into_owned()),
            name: m.name.clone(),
            namespace: m.namespace.clone(),
            uid: m.uid.clone(),
            resource_version: m.resource_version.clone(),
            ..Default::default()
        }
    }
}

/// A lock over `kube::Api<K>`, for a Lease or a ConfigMap.
pub struct KubeLock<K> {
    api: Api<K>,
    name: String,
    namespace: String,
}

impl<K: LockObject> KubeLock<K> {
    pub fn new(client: Client, namespace: &str, name: &str) -> Self {
        KubeLock {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            namespace: namespace.to_string(),
        }
    }

    /// Writes `record` and `notes` into `object`, with the version read (`resource_version`):
    /// without it a ConfigMap PUT overwrites unconditionally, and two copies could both
    /// believe they lead. Borrowed, so that `AnyLock` need not copy the object it holds.
    async fn write_over(
        &self,
        object: &K,
        resource_version: &str,
        record: &LeaderRecord,
        notes: &Notes,
        timeout: Duration,
    ) -> Result<Observed<K>, LockError> {
        if resource_version.is_empty() {
            return Err(LockError::Conflict(self.describe()));
        }
        let mut obj = object.with_record(record);
        notes.write_into(&mut obj.meta_mut().annotations);
        obj.meta_mut().resource_version = Some(resource_version.to_string());
        within(timeout, async {
            let updated = self
                .api
                .replace(&self.name, &PostParams::default(), &obj)
                .await
                .map_err(|e| self.call("update").error(e))?;
            observe(updated, &self.describe())
        })
        .await
    }

    fn call(&self, verb: &'static str) -> Call<'_> {
        Call {
            verb,
            object: self.describe(),
            namespace: Some(&self.namespace),
            kind: K::KIND,
            resource: K::RESOURCE,
            group: K::GROUP,
        }
    }
}

/// An object as observed: its record (or why it cannot be read), version, uid and notes.
pub(super) fn observe<K: LockObject>(object: K, describe: &str) -> Result<Observed<K>, LockError> {
    let record = object.read_record().map_err(|e| LockError::Unreadable {
        object: describe.to_string(),
        reason: e.to_string(),
    })?;
    let meta = object.meta();
    Ok(Observed {
        record,
        resource_version: meta.resource_version.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        notes: Notes::read(meta.annotations.as_ref()),
        object,
    })
}

impl<K: LockObject> Lock for KubeLock<K> {
    type Object = K;

    fn describe(&self) -> String {
        format!("{} {}/{}", K::KIND, self.namespace, self.name)
    }

    fn resolution(&self) -> Duration {
        K::TIME_RESOLUTION
    }

    fn reference(&self, held: &Observed<K>) -> Option<ObjectReference> {
        Some(held.object.reference())
    }

    async fn get(&self, timeout: Duration) -> Result<Option<Observed<K>>, LockError> {
        within(timeout, async {
            match self.api.get(&self.name).await {
                Ok(o) => observe(o, &self.describe()).map(Some),
                Err(kube::Error::Api(s)) if s.code == 404 && s.reason == "NotFound" => Ok(None),
                Err(e) => Err(self.call("get").error(e)),
            }
        })
        .await
    }

    async fn create_with(
        &self,
        record: &LeaderRecord,
        notes: &Notes,
        timeout: Duration,
    ) -> Result<Observed<K>, LockError> {
        let mut obj = K::new_with_record(&self.name, record);
        notes.write_into(&mut obj.meta_mut().annotations);
        within(timeout, async {
            let created = self
                .api
                .create(&PostParams::default(), &obj)
                .await
                .map_err(|e| self.call("create").error(e))?;
            observe(created, &self.describe())
        })
        .await
    }

    async fn replace(
        &self,
        prev: &Observed<K>,
        record: &LeaderRecord,
        notes: &Notes,
        timeout: Duration,
    ) -> Result<Observed<K>, LockError> {
        self.write_over(&prev.object, &prev.resource_version, record, notes, timeout)
            .await
    }

    async fn watch(
        &self,
        resource_version: &str,
        timeout: Duration,
    ) -> Result<BoxStream<'static, Result<Change<K>, LockError>>, LockError> {
        let params = WatchParams::default()
            .fields(&format!("metadata.name={}", self.name))
            .timeout(290);
        let stream = within(timeout, async {
            self.api
                .watch(&params, resource_version)
                .await
                .map_err(|e| self.call("watch").error(e))
        })
        .await?;
        let describe = self.describe();
        let stream = stream
            .map_err({
                let describe = describe.clone();
                move |e| LockError::Transport {
                    verb: "watch",
                    object: describe.clone(),
                    message: error_chain(&e),
                }
            })
            .filter_map(move |ev| {
                let describe = describe.clone();
                async move {
                    match ev {
                        Ok(WatchEvent::Added(o)) | Ok(WatchEvent::Modified(o)) => {
                            Some(observe(o, &describe).map(Change::Changed))
                        }
                        Ok(WatchEvent::Deleted(_)) => Some(Ok(Change::Deleted)),
                        Ok(WatchEvent::Bookmark(_)) => None,
                        Ok(WatchEvent::Error(s)) if s.code == 410 => Some(Ok(Change::Expired)),
                        Ok(WatchEvent::Error(s)) => Some(Err(LockError::Api {
                            verb: "watch",
                            object: describe,
                            code: s.code,
                            message: s.message,
                        })),
                        Err(e) => Some(Err(e)),
                    }
                }
            })
            .boxed();
        Ok(stream)
    }
}

/// The lock of either kind: what `run`, `inspect`, `force-release` and `step-down` open.
pub enum AnyLock {
    Lease(KubeLock<Lease>),
    Configmap(KubeLock<ConfigMap>),
}

/// The object of either kind.
#[derive(Clone, Debug)]
pub enum AnyObject {
    Lease(Lease),
    Configmap(ConfigMap),
}

impl AnyLock {
    /// The lock `name` of `kind` in `namespace`. The one dispatch by lock kind.
    pub fn open(kind: Kind, client: Client, namespace: &str, name: &str) -> AnyLock {
        match kind {
            Kind::Lease => AnyLock::Lease(KubeLock::new(client, namespace, name)),
            Kind::Configmap => AnyLock::Configmap(KubeLock::new(client, namespace, name)),
        }
    }

    /// The locks `names` of `kind` (`--slots`).
    pub fn open_all(kind: Kind, client: Client, namespace: &str, names: &[String]) -> Vec<AnyLock> {
        names
            .iter()
            .map(|n| AnyLock::open(kind, client.clone(), namespace, n))
            .collect()
    }
}

fn widen_stream<K: Send + 'static>(
    s: BoxStream<'static, Result<Change<K>, LockError>>,
    f: fn(K) -> AnyObject,
) -> BoxStream<'static, Result<Change<AnyObject>, LockError>> {
    s.map(move |c| c.map(|c| c.map(f))).boxed()
}

impl Lock for AnyLock {
    type Object = AnyObject;

    fn describe(&self) -> String {
        match self {
            AnyLock::Lease(l) => l.describe(),
            AnyLock::Configmap(l) => l.describe(),
        }
    }

    fn resolution(&self) -> Duration {
        match self {
            AnyLock::Lease(l) => l.resolution(),
            AnyLock::Configmap(l) => l.resolution(),
        }
    }

    fn reference(&self, held: &Observed<AnyObject>) -> Option<ObjectReference> {
        Some(match &held.object {
            AnyObject::Lease(o) => o.reference(),
            AnyObject::Configmap(o) => o.reference(),
        })
    }

    async fn get(&self, timeout: Duration) -> Result<Option<Observed<AnyObject>>, LockError> {
        Ok(match self {
            AnyLock::Lease(l) => l.get(timeout).await?.map(|o| o.map(AnyObject::Lease)),
            AnyLock::Configmap(l) => l.get(timeout).await?.map(|o| o.map(AnyObject::Configmap)),
        })
    }

    async fn create_with(
        &self,
        record: &LeaderRecord,
        notes: &Notes,
        timeout: Duration,
    ) -> Result<Observed<AnyObject>, LockError> {
        Ok(match self {
            AnyLock::Lease(l) => l
                .create_with(record, notes, timeout)
                .await?
                .map(AnyObject::Lease),
            AnyLock::Configmap(l) => l
                .create_with(record, notes, timeout)
                .await?
                .map(AnyObject::Configmap),
        })
    }

    async fn replace(
        &self,
        prev: &Observed<AnyObject>,
        record: &LeaderRecord,
        notes: &Notes,
        timeout: Duration,
    ) -> Result<Observed<AnyObject>, LockError> {
        let rv = &prev.resource_version;
        Ok(match (self, &prev.object) {
            (AnyLock::Lease(l), AnyObject::Lease(o)) => l
                .write_over(o, rv, record, notes, timeout)
                .await?
                .map(AnyObject::Lease),
            (AnyLock::Configmap(l), AnyObject::Configmap(o)) => l
                .write_over(o, rv, record, notes, timeout)
                .await?
                .map(AnyObject::Configmap),
            // An object of the other kind was never read from this lock.
            _ => return Err(LockError::Conflict(self.describe())),
        })
    }

    async fn watch(
        &self,
        resource_version: &str,
        timeout: Duration,
    ) -> Result<BoxStream<'static, Result<Change<AnyObject>, LockError>>, LockError> {
        Ok(match self {
            AnyLock::Lease(l) => {
                widen_stream(l.watch(resource_version, timeout).await?, AnyObject::Lease)
            }
            AnyLock::Configmap(l) => widen_stream(
                l.watch(resource_version, timeout).await?,
                AnyObject::Configmap,
            ),
        })
    }
}
