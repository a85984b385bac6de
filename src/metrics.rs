//! The numbers `/metrics` shows and `/healthz`, `/readyz` and `/leaderz` judge by. Only the reporter
//! (`report.rs`) records into them; `health.rs` serves them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// A metric's samples: (name suffix with labels, value).
type Samples = Vec<(String, String)>;

/// Upper bounds of the renew latency histogram, in seconds.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Default)]
pub struct Metrics {
    is_leader: AtomicBool,
    /// While a child may run under our leadership: the moment it must start
    /// stopping if no renew succeeds (last renew sent + renew deadline).
    deadline: Mutex<Option<Instant>>,
    last_renew: Mutex<Option<Instant>>,
    /// When the API server last answered about the lock (a read, a watch event, a renew).
    heard: Mutex<Option<Instant>>,
    transitions: AtomicI64,
    acquisitions: AtomicU64,
    renew_attempts: AtomicU64,
    renew_failures: AtomicU64,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    child_starts: AtomicU64,
    rejoins: AtomicU64,
    child_exits: Mutex<BTreeMap<u8, u64>>,
    /// The last run this process led: its outcome, whether it succeeded, its end (Unix time).
    last_run: Mutex<Option<(&'static str, bool, f64)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Values here are plain numbers; a poisoned lock still holds a usable one.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    pub fn became_leader(&self, transitions: i32, renewed_at: Instant, deadline: Instant) {
        self.acquisitions.fetch_add(1, Ordering::Relaxed);
        self.transitions
            .store(transitions as i64, Ordering::Relaxed);
        *lock(&self.last_renew) = Some(renewed_at);
        *lock(&self.deadline) = Some(deadline);
        self.heard(Instant::now());
        self.is_leader.store(true, Ordering::Relaxed);
    }

    pub fn renewed(&self, sent: Instant, latency: Duration, deadline: Instant) {
        self.renew_attempts.fetch_add(1, Ordering::Relaxed);
        self.observe_latency(latency);
        *lock(&self.last_renew) = Some(sent);
        *lock(&self.deadline) = Some(deadline);
        self.heard(Instant::now());
    }

    /// The API server answered about the lock.
    pub fn heard(&self, at: Instant) {
        *lock(&self.heard) = Some(at);
    }

    pub fn renew_failed(&self, latency: Duration) {
        self.renew_attempts.fetch_add(1, Ordering::Relaxed);
        self.renew_failures.fetch_add(1, Ordering::Relaxed);
        self.observe_latency(latency);
    }

    fn observe_latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Leadership is over, but the child may still be stopping: not ready, and
    /// unhealthy once past the deadline.
    pub fn lost_leadership(&self) {
        self.is_leader.store(false, Ordering::Relaxed);
    }

    /// Nothing of this leadership runs any more.
    pub fn leadership_ended(&self) {
        self.is_leader.store(false, Ordering::Relaxed);
        *lock(&self.deadline) = None;
    }

