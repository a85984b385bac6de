//! One leaderrun process in the simulated world: the real `Election` (acquire, hold, finish)
//! over `SimLock`s, driven through the phases `run` goes through (src/run.rs): waiting,
//! leading (the job starts behind its guard with the leadership's deadline, every renew
//! moves that deadline), stopping after a loss, releasing after the job's end, and with
//! `--rejoin` waiting again. What is simulated instead of processes: the job (jobs.rs),
//! TERM (a notification), SIGSTOP (the process is not polled: `Freezable`), SIGKILL (the
//! task is dropped; the guard then stops the job at once).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use leaderrun::cli::{Command, RunArgs};
use leaderrun::election::{Clock, Election};
use leaderrun::record;
use leaderrun::report::Reporter;
use leaderrun::run::{drive, DeadlineLine, Host, JobControl, Run, Stage};
use leaderrun::settings::Timing;
use leaderrun::supervisor::{ChildExit, JobEvent, JobSpec, SpawnError};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::Rng;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::jobs::{JobId, Jobs};
use crate::world::{Shared, SimLock};

/// What every process shares: the world, the jobs, the timing.
pub struct Sim {
    pub world: Shared,
    pub jobs: RefCell<Jobs>,
    pub timing: Timing,
    pub slots: usize,
    pub resolution: Duration,
    pub rng: RefCell<StdRng>,
    /// The most a guard's timers act late in this world (GUARD_LATE; zero for the kept seeds,
    /// replayed in the world they were found in).
    pub guard_late: Duration,
    /// The most a process's clock runs fast or slow (RATE_ERROR; zero for the kept seeds).
    pub rate_error: f64,
    /// Processes may have timings of their own (not for the kept seeds).
    pub mixed_timings: bool,
    /// The longest timing a process may have (the world's without mixed timings).
    pub longest: Timing,
}

impl Sim {
    pub fn log(&self, line: impl FnOnce() -> String) {
        self.world.borrow_mut().log(line);
    }

    pub fn secs(&self) -> f64 {
        self.world.borrow().secs()
    }
}

/// The options of one process's command line.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub no_wait: bool,
    pub keep_after_exit: Option<Duration>,
    pub no_release: bool,
    pub rejoin: bool,
    /// How far its wall clock is off (it writes records with it; safety must not care).
    pub clock_offset_ms: i64,
    /// How fast its clocks run: 1.0 is true time, 1.02 reads 2% more (its host's monotonic
    /// clock, which the election and the guard measure every wait by).
    pub rate: f64,
    /// Its lease, renew deadline, retry period and kill grace (the world's, or its own).
    pub timing: Timing,
}

/// A process's monotonic clock: it reads `origin + (t - origin) x rate` at tokio's `t`.
pub struct SimClock {
    origin: Instant,
    rate: f64,
}

impl SimClock {
    pub fn new(origin: Instant, rate: f64) -> Self {
        SimClock { origin, rate }
    }

    /// A span of this clock (the guard's kill grace, say) in true time.
    pub fn span(&self, d: Duration) -> Duration {
        d.div_f64(self.rate)
    }
}

impl Clock for SimClock {
    fn now(&self) -> Instant {
        self.origin + (Instant::now() - self.origin).mul_f64(self.rate)
    }

    fn timer_at(&self, t: Instant) -> Instant {
        let Some(ahead) = t.checked_duration_since(self.origin) else {
            return t;
        };
        let mut at = self.origin + ahead.div_f64(self.rate);
        // Rounding must not wake a timer before its clock reads `t` (a loop would spin).
        while self.origin + (at - self.origin).mul_f64(self.rate) < t {
            at += Duration::from_micros(1);
        }
        at
    }
}

/// How the driver reaches a running process.
#[derive(Default)]
pub struct Control {
    pub term: Notify,
    pub frozen_until: Cell<Option<Instant>>,
    /// The job it runs, if any (a SIGKILL leaves it to the guard).
    pub job: Cell<Option<JobId>>,
}

