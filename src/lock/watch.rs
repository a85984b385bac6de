//! One stream of observations of one lock object, shared by every waiting copy and by
//! `inspect --watch`. A watch is a hint, never the only source (docs/DESIGN.md §3):
//! - watch from the last resourceVersion seen; after a 410 Gone (the version was
//!   compacted) watch from now; a watch that breaks means read the object again, then
//!   watch from there; one that ends (the server's timeout) is opened again;
//! - when watching is forbidden (RBAC without `watch`), read every retry period instead;
//! - a transient error (5xx, 429, a refused connection) pauses a retry period before the
//!   next read, so nothing loops against the API server; so does a 401 or 403 once the
//!   server has answered this copy (it was allowed: a restarting API server refuses tokens
//!   and requests until its caches are filled; found on the real cluster), and a 401 to a
//!   watch then is not taken for a watch that RBAC forbids;
//! - when nothing was heard for a few retry periods, read the object plainly and open the
//!   watch anew: a half-open connection never says it died, and a live holder's renews
//!   reach a healthy watch every retry period.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{Change, Lock, LockError, Observed};

/// How many retry periods of silence before the object is read plainly and watched anew.
const SILENT_PERIODS: u32 = 3;

type Stream<O> = BoxStream<'static, Result<Change<O>, LockError>>;

/// A request in flight, kept in the state so that a `next` dropped meanwhile (the election
/// waits on every slot's `next` at once, and takes the first) does not cancel it: the next
/// call awaits the same request instead of sending it again (found by the simulation's
/// request count: with `--slots 3`, each observation re-sent the other slots' reads).
type InFlight<'a, T> = Pin<Box<dyn Future<Output = Result<T, LockError>> + 'a>>;

enum Source<'a, O> {
    /// Read the object at this moment.
    Read {
        at: Instant,
    },
    Reading {
        call: InFlight<'a, Option<Observed<O>>>,
        polling: bool,
    },
    /// Open a watch from the last version at this moment.
    Watch {
        at: Instant,
    },
    Opening(InFlight<'a, Stream<O>>),
    Watching(Stream<O>),
    /// Watching is forbidden: read at this moment, and every retry period after.
    Poll {
        at: Instant,
    },
}

/// Observations of one lock object: `next` returns it as it is now, or as it changes.
pub struct Follow<'a, L: Lock> {
    lock: &'a L,
    retry_period: Duration,
    call_timeout: Duration,
    source: Source<'a, L::Object>,
    watch_allowed: bool,
    resource_version: String,
    /// When the last observation (a read or an event) arrived.
    heard_at: Instant,
    /// The server has answered at least once: a refusal since is its trouble, not RBAC's.
    answered: bool,
    /// When the current watch was opened: one that ends at once is not retried at once.
    opened_at: Instant,
    /// Poll when watching is refused (a waiting copy), or give up (a leader, whose
    /// renews are the source anyway).
    poll_when_refused: bool,
}

/// Sleeps until `at`; not at all once it has come. tokio's timer rounds a deadline up to its
/// next millisecond tick, so a read due now would wait for that tick: the first read of every
/// run waited about 1 ms for it (measured on kube-emulator, with perf trace).
async fn until(at: Instant) {
    if at > Instant::now() {
        tokio::time::sleep_until(at).await;
    }
}

impl<'a, L: Lock> Follow<'a, L> {
    /// Starts with a read of the object.
    pub fn new(lock: &'a L, retry_period: Duration, call_timeout: Duration) -> Self {
        let now = Instant::now();
        Follow {
            lock,
            retry_period,
            call_timeout,
            source: Source::Read { at: now },
            watch_allowed: true,
            resource_version: String::new(),
            heard_at: now,
            answered: false,
            opened_at: now,
            poll_when_refused: true,
        }
    }

    /// Watches from an object already read (a leader's own lock): no read first.
    pub fn watching(
        lock: &'a L,
        from: &Observed<L::Object>,
        retry_period: Duration,
        call_timeout: Duration,
    ) -> Self {
        let mut f = Follow::new(lock, retry_period, call_timeout);
        f.poll_when_refused = false;
        f.answered = true;
        f.resource_version = from.resource_version.clone();
        f.source = Source::Watch { at: Instant::now() };
        f
    }

