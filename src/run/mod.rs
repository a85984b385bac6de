//! `leaderrun run`: the election and the supervisor, joined. Written as tini writes its
//! `main`, as a short list of named steps over one state, the `Phase` of a leadership:
//! waiting for the lock, leading (the child runs), stopping it after a loss, releasing
//! the lock, done. The child's supervision while leading is supervise.rs; what a run leaves
//! in the lock's last-run note (and `--once-per`'s check of it) is last_run.rs.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::cli::RunArgs;
use crate::client::{connect_to_lock, Target};
use crate::election::sleep_until_some;
use crate::election::{AcquireError, AfterExit, Election, Leadership, Lost, Observer, WaitOptions};
use crate::events::Recorder;
use crate::exit;
use crate::lastrun::{LastRun, Outcome};
use crate::lock::{self, AnyLock, Kind, Lock, LockError};
use crate::metrics::Metrics;
use crate::reaper::Strays;
use crate::record;
use crate::report::Reporter;
use crate::settings::{self, Timing};
use crate::signals::is_terminal_stop;
use crate::supervisor::{self, ChildExit, JobEvent, Signals, SpawnError};

mod announce;
mod error;
mod host;
mod last_run;
mod start;
mod supervise;

pub use host::{DeadlineLine, Host, JobControl, Process, Stage};

use announce::{announce, open_service, withdrawal, Announcing};
pub use error::RunError;

use last_run::outcome_of;
use supervise::{keep_lock, supervise};

/// Everything that can be checked without the API is checked first; then connect and run.
pub async fn run(args: RunArgs) -> Result<u8, RunError> {
    let timing = Timing::from(&args.timing);
    timing.validate()?;
    if let Some(id) = &args.identity {
        settings::validate_identity(id)?;
    }
    let names = lock::slot_names(args.lock.name(), args.slots);
    let longest = names.last().cloned().unwrap_or_default();
    let (client, namespace) = connect_to_lock(&Target::from(&args.lock), &longest).await?;
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(settings::default_identity);
    if args.lock.lock == Kind::Configmap && timing.retry_period < Duration::from_secs(1) {
        // Safe (a renew within the same second writes nothing) but wasteful.
        warn!(retry_period = ?timing.retry_period, "a ConfigMap record carries whole seconds: renews within one second change nothing and are skipped; use --retry-period 1s or more");
    }
    let service = open_service(&args, client.clone(), &namespace).await?;
    let recorder = args
        .events
        .then(|| Recorder::new(client.clone(), &namespace, &identity));
    let mut run = Run::new(&args, timing, identity, namespace.clone());
    run.service = service;
    let work = Opened { run, recorder };
    work.with(AnyLock::open_all(
        args.lock.lock,
        client,
        &namespace,
        &names,
    ))
    .await
}

/// What `run` was asked to do, settled before the lock is opened.
pub struct Run<'a> {
    args: &'a RunArgs,
    timing: Timing,
    identity: String,
    namespace: String,
    /// `--service`: the Service whose Endpoints point here while leading.
    service: Option<Arc<crate::service::LeaderService>>,
}

impl<'a> Run<'a> {
    /// `args` with their timing validated; `namespace` the lock's.
    pub fn new(args: &'a RunArgs, timing: Timing, identity: String, namespace: String) -> Self {
        Run {
            args,
            timing,
            identity,
            namespace,
            service: None,
        }
    }
}

/// The run with its locks opened: the run, and where its Events go.
struct Opened<'a> {
    run: Run<'a>,
    recorder: Option<Recorder>,
}

/// The state of `run`: where one leadership stands.
enum Phase<O, J> {
    /// Waiting for the lock.
    Waiting,
    /// The lock is held: start the child and supervise it.
    Leading(Leadership<O>),
    /// Leadership was lost (or given up on request) and the stop went to the guard: wait
    /// until nothing is left. After a step-down, the lock is still ours: release it then.
    Stopping(Box<J>, Lost, Option<Leadership<O>>),
    /// The child is done: release (or leave) the lock, then exit with `code`.
    Releasing(Leadership<O>, AfterExit, u8, Option<Outcome>),
    Done(u8),
}

