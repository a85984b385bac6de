//! The lock: read the record with its resourceVersion, create it, update it
//! optimistically, watch it. One trait; the two objects that can carry a record
//! (`lease.rs`, `configmap.rs`) plug into one implementation over `kube::Api`, and
//! `open` is the one place that picks it by kind. `watch.rs` turns reads and watch
//! events into one stream of observations that waiting copies and `inspect --watch` share.

mod configmap;
mod lease;
pub mod watch;

use std::fmt::Debug;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use kube::api::{PostParams, WatchEvent, WatchParams};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::record::{LeaderRecord, RecordError};

/// The label on every lock object leaderrun creates, so that the locks it manages can be
/// listed with a selector. Other clients ignore it; an object made by someone else is never
/// relabelled.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "leaderrun");

/// The labels of a lock object leaderrun creates.
pub fn created_labels() -> std::collections::BTreeMap<String, String> {
    [(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string())].into()
}

/// Which object carries the record. (`--lock`'s values are cli.rs's business.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A coordination.k8s.io/v1 Lease.
    Lease,
    /// A v1 ConfigMap with the record in the control-plane.alpha.kubernetes.io/leader annotation.
    Configmap,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Lease => "lease",
            Kind::Configmap => "configmap",
        }
    }
}

/// Work to do with an opened lock, whatever its kind: `open` calls `with` with the
/// implementation for the kind asked for, so the caller is written once, generically.
#[allow(async_fn_in_trait)]
pub trait WithLock {
    type Output;
    async fn with<L: Lock>(self, lock: L) -> Self::Output;
}

/// Opens the lock `name` of `kind` in `namespace`, and runs `work` with it: `open_all` for
/// one name, so the dispatch by kind is written once.
pub async fn open<W: WithLock>(
    kind: Kind,
    client: Client,
    namespace: &str,
    name: &str,
    work: W,
) -> W::Output {
    struct One<W>(W);
    impl<W: WithLock> WithLocks for One<W> {
        type Output = W::Output;
        async fn with<L: Lock>(self, locks: Vec<L>) -> W::Output {
            let lock = locks
                .into_iter()
                .next()
                .expect("open_all opens one lock for each of the one name given");
            self.0.with(lock).await
        }
    }
    open_all(kind, client, namespace, &[name.to_string()], One(work)).await
}

/// Work to do with several locks of one kind (`--slots`).
#[allow(async_fn_in_trait)]
pub trait WithLocks {
    type Output;
    async fn with<L: Lock>(self, locks: Vec<L>) -> Self::Output;
}

/// Opens the locks `names` of `kind` in `namespace`, and runs `work` with them. The one
/// dispatch by lock kind.
pub async fn open_all<W: WithLocks>(
    kind: Kind,
    client: Client,
    namespace: &str,
    names: &[String],
    work: W,
) -> W::Output {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::ConfigMap;
    match kind {
        Kind::Lease => {
            let locks = names
                .iter()
                .map(|n| KubeLock::<Lease>::new(client.clone(), namespace, n))
                .collect();
            work.with(locks).await
        }
        Kind::Configmap => {
            let locks = names
                .iter()
                .map(|n| KubeLock::<ConfigMap>::new(client.clone(), namespace, n))
                .collect();
            work.with(locks).await
        }
    }
}

/// The object names of a lock with `slots` slots: NAME itself for one, NAME-0 to
/// NAME-(N-1) for more (each an ordinary lock record that client-go can read).
pub fn slot_names(name: &str, slots: u32) -> Vec<String> {
    if slots <= 1 {
        vec![name.to_string()]
    } else {
        (0..slots).map(|k| format!("{name}-{k}")).collect()
    }
}

/// What a read saw: the record, the version to write against, and the whole
/// object (so an update changes the record and nothing else).
#[derive(Debug, Clone)]
pub struct Observed<O> {
    pub record: LeaderRecord,
    pub resource_version: String,
    /// The object's uid: a different one means it was deleted and created again.
    pub uid: String,
    /// The holder a `step-down` asked to let go (the `STEP_DOWN` annotation), if any.
    pub step_down: Option<String>,
    /// The mark of the leaderrun process that wrote the record (the `WRITER` annotation).
    pub writer: Option<String>,
    /// What the last leadership did (the `lastrun::LAST_RUN` annotation, JSON), if recorded.
    pub last_run: Option<String>,
    pub object: O,
}

