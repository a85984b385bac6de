//! One seed's world: its configuration, the processes (restarted when they exit, as a
//! Deployment or a cron line would), the fault driver, and the checks at the end.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use futures::FutureExt;
use leaderrun::record::LeaderRecord;
use leaderrun::settings::Timing;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::jobs::Jobs;
use crate::process::{self, Control, Freezable, Options, Sim};
use crate::world::World;

/// The outcome of one seed.
pub struct Outcome {
    pub violations: Vec<String>,
    pub trace: Vec<String>,
    pub leaderships: usize,
    pub token_restarts: u32,
    pub max_rate: u32,
    pub faults: u32,
}

/// The liveness bound: once faults stop, some process leads within this. A lease for the last
/// holder's record to lapse (counted from the last observation, which may be that late),
/// a renew deadline for calls sent before the faults stopped to time out, three retry
/// periods (jittered) for a silent watch to be replaced by a read, a restart (up to 1.5s),
/// and a second for a ConfigMap record's same-second pause.
/// How much longer the longest of mixed timings is.
const LONGER: f64 = 1.5;

/// `base` with a lease `k` times as long (whole seconds), the renew deadline and kill grace in
/// proportion; None unless the CLI would accept it.
fn scaled(base: &Timing, k: f64) -> Option<Timing> {
    let secs = (base.lease_duration.as_secs_f64() * k).round().max(1.0);
    let f = secs / base.lease_duration.as_secs_f64();
    let t = Timing {
        lease_duration: Duration::from_secs(secs as u64),
        renew_deadline: base.renew_deadline.mul_f64(f),
        retry_period: base.retry_period,
        kill_grace: base.kill_grace.mul_f64(f),
    };
    t.validate().is_ok().then_some(t)
}

/// The longest timing a process of this world may have.
fn longest_timing(base: &Timing, mixed: bool) -> Timing {
    match mixed {
        true => scaled(base, LONGER).unwrap_or(*base),
        false => *base,
    }
}

pub fn liveness_bound(t: &Timing) -> Duration {
    t.lease_duration
        + t.renew_deadline
        + t.retry_period.mul_f64(3.0 * 1.2)
        + Duration::from_millis(2500)
}

/// Requests one process may send in one simulated second: per slot, a renew or read and a
/// watch each retry period, with the conflicts' immediate re-reads and writes on top; and
/// for each acquiring round begun in that second, a read and a watch per slot (a copy that
/// wins, is asked to step down and rejoins within a second begins two: seed
/// 5459073702373679729, 25 requests against 24).
pub fn rate_bound(t: &Timing, slots: usize, rounds: u32) -> u32 {
    let per_period = (1.0 / t.retry_period.as_secs_f64()).ceil() as u32;
    (slots as u32 + 1) * 4 * per_period.max(1) + 8 + 2 * slots as u32 * rounds
}

struct Running {
    process: usize,
    /// Its own lease.
    lease: Duration,
    identity: String,
    ctl: Rc<Control>,
    abort: tokio::task::AbortHandle,
}

struct Driver {
    sim: Rc<Sim>,
    rng: StdRng,
    running: Vec<Option<Running>>,
    twins: Vec<Running>,
    /// After a deletion no process starts for a lease (the documented limit: a copy that never
    /// saw the lock cannot tell a deleted lock from a new one).
    no_start_before: Instant,
    faults_until: Instant,
    end: Instant,
    faults: u32,
}

/// What differs between a sweep's world and the one a kept seed was found in.
#[derive(Debug, Clone, Copy)]
pub struct Hazards {
    /// The most a guard's timer acts late.
    pub guard_late: Duration,
    /// The most a process's clocks run fast or slow (0.02: 2% either way).
    pub rate_error: f64,
    /// Some processes run with a longer or shorter lease (and renew deadline and kill grace)
    /// than the world's, each valid by the CLI's rule.
    pub mixed_timings: bool,
}

impl Hazards {
    /// The world the kept seeds were found in: exact timers, true clocks.
    pub const NONE: Hazards = Hazards {
        guard_late: Duration::ZERO,
        rate_error: 0.0,
        mixed_timings: false,
    };
}

