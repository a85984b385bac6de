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
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use leaderrun::election::{
    AcquireError, AfterExit, Clock, Election, Leadership, Lost, Observer, WaitOptions,
};
use leaderrun::lock::LockError;
use leaderrun::record;
use leaderrun::settings::Timing;
use rand::rngs::StdRng;
use rand::Rng;
use tokio::sync::{watch, Notify};
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

/// The job's side of the observer: each renew's deadline goes to the guard, which measures it
/// by the same host's clock.
struct ToGuard<'a> {
    sim: &'a Sim,
    job: JobId,
    process: usize,
    clock: &'a SimClock,
}

impl Observer for ToGuard<'_> {
    fn renewed(&self, _anchor: Instant, _latency: Duration, deadline: Instant) {
        let at = self.clock.timer_at(deadline);
        self.sim.jobs.borrow_mut().extend(self.job, at);
    }

    fn renew_failed(&self, _latency: Duration, error: &LockError) {
        let p = self.process;
        self.sim.log(|| format!("p{p} renew failed: {error}"));
    }

    fn waiting(&self, _holder: &str, _impostor: bool) {}
}

struct Waiting<'a> {
    sim: &'a Sim,
    process: usize,
}

impl Observer for Waiting<'_> {
    fn renewed(&self, _: Instant, _: Duration, _: Instant) {}
    fn renew_failed(&self, _: Duration, _: &LockError) {}
    fn waiting(&self, holder: &str, impostor: bool) {
        let p = self.process;
        self.sim.log(|| {
            format!(
                "p{p} waits for {holder:?}{}",
                if impostor {
                    " (our identity, not our write)"
                } else {
                    ""
                }
            )
        });
    }
}

/// The most a guard's timer acts late (its stop at the deadline, its KILL): a loaded host's
/// timer slack and a killed process's teardown. The CLI's margin must cover it.
pub const GUARD_LATE: Duration = Duration::from_millis(50);

/// Exit codes, as `run`'s.
pub const LOST: u8 = 3;

/// Runs one process to its exit code.
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
    let wall: leaderrun::election::WallClock = std::sync::Arc::new(move || -> record::Time {
        let since = (Instant::now() - start).mul_f64(rate);
        base + chrono::Duration::from_std(since).unwrap_or_default()
    });
    let clock = std::sync::Arc::new(SimClock::new(start, rate));
    let election = Election::with_slots(locks, identity.clone(), opts.timing)
        .with_wall_clock(wall)
        .with_clock(clock.clone());
    sim.log(|| format!("p{me} starts as {identity:?} {opts:?}"));
    loop {
        let l = match wait_for_lock(&sim, &election, me, opts, &ctl).await {
            Ok(l) => l,
            Err(code) => return code,
        };
        match lead(&sim, &election, &clock, me, l, opts, &ctl).await {
            Some(code) => return code,
            None => continue,
        }
    }
}

async fn wait_for_lock(
    sim: &Sim,
    election: &Election<SimLock>,
    me: usize,
    opts: Options,
    ctl: &Control,
) -> Result<Leadership<crate::world::SimObject>, u8> {
    let (stop_tx, mut stop_rx) = watch::channel(None);
    let observer = Waiting { sim, process: me };
    let wait = WaitOptions {
        no_wait: opts.no_wait,
        wait_timeout: None,
    };
    sim.world.borrow_mut().round_begun(me);
    let acquire = election.acquire(wait, &mut stop_rx, &observer);
    tokio::pin!(acquire);
    let result = loop {
        tokio::select! {
            biased;
            r = &mut acquire => break r,
            _ = ctl.term.notified() => {
                stop_tx.send_replace(Some(15));
            }
        }
    };
    match result {
        Ok(l) => Ok(l),
        Err(e) => {
            sim.log(|| format!("p{me} exits: {e}"));
            Err(match e {
                AcquireError::Held { .. } => 1,
                AcquireError::WaitTimeout => 124,
                AcquireError::Stopped(_) => 143,
                AcquireError::Lock(_) => 69,
            })
        }
    }
}

/// How the job's supervision ended.
enum End {
    Exited,
    Lost(Lost),
}