/// The annotation by which `leaderrun step-down` asks the named holder to stop its child
/// and release. Followers ignore it (it is not the record); a write that changes the holder
/// (a release, a takeover) removes it, so it cannot linger and hit the next leader.
pub const STEP_DOWN: &str = "leaderrun.io/step-down";

/// The annotation by which a leaderrun process marks each record it writes: its own random
/// nonce and the write's number (`NONCE.SEQ`). A process knows its writes by this mark and
/// the record it sent with it, never by the record alone: a twin (another process given the
/// same `--identity`) writing the same holder in the same second carries another nonce. Other
/// clients ignore it; one that keeps it while changing the record does not make the record
/// ours (the record must match too); one that drops it only makes the record not ours.
pub const WRITER: &str = "leaderrun.io/writer";

/// One change seen by a watch.
#[derive(Debug)]
pub enum Change<O> {
    Changed(Observed<O>),
    Deleted,
    /// The watch's start version is too old (410): read again, then watch.
    Expired,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("somebody else wrote the {0} first (409 Conflict)")]
    Conflict(String),
    #[error("the {0} was created by somebody else first (409 AlreadyExists)")]
    AlreadyExists(String),
    #[error("the {0} does not exist")]
    NotFound(String),
    #[error("namespace {0:?} does not exist. Check -n/--namespace (or the kubeconfig context's namespace)")]
    NamespaceNotFound(String),
    #[error("the {object} holds a leader record that cannot be read: {reason}. leaderrun will not overwrite it; fix or delete it (kubectl edit / delete), or use another --name")]
    Unreadable { object: String, reason: String },
    #[error("the API server did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the API server refused to {verb} the {object} ({code} {reason}): {message}. {hint}")]
    Refused {
        verb: &'static str,
        object: String,
        code: u16,
        reason: String,
        message: String,
        hint: String,
    },
    #[error("the API server answered {code} to {verb} of the {object}: {message}")]
    Api {
        verb: &'static str,
        object: String,
        code: u16,
        message: String,
    },
    #[error("cannot reach the API server to {verb} the {object}: {message}")]
    Transport {
        verb: &'static str,
        object: String,
        message: String,
    },
}