pub fn run(seed: u64, timing: Timing, trace: bool, seconds: u64, hazards: Hazards) -> Outcome {
    leaderrun::settings::seed_follower_jitter(Some(seed));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    let local = tokio::task::LocalSet::new();
    let outcome = local.block_on(&rt, simulate(seed, timing, trace, seconds, hazards));
    leaderrun::settings::seed_follower_jitter(None);
    outcome
}

async fn simulate(
    seed: u64,
    timing: Timing,
    trace: bool,
    seconds: u64,
    hazards: Hazards,
) -> Outcome {
    let longest = longest_timing(&timing, hazards.mixed_timings);
    let mut rng = StdRng::seed_from_u64(seed);
    let configmap = rng.random_bool(0.5);
    let slots = if rng.random_bool(0.2) {
        rng.random_range(2..4)
    } else {
        1
    };
    let count = rng.random_range(2..6);
    let world = World::new(seed, count, trace);
    let sim = Rc::new(Sim {
        world: world.clone(),
        // A force-released leader's renew deadline, the longest, by the slowest clock there may be.
        jobs: RefCell::new(Jobs::new(
            slots,
            longest.renew_deadline.div_f64(1.0 - hazards.rate_error),
        )),
        timing,
        slots,
        resolution: if configmap {
            Duration::from_secs(1)
        } else {
            Duration::ZERO
        },
        rng: RefCell::new(StdRng::seed_from_u64(seed.rotate_left(17))),
        guard_late: hazards.guard_late,
        rate_error: hazards.rate_error,
        mixed_timings: hazards.mixed_timings,
        longest,
    });
    let start = Instant::now();
    let bound = liveness_bound(&longest);
    let end = start + Duration::from_secs(seconds).max(bound * 2);
    let faults_until = end - bound - Duration::from_secs(1);
    sim.log(|| {
        format!(
            "seed {seed}: {} processes, {} lock, {slots} slot(s), {timing:?}, faults until {:.1}s",
            count,
            if configmap { "ConfigMap" } else { "Lease" },
            (faults_until - start).as_secs_f64()
        )
    });
    {
        let mut w = world.borrow_mut();
        for p in 0..count {
            // RBAC without `watch` for some: they poll.
            w.net[p].watch_forbidden = rng.random_bool(0.1);
        }
    }
    let driver = Rc::new(RefCell::new(Driver {
        sim: sim.clone(),
        rng,
        running: (0..count).map(|_| None).collect(),
        twins: Vec::new(),
        no_start_before: start,
        faults_until,
        end,
        faults: 0,
    }));
    for i in 0..count {
        tokio::task::spawn_local(keep_running(driver.clone(), i));
    }
    drive(driver.clone()).await;
    tokio::time::sleep_until(end).await;
    // The world stops here: whatever still runs is dropped with the LocalSet.
    let d = driver.borrow();
    let jobs = sim.jobs.borrow();
    let mut violations = jobs.violations.clone();
    let from = (faults_until - start).as_secs_f64();
    let to = from + bound.as_secs_f64();
    let led = jobs
        .leaderships
        .iter()
        .any(|(a, b)| *a <= to && b.is_none_or(|b| b >= from));
    if !led {
        violations.push(format!(
            "no process led between {from:.3}s (faults stopped) and {to:.3}s (the bound, {bound:?})"
        ));
    }
    let w = world.borrow();
    let max_rate = w
        .net
        .iter()
        .flat_map(|n| n.sent.values().copied())
        .max()
        .unwrap_or(0);
    for (p, n) in w.net.iter().enumerate() {
        let allowed = |s: &u64| {
            let rounds = n.rounds.get(s).copied().unwrap_or(0);
            rate_bound(&timing, slots, rounds)
        };
        if let Some((s, r)) = n.sent.iter().find(|(s, r)| **r > allowed(s)) {
            violations.push(format!(
                "p{p} sent {r} requests in second {s} (at most {} allowed)",
                allowed(s)
            ));
        }
    }
    Outcome {
        violations,
        trace: w.trace.clone().unwrap_or_default(),
        leaderships: jobs.leaderships.len(),
        token_restarts: jobs.token_restarts,
        max_rate,
        faults: d.faults,
    }
}

