//! What the last leadership of a lock did: the `leaderrun.io/last-run` annotation beside the
//! record, written with the release (or, for a leadership that ended without one, by the next
//! leader in its takeover write). Other clients ignore it; one that drops it loses the note,
//! never the lock.

use serde::{Deserialize, Serialize};

use crate::record::{self, LeaderRecord, Time};

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    /// The job exited on its own with this code.
    Exited {
        #[serde(rename = "exitCode")]
        exit_code: i32,
    },
    /// The job was ended by this signal (not one leaderrun sent on a loss).
    Signaled { signal: i32 },
    /// `leaderrun step-down` asked the holder to let go; the job was stopped.
    SteppedDown,
    /// The leadership ended without a word from its holder (killed, stopped past its
    /// deadline, `--no-release`): recorded by the next leader when it took over.
    NoWord {
        #[serde(rename = "lastRenewed", skip_serializing_if = "Option::is_none")]
        last_renewed: Option<String>,
    },
    /// `--once-per`: a run that succeeded had ended recently; this leader ran nothing.
    Skipped {
        #[serde(rename = "becauseOf")]
        because_of: Box<LastRun>,
    },
}

/// One run, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastRun {
    pub holder: String,
    /// The host or pod it ran on ($POD_NAME, else the host name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub fencing_token: i32,
}

impl LastRun {
    /// A run of ours, ended now.
    pub fn ours(held: &LeaderRecord, host: Option<String>, outcome: Outcome, now: Time) -> Self {
        LastRun {
            holder: held.holder_identity.clone(),
            host,
            started: held.acquire_time.map(record::format_micros),
            ended: Some(record::format_micros(now)),
            outcome,
            fencing_token: held.leader_transitions,
        }
    }

    /// A leadership that ended without a word, as its last record shows it.
    pub fn silent(prev: &LeaderRecord) -> Self {
        LastRun {
            holder: prev.holder_identity.clone(),
            host: None,
            started: prev.acquire_time.map(record::format_micros),
            ended: None,
            outcome: Outcome::NoWord {
                last_renewed: prev.renew_time.map(record::format_micros),
            },
            fencing_token: prev.leader_transitions,
        }
    }

    pub fn parse(text: &str) -> Option<LastRun> {
        serde_json::from_str(text).ok()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether this is the run of the leadership `r` records (same holder and token).
    pub fn is_of(&self, r: &LeaderRecord) -> bool {
        self.holder == r.holder_identity && self.fencing_token == r.leader_transitions
    }

    /// A run that succeeded (exit 0), and when it ended.
    pub fn succeeded_at(&self) -> Option<Time> {
        match (&self.outcome, &self.ended) {
            (Outcome::Exited { exit_code: 0 }, Some(end)) => record::parse_time(end),
            // A skip stands for the run it deferred to.
            (Outcome::Skipped { because_of }, _) => because_of.succeeded_at(),
            _ => None,
        }
    }

    /// A few words for a table: the outcome, who, and how long ago it ended.
    pub fn brief(&self, now: Time) -> String {
        let outcome = match &self.outcome {
            Outcome::Exited { exit_code } => format!("exited {exit_code}"),
            Outcome::Signaled { signal } => format!("signal {signal}"),
            Outcome::SteppedDown => "stepped down".into(),
            Outcome::NoWord { .. } => "no word (killed?)".into(),
            Outcome::Skipped { .. } => "skipped (--once-per)".into(),
        };
        let when = self
            .ended
            .as_deref()
            .or(match &self.outcome {
                Outcome::NoWord { last_renewed } => last_renewed.as_deref(),
                _ => None,
            })
            .and_then(record::parse_time)
            .map(|t| record::human(record::seconds_between(t, now) as i64))
            .unwrap_or_else(|| "-".into());
        format!("{outcome}, {}, {when}", self.holder)
    }

    /// One line for people.
    pub fn summary(&self, now: Time) -> String {
        let ago = |t: &Option<String>| {
            t.as_deref()
                .and_then(record::parse_time)
                .map(|t| {
                    format!(
                        "{} ({})",
                        record::format_seconds(t),
                        record::human(record::seconds_between(t, now) as i64)
                    )
                })
                .unwrap_or_else(|| "-".into())
        };
        let outcome = match &self.outcome {
            Outcome::Exited { exit_code } => format!("exited {exit_code}"),
            Outcome::Signaled { signal } => format!("killed by signal {signal}"),
            Outcome::SteppedDown => "stepped down (leaderrun step-down)".into(),
            Outcome::NoWord { last_renewed } => format!(
                "ended without a word (holder killed, stopped or --no-release), last renewed {}",
                ago(last_renewed)
            ),
            Outcome::Skipped { because_of } => format!(
                "skipped (--once-per): {} had succeeded, ended {}",
                because_of.holder,
                ago(&because_of.ended)
            ),
        };
        let duration = match (
            self.started.as_deref().and_then(record::parse_time),
            self.ended.as_deref().and_then(record::parse_time),
        ) {
            (Some(a), Some(b)) => format!(", ran {}", human_span(record::seconds_between(a, b))),
            _ => String::new(),
        };
        format!(
            "{outcome}; holder {}{}, started {}, ended {}{duration}, token {}",
            self.holder,
            self.host
                .as_ref()
                .map(|h| format!(" on {h}"))
                .unwrap_or_default(),
            ago(&self.started),
            ago(&self.ended),
            self.fencing_token
        )
    }
}

fn human_span(secs: f64) -> String {
    record::human(secs.max(0.0) as i64)
        .trim_end_matches(" ago")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_as_documented() {
        let r = LeaderRecord::taken(None, Some(6), "me", 15, record::now());
        let run = LastRun::ours(
            &r,
            Some("node-1".into()),
            Outcome::Exited { exit_code: 0 },
            record::now(),
        );
        let text = run.to_json();
        assert!(text.contains(r#""outcome":"exited""#), "{text}");
        assert!(text.contains(r#""exitCode":0"#), "{text}");
        assert!(text.contains(r#""fencingToken":7"#), "{text}");
        assert_eq!(LastRun::parse(&text), Some(run.clone()));
        assert!(run.succeeded_at().is_some());
        assert!(run.is_of(&r));
        let failed = LastRun {
            outcome: Outcome::Exited { exit_code: 3 },
            ..run.clone()
        };
        assert_eq!(failed.succeeded_at(), None);
        let silent = LastRun::silent(&r);
        assert!(silent.to_json().contains(r#""outcome":"no-word""#));
        assert_eq!(silent.succeeded_at(), None);
        let skipped = LastRun {
            outcome: Outcome::Skipped {
                because_of: Box::new(run.clone()),
            },
            ..run
        };
        assert_eq!(LastRun::parse(&skipped.to_json()), Some(skipped.clone()));
        assert!(skipped.succeeded_at().is_some());
        assert_eq!(LastRun::parse("not json"), None);
    }
}