/// The most a guard's timer acts late (its stop at the deadline, its KILL): a loaded host's
/// timer slack and a killed process's teardown. The CLI's margin must cover it.
pub const GUARD_LATE: Duration = Duration::from_millis(50);

/// Runs one process to its exit code: leaderrun's own run loop (`leaderrun::run::drive`) with
/// the options as a command line, over `SimLock`s, in a simulated host.
pub async fn run(sim: Rc<Sim>, me: usize, identity: String, opts: Options, ctl: Rc<Control>) -> u8 {
    let locks = (0..sim.slots)
        .map(|slot| SimLock {
            world: sim.world.clone(),
            slot,
            process: me,
            resolution: sim.resolution,
        })
        .collect();
    let start = sim.world.borrow().start;
    let base = chrono::DateTime::from_timestamp(1_795_000_000, 0).unwrap_or_default()
        + chrono::Duration::milliseconds(opts.clock_offset_ms);
    let rate = opts.rate;
    let wall: leaderrun::election::WallClock = Arc::new(move || -> record::Time {
        let since = (Instant::now() - start).mul_f64(rate);
        base + chrono::Duration::from_std(since).unwrap_or_default()
    });
    let clock = Arc::new(SimClock::new(start, rate));
    let election = Election::with_slots(locks, identity.clone(), opts.timing)
        .with_wall_clock(wall)
        .with_clock(clock.clone());
    sim.log(|| format!("p{me} starts as {identity:?} {opts:?}"));
    let args = match command_line(&opts) {
        Ok(args) => args,
        Err(e) => panic!("the simulation's command line for {opts:?} does not parse: {e}"),
    };
    let run = Run::new(&args, opts.timing, identity.clone(), "sim".into());
    let reporter = Reporter::new(Default::default(), None, election.describe(), identity);
    let host = SimHost {
        sim: sim.clone(),
        me,
        opts,
        clock,
        ctl,
        won: None,
        held: 0,
    };
    let code = match drive(run, &election, host, reporter).await {
        Ok(code) => code,
        Err(e) => e.exit_code(),
    };
    sim.log(|| format!("p{me} exits {code}"));
    code
}

/// `opts` as leaderrun's command line (the timing goes to the run as it is: milliseconds).
fn command_line(opts: &Options) -> Result<RunArgs, clap::Error> {
    let mut line: Vec<String> = ["leaderrun", "run", "--name", "sim"]
        .map(String::from)
        .into();
    if opts.no_wait {
        line.push("--no-wait".into());
    }
    if let Some(keep) = opts.keep_after_exit {
        line.push(format!("--keep-after-exit={}ms", keep.as_millis()));
    }
    if opts.no_release {
        line.push("--no-release".into());
    }
    if opts.rejoin {
        line.push("--rejoin".into());
    }
    line.extend(["--", "job"].map(String::from));
    match leaderrun::cli::parse(line.into_iter().map(Into::into).collect())?.command {
        Command::Run(args) => Ok(args),
        other => panic!("not a run: {other:?}"),
    }
}

/// A simulated process as leaderrun's run loop sees it: TERM from the driver, jobs (jobs.rs)
/// behind a simulated guard, and the checks made as each leadership begins.
struct SimHost {
    sim: Rc<Sim>,
    me: usize,
    opts: Options,
    clock: Arc<SimClock>,
    ctl: Rc<Control>,
    /// The leadership won last: its slot, token, and when its write may have landed.
    won: Option<(usize, i32, Instant)>,
    /// Its entry in `Jobs::leaderships`.
    held: usize,
}

impl Host for SimHost {
    type Job = SimJob;

    async fn ending_signal(&mut self) -> Signal {
        self.ctl.term.notified().await;
        Signal::SIGTERM
    }