/// One base process: started, and restarted 0-1.5s after it exits or is killed.
async fn keep_running(driver: Rc<RefCell<Driver>>, i: usize) {
    let mut generation = 0u32;
    loop {
        let (wait, end) = {
            let d = driver.borrow();
            (d.no_start_before, d.end)
        };
        tokio::time::sleep_until(wait).await;
        if Instant::now() >= end {
            return;
        }
        if driver.borrow().no_start_before > Instant::now() {
            continue;
        }
        generation += 1;
        let (handle, delay) = {
            let mut d = driver.borrow_mut();
            // A replacement usually has a new identity (a new pod); a cron line keeps its own.
            let identity = if d.rng.random_bool(0.3) {
                format!("c{i}")
            } else {
                format!("c{i}-{generation}")
            };
            let (running, handle) = d.spawn(Some(i), identity);
            d.running[i] = Some(running);
            let delay = Duration::from_millis(d.rng.random_range(0..1500));
            (handle, delay)
        };
        let _ = handle.await;
        driver.borrow_mut().running[i] = None;
        tokio::time::sleep(delay).await;
    }
}

impl Driver {
    /// Starts a process (`base`: the index of the base process it is, None for a twin).
    fn spawn(
        &mut self,
        base: Option<usize>,
        identity: String,
    ) -> (Running, tokio::task::JoinHandle<u8>) {
        let process = match base {
            Some(i) if self.sim.world.borrow().net[i].sent.is_empty() => i,
            _ => {
                let mut w = self.sim.world.borrow_mut();
                let p = w.add_process();
                w.net[p].watch_forbidden = self.rng.random_bool(0.1);
                p
            }
        };
        let mut opts = Options {
            no_wait: self.rng.random_bool(0.15),
            keep_after_exit: self
                .rng
                .random_bool(0.2)
                .then(|| Duration::from_millis(self.rng.random_range(100..5000))),
            no_release: self.rng.random_bool(0.1),
            rejoin: self.rng.random_bool(0.4),
            clock_offset_ms: self.rng.random_range(-3000..3000),
            rate: self.rate(),
            timing: self.timing(),
        };
        // The CLI refuses the two together (the draws stay, so that seeds replay as found).
        if opts.no_release {
            opts.keep_after_exit = None;
        }
        let ctl = Rc::new(Control::default());
        let run = process::run(
            self.sim.clone(),
            process,
            identity.clone(),
            opts,
            ctl.clone(),
        );
        // A process that panics is a failed seed, not one that quietly left the world.
        let sim = self.sim.clone();
        let fut = async move {
            match std::panic::AssertUnwindSafe(run).catch_unwind().await {
                Ok(code) => code,
                Err(_) => {
                    let at = sim.secs();
                    sim.jobs.borrow_mut().violations.push(format!(
                        "at {at:.6}s: p{process} panicked (its message is above)"
                    ));
                    101
                }
            }
        };
        let handle = tokio::task::spawn_local(Freezable::new(fut, ctl.clone()));
        let running = Running {
            process,
            lease: opts.timing.lease_duration,
            identity,
            ctl,
            abort: handle.abort_handle(),
        };
        (running, handle)
    }

    /// A new process's timing: most run the world's, one in six a lease half as long and one in
    /// six half as long again (renew deadline and kill grace in proportion), when that is valid
    /// by the CLI's rule. A record's promise of a longer lease is then honoured, or missed.
    /// No draw without mixed timings, so the kept seeds replay as they were found.
    fn timing(&mut self) -> Timing {
        let base = self.sim.timing;
        if !self.sim.mixed_timings {
            return base;
        }
        let k = match self.rng.random_range(0..6) {
            0 => 0.5,
            1 => LONGER,
            _ => return base,
        };
        scaled(&base, k).unwrap_or(base)
    }

    /// Every running process would wait a deletion of `slot` out for as long as any holder that
    /// may still run there promised: its own lease, or the longest promise it took in, is no
    /// shorter (DESIGN.md's rule). A copy with a shorter lease that never saw the longer promise
    /// cannot know it: a deletion then is the documented limit, like one a copy never saw.
    fn promises_known(&self, slot: usize) -> bool {
        let w = self.sim.world.borrow();
        let held = w
            .record(slot)
            .filter(|r| r.is_held())
            .map_or(Duration::ZERO, |r| {
                Duration::from_secs(r.lease_duration_seconds.max(0) as u64)
            });
        let needed = held.max(self.sim.jobs.borrow().longest_promise(slot));
        self.alive()
            .all(|r| r.lease.max(w.net[r.process].promise_seen(slot)) >= needed)
    }

