//! One lock, two kinds of candidate: leaderrun and a peer take turns on the same Lease. Each
//! leader is ended (TERM, which every candidate answers by stopping its job and releasing as
//! it can; one round a SIGKILL instead), and the other kind must take over, never while the
//! first one's job still runs.

use std::collections::HashSet;
use std::process::Child;
use std::time::Duration;

use crate::peers::Impl;
use crate::{now_nanos, read_log, wait_for, Bench, LEASE};

/// What the shared lock showed.
#[derive(Clone, Default)]
pub struct Respect {
    /// Handovers from leaderrun to the peer, and from the peer to leaderrun.
    pub to_peer: usize,
    pub to_leaderrun: usize,
    /// Moments two jobs ran at once.
    pub overlaps: usize,
    /// Why the rounds stopped early, if they did: a leader's end that nobody took over from.
    pub stuck: Option<String>,
}

impl Respect {
    pub fn summary(&self) -> String {
        let mut s = if self.overlaps == 0 {
            format!(
                "yes: {} to it, {} back, 0 overlaps",
                self.to_peer, self.to_leaderrun
            )
        } else {
            format!(
                "NO: {} overlaps ({} to it, {} back)",
                self.overlaps, self.to_peer, self.to_leaderrun
            )
        };
        if let Some(why) = &self.stuck {
            s.push_str(&format!("; stuck: {why}"));
        }
        s
    }
}

/// Counts the moments a job started while another ran; `killed` are (identity, time) of
/// candidates killed outright, whose jobs may write no stop line.
fn overlaps(lines: &[(String, String, u128)], killed: &[(String, u128)]) -> usize {
    let mut events: Vec<(u128, bool, &str)> = lines
        .iter()
        .map(|(what, id, t)| (*t, what == "start", id.as_str()))
        .chain(killed.iter().map(|(id, t)| (*t, false, id.as_str())))
        .collect();
    // At one instant, a stop counts before a start.
    events.sort_by_key(|e| (e.0, e.1));
    let mut running = HashSet::new();
    let mut n = 0;
    for (_, start, id) in events {
        if start {
            if !running.is_empty() {
                n += 1;
            }
            running.insert(id);
        } else {
            running.remove(id);
        }
    }
    n
}

impl Bench {
    /// `rounds` turns of leadership between leaderrun and `peer` on one lock.
    pub fn respect(&mut self, peer: Impl, rounds: usize) -> Result<Respect, String> {
        let name = self.name("mixed");
        let log = self.dir.join(format!("{name}.log"));
        let mut r = Respect::default();
        let mut killed = Vec::new();
        // (kind, identity, process) for the two live candidates.
        let mut live: Vec<(Impl, String, Child)> = Vec::new();
        let mut serial = 0;
        let mut start = |b: &Bench, which: Impl, live: &mut Vec<(Impl, String, Child)>| {
            serial += 1;
            let id = format!(
                "{name}-{}-{serial}",
                if which == peer { "peer" } else { "lr" }
            );
            let child = b.candidate(which, &name, &id, &log, 0.0)?;
            live.push((which, id, child));
            Ok::<(), String>(())
        };
        start(self, Impl::Leaderrun, &mut live)?;
        wait_for("the first leader", Duration::from_secs(60), || {
            read_log(&log).len() == 1
        })?;
        start(self, peer, &mut live)?;
        for round in 0..rounds {
            // The standby has read the lock and waits.
            std::thread::sleep(Duration::from_secs(3));
            let lines = read_log(&log);
            let Some(leader) = lines
                .iter()
                .rev()
                .find(|l| l.0 == "start")
                .map(|l| l.1.clone())
            else {
                break;
            };
            let Some(i) = live.iter().position(|l| l.1 == leader) else {
                r.stuck = Some(format!("{leader} leads but is not running"));
                break;
            };
            let (kind, id, mut child) = live.remove(i);
            let signal = if round == rounds / 2 {
                nix::sys::signal::Signal::SIGKILL
            } else {
                nix::sys::signal::Signal::SIGTERM
            };
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let at = now_nanos();
            let _ = nix::sys::signal::kill(pid, signal);
            let _ = child.wait();
            if signal == nix::sys::signal::Signal::SIGKILL {
                killed.push((id.clone(), at));
            }
            let starts = lines.iter().filter(|l| l.0 == "start").count();
            let took = wait_for(
                "the other kind's takeover",
                Duration::from_secs(2 * LEASE + 15),
                || read_log(&log).iter().filter(|l| l.0 == "start").count() > starts,
            );
            if took.is_err() {
                r.stuck = Some(format!("nobody took over from {} ({signal})", kind.label()));
                break;
            }
            if kind == peer {
                r.to_leaderrun += 1;
            } else {
                r.to_peer += 1;
            }
            start(self, kind, &mut live)?;
        }
        crate::stop(live.into_iter().map(|l| l.2).collect());
        r.overlaps = overlaps(&read_log(&log), &killed);
        Ok(r)
    }
}