    async fn signal(&mut self) -> Signal {
        self.ctl.term.notified().await;
        let (sim, me) = (&self.sim, self.me);
        sim.log(|| format!("p{me} passes TERM on"));
        Signal::SIGTERM
    }

    async fn start(&mut self, spec: JobSpec<'_>) -> Result<SimJob, SpawnError> {
        let (sim, me) = (self.sim.clone(), self.me);
        let Some((slot, token, acquired)) = self.won else {
            panic!("p{me}: a job started before a leadership was won");
        };
        let (spawn, runs_for, term_takes, late) = self.draw();
        // Starting the job behind its guard takes a moment (a fork, an exec, the guard's
        // first report), and a SIGSTOP may fall within it.
        tokio::time::sleep(spawn).await;
        if !leaderrun::guard::may_start(self.clock.now(), spec.deadline) {
            sim.log(|| format!("p{me}'s guard does not start the job: its deadline passed"));
            return Err(SpawnError::DeadlinePassed);
        }
        let at = sim.secs();
        let timing = self.opts.timing;
        let id = sim.jobs.borrow_mut().start(
            acquired,
            (
                timing.lease_duration,
                self.clock.span(timing.renew_deadline),
            ),
            slot,
            me,
            token,
            self.clock.timer_at(spec.deadline),
            runs_for,
            term_takes,
            self.clock.span(spec.grace),
            late,
            at,
        );
        self.ctl.job.set(Some(id));
        sim.log(|| format!("p{me} job {id} starts (runs {runs_for:?}, TERM takes {term_takes:?})"));
        Ok(SimJob {
            sim,
            id,
            clock: self.clock.clone(),
            exited: false,
            deadline_told: false,
        })
    }

    fn stage(&mut self, stage: Stage) {
        let (sim, me) = (&self.sim, self.me);
        match stage {
            Stage::Waiting => {
                self.ctl.job.set(None);
                sim.world.borrow_mut().round_begun(me);
            }
            Stage::Won { slot, token, sent } => {
                sim.log(|| format!("p{me} leads slot {slot} with token {token}"));
                let held_from = sim.secs();
                let mut jobs = sim.jobs.borrow_mut();
                jobs.leaderships.push((held_from, None));
                self.held = jobs.leaderships.len() - 1;
                drop(jobs);
                // The acquiring write may have landed any time after it was sent.
                self.won = Some((slot, token, self.clock.timer_at(sent)));
                self.check_token(slot, token);
            }
            Stage::Ended => {
                sim.log(|| format!("p{me}'s leadership ends"));
                let now = sim.secs();
                sim.jobs.borrow_mut().leaderships[self.held].1 = Some(now);
            }
        }
    }
}

impl SimHost {
    /// The job's draws: how long its start takes, how long it runs, how long TERM takes
    /// (None: only KILL ends it), how late its guard's timers act.
    fn draw(&self) -> (Duration, Duration, Option<Duration>, Duration) {
        let mut rng = self.sim.rng.borrow_mut();
        let spawn = Duration::from_micros(rng.random_range(200..5000));
        // No draw at all without lateness: the kept seeds' draws stay as they were.
        let late = match self.sim.guard_late.as_micros() as u64 {
            0 => Duration::ZERO,
            max => Duration::from_micros(rng.random_range(0..=max)),
        };
        let runs_for = if rng.random_bool(0.4) {
            Duration::from_secs(1000)
        } else {
            Duration::from_millis(rng.random_range(300..15_000))
        };
        let grace_ms = self.opts.timing.kill_grace.as_millis().max(1) as u64;
        let term_takes = rng
            .random_bool(0.5)
            .then(|| Duration::from_millis(rng.random_range(0..grace_ms * 3 / 2 + 1)));
        (spawn, runs_for, term_takes, late)
    }