    /// A new process's clock rate. The extremes half the time: the margin is tested where it
    /// is thinnest (a slow leader's clock against a fast follower's). No draw without a rate
    /// error, so the kept seeds replay as they were found.
    fn rate(&mut self) -> f64 {
        let e = self.sim.rate_error;
        if e == 0.0 {
            return 1.0;
        }
        match self.rng.random_range(0..4) {
            0 => 1.0 - e,
            1 => 1.0 + e,
            _ => 1.0 + self.rng.random_range(-e..=e),
        }
    }

    /// The processes running now, twins too.
    fn alive(&self) -> impl Iterator<Item = &Running> {
        self.running
            .iter()
            .flatten()
            .chain(self.twins.iter())
            .filter(|r| !r.abort.is_finished())
    }

    fn live(&self) -> Vec<(usize, Rc<Control>, tokio::task::AbortHandle, String)> {
        self.alive()
            .map(|r| {
                (
                    r.process,
                    r.ctl.clone(),
                    r.abort.clone(),
                    r.identity.clone(),
                )
            })
            .collect()
    }

    /// Until when a fault that starts now may last: every fault ends before the quiet end.
    fn until(&mut self, longest: Duration) -> Instant {
        let d = Duration::from_millis(
            self.rng
                .random_range(200..longest.as_millis().max(201) as u64),
        );
        (Instant::now() + d).min(self.faults_until)
    }

