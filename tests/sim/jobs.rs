//! The jobs' lives in simulated time, and the checks made at every start.
//!
//! A job starts when its process starts it, and ends at the first of: its own end, the end
//! its stop signal brings (a job may take a while, or ignore it until the KILL), and the
//! KILL after the grace (each of the guard's timers up to `GUARD_LATE` late). The stop begins
//! when leaderrun asks for it, when the guard's lifeline breaks (leaderrun killed), or at the
//! guard's deadline: the last one leaderrun sent, even if leaderrun is stopped meanwhile.
//! These are the guard's own rules (`guard::Timers`, which the guard process runs on
//! CLOCK_BOOTTIME): a stop begins once, and a deadline sent after it changes nothing.

use std::time::Duration;

use leaderrun::guard::Timers;
use leaderrun::supervisor::ChildExit;
use nix::sys::signal::Signal;
use tokio::time::Instant;

pub struct Job {
    pub slot: usize,
    pub process: usize,
    pub token: i32,
    pub start: Instant,
    /// When the job would end on its own.
    natural_end: Instant,
    /// How long it takes to end after the stop signal; None: only the KILL ends it.
    term_takes: Option<Duration>,
    /// The guard's deadline and stop, by the guard's own rules (`guard::Timers`), as of the
    /// last event; `guard_now` adds the stop at the deadline once it is due.
    guard: Timers<Instant>,
    /// How late the guard's timers act (a loaded host, a KILL whose process takes a moment to
    /// go): its deadline's stop and its KILL come this much after their time.
    late: Duration,
    /// Running when its lock was force-released: another may start before it has stopped
    /// (the documented cost of `force-release`; `step-down` is the safe way), until then: the
    /// release + the renew deadline (no renew of the leader's lands after the release) + its
    /// stop, at worst by the guard.
    excused_until: Option<Instant>,
    /// The lease its process promised, and its renew deadline in true time.
    lease: Duration,
    renew: Duration,
}

impl Job {
    /// When the guard acts on its deadline: `late` after it (a job started after its
    /// deadline, at once).
    fn guard_acts_at(&self) -> Instant {
        self.guard.deadline().max(self.start) + self.late
    }

    /// The guard as things stand now: the stop at its deadline begun if it is due.
    fn guard_now(&self) -> Timers<Instant> {
        let mut t = self.guard;
        let at = self.guard_acts_at();
        if Instant::now() >= at {
            t.at_deadline(at);
        }
        t
    }

    /// When the guard begins the stop at its deadline, unless leaderrun began it before.
    fn guard_stops_at(&self) -> Option<Instant> {
        let at = self.guard_acts_at();
        match self.guard.stop_begun() {
            Some(s) if s < at => None,
            _ => Some(at),
        }
    }

    /// The end as known now (later events can only bring it forward, never past what is
    /// already known to have ended).
    pub fn end(&self) -> Instant {
        let t = self.guard_now();
        let stopped = t
            .stop_begun()
            .zip(t.kill_at())
            .map(|(s, kill)| match self.term_takes {
                Some(d) if d < self.guard.grace() => s + d,
                _ => kill + self.late,
            });
        match stopped {
            Some(s) => s.min(self.natural_end),
            None => self.natural_end,
        }
    }

    pub fn alive_at(&self, t: Instant) -> bool {
        self.start <= t && t < self.end()
    }
}

#[derive(Default)]
pub struct Jobs {
    pub list: Vec<Job>,
    /// Per slot: the last token a job started with, unless a deletion came since.
    last_token: Vec<Option<i32>>,
    pub violations: Vec<String>,
    pub token_restarts: u32,
    /// Per slot: the last force-release, and the last deletion.
    force_released_at: Vec<Option<Instant>>,
    deleted_at: Vec<Option<Instant>>,
    /// Per slot: every hostile takeover, when and with what lease.
    taken_over_at: Vec<Vec<(Instant, Duration)>>,
    /// Leaderships held: (start, end) in seconds; None while held.
    pub leaderships: Vec<(f64, Option<f64>)>,
    renew_deadline: Duration,
}

pub type JobId = usize;

impl Jobs {
    pub fn new(slots: usize, renew_deadline: Duration) -> Jobs {
        Jobs {
            renew_deadline,
            last_token: vec![None; slots],
            force_released_at: vec![None; slots],
            deleted_at: vec![None; slots],
            taken_over_at: vec![Vec::new(); slots],
            ..Default::default()
        }
    }