    /// The API server has answered this process before (an earlier round of `--rejoin`): a
    /// refusal now is a restarting server's, not RBAC's.
    pub fn answered_before(mut self, answered: bool) -> Self {
        self.answered |= answered;
        self
    }

    /// False once the API server refused a watch (RBAC without `watch`).
    pub fn watch_allowed(&self) -> bool {
        self.watch_allowed
    }

    /// Reads the object again before anything else (after a write met a conflict).
    pub fn read_again(&mut self) {
        self.source = Source::Read { at: Instant::now() };
    }

    fn jittered_retry(&self) -> Duration {
        self.retry_period
            .mul_f64(crate::settings::follower_jitter())
    }

    fn heard(&mut self, seen: &Option<Observed<L::Object>>) {
        self.heard_at = Instant::now();
        self.answered = true;
        // No object: the next watch starts from now (its first event is the object, if one
        // appears), not from the version of one since deleted, whose replayed history would
        // show stale states one by one (found by the simulation: a burst of writes meeting
        // 404 after a deletion, one per replayed event).
        self.resource_version = seen
            .as_ref()
            .map(|o| o.resource_version.clone())
            .unwrap_or_default();
    }

    /// The next observation: the object as it is, or None when it does not exist. Only a
    /// lock that cannot be used (refused, unreadable, a missing namespace) is an error;
    /// everything else is retried here. Cancel-safe: every await leaves the state whole.
    pub async fn next(&mut self) -> Result<Option<Observed<L::Object>>, LockError> {
        // Each step either returns, or has slept, waited on the server, or read before it
        // goes round again: nothing here loops without a pause.
        loop {
            let step = match &self.source {
                Source::Read { at } => {
                    let at = *at;
                    self.read(at, false).await
                }
                Source::Poll { at } => {
                    let at = *at;
                    self.read(at, true).await
                }
                Source::Reading { .. } => self.finish_read().await,
                Source::Watch { at } => {
                    let at = *at;
                    self.open_watch(at).await
                }
                Source::Opening(_) => self.finish_watch().await,
                Source::Watching(_) => self.listen().await,
            };
            if let Some(result) = step {
                return result;
            }
        }
    }

    /// A plain read at `at`; then a watch (or, when polling, the next read).
    async fn read(
        &mut self,
        at: Instant,
        polling: bool,
    ) -> Option<Result<Option<Observed<L::Object>>, LockError>> {
        until(at).await;
        let lock: &'a L = self.lock;
        self.source = Source::Reading {
            call: Box::pin(lock.get(self.call_timeout)),
            polling,
        };
        self.finish_read().await
    }

    /// Awaits the read in flight, then goes on as its answer says.
    async fn finish_read(&mut self) -> Option<Result<Option<Observed<L::Object>>, LockError>> {
        let (result, polling) = match &mut self.source {
            Source::Reading { call, polling } => (call.as_mut().await, *polling),
            _ => return None,
        };
        match result {
            Ok(seen) => {
                self.heard(&seen);
                self.source = if polling || !self.watch_allowed {
                    Source::Poll {
                        at: Instant::now() + self.jittered_retry(),
                    }
                } else {
                    Source::Watch { at: Instant::now() }
                };
                Some(Ok(seen))
            }
            Err(e) if e.is_transient() || (self.answered && e.is_refusal()) => {
                warn!(lock = %self.lock.describe(), error = %e, "cannot read the lock; retrying");
                let at = Instant::now() + self.jittered_retry();
                self.source = if polling {
                    Source::Poll { at }
                } else {
                    Source::Read { at }
                };
                None
            }
            Err(e) => {
                // Not to be sent again: the caller stops here, or reads anew.
                self.source = Source::Read { at: Instant::now() };
                Some(Err(e))
            }
        }
    }