/// Leads: the job, the renews, and what follows. None: wait for the lock again (--rejoin).
#[allow(clippy::too_many_arguments)]
async fn lead(
    sim: &Sim,
    election: &Election<SimLock>,
    clock: &SimClock,
    me: usize,
    mut l: Leadership<crate::world::SimObject>,
    opts: Options,
    ctl: &Control,
) -> Option<u8> {
    let slot = l.slot;
    let token = l.fencing_token;
    let held_from = sim.secs();
    // The acquiring write may have landed any time after it was sent.
    let acquired = clock.timer_at(l.last_renew_sent);
    sim.jobs.borrow_mut().leaderships.push((held_from, None));
    let held_index = sim.jobs.borrow().leaderships.len() - 1;
    sim.log(|| format!("p{me} leads slot {slot} with token {token}"));
    // Tokens continue from every count this copy took in, across a deletion too (DESIGN.md);
    // the checker's slot-wide rule cannot say so once a copy that never saw the count starts
    // them again.
    let seen = sim.world.borrow().net[me].count_seen(slot);
    if let Some(seen) = seen.filter(|s| token < *s) {
        let at = sim.secs();
        sim.jobs.borrow_mut().violations.push(format!(
            "at {at:.6}s: p{me} leads slot {slot} with fencing token {token}, below the count {seen} it saw"
        ));
    }
    // Starting the child behind its guard takes a moment (a fork, an exec, the guard's first
    // report), and a SIGSTOP may fall within it; the deadline is the one taken before.
    let deadline = election.deadline(&l);
    let (spawn, runs_for, term_takes, late) = {
        let mut rng = sim.rng.borrow_mut();
        let spawn = Duration::from_micros(rng.random_range(200..5000));
        // No draw at all without lateness: the kept seeds' draws stay as they were.
        let late = match sim.guard_late.as_micros() as u64 {
            0 => Duration::ZERO,
            max => Duration::from_micros(rng.random_range(0..=max)),
        };
        let runs_for = if rng.random_bool(0.4) {
            Duration::from_secs(1000)
        } else {
            Duration::from_millis(rng.random_range(300..15_000))
        };
        let grace_ms = opts.timing.kill_grace.as_millis().max(1) as u64;
        let term_takes = rng
            .random_bool(0.5)
            .then(|| Duration::from_millis(rng.random_range(0..grace_ms * 3 / 2 + 1)));
        (spawn, runs_for, term_takes, late)
    };
    tokio::time::sleep(spawn).await;
    if !leaderrun::guard::may_start(clock.now(), deadline) {
        // The guard does not start a job past its deadline (the loss path, without a job).
        sim.log(|| format!("p{me}'s guard does not start the job: its deadline passed"));
        let now = sim.secs();
        sim.jobs.borrow_mut().leaderships[held_index].1 = Some(now);
        return if opts.rejoin { None } else { Some(LOST) };
    }
    let at = sim.secs();
    let job = sim.jobs.borrow_mut().start(
        acquired,
        slot,
        me,
        token,
        clock.timer_at(deadline),
        runs_for,
        term_takes,
        clock.span(opts.timing.kill_grace),
        late,
        at,
    );
    sim.jobs.borrow_mut().promise(
        job,
        opts.timing.lease_duration,
        clock.span(opts.timing.renew_deadline),
    );
    ctl.job.set(Some(job));
    sim.log(|| format!("p{me} job {job} starts (runs {runs_for:?}, TERM takes {term_takes:?})"));
    let observer = ToGuard {
        sim,
        job,
        process: me,
        clock,
    };
    let nudge = Notify::new();
    let end = {
        let hold = election.hold(&mut l, &observer, &nudge);
        tokio::pin!(hold);
        let end = loop {
            tokio::select! {
                biased;
                lost = &mut hold => {
                    sim.jobs.borrow_mut().stop(job);
                    break End::Lost(lost);
                }
                _ = job_ended(sim, job) => break End::Exited,
                _ = ctl.term.notified() => {
                    sim.log(|| format!("p{me} passes TERM on to job {job}"));
                    sim.jobs.borrow_mut().term(job);
                }
            }
        };
        if let (End::Exited, Some(keep)) = (&end, opts.keep_after_exit) {
            sim.log(|| format!("p{me} keeps the lock for {keep:?}"));
            tokio::select! {
                biased;
                _ = tokio::time::sleep(keep) => {}
                lost = &mut hold => sim.log(|| format!("p{me} lost the lock while keeping it: {lost}")),
                _ = ctl.term.notified() => {}
            }
        }
        end
    };
    let done = |sim: &Sim| {
        let now = sim.secs();
        sim.jobs.borrow_mut().leaderships[held_index].1 = Some(now);
    };
    match end {
        End::Exited => {
            sim.log(|| format!("p{me} job {job} ended; releasing"));
            done(sim);
            let after = if opts.no_release {
                AfterExit::Leave
            } else {
                AfterExit::Release
            };
            if let Err(e) = election.finish(l, after, None).await {
                sim.log(|| format!("p{me} release failed: {e}"));
            }
            ctl.job.set(None);
            Some(0)
        }
        End::Lost(lost) => {
            sim.log(|| format!("p{me} lost slot {slot}: {lost}; stopping job {job}"));
            done(sim);
            job_ended(sim, job).await;
            ctl.job.set(None);
            sim.log(|| format!("p{me} job {job} is gone"));
            if matches!(lost, Lost::SteppedDown) {
                if let Err(e) = election.finish(l, AfterExit::Release, None).await {
                    sim.log(|| format!("p{me} release failed: {e}"));
                }
            }
            if opts.rejoin {
                None
            } else {
                Some(LOST)
            }
        }
    }
}

/// Resolves when the job has ended (its end can move later with a renew, or earlier).
async fn job_ended(sim: &Sim, job: JobId) {
    loop {
        let end = sim.jobs.borrow().end(job);
        if Instant::now() >= end {
            return;
        }
        tokio::time::sleep_until(end).await;
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
