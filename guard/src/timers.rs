//! The guard's decisions in time, apart from the processes it acts on: when the stop begins
//! (at the deadline, unless something began it before), that it begins once, and when KILL
//! follows. Generic over the clock: the guard runs it on CLOCK_BOOTTIME, the simulation
//! (tests/sim) on each simulated host's clock, so both run the same rules.

use std::ops::Add;
use std::time::Duration;

/// When KILL goes to the whole tree, for a stop begun at `stop_begun` (by leaderrun, or by
/// the guard itself at its deadline).
pub fn kill_time<T: Add<Duration, Output = T>>(stop_begun: T, grace: Duration) -> T {
    stop_begun + grace
}

/// Whether the job may start at `now`: only before the leadership's deadline. A leaderrun
/// stopped (SIGSTOP, a stall) between winning the lock and starting the job may go on after
/// another copy took over; its job must not start then, even for the grace period (found by
/// the simulation, tests/sim).
pub fn may_start<T: PartialOrd>(now: T, deadline: T) -> bool {
    now < deadline
}

/// The deadline, and the stop once begun.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers<T> {
    deadline: T,
    grace: Duration,
    stop_begun: Option<T>,
}

impl<T: Copy + PartialOrd + Add<Duration, Output = T>> Timers<T> {
    pub fn new(deadline: T, grace: Duration) -> Self {
        Timers {
            deadline,
            grace,
            stop_begun: None,
        }
    }

    /// The deadline a renew moved (leaderrun sends it). After the stop began it changes
    /// nothing: a stop is never taken back.
    pub fn set_deadline(&mut self, deadline: T) {
        if self.stop_begun.is_none() {
            self.deadline = deadline;
        }
    }

    pub fn deadline(&self) -> T {
        self.deadline
    }

    /// How long the stop signal has before KILL.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Begins the stop at `now`; false if it had begun already (the first one counts).
    pub fn begin_stop(&mut self, now: T) -> bool {
        if self.stop_begun.is_some() {
            return false;
        }
        self.stop_begun = Some(now);
        true
    }

    /// Whether the stop is due at `now` by the deadline: it passed, and nothing began the
    /// stop before.
    pub fn deadline_passed(&self, now: T) -> bool {
        self.stop_begun.is_none() && now >= self.deadline
    }

    /// At `now`: begins the stop if the deadline has passed; true when it did.
    pub fn at_deadline(&mut self, now: T) -> bool {
        self.deadline_passed(now) && self.begin_stop(now)
    }

    pub fn stop_begun(&self) -> Option<T> {
        self.stop_begun
    }

    /// When KILL goes out, once stopping.
    pub fn kill_at(&self) -> Option<T> {
        self.stop_begun.map(|s| kill_time(s, self.grace))
    }

    /// Whether KILL is due at `now`.
    pub fn kill_due(&self, now: T) -> bool {
        self.kill_at().is_some_and(|k| now >= k)
    }

    /// The next moment the guard must act on its own: the deadline; once stopping, the next
    /// sweep of the tree, `sweep` after `now`.
    pub fn next_wake(&self, now: T, sweep: Duration) -> T {
        match self.stop_begun {
            Some(_) => now + sweep,
            None => self.deadline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(3);

    fn at(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn the_stop_begins_at_the_deadline_once_and_kill_follows_after_the_grace() {
        let mut t = Timers::new(at(10), GRACE);
        assert!(!t.at_deadline(at(9)));
        assert_eq!(t.kill_at(), None);
        assert!(t.at_deadline(at(10)));
        assert!(!t.at_deadline(at(11)), "the stop begins once");
        assert_eq!(t.stop_begun(), Some(at(10)));
        assert!(!t.kill_due(at(12)));
        assert!(t.kill_due(at(13)));
    }

    #[test]
    fn a_renew_moves_the_deadline_before_the_stop() {
        let mut t = Timers::new(at(10), GRACE);
        t.set_deadline(at(20));
        assert_eq!(t.deadline(), at(20));
        assert!(!t.at_deadline(at(15)));
        assert!(t.at_deadline(at(20)));
    }

    #[test]
    fn a_deadline_sent_after_the_stop_began_takes_nothing_back() {
        let mut t = Timers::new(at(10), GRACE);
        assert!(t.begin_stop(at(4)));
        t.set_deadline(at(100));
        assert_eq!(t.deadline(), at(10));
        assert!(!t.begin_stop(at(5)));
        assert_eq!(t.kill_at(), Some(at(7)));
    }

    #[test]
    fn the_guard_wakes_at_the_deadline_and_once_stopping_a_sweep_later() {
        let sweep = Duration::from_millis(20);
        let mut t = Timers::new(at(10), GRACE);
        assert_eq!(t.next_wake(at(4), sweep), at(10));
        t.begin_stop(at(5));
        assert_eq!(t.next_wake(at(6), sweep), at(6) + sweep);
    }

    #[test]
    fn a_job_may_start_only_before_its_deadline() {
        assert!(may_start(at(9), at(10)));
        assert!(!may_start(at(10), at(10)));
    }
}