/// What `run` needs in every phase.
struct Context<'a, H> {
    run: Run<'a>,
    host: H,
    reporter: Reporter,
    /// `--service` while leading: the Endpoints pointed here.
    announcing: Option<Announcing>,
}

impl Opened<'_> {
    async fn with<L: Lock>(self, locks: Vec<L>) -> Result<u8, RunError> {
        // Set up: subreaper and stray reaping, signals, metrics and health, the reporter.
        crate::reaper::become_subreaper();
        let guard = Arc::new(AtomicI32::new(0));
        let mut strays = Strays::new().map_err(RunError::Signals)?;
        let watched = guard.clone();
        tokio::spawn(async move {
            strays
                .reap(move |pid| pid == watched.load(Ordering::Relaxed))
                .await
        });
        let signals = Signals::new().map_err(RunError::Signals)?;
        let metrics = Arc::new(Metrics::default());
        if let Some(addr) = self.run.args.health_addr {
            let stale_after = self.run.timing.standby_stale_after();
            let bound = crate::health::serve(addr, metrics.clone(), stale_after)
                .await
                .map_err(|e| RunError::Health(addr, e))?;
            info!(addr = %bound, "serving /healthz, /readyz, /leaderz and /metrics");
        }
        let election = Election::with_slots(locks, self.run.identity.clone(), self.run.timing);
        let reporter = Reporter::new(
            metrics,
            self.recorder,
            election.describe(),
            self.run.identity.clone(),
        );
        let process = Process {
            signals,
            guard,
            standby: None,
        };
        drive(self.run, &election, process, reporter).await
    }
}

/// The phases of `run`, in order, over `election`, in `host`: each step returns the next. The
/// simulation (tests/sim) drives this same loop with a simulated host.
pub async fn drive<L: Lock, H: Host>(
    run: Run<'_>,
    election: &Election<L>,
    host: H,
    reporter: Reporter,
) -> Result<u8, RunError> {
    let mut cx = Context {
        run,
        host,
        reporter,
        announcing: None,
    };
    let mut phase = Phase::Waiting;
    let code = loop {
        phase = match phase {
            Phase::Waiting => cx.wait_for_lock(election).await?,
            Phase::Leading(l) => cx.lead(election, l).await,
            Phase::Stopping(job, lost, held) => cx.stop(election, *job, lost, held).await,
            Phase::Releasing(l, after, code, outcome) => {
                cx.release(election, l, after, code, outcome).await
            }
            Phase::Done(code) => break code,
        };
    };
    cx.reporter.flush().await;
    Ok(code)
}

/// Renew outcomes while the child runs: the guard's deadline first, then the reporter.
struct LeaderObserver<'a, D> {
    reporter: &'a Reporter,
    line: D,
    anchor: watch::Sender<Instant>,
}

impl<D: DeadlineLine> Observer for LeaderObserver<'_, D> {
    fn renewed(&self, anchor: Instant, latency: Duration, deadline: Instant) {
        self.line.extend(deadline);
        self.reporter.renewed(anchor, latency, deadline);
        self.anchor.send_replace(anchor);
    }

    fn renew_failed(&self, latency: Duration, error: &LockError) {
        self.reporter.renew_failed(latency, error);
    }

    fn waiting(&self, holder: &str, impostor: bool) {
        self.reporter.waiting(holder, impostor);
    }
}

/// How supervising the child ended.
enum End {
    /// The child exited on its own and nothing of its tree is left.
    Exited(Option<ChildExit>),
    Lost(Lost),
}

/// The phase after this one: the lock's object type, and the host's job.
type Next<L, H> = Phase<<L as Lock>::Object, <H as Host>::Job>;

