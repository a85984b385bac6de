//! `leaderrun run`: the election and the supervisor, joined. Written as tini writes its
//! `main`, as a short list of named steps over one state, the `Phase` of a leadership:
//! waiting for the lock, leading (the child runs), stopping it after a loss, releasing
//! the lock, done.

use std::ffi::OsString;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::cli::RunArgs;
use crate::client::{connect_to_lock, SetupError, Target};
use crate::election::{AcquireError, AfterExit, Election, Leadership, Lost, Observer, WaitOptions};
use crate::events::Recorder;
use crate::exit;
use crate::lastrun::{LastRun, Outcome};
use crate::lock::{self, Kind, Lock, LockError, WithLocks};
use crate::metrics::Metrics;
use crate::reaper::Strays;
use crate::record;
use crate::report::Reporter;
use crate::settings::{self, Timing};
use crate::signals::is_terminal_stop;
use crate::supervisor::{self, ChildExit, GuardLine, Job, JobEvent, JobSpec, Signals, SpawnError};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("cannot listen for signals: {0}")]
    Signals(std::io::Error),
    #[error("cannot serve health on {0}: {1}. Choose another --health-addr")]
    Health(std::net::SocketAddr, std::io::Error),
}

impl RunError {
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Setup(e) => e.exit_code(),
            RunError::Health(..) => exit::CONFIG,
            RunError::Lock(_) | RunError::Signals(_) => exit::API,
        }
    }
}

impl crate::exit::Failure for RunError {
    fn exit_code(&self) -> u8 {
        RunError::exit_code(self)
    }
}

impl From<settings::SettingsError> for RunError {
    fn from(e: settings::SettingsError) -> Self {
        RunError::Setup(e.into())
    }
}

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
    let recorder = args
        .events
        .then(|| Recorder::new(client.clone(), &namespace, &identity));
    let run = Run {
        args: &args,
        timing,
        identity,
        namespace: namespace.clone(),
    };
    let work = Opened { run, recorder };
    lock::open_all(args.lock.lock, client, &namespace, &names, work).await
}

/// What `run` was asked to do, settled before the lock is opened.
struct Run<'a> {
    args: &'a RunArgs,
    timing: Timing,
    identity: String,
    namespace: String,
}

/// The work `open_all` runs with the locks: the run, and where its Events go.
struct Opened<'a> {
    run: Run<'a>,
    recorder: Option<Recorder>,
}

/// The state of `run`: where one leadership stands.
enum Phase<O> {
    /// Waiting for the lock.
    Waiting,
    /// The lock is held: start the child and supervise it.
    Leading(Leadership<O>),
    /// Leadership was lost (or given up on request) and the stop went to the guard: wait
    /// until nothing is left. After a step-down, the lock is still ours: release it then.
    Stopping(Box<Job>, Lost, Option<Leadership<O>>),
    /// The child is done: release (or leave) the lock, then exit with `code`.
    Releasing(Leadership<O>, AfterExit, u8, Option<Outcome>),
    Done(u8),
}

/// What `run` needs in every phase.
struct Context<'a> {
    run: Run<'a>,
    signals: Signals,
    reporter: Reporter,
    /// The current guard's pid, which the stray reaper leaves to its owner.
    guard: Arc<AtomicI32>,
}

impl WithLocks for Opened<'_> {
    type Output = Result<u8, RunError>;

    async fn with<L: Lock>(self, locks: Vec<L>) -> Self::Output {
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
            let bound = crate::health::serve(addr, metrics.clone())
                .await
                .map_err(|e| RunError::Health(addr, e))?;
            info!(addr = %bound, "serving /healthz, /readyz and /metrics");
        }
        let election = Election::with_slots(locks, self.run.identity.clone(), self.run.timing);
        let reporter = Reporter::new(
            metrics,
            self.recorder,
            election.describe(),
            self.run.identity.clone(),
        );
        let mut cx = Context {
            run: self.run,
            signals,
            reporter,
            guard,
        };
        // The phases, in order; each step returns the next.
        let mut phase = Phase::Waiting;
        let code = loop {
            phase = match phase {
                Phase::Waiting => cx.wait_for_lock(&election).await?,
                Phase::Leading(l) => cx.lead(&election, l).await,
                Phase::Stopping(job, lost, held) => cx.stop(&election, *job, lost, held).await,
                Phase::Releasing(l, after, code, outcome) => {
                    cx.release(&election, l, after, code, outcome).await
                }
                Phase::Done(code) => break code,
            };
        };
        cx.reporter.flush().await;
        Ok(code)
    }
}

/// Renew outcomes while the child runs: the guard's deadline first, then the reporter.
struct LeaderObserver<'a> {
    reporter: &'a Reporter,
    line: GuardLine,
    anchor: watch::Sender<Instant>,
}

impl Observer for LeaderObserver<'_> {
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