impl LockError {
    /// Worth trying again later: the server or the network may recover.
    pub fn is_transient(&self) -> bool {
        match self {
            LockError::Timeout(_) | LockError::Transport { .. } => true,
            LockError::Api { code, .. } => *code >= 500 || *code == 429,
            _ => false,
        }
    }
}

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
    fn reference(&self) -> k8s_openapi::api::core::v1::ObjectReference {
        let m = self.meta();
        k8s_openapi::api::core::v1::ObjectReference {
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

/// The lock operations the election needs.
#[allow(async_fn_in_trait)]
pub trait Lock {
    type Object: Clone + Debug;
    /// `lease default/nightly-report`.
    fn describe(&self) -> String;
    /// The finest step of time the record keeps.
    fn resolution(&self) -> Duration;
    /// A reference to the object, for Events about it (None where there is no object).
    fn reference(
        &self,
        _held: &Observed<Self::Object>,
    ) -> Option<k8s_openapi::api::core::v1::ObjectReference> {
        None
    }
    async fn get(&self, timeout: Duration) -> Result<Option<Observed<Self::Object>>, LockError>;
    /// Creates the object holding `record`, marked with `writer` (the `WRITER` annotation).
    async fn create(
        &self,
        record: &LeaderRecord,
        writer: Option<&str>,
        timeout: Duration,
    ) -> Result<Observed<Self::Object>, LockError>;
    /// Writes `record` over `prev`, marked with `writer` (None: unmarked), with `last_run`
    /// as the last run's note when given (else the note is left as it is), failing with
    /// `Conflict` if the object changed since.
    async fn update(
        &self,
        prev: &Observed<Self::Object>,
        record: &LeaderRecord,
        writer: Option<&str>,
        last_run: Option<&str>,
        timeout: Duration,
    ) -> Result<Observed<Self::Object>, LockError>;
    /// Asks `holder` to step down: the object written back with the `STEP_DOWN` annotation
    /// naming it, the record unchanged, failing with `Conflict` if it changed since `prev`.
    async fn request_step_down(
        &self,
        prev: &Observed<Self::Object>,
        holder: &str,
        timeout: Duration,
    ) -> Result<Observed<Self::Object>, LockError>;
    /// Watches the one object from `resource_version`.
    async fn watch(
        &self,
        resource_version: &str,
        timeout: Duration,
    ) -> Result<BoxStream<'static, Result<Change<Self::Object>, LockError>>, LockError>;
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

    fn observe(&self, object: K) -> Result<Observed<K>, LockError> {
        observe(object, &self.describe())
    }

    fn error(&self, verb: &'static str, e: kube::Error) -> LockError {
        let object = self.describe();
        match e {
            kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists" => {
                LockError::AlreadyExists(object)
            }
            kube::Error::Api(s) if s.code == 409 => LockError::Conflict(object),
            // A create into a namespace that does not exist: the details name the namespace.
            kube::Error::Api(s)
                if s.code == 404 && s.details.as_ref().is_some_and(|d| d.kind == "namespaces") =>
            {
                LockError::NamespaceNotFound(self.namespace.clone())
            }
            kube::Error::Api(s) if s.code == 404 && s.reason == "NotFound" => {
                LockError::NotFound(object)
            }
            kube::Error::Api(s) if s.code == 401 || s.code == 403 => {
                let hint = if s.code == 401 {
                    "Check the credentials in the kubeconfig or the service account token"
                        .to_string()
                } else {
                    format!(
                        "Grant the identity RBAC verb {verb:?} on resource {:?} in API group {:?} in namespace {:?} (see deploy/rbac.yaml)",
                        K::RESOURCE,
                        K::GROUP,
                        self.namespace
                    )
                };
                LockError::Refused {
                    verb,
                    object,
                    code: s.code,
                    reason: s.reason.clone(),
                    message: s.message.clone(),
                    hint,
                }
            }
            kube::Error::Api(s) => LockError::Api {
                verb,
                object,
                code: s.code,
                message: if s.message.is_empty() {
                    s.reason.clone()
                } else {
                    s.message.clone()
                },
            },
            kube::Error::SerdeError(e) => LockError::Unreadable {
                object,
                reason: format!("the API server's answer is not a valid {} ({e})", K::KIND),
            },
            other => LockError::Transport {
                verb,
                object,
                message: error_chain(&other),
            },
        }
    }
}

/// An object as observed: its record (or why it cannot be read), version and uid.
fn observe<K: LockObject>(object: K, describe: &str) -> Result<Observed<K>, LockError> {
    let record = object.read_record().map_err(|e| LockError::Unreadable {
        object: describe.to_string(),
        reason: e.to_string(),
    })?;
    let meta = object.meta();
    Ok(Observed {
        record,
        resource_version: meta.resource_version.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        step_down: meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(STEP_DOWN))
            .cloned(),
        writer: meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(WRITER))
            .cloned(),
        last_run: meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(crate::lastrun::LAST_RUN))
            .cloned(),
        object,
    })
}

/// The error and its causes: kube's own message ("client error (Connect)") hides
/// the reason an operator needs (a refused connection, an unknown certificate).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text
}

async fn within<T>(
    timeout: Duration,
    f: impl std::future::Future<Output = Result<T, LockError>>,
) -> Result<T, LockError> {
    tokio::time::timeout(timeout, f)
        .await
        .unwrap_or(Err(LockError::Timeout(timeout)))
}

impl<K: LockObject> KubeLock<K> {
    /// Writes `obj` over `prev`, with the version read: without it a ConfigMap PUT
    /// overwrites unconditionally, and two copies could both believe they lead.
    async fn replace(
        &self,
        prev: &Observed<K>,
        mut obj: K,
        verb: &'static str,
        timeout: Duration,
    ) -> Result<Observed<K>, LockError> {
        if prev.resource_version.is_empty() {
            return Err(LockError::Conflict(self.describe()));
        }
        obj.meta_mut().resource_version = Some(prev.resource_version.clone());
        within(timeout, async {
            let updated = self
                .api
                .replace(&self.name, &PostParams::default(), &obj)
                .await
                .map_err(|e| self.error(verb, e))?;
            self.observe(updated)
        })
        .await
    }
}

/// Sets (or with None removes) an annotation of `obj`.
fn set_annotation<K: LockObject>(obj: &mut K, key: &str, value: Option<&str>) {
    let annotations = &mut obj.meta_mut().annotations;
    match value {
        Some(v) => {
            annotations
                .get_or_insert_with(Default::default)
                .insert(key.to_string(), v.to_string());
        }
        None => {
            if let Some(a) = annotations.as_mut() {
                a.remove(key);
            }
        }
    }
}

impl<K: LockObject> Lock for KubeLock<K> {
    type Object = K;

    fn describe(&self) -> String {
        format!("{} {}/{}", K::KIND, self.namespace, self.name)
    }