impl<H: Host> Context<'_, H> {
    /// Waits for the lock; only TERM, INT, HUP and QUIT end the wait, and never halfway
    /// through a write (a write that landed is released first).
    async fn wait_for_lock<L: Lock>(
        &mut self,
        election: &Election<L>,
    ) -> Result<Next<L, H>, RunError> {
        self.host.stage(Stage::Waiting);
        self.prepare_guard();
        let opts = WaitOptions {
            no_wait: self.run.args.no_wait,
            wait_timeout: self.run.args.wait_timeout,
        };
        let (stop_tx, mut stop_rx) = watch::channel(None);
        let acquire = election.acquire(opts, &mut stop_rx, &self.reporter);
        tokio::pin!(acquire);
        let result = loop {
            tokio::select! {
                // In order: a simulation replays a seed only if every choice is the same.
                biased;
                r = &mut acquire => break r,
                sig = self.host.ending_signal() => {
                    stop_tx.send_replace(Some(sig as i32));
                }
            }
        };
        let lock = election.describe();
        Ok(match result {
            Ok(l) => Phase::Leading(l),
            Err(AcquireError::Held { holder }) => {
                info!(lock = %lock, holder = %holder, "the lock is held by another and --no-wait was given");
                Phase::Done(self.run.args.conflict_exit_code)
            }
            Err(AcquireError::WaitTimeout) => {
                warn!(lock = %lock, "--wait-timeout passed before the lock was acquired");
                Phase::Done(exit::WAIT_TIMEOUT)
            }
            Err(AcquireError::Stopped(sig)) => {
                info!(lock = %lock, signal = sig, "signal while waiting for the lock; exiting");
                Phase::Done(exit::for_signal(sig))
            }
            Err(AcquireError::Lock(e)) => return Err(e.into()),
        })
    }

    /// Leads: starts the child behind its guard, then supervises it in one `select!` while
    /// renewing, until it ends (and the lock was kept as long as asked) or leadership is lost.
    async fn lead<L: Lock>(
        &mut self,
        election: &Election<L>,
        mut l: Leadership<L::Object>,
    ) -> Next<L, H> {
        self.host.stage(Stage::Won {
            slot: l.slot,
            token: l.fencing_token,
            sent: l.last_renew_sent,
        });
        self.reporter.became_leader(
            election.lock(l.slot).describe(),
            l.fencing_token,
            l.last_renew_sent,
            election.deadline(&l),
            election.lock(l.slot).reference(&l.held),
        );
        let slot = (election.locks.len() > 1).then_some(l.slot);
        if let Some(skip) = self.ran_recently(election, &l) {
            return Phase::Releasing(l, AfterExit::Release, 0, Some(skip));
        }
        let mut job = match self
            .start_child(election.deadline(&l), l.fencing_token, slot)
            .await
        {
            Ok(job) => job,
            Err(SpawnError::DeadlinePassed) => return self.too_late_to_start(),
            Err(e) => {
                let code = e.exit_code();
                let outcome = Outcome::Exited {
                    exit_code: i32::from(code),
                };
                return Phase::Releasing(l, AfterExit::Release, code, Some(outcome));
            }
        };
        if let Some(service) = &self.run.service {
            self.announcing = Some(announce(service.clone(), self.run.timing));
        }
        let (anchor_tx, mut anchor_rx) = watch::channel(l.last_renew_sent);
        let observer = LeaderObserver {
            reporter: &self.reporter,
            line: job.line(),
            anchor: anchor_tx,
        };
        let nudge = Notify::new();
        let end = {
            let hold = election.hold(&mut l, &observer, &nudge);
            tokio::pin!(hold);
            let supervised = supervise(
                &mut job,
                &mut hold,
                &mut self.host,
                &mut anchor_rx,
                &nudge,
                &self.reporter,
            )
            .await;
            match (supervised, self.run.args.keep_after_exit) {
                (End::Exited(status), Some(keep)) => {
                    // Nothing answers here any more: out of the Service now, while renewing.
                    tokio::spawn(withdrawal(self.announcing.take()));
                    keep_lock(&self.reporter, &mut self.host, keep, &mut hold).await;
                    End::Exited(status)
                }
                (end, _) => end,
            }
        };
        self.after_supervision(l, job, end)
    }

    /// Where a leadership goes once supervision ended: releasing after the child's exit, or
    /// stopping what is left of it after a loss (after a step-down, with the lock still ours).
    fn after_supervision<O>(&self, l: Leadership<O>, job: H::Job, end: End) -> Phase<O, H::Job> {
        match end {
            End::Exited(status) => {
                let code = status.map_or(
                    exit::for_signal(Signal::SIGKILL as i32),
                    ChildExit::exit_code,
                );
                let after = if self.run.args.no_release {
                    AfterExit::Leave
                } else {
                    AfterExit::Release
                };
                Phase::Releasing(l, after, code, Some(outcome_of(status)))
            }
            End::Lost(lost @ Lost::SteppedDown) => Phase::Stopping(Box::new(job), lost, Some(l)),
            End::Lost(lost) => Phase::Stopping(Box::new(job), lost, None),
        }
    }

    /// The guard would not start the child: the leadership's deadline had passed (leaderrun
    /// was stopped after winning the lock), so the lock may be another's by now. Nothing ran.
    fn too_late_to_start<O>(&mut self) -> Phase<O, H::Job> {
        self.host.stage(Stage::Ended);
        self.reporter.lost(&Lost::Deadline {
            deadline: self.run.timing.renew_deadline,
            last_error: "the deadline passed before the child could start".into(),
        });
        self.reporter.ended();
        if self.run.args.rejoin {
            Phase::Waiting
        } else {
            Phase::Done(exit::LEADERSHIP_LOST)
        }
    }

    /// After a loss (the stop already went to the guard): wait until nothing of the tree
    /// is left, then exit with the "leadership lost" code, or with `--rejoin` wait for the
    /// lock again.
    async fn stop<L: Lock>(
        &mut self,
        election: &Election<L>,
        mut job: H::Job,
        lost: Lost,
        held: Option<Leadership<L::Object>>,
    ) -> Next<L, H> {
        self.host.stage(Stage::Ended);
        self.reporter.lost(&lost);
        // The guard KILLs after the grace; if it has not said the tree is gone well after
        // that, it is stuck itself: kill everything from here.
        let bound = self.run.timing.kill_grace + Duration::from_secs(10);
        let withdrawal = withdrawal(self.announcing.take());
        let stopped = async {
            match tokio::time::timeout(bound, job.wait_gone()).await {
                Ok(status) => status,
                Err(_) => {
                    self.reporter.guard_lost();
                    job.kill_all();
                    job.exit()
                }
            }
        };
        // The Service stops routing here while the tree stops.
        let (status, ()) = tokio::join!(stopped, withdrawal);
        self.reporter.child_stopped(status);
        if let Some(l) = held {
            // A step-down: nothing of the job runs any more; let the lock go now.
            self.reporter.stopped_leading(true);
            let run = self.last_run(election, &l, Outcome::SteppedDown);
            if let Err(e) = election.finish(l, AfterExit::Release, Some(&run)).await {
                self.reporter.release_failed(&e);
            }
        }
        self.reporter.ended();
        if self.run.args.rejoin {
            self.reporter.rejoining();
            Phase::Waiting
        } else {
            Phase::Done(exit::LEADERSHIP_LOST)
        }
    }

    /// The child is done: release the lock (or leave it to expire), then exit with `code`.
    async fn release<L: Lock>(
        &mut self,
        election: &Election<L>,
        l: Leadership<L::Object>,
        after: AfterExit,
        code: u8,
        outcome: Option<Outcome>,
    ) -> Next<L, H> {
        self.host.stage(Stage::Ended);
        // Out of the Service while the lock is still ours: no next leader has written yet.
        withdrawal(self.announcing.take()).await;
        self.reporter.stopped_leading(after == AfterExit::Release);
        let run = outcome.map(|o| self.last_run(election, &l, o));
        if let Err(e) = election.finish(l, after, run.as_ref()).await {
            self.reporter.release_failed(&e);
        }
        self.reporter.ended();
        Phase::Done(code)
    }
}