impl Context<'_> {
    /// Waits for the lock; only TERM, INT, HUP and QUIT end the wait, and never halfway
    /// through a write (a write that landed is released first).
    async fn wait_for_lock<L: Lock>(
        &mut self,
        election: &Election<L>,
    ) -> Result<Phase<L::Object>, RunError> {
        let opts = WaitOptions {
            no_wait: self.run.args.no_wait,
            wait_timeout: self.run.args.wait_timeout,
        };
        let (stop_tx, mut stop_rx) = watch::channel(None);
        let acquire = election.acquire(opts, &mut stop_rx, &self.reporter);
        tokio::pin!(acquire);
        let result = loop {
            tokio::select! {
                r = &mut acquire => break r,
                sig = self.signals.next_ending_wait() => {
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

    fn child_env(&self, fencing_token: i32) -> Vec<(String, String)> {
        vec![
            ("LEADERRUN_IDENTITY".into(), self.run.identity.clone()),
            (
                "LEADERRUN_LOCK".into(),
                self.run.args.lock.lock.as_str().to_string(),
            ),
            ("LEADERRUN_NAMESPACE".into(), self.run.namespace.clone()),
            (
                "LEADERRUN_NAME".into(),
                self.run.args.lock.name().to_string(),
            ),
            ("LEADERRUN_FENCING_TOKEN".into(), fencing_token.to_string()),
        ]
    }

    /// Leads: starts the child behind its guard, then supervises it in one `select!` while
    /// renewing, until it ends (and the lock was kept as long as asked) or leadership is lost.
    async fn lead<L: Lock>(
        &mut self,
        election: &Election<L>,
        mut l: Leadership<L::Object>,
    ) -> Phase<L::Object> {
        self.reporter.became_leader(
            election.lock(l.slot).describe(),
            l.fencing_token,
            l.last_renew_sent,
            election.deadline(&l),
            election.lock(l.slot).reference(&l.held),
        );
        let slot = (election.locks.len() > 1).then_some(l.slot);
        if let Some(skip) = self.ran_recently(&l) {
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
                &mut self.signals,
                &mut anchor_rx,
                &nudge,
                &self.reporter,
            )
            .await;
            match (supervised, self.run.args.keep_after_exit) {
                (End::Exited(status), Some(keep)) => {
                    keep_lock(&self.reporter, &mut self.signals, keep, &mut hold).await;
                    End::Exited(status)
                }
                (end, _) => end,
            }
        };
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
    fn too_late_to_start<O>(&mut self) -> Phase<O> {
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

    /// Starts the child behind its guard, with the guard's first deadline.
    async fn start_child(
        &mut self,
        deadline: Instant,
        fencing_token: i32,
        slot: Option<usize>,
    ) -> Result<Job, SpawnError> {
        let mut env = self.child_env(fencing_token);
        if let Some(k) = slot {
            env.push(("LEADERRUN_SLOT".into(), k.to_string()));
        }
        let command: &[OsString] = &self.run.args.command;
        let spec = JobSpec {
            command,
            env: &env,
            grace: self.run.timing.kill_grace,
            stop_signal: self.run.args.stop_signal,
            deadline,
        };
        match Job::start(spec).await {
            Ok(job) => {
                self.guard
                    .store(job.guard_pid().as_raw(), Ordering::Relaxed);
                self.reporter.child_started(job.pid().as_raw());
                Ok(job)
            }
            Err(e) => {
                self.reporter.spawn_failed(&e);
                Err(e)
            }
        }
    }

    /// After a loss (the stop already went to the guard): wait until nothing of the tree
    /// is left, then exit with the "leadership lost" code, or with `--rejoin` wait for the
    /// lock again.
    async fn stop<L: Lock>(
        &mut self,
        election: &Election<L>,
        mut job: Job,
        lost: Lost,
        held: Option<Leadership<L::Object>>,
    ) -> Phase<L::Object> {
        self.reporter.lost(&lost);
        // The guard KILLs after the grace; if it has not said the tree is gone well after
        // that, it is stuck itself: kill everything from here.
        let bound = self.run.timing.kill_grace + Duration::from_secs(10);
        let status = match tokio::time::timeout(bound, job.wait_gone()).await {
            Ok(status) => status,
            Err(_) => {
                self.reporter.guard_lost();
                job.kill_all();
                job.exit()
            }
        };
        self.reporter.child_stopped(status);
        if let Some(l) = held {
            // A step-down: nothing of the job runs any more; let the lock go now.
            self.reporter.stopped_leading(true);
            let run = self.last_run(&l, Outcome::SteppedDown);
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
    ) -> Phase<L::Object> {
        self.reporter.stopped_leading(after == AfterExit::Release);
        let run = outcome.map(|o| self.last_run(&l, o));
        if let Err(e) = election.finish(l, after, run.as_ref()).await {
            self.reporter.release_failed(&e);
        }
        self.reporter.ended();
        Phase::Done(code)
    }
}

/// How the child's exit reads in the last run's record.
fn outcome_of(status: Option<ChildExit>) -> Outcome {
    match status {
        Some(ChildExit::Code(c)) => Outcome::Exited { exit_code: c },
        Some(ChildExit::Signal(s)) => Outcome::Signaled { signal: s },
        None => Outcome::Signaled {
            signal: Signal::SIGKILL as i32,
        },
    }
}

impl Context<'_> {
    /// This leadership's run, ended now, for the lock's record.
    fn last_run<O>(&self, l: &Leadership<O>, outcome: Outcome) -> LastRun {
        let host = settings::host_name();
        let run = LastRun::ours(&l.held.record, host, outcome, record::now());
        self.reporter.last_run(&run);
        run
    }

    /// `--once-per D`: the skip, when the lock's last run succeeded less than D ago.
    fn ran_recently<O>(&self, l: &Leadership<O>) -> Option<Outcome> {
        let period = self.run.args.once_per?;
        let last = l.held.last_run.as_deref().and_then(LastRun::parse)?;
        let ended = last.succeeded_at()?;
        let ago = record::seconds_between(ended, record::now());
        if ago >= period.as_secs_f64() {
            return None;
        }
        info!(
            last_holder = %last.holder,
            host = last.host.as_deref().unwrap_or("-"),
            ended = %record::format_micros(ended),
            ago_seconds = ago as i64,
            "a run succeeded within --once-per; not running the job, releasing"
        );
        Some(Outcome::Skipped {
            because_of: Box::new(last),
        })
    }
}

/// Holds the lock a while longer after the child's exit (renewing), so that a copy
/// that starts a little late elsewhere does not run the job again. Ends after `keep`,
/// on a loss, or on TERM, INT, HUP or QUIT.
async fn keep_lock<H: std::future::Future<Output = Lost> + Unpin>(
    reporter: &Reporter,
    signals: &mut Signals,
    keep: Duration,
    hold: &mut H,
) {
    reporter.keeping(keep);
    tokio::select! {
        _ = tokio::time::sleep(keep) => {}
        lost = hold => {
            warn!(reason = %lost, "lost the lock while keeping it after the child's exit");
        }
        sig = signals.next_ending_wait() => {
            info!(signal = ?sig, "signal while keeping the lock; releasing now");
        }
    }
}

/// Supervises the child: one `select!` over the guard's reports, the renew loop and the
/// signals to forward. Ends when nothing of the child's tree is left, or leadership is lost
/// (the stop goes to the guard before anything is logged).
async fn supervise<H: std::future::Future<Output = Lost> + Unpin>(
    job: &mut Job,
    hold: &mut H,
    signals: &mut Signals,
    anchor: &mut watch::Receiver<Instant>,
    nudge: &Notify,
    reporter: &Reporter,
) -> End {
    // Set after Ctrl-Z and `fg`: the job continues only after a renew sent since then.
    let mut resuming: Option<Instant> = None;
    // The guard's deadline passed and it is stopping the child. The renew loop's own
    // deadline is the same moment: give it a little while to say why.
    let mut guard_stopped: Option<Instant> = None;
    let guard_reason = || Lost::Deadline {
        deadline: Duration::ZERO,
        last_error:
            "leaderrun did not renew in time (stopped or stuck); the guard stopped the child".into(),
    };
    loop {
        tokio::select! {
            ev = job.next() => match ev {
                JobEvent::Exited(status) if guard_stopped.is_none() => reporter.child_exited(status),
                JobEvent::Gone if guard_stopped.is_some() => return End::Lost(guard_reason()),
                JobEvent::Gone => return End::Exited(job.exit()),
                JobEvent::DeadlinePassed => {
                    reporter.guard_deadline();
                    guard_stopped = Some(Instant::now() + Duration::from_millis(100));
                }
                JobEvent::GuardLost => {
                    reporter.guard_lost();
                    return End::Lost(Lost::Deadline {
                        deadline: Duration::ZERO,
                        last_error: "the guard process died".into(),
                    });
                }
                JobEvent::Stopped(sig) if job.interactive() && is_terminal_stop(sig) => {
                    // Ctrl-Z: stop with the job, so that the shell's prompt comes back.
                    supervisor::take_terminal();
                    supervisor::stop_self();
                    // `fg`: renew before the job may go on.
                    resuming = Some(Instant::now());
                    nudge.notify_one();
                }
                JobEvent::Leftovers(n) => reporter.leftovers(n),
                JobEvent::Exited(_) | JobEvent::Stopped(_) | JobEvent::Continued => {}
            },
            _ = sleep_until_some(guard_stopped) => return End::Lost(guard_reason()),
            lost = &mut *hold => {
                job.stop();
                return End::Lost(lost);
            }
            // The shell's `fg` continues leaderrun with CONT: passing it on would let the
            // job go on before the renew (leaderrun sends its own CONT after it).
            sig = signals.recv() => if !(sig == Signal::SIGCONT && resuming.is_some()) {
                job.signal(sig)
            },
            Ok(()) = anchor.changed(), if resuming.is_some() => {
                if resuming.is_some_and(|r| *anchor.borrow_and_update() >= r) {
                    resuming = None;
                    supervisor::give_terminal(job.pid());
                    job.signal(Signal::SIGCONT);
                }
            }
        }
    }
}

async fn sleep_until_some(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