    /// Opens a watch from the last version seen at `at`.
    async fn open_watch(
        &mut self,
        at: Instant,
    ) -> Option<Result<Option<Observed<L::Object>>, LockError>> {
        until(at).await;
        let lock: &'a L = self.lock;
        let (from, timeout) = (self.resource_version.clone(), self.call_timeout);
        self.source = Source::Opening(Box::pin(async move { lock.watch(&from, timeout).await }));
        self.finish_watch().await
    }

    /// Awaits the watch being opened; polls when watching is refused (or, for a leader's
    /// own lock, returns the refusal).
    async fn finish_watch(&mut self) -> Option<Result<Option<Observed<L::Object>>, LockError>> {
        let result = match &mut self.source {
            Source::Opening(call) => call.as_mut().await,
            _ => return None,
        };
        match result {
            Ok(stream) => {
                self.heard_at = Instant::now();
                self.opened_at = self.heard_at;
                self.source = Source::Watching(stream);
            }
            Err(e @ LockError::Refused { code: 401, .. }) if self.answered => {
                warn!(lock = %self.lock.describe(), error = %e, "cannot watch the lock; reading again after a retry period");
                self.source = Source::Read {
                    at: Instant::now() + self.jittered_retry(),
                };
            }
            Err(e @ LockError::Refused { .. }) if !self.poll_when_refused => {
                self.watch_allowed = false;
                self.source = Source::Poll {
                    at: Instant::now() + self.jittered_retry(),
                };
                return Some(Err(e));
            }
            Err(e @ LockError::Refused { .. }) => {
                info!(lock = %self.lock.describe(), error = %e, "watching is not allowed; polling every retry period instead");
                self.watch_allowed = false;
                self.source = Source::Poll {
                    at: Instant::now() + self.jittered_retry(),
                };
            }
            Err(e) => {
                debug!(lock = %self.lock.describe(), error = %e, "cannot watch; reading again after a retry period");
                self.source = Source::Read {
                    at: Instant::now() + self.jittered_retry(),
                };
            }
        }
        None
    }

    /// The next event of the open watch, or a plain read after too long a silence.
    async fn listen(&mut self) -> Option<Result<Option<Observed<L::Object>>, LockError>> {
        let Source::Watching(stream) = &mut self.source else {
            return None;
        };
        let silent_until = self.heard_at + self.retry_period * SILENT_PERIODS;
        // Biased, here and in the election: what is handled first when two things are
        // ready at once is fixed, so a simulated world replays exactly from its seed.
        let event = tokio::select! {
            biased;
            ev = stream.next() => ev,
            _ = tokio::time::sleep_until(silent_until) => {
                debug!(lock = %self.lock.describe(), "the watch has been silent for {SILENT_PERIODS} retry periods; reading plainly and watching anew");
                self.read_again();
                return None;
            }
        };
        // A watch that ends within a retry period of opening is not opened (or read)
        // again at once: a server that keeps refusing it is not hammered.
        let again_at = if self.opened_at.elapsed() < self.retry_period {
            Instant::now() + self.jittered_retry()
        } else {
            Instant::now()
        };
        match event {
            Some(Ok(Change::Changed(o))) => {
                let seen = Some(o);
                self.heard(&seen);
                Some(Ok(seen))
            }
            Some(Ok(Change::Deleted)) => {
                self.heard(&None);
                Some(Ok(None))
            }
            Some(Err(e @ LockError::Unreadable { .. })) => Some(Err(e)),
            // 410 Gone: the version was compacted (an object unchanged for a while carries
            // an old one). Watch from now: the first event is the object as it is, as good
            // as a read.
            Some(Ok(Change::Expired)) => {
                self.resource_version.clear();
                self.source = Source::Watch { at: again_at };
                None
            }
            // The server ended the watch (its timeout): watch on from the last version.
            None => {
                self.source = Source::Watch { at: again_at };
                None
            }
            Some(Err(e)) => {
                debug!(lock = %self.lock.describe(), error = %e, "the watch broke; reading again");
                self.source = Source::Read { at: again_at };
                None
            }
        }
    }
}
