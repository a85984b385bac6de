//! The lock: read the record with its resourceVersion, create it, update it optimistically,
//! watch it. The `Lock` trait is what differs between stores (the Kubernetes lock in kube.rs,
//! the paused tests' lock, the simulation's); what each write does to leaderrun's annotations
//! is stated once, in notes.rs, and the trait's provided methods apply it. `AnyLock::open` is
//! the one dispatch by kind; `watch.rs` turns reads and watch events into one stream of
//! observations that waiting copies and `inspect --watch` share.

mod configmap;
mod error;
mod kube;
mod lease;
mod list;
pub mod notes;
pub mod watch;

use std::fmt::Debug;
use std::time::Duration;

use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::ObjectReference;

use crate::record::LeaderRecord;

pub use self::kube::{AnyLock, AnyObject, KubeLock, LockObject};
pub use error::{error_chain, Call, LockError};
pub use list::{list_managed, Listed};
pub use notes::{created_labels, Notes, LAST_RUN, MANAGED_BY, STEP_DOWN, WRITER};

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

/// The object names of a lock with `slots` slots: NAME itself for one, NAME-0 to
/// NAME-(N-1) for more (each an ordinary lock record that client-go can read).
pub fn slot_names(name: &str, slots: u32) -> Vec<String> {
    if slots <= 1 {
        vec![name.to_string()]
    } else {
        (0..slots).map(|k| format!("{name}-{k}")).collect()
    }
}

/// What a read saw: the record, the version to write against, leaderrun's notes, and the
/// whole object (so an update changes the record and the notes and nothing else).
#[derive(Debug, Clone)]
pub struct Observed<O> {
    pub record: LeaderRecord,
    pub resource_version: String,
    /// The object's uid: a different one means it was deleted and created again.
    pub uid: String,
    /// leaderrun's annotations on the object (the writer's mark, a step-down request, the
    /// last run's note).
    pub notes: Notes,
    pub object: O,
}

impl<O> Observed<O> {
    /// The same observation, its object passed through `f`.
    pub fn map<P>(self, f: impl FnOnce(O) -> P) -> Observed<P> {
        Observed {
            record: self.record,
            resource_version: self.resource_version,
            uid: self.uid,
            notes: self.notes,
            object: f(self.object),
        }
    }
}

/// One change seen by a watch.
#[derive(Debug)]
pub enum Change<O> {
    Changed(Observed<O>),
    Deleted,
    /// The watch's start version is too old (410): read again, then watch.
    Expired,
}

impl<O> Change<O> {
    /// The same change, its object passed through `f`.
    pub fn map<P>(self, f: impl FnOnce(O) -> P) -> Change<P> {
        match self {
            Change::Changed(o) => Change::Changed(o.map(f)),
            Change::Deleted => Change::Deleted,
            Change::Expired => Change::Expired,
        }
    }
}

/// The lock operations the election needs. A store implements reading, creating, replacing
/// and watching; the writes the election makes (`create`, `update`, `request_step_down`) are
/// provided, so their effect on the notes is the same for every store.
#[allow(async_fn_in_trait)]
pub trait Lock {
    type Object: Clone + Debug;
    /// `lease default/nightly-report`.
    fn describe(&self) -> String;
    /// The finest step of time the record keeps.
    fn resolution(&self) -> Duration;
    /// A reference to the object, for Events about it (None where there is no object).
    fn reference(&self, _held: &Observed<Self::Object>) -> Option<ObjectReference> {
        None
    }
    async fn get(&self, timeout: Duration) -> Result<Option<Observed<Self::Object>>, LockError>;
    /// Creates the object holding `record` and `notes`, failing with `AlreadyExists` if there
    /// is one.
    async fn create_with(
        &self,
        record: &LeaderRecord,
        notes: &Notes,
        timeout: Duration,
    ) -> Result<Observed<Self::Object>, LockError>;
    /// Writes `record` and `notes` over `prev`, everything else of the object unchanged,
    /// failing with `Conflict` if the object changed since.
    async fn replace(
        &self,
        prev: &Observed<Self::Object>,
        record: &LeaderRecord,
        notes: &Notes,
        timeout: Duration,
    ) -> Result<Observed<Self::Object>, LockError>;
    /// Watches the one object from `resource_version`.
    async fn watch(
        &self,
        resource_version: &str,
        timeout: Duration,
    ) -> Result<BoxStream<'static, Result<Change<Self::Object>, LockError>>, LockError>;

    /// Creates the object holding `record`, marked with `writer`.
    async fn create(
        &self,
        record: &LeaderRecord,
        writer: Option<&str>,
        timeout: Duration,
    ) -> Result<Observed<Self::Object>, LockError> {
        self.create_with(record, &Notes::created(writer), timeout)
            .await
    }

    /// Writes `record` over `prev`, marked with `writer` (None: unmarked), with `last_run` as
    /// the last run's note when given (`Notes::updated` says what else changes), failing
    /// with `Conflict` if the object changed since.
    async fn update(
        &self,
        prev: &Observed<Self::Object>,
        record: &LeaderRecord,
        writer: Option<&str>,
        last_run: Option<&str>,
        timeout: Duration,
    ) -> Result<Observed<Self::Object>, LockError> {
        let notes = Notes::updated(&prev.notes, record, writer, last_run);
        self.replace(prev, record, &notes, timeout).await
    }

    /// Asks `holder` to step down: the `STEP_DOWN` annotation naming it, the record
    /// unchanged, failing with `Conflict` if the object changed since `prev`.
    async fn request_step_down(
        &self,
        prev: &Observed<Self::Object>,
        holder: &str,
        timeout: Duration,
    ) -> Result<Observed<Self::Object>, LockError> {
        let notes = Notes::asking_step_down(&prev.notes, holder);
        self.replace(prev, &prev.record, &notes, timeout).await
    }
}