    /// Counts a rejoin (`--rejoin` after a loss); returns how many there were.
    pub fn rejoined(&self) -> u64 {
        self.rejoins.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn child_started(&self) {
        self.child_starts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn child_exited(&self, code: u8) {
        *lock(&self.child_exits).entry(code).or_default() += 1;
    }

    /// A run this process led ended (as recorded on the lock).
    pub fn last_run(&self, run: &crate::lastrun::LastRun) {
        use crate::lastrun::Outcome;
        let outcome = match run.outcome {
            Outcome::Exited { .. } => "exited",
            Outcome::Signaled { .. } => "signaled",
            Outcome::SteppedDown => "stepped-down",
            Outcome::NoWord { .. } => "no-word",
            Outcome::Skipped { .. } => "skipped",
        };
        let ended = run
            .ended
            .as_deref()
            .and_then(crate::record::parse_time)
            .map_or(f64::NAN, |t| t.timestamp_micros() as f64 / 1e6);
        let success = matches!(run.outcome, Outcome::Exited { exit_code: 0 });
        *lock(&self.last_run) = Some((outcome, success, ended));
    }

    pub fn is_leader(&self) -> bool {
        self.is_leader.load(Ordering::Relaxed)
    }

    /// Ready (`/readyz`): in touch and taking part. A leader renewing within its deadline;
    /// a standby the API server answered within `stale_after`. Else why not.
    pub fn ready(&self, now: Instant, stale_after: Duration) -> Result<(), String> {
        if self.overdue(now) {
            return Err("overdue: leader past its renew deadline".into());
        }
        if self.is_leader() {
            return Ok(());
        }
        match *lock(&self.heard) {
            Some(t) if now.saturating_duration_since(t) <= stale_after => Ok(()),
            Some(t) => Err(format!(
                "no answer from the API server about the lock for {:.1}s (more than {stale_after:?})",
                now.saturating_duration_since(t).as_secs_f64()
            )),
            None => Err("no answer from the API server about the lock yet".into()),
        }
    }

    /// Past the renew deadline while a child may still run.
    pub fn overdue(&self, now: Instant) -> bool {
        lock(&self.deadline).is_some_and(|d| now > d)
    }

    /// The Prometheus text format: one HELP, one TYPE and the samples per metric.
    pub fn render(&self, now: Instant) -> String {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        let one = |v: String| vec![(String::new(), v)];
        let since = lock(&self.last_renew).map_or("NaN".to_string(), |t| {
            format!("{:.3}", now.saturating_duration_since(t).as_secs_f64())
        });
        let exits: Vec<(String, String)> = lock(&self.child_exits)
            .iter()
            .map(|(c, k)| (format!("{{code=\"{c}\"}}"), k.to_string()))
            .collect();
        let last = *lock(&self.last_run);
        let last_success = last.map(|(_, ok, _)| (String::new(), (ok as u8).to_string()));
        let last_end = last
            .map(|(outcome, _, end)| (format!("{{outcome=\"{outcome}\"}}"), format!("{end:.6}")));
        let metrics: [(&str, &str, &str, Samples); 12] = [
            ("leaderrun_is_leader", "gauge", "1 while this process holds the lock.", one((self.is_leader() as u8).to_string())),
            ("leaderrun_leader_transitions", "gauge", "The lock's leaderTransitions when this process last acquired it.", one(self.transitions.load(Ordering::Relaxed).to_string())),
            ("leaderrun_acquisitions_total", "counter", "Times this process became leader.", one(n(&self.acquisitions))),
            ("leaderrun_renew_attempts_total", "counter", "Renew requests sent.", one(n(&self.renew_attempts))),
            ("leaderrun_renew_failures_total", "counter", "Renew requests that failed.", one(n(&self.renew_failures))),
            ("leaderrun_renew_duration_seconds", "histogram", "Latency of renew requests.", self.histogram()),
            ("leaderrun_seconds_since_last_renew", "gauge", "Seconds since the send time of the last successful renew or acquisition that changed the leader record.", one(since)),
            ("leaderrun_child_starts_total", "counter", "Children started.", one(n(&self.child_starts))),
            ("leaderrun_rejoins_total", "counter", "Times this process became a standby again after lost leadership (--rejoin).", one(n(&self.rejoins))),
            ("leaderrun_child_exits_total", "counter", "Children that ended, by exit code (128+N for signal N).", exits),
            ("leaderrun_last_run_success", "gauge", "1 if the last run this process led succeeded (exit 0), else 0; absent before its first.", last_success.into_iter().collect()),
            ("leaderrun_last_run_end_timestamp_seconds", "gauge", "When the last run this process led ended (Unix time), by how it ended.", last_end.into_iter().collect()),
        ];
        let mut s = String::new();
        for (name, kind, help, samples) in metrics {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (suffix, value) in samples {
                let _ = writeln!(s, "{name}{suffix} {value}");
            }
        }
        s
    }

    /// The renew latency histogram's samples: cumulative buckets, sum and count.
    fn histogram(&self) -> Vec<(String, String)> {
        let mut hist: Vec<(String, String)> = BUCKETS
            .iter()
            .zip(&self.latency_buckets)
            .map(|(b, c)| {
                (
                    format!("_bucket{{le=\"{b}\"}}"),
                    c.load(Ordering::Relaxed).to_string(),
                )
            })
            .collect();
        let count = self.latency_count.load(Ordering::Relaxed).to_string();
        hist.push(("_bucket{le=\"+Inf\"}".into(), count.clone()));
        hist.push((
            "_sum".into(),
            format!(
                "{}",
                self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6
            ),
        ));
        hist.push(("_count".into(), count));
        hist
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_in_prometheus_text_format() {
        let m = Metrics::default();
        let t0 = Instant::now();
        m.became_leader(2, t0, t0 + Duration::from_secs(10));
        m.renewed(t0, Duration::from_millis(7), t0 + Duration::from_secs(10));
        m.renew_failed(Duration::from_millis(300));
        m.child_started();
        m.child_exited(3);
        let r = crate::record::LeaderRecord::taken(None, None, "me", 15, crate::record::now());
        let run = crate::lastrun::LastRun::ours(
            &r,
            None,
            crate::lastrun::Outcome::Exited { exit_code: 3 },
            crate::record::now(),
        );
        m.last_run(&run);
        let text = m.render(t0);
        for line in [
            "leaderrun_is_leader 1",
            "leaderrun_leader_transitions 2",
            "leaderrun_renew_attempts_total 2",
            "leaderrun_renew_failures_total 1",
            "leaderrun_renew_duration_seconds_bucket{le=\"0.01\"} 1",
            "leaderrun_renew_duration_seconds_bucket{le=\"0.5\"} 2",
            "leaderrun_renew_duration_seconds_count 2",
            "leaderrun_child_exits_total{code=\"3\"} 1",
            "leaderrun_last_run_success 0",
            "leaderrun_last_run_end_timestamp_seconds{outcome=\"exited\"} 1",
            "# TYPE leaderrun_renew_duration_seconds histogram",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }
}