    /// A job starts: checked against every other job of its slot, and its token against the
    /// last one. `acquired`: when its leadership began (a force-release since overrides it, as
    /// does a takeover with a shorter lease than `promise`: its process's lease, and its renew
    /// deadline in true time).
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &mut self,
        acquired: Instant,
        promise: (Duration, Duration),
        slot: usize,
        process: usize,
        token: i32,
        deadline: Instant,
        runs_for: Duration,
        term_takes: Option<Duration>,
        grace: Duration,
        late: Duration,
        at: f64,
    ) -> JobId {
        let now = Instant::now();
        let released = self.force_released_at[slot].filter(|f| *f >= acquired);
        let overridden = released.is_some();
        let (lease, renew) = promise;
        // A hostile takeover between the leadership's win and its job's start (its acquiring
        // write's answer slow to come back): the job is excused as a running one would be.
        let taken = self.taken_over_at[slot]
            .iter()
            .filter(|(t, shorter)| *t >= acquired && *shorter < lease)
            .map(|(t, _)| excused_after(*t, renew, grace, late))
            .max();
        let excused_until = released
            .map(|f| excused_after(f, self.renew_deadline, grace, late))
            .max(taken);
        let excused = |u: Option<Instant>| u.is_some_and(|u| now < u);
        for (i, j) in self.list.iter().enumerate() {
            if j.slot == slot
                && !excused(excused_until)
                && !excused(j.excused_until)
                && j.alive_at(now)
            {
                self.violations.push(format!(
                    "at {at:.6}s: job {} (p{}, slot {slot}, token {token}) started while job {i} (p{}, token {}) still runs (until {:.6}s after its start)",
                    self.list.len(),
                    process,
                    j.process,
                    j.token,
                    (j.end() - j.start).as_secs_f64()
                ));
            }
        }
        // A leadership won before the last deletion carries the old object's count: tokens
        // start again after a deletion (docs/RELIABILITY.md, known limits).
        let before_deletion = self.deleted_at[slot].is_some_and(|d| acquired < d);
        if !before_deletion && !overridden {
            if let Some(last) = self.last_token[slot] {
                if token <= last {
                    self.violations.push(format!(
                        "at {at:.6}s: p{process} leads slot {slot} with fencing token {token}, not above the last one, {last}"
                    ));
                }
            }
            self.last_token[slot] = Some(token);
        }
        self.list.push(Job {
            slot,
            process,
            token,
            start: now,
            natural_end: now + runs_for,
            term_takes,
            guard: Timers::new(deadline, grace),
            late,
            excused_until,
            lease,
            renew,
        });
        self.list.len() - 1
    }

    /// A renew moved the guard's deadline: too late if the guard already began the stop.
    pub fn extend(&mut self, id: JobId, deadline: Instant) {
        let j = &mut self.list[id];
        j.guard = j.guard_now();
        j.guard.set_deadline(deadline);
    }

    /// The stop begins now (leaderrun asked, or the guard's lifeline broke).
    pub fn stop(&mut self, id: JobId) {
        let now = Instant::now();
        let j = &mut self.list[id];
        j.guard = j.guard_now();
        j.guard.begin_stop(now);
    }

    /// TERM passed on to the job: it ends if it honours it.
    pub fn term(&mut self, id: JobId) {
        let now = Instant::now();
        let j = &mut self.list[id];
        if let Some(d) = j.term_takes {
            j.natural_end = j.natural_end.min(now + d);
        }
    }

    pub fn end(&self, id: JobId) -> Instant {
        self.list[id].end()
    }

    /// When the guard begins the stop at its deadline as things stand (None: leaderrun
    /// began it before).
    pub fn guard_stops_at(&self, id: JobId) -> Option<Instant> {
        self.list[id].guard_stops_at()
    }

    /// How the job ended: on its own (0), or by the stop (its signal, or the KILL).
    pub fn exit(&self, id: JobId) -> ChildExit {
        let j = &self.list[id];
        let end = j.end();
        if end >= j.natural_end {
            ChildExit::Code(0)
        } else if j.guard_now().kill_at().is_some_and(|k| end < k) {
            ChildExit::Signal(Signal::SIGTERM as i32)
        } else {
            ChildExit::Signal(Signal::SIGKILL as i32)
        }
    }

    /// leaderrun kills what is left itself (its guard did not answer): the job ends now.
    pub fn kill(&mut self, id: JobId) {
        let now = Instant::now();
        let j = &mut self.list[id];
        j.natural_end = j.natural_end.min(now);
    }

    /// The lock was force-released: the jobs running now are the operator's to answer for.
    pub fn force_released(&mut self, slot: usize) {
        let now = Instant::now();
        self.force_released_at[slot] = Some(now);
        let renew_deadline = self.renew_deadline;
        for j in self
            .list
            .iter_mut()
            .filter(|j| j.slot == slot && j.alive_at(now))
        {
            j.excused_until = Some(excused_after(now, renew_deadline, j.guard.grace(), j.late));
        }
    }

    /// The longest lease promised by the processes of the jobs of `slot` running now.
    pub fn longest_promise(&self, slot: usize) -> Duration {
        let now = Instant::now();
        self.list
            .iter()
            .filter(|j| j.slot == slot && j.alive_at(now))
            .map(|j| j.lease)
            .max()
            .unwrap_or_default()
    }

    /// Another client took the lock over from a live holder, writing a lease shorter than the one
    /// the holder promised: like a force-release, it overrides the promise (a copy that saw only
    /// the new record waits only its lease). The holder's job is excused until it must have
    /// stopped (its renew deadline, its stop), and so is the job of a leadership won before
    /// the takeover but started after it (`start`). With one timing for all, nothing is excused.
    pub fn taken_over(&mut self, slot: usize, lease: Duration) {
        let now = Instant::now();
        self.taken_over_at[slot].push((now, lease));
        for j in self
            .list
            .iter_mut()
            .filter(|j| j.slot == slot && j.lease > lease && j.alive_at(now))
        {
            let until = excused_after(now, j.renew, j.guard.grace(), j.late);
            j.excused_until = Some(j.excused_until.map_or(until, |u| u.max(until)));
        }
    }

    /// The lock was deleted: tokens may start again (docs/RELIABILITY.md's known limits).
    pub fn deleted(&mut self, slot: usize) {
        if self.last_token[slot].is_some() {
            self.token_restarts += 1;
        }
        self.last_token[slot] = None;
        self.deleted_at[slot] = Some(Instant::now());
    }
}

/// The documented cost of a force-release at `f` for a job of this grace and lateness: no renew
/// of its leader lands after the release, and its stop takes the grace, at worst by the guard.
fn excused_after(f: Instant, renew_deadline: Duration, grace: Duration, late: Duration) -> Instant {
    f + renew_deadline + grace + 2 * late
}