    fn resolution(&self) -> Duration {
        K::TIME_RESOLUTION
    }

    fn reference(&self, held: &Observed<K>) -> Option<k8s_openapi::api::core::v1::ObjectReference> {
        Some(held.object.reference())
    }

    async fn get(&self, timeout: Duration) -> Result<Option<Observed<K>>, LockError> {
        within(timeout, async {
            match self.api.get(&self.name).await {
                Ok(o) => self.observe(o).map(Some),
                Err(kube::Error::Api(s)) if s.code == 404 && s.reason == "NotFound" => Ok(None),
                Err(e) => Err(self.error("get", e)),
            }
        })
        .await
    }

    async fn create(
        &self,
        record: &LeaderRecord,
        writer: Option<&str>,
        timeout: Duration,
    ) -> Result<Observed<K>, LockError> {
        within(timeout, async {
            let mut obj = K::new_with_record(&self.name, record);
            set_annotation(&mut obj, WRITER, writer);
            let created = self
                .api
                .create(&PostParams::default(), &obj)
                .await
                .map_err(|e| self.error("create", e))?;
            self.observe(created)
        })
        .await
    }

    async fn update(
        &self,
        prev: &Observed<K>,
        record: &LeaderRecord,
        writer: Option<&str>,
        last_run: Option<&str>,
        timeout: Duration,
    ) -> Result<Observed<K>, LockError> {
        let mut obj = prev.object.with_record(record);
        set_annotation(&mut obj, WRITER, writer);
        if last_run.is_some() {
            set_annotation(&mut obj, crate::lastrun::LAST_RUN, last_run);
        }
        // A step-down request is for the holder it names: a write that makes someone else
        // the holder (a release, a takeover) clears it.
        if prev.step_down.as_deref() != Some(record.holder_identity.as_str()) || !record.is_held() {
            set_annotation(&mut obj, STEP_DOWN, None);
        }
        self.replace(prev, obj, "update", timeout).await
    }

    async fn request_step_down(
        &self,
        prev: &Observed<K>,
        holder: &str,
        timeout: Duration,
    ) -> Result<Observed<K>, LockError> {
        let mut obj = prev.object.clone();
        set_annotation(&mut obj, STEP_DOWN, Some(holder));
        self.replace(prev, obj, "update", timeout).await
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
                .map_err(|e| self.error("watch", e))
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

/// One lock object found by `list_managed`: where it is, and what it holds.
pub struct Listed<K> {
    pub namespace: String,
    pub name: String,
    pub seen: Result<Observed<K>, LockError>,
}

/// The objects of kind `K` that leaderrun created (the `MANAGED_BY` label), in `namespace`,
/// or in every namespace when None.
pub async fn list_managed<K: LockObject>(
    client: Client,
    namespace: Option<&str>,
) -> Result<Vec<Listed<K>>, LockError> {
    use kube::api::ListParams;
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let params = ListParams::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
    let where_ = namespace.map_or("all namespaces".to_string(), |n| format!("namespace {n:?}"));
    let list = within(crate::client::CALL_TIMEOUT, async {
        api.list(&params).await.map_err(|e| match e {
            kube::Error::Api(s) if s.code == 401 || s.code == 403 => LockError::Refused {
                verb: "list",
                object: format!("{}s in {where_}", K::KIND),
                code: s.code,
                reason: s.reason.clone(),
                message: s.message.clone(),
                hint: format!(
                    "Grant the identity RBAC verb \"list\" on resource {:?} in API group {:?} ({}), or name one lock with --name",
                    K::RESOURCE,
                    K::GROUP,
                    if namespace.is_some() { "in that namespace" } else { "cluster-wide, for -A" }
                ),
            },
            kube::Error::Api(s) => LockError::Api {
                verb: "list",
                object: format!("{}s in {where_}", K::KIND),
                code: s.code,
                message: s.message.clone(),
            },
            other => LockError::Transport {
                verb: "list",
                object: format!("{}s in {where_}", K::KIND),
                message: error_chain(&other),
            },
        })
    })
    .await?;
    Ok(list
        .items
        .into_iter()
        .map(|o| {
            let namespace = o.meta().namespace.clone().unwrap_or_default();
            let name = o.meta().name.clone().unwrap_or_default();
            let describe = format!("{} {namespace}/{name}", K::KIND);
            Listed {
                seen: observe(o, &describe),
                namespace,
                name,
            }
        })
        .collect())
}