    fn act(&mut self) {
        let lease = self.sim.timing.lease_duration;
        let live = self.live();
        let slot = self.rng.random_range(0..self.sim.slots);
        let pick = (!live.is_empty()).then(|| live[self.rng.random_range(0..live.len())].clone());
        let world = self.sim.world.clone();
        let roll = self.rng.random_range(0..100);
        self.faults += 1;
        let sim = self.sim.clone();
        match (roll, pick) {
            (0..=11, Some((p, ctl, abort, _))) => {
                abort.abort();
                if let Some(job) = ctl.job.get() {
                    // The guard's lifeline breaks: it stops the job at once.
                    sim.jobs.borrow_mut().stop(job);
                }
                sim.log(|| format!("fault: SIGKILL p{p}"));
            }
            (12..=19, Some((p, ctl, _, _))) => {
                ctl.term.notify_one();
                sim.log(|| format!("fault: TERM p{p}"));
            }
            (20..=27, Some((p, ctl, _, _))) => {
                let until = self.until(lease.mul_f64(1.6));
                ctl.frozen_until.set(Some(until));
                let at = secs(&sim, until);
                sim.log(|| format!("fault: SIGSTOP p{p} until {at:.3}s"));
            }
            (28..=37, Some((p, _, _, _))) => {
                let until = self.until(lease.mul_f64(1.5));
                let mut w = world.borrow_mut();
                w.net[p].cut_until = Some(until);
                w.break_watches(Some(p), 0.5);
                let at = (until - w.start).as_secs_f64();
                w.log(|| format!("fault: p{p} cut off from the server until {at:.3}s"));
            }
            (38..=45, _) => {
                let n = self.rng.random_range(1..6);
                let mut w = world.borrow_mut();
                w.errors_left += n;
                w.log(|| format!("fault: the next {n} requests get 5xx/429"));
            }
            (46..=51, Some((p, _, _, _))) => {
                let until = self.until(Duration::from_secs(4));
                let mut w = world.borrow_mut();
                w.net[p].slow_until = Some(until);
                let at = (until - w.start).as_secs_f64();
                w.log(|| format!("fault: p{p}'s answers slow (up to 4s each way) until {at:.3}s"));
            }
            (52..=59, _) => {
                let n = self.rng.random_range(1..4);
                let mut w = world.borrow_mut();
                w.lost_left += n;
                w.log(|| format!("fault: the next {n} writes land with their answers lost"));
            }
            (60..=65, _) => {
                let stall = self.rng.random_bool(0.5);
                let mut w = world.borrow_mut();
                if stall {
                    w.break_watches(None, 0.5);
                    w.log(|| "fault: every watch breaks or stalls".into());
                } else {
                    w.close_watches();
                    w.log(|| "fault: every watch closed by the server".into());
                }
            }
            (66..=70, _) => {
                let mut w = world.borrow_mut();
                let n = self.rng.random_range(1..3);
                w.expire_left += n;
                w.compact(0);
                w.log(|| format!("fault: history compacted; the next {n} watches get 410"));
            }
            (71..=73, _) => {
                // Only once every running copy has seen the lock, and no copy starts for a
                // lease after it (docs/RELIABILITY.md, known limits).
                let uid = world.borrow().uid(slot).unwrap_or_default();
                let all_saw = live
                    .iter()
                    .all(|(p, ..)| world.borrow().net[*p].has_seen(slot, &uid))
                    && world
                        .borrow()
                        .creates_in_flight
                        .get(&slot)
                        .is_none_or(|n| *n == 0);
                if all_saw && self.promises_known(slot) && world.borrow_mut().delete(&world, slot) {
                    sim.jobs.borrow_mut().deleted(slot);
                    self.no_start_before = Instant::now() + sim.longest.lease_duration;
                    sim.log(|| format!("fault: slot {slot}'s lock deleted"));
                }
            }
            (74..=76, _) => {
                let mut w = world.borrow_mut();
                if let Some(r) = w.record(slot) {
                    let now = wall(&w);
                    w.external_write(&world, slot, r.released(now), false);
                    w.log(|| format!("fault: slot {slot} force-released"));
                    sim.jobs.borrow_mut().force_released(slot);
                }
            }
            (77..=79, _) => {
                let mut w = world.borrow_mut();
                if let Some(r) = w.record(slot) {
                    let hostile = LeaderRecord::taken(
                        Some(&r),
                        None,
                        "intruder",
                        lease.as_secs() as i32,
                        wall(&w),
                    );
                    w.external_write(&world, slot, hostile, true);
                    w.log(|| format!("fault: slot {slot} taken by another client (intruder)"));
                    sim.jobs.borrow_mut().taken_over(slot, lease);
                }
            }
            (80..=84, _) => {
                let mut w = world.borrow_mut();
                w.benign_write(&world, slot);
                w.log(|| format!("fault: another field of slot {slot} written"));
            }
            (85..=90, _) => {
                let mut w = world.borrow_mut();
                if let Some(h) = w.step_down(&world, slot) {
                    w.log(|| format!("fault: step-down asked of {h:?} on slot {slot}"));
                }
            }
            (91..=95, Some((p, _, _, identity))) if self.twins.len() < 4 => {
                if Instant::now() >= self.no_start_before {
                    let (running, _handle) = self.spawn(None, identity.clone());
                    let q = running.process;
                    self.twins.push(running);
                    sim.log(|| {
                        format!("fault: twin p{q} started with p{p}'s identity {identity:?}")
                    });
                }
            }
            _ => self.faults -= 1,
        }
    }
}

fn secs(sim: &Sim, t: Instant) -> f64 {
    (t - sim.world.borrow().start).as_secs_f64()
}

/// A wall clock for other clients' writes.
fn wall(w: &World) -> leaderrun::record::Time {
    chrono::DateTime::from_timestamp(1_795_000_000, 0).unwrap_or_default()
        + chrono::Duration::from_std(Instant::now() - w.start).unwrap_or_default()
}

/// Faults every 100-1200ms until the quiet end.
async fn drive(driver: Rc<RefCell<Driver>>) {
    loop {
        let pause = {
            let mut d = driver.borrow_mut();
            Duration::from_millis(d.rng.random_range(100..1200))
        };
        tokio::time::sleep(pause).await;
        let mut d = driver.borrow_mut();
        if Instant::now() >= d.faults_until {
            // Faults armed but not yet met end here too.
            let mut w = d.sim.world.borrow_mut();
            w.errors_left = 0;
            w.lost_left = 0;
            w.expire_left = 0;
            w.log(|| "faults stop".into());
            return;
        }
        d.act();
    }
}