    /// Tokens continue from every count this copy took in, across a deletion too (DESIGN.md);
    /// the checker's slot-wide rule cannot say so once a copy that never saw the count starts
    /// them again.
    fn check_token(&self, slot: usize, token: i32) {
        let (sim, me) = (&self.sim, self.me);
        let seen = sim.world.borrow().net[me].count_seen(slot);
        if let Some(seen) = seen.filter(|s| token < *s) {
            let at = sim.secs();
            sim.jobs.borrow_mut().violations.push(format!(
                "at {at:.6}s: p{me} leads slot {slot} with fencing token {token}, below the count {seen} it saw"
            ));
        }
    }
}

/// A simulated job behind its simulated guard, as the run loop sees it.
struct SimJob {
    sim: Rc<Sim>,
    id: JobId,
    clock: Arc<SimClock>,
    exited: bool,
    deadline_told: bool,
}

impl JobControl for SimJob {
    type Line = SimLine;

    async fn next(&mut self) -> JobEvent {
        loop {
            let now = Instant::now();
            let (end, by_guard, exit) = {
                let jobs = self.sim.jobs.borrow();
                (
                    jobs.end(self.id),
                    jobs.guard_stops_at(self.id),
                    jobs.exit(self.id),
                )
            };
            if now >= end {
                if self.exited {
                    return JobEvent::Gone;
                }
                self.exited = true;
                return JobEvent::Exited(exit);
            }
            let by_guard = by_guard.filter(|_| !self.deadline_told);
            if by_guard.is_some_and(|g| now >= g) {
                self.deadline_told = true;
                return JobEvent::DeadlinePassed;
            }
            // Its end moves with a renew or a stop: look again then, or at the next event.
            tokio::time::sleep_until(by_guard.map_or(end, |g| g.min(end))).await;
        }
    }

    async fn wait_gone(&mut self) -> Option<ChildExit> {
        while self.next().await != JobEvent::Gone {}
        self.exit()
    }

    fn line(&self) -> SimLine {
        SimLine {
            sim: self.sim.clone(),
            id: self.id,
            clock: self.clock.clone(),
        }
    }

    fn signal(&self, sig: Signal) {
        if sig == Signal::SIGTERM {
            self.sim.jobs.borrow_mut().term(self.id);
        }
    }

    fn stop(&self) {
        self.sim.jobs.borrow_mut().stop(self.id);
    }

    fn kill_all(&mut self) {
        self.sim.jobs.borrow_mut().kill(self.id);
    }

    fn exit(&self) -> Option<ChildExit> {
        self.exited.then(|| self.sim.jobs.borrow().exit(self.id))
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.id as i32 + 1000)
    }

    fn interactive(&self) -> bool {
        false
    }
}

/// Where a renew's deadline goes: the guard measures it by its host's clock.
struct SimLine {
    sim: Rc<Sim>,
    id: JobId,
    clock: Arc<SimClock>,
}

impl DeadlineLine for SimLine {
    fn extend(&self, deadline: Instant) {
        let at = self.clock.timer_at(deadline);
        self.sim.jobs.borrow_mut().extend(self.id, at);
    }
}

/// A process that SIGSTOP can stop: while frozen it is not polled at all; its timers run
/// out meanwhile and are seen when it goes on.
pub struct Freezable<F> {
    inner: Pin<Box<F>>,
    ctl: Rc<Control>,
    thaw: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<F> Freezable<F> {
    pub fn new(inner: F, ctl: Rc<Control>) -> Self {
        Freezable {
            inner: Box::pin(inner),
            ctl,
            thaw: None,
        }
    }
}

impl<F: Future> Future for Freezable<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        if let Some(until) = self.ctl.frozen_until.get() {
            if Instant::now() < until {
                let thaw = self
                    .thaw
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
                if thaw.deadline() != until {
                    thaw.as_mut().reset(until);
                }
                if thaw.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
            self.ctl.frozen_until.set(None);
            self.thaw = None;
        }
        self.inner.as_mut().poll(cx)
    }
}
