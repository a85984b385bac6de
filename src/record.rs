//! The leader record and its two wire formats. Pure: no I/O, no clock.
//!
//! Read tolerantly (client-go's format, the Python client's, missing fields);
//! written exactly as client-go writes it.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value};

/// The ConfigMap annotation that holds the record (client-go's `LeaderElectionRecordAnnotationKey`).
pub const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

/// One lock record: who holds it, for how long, since when, and how many times it changed hands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaderRecord {
    /// Empty when nobody holds the lock.
    pub holder_identity: String,
    /// 0 when the record does not say.
    pub lease_duration_seconds: i32,
    pub acquire_time: Option<DateTime<Utc>>,
    pub renew_time: Option<DateTime<Utc>>,
    pub leader_transitions: i32,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct RecordError(pub String);

/// A point in time as records carry it. chrono stays inside this module: other modules
/// name the type and call the functions here.
pub type Time = DateTime<Utc>;

/// How much older than its own lapse a record must look before `--no-wait` watches it
/// rather than giving up: a generous allowance for clock offsets between hosts.
const ABANDONED_ALLOWANCE_SECONDS: i64 = 60;

/// How a lock looks by the record's own clock: for people (`inspect`), never for decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Held,
    Free,
    Expired,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Held => "held",
            State::Free => "free",
            State::Expired => "expired",
        }
    }
}

impl LeaderRecord {
    pub fn is_held(&self) -> bool {
        !self.holder_identity.is_empty()
    }

    /// When the record's own timestamps say it lapses: renewTime + leaseDurationSeconds.
    /// None without a renew time, or when the sum leaves the calendar (an absurd record).
    pub fn lapses_at(&self) -> Option<Time> {
        let renewed = self.renew_time?;
        let lease = chrono::TimeDelta::try_seconds(i64::from(self.lease_duration_seconds.max(0)))?;
        renewed.checked_add_signed(lease)
    }

    /// Held, free, or expired by the record's clock against `now`.
    pub fn state(&self, now: Time) -> State {
        if !self.is_held() {
            State::Free
        } else if self.lapses_at().is_some_and(|t| t <= now) {
            State::Expired
        } else {
            State::Held
        }
    }

    /// Seconds until the record lapses by its own clock (negative: lapsed); None if free.
    pub fn seconds_left(&self, now: Time) -> Option<f64> {
        self.lapses_at()
            .filter(|_| self.is_held())
            .map(|t| seconds_between(now, t))
    }

    /// True when the record's own timestamps say it lapsed long ago. Used only to decide
    /// whether `--no-wait` should watch a lock for a lease duration, never to take it.
    pub fn looks_abandoned(&self, now: Time) -> bool {
        self.lapses_at()
            .and_then(|t| {
                t.checked_add_signed(chrono::TimeDelta::seconds(ABANDONED_ALLOWANCE_SECONDS))
            })
            .is_some_and(|t| t < now)
    }

    /// The record that takes the lock for `me`: a new acquire time, and one more transition
    /// than the record taken over (the fencing token). `prev` is None when the object does
    /// not exist; `seen_transitions` is the highest count seen on the lock (before it was
    /// deleted, too), if any, so that tokens never go backwards across a re-creation that
    /// this process saw.
    pub fn taken(
        prev: Option<&LeaderRecord>,
        seen_transitions: Option<i32>,
        me: &str,
        lease_seconds: i32,
        now: Time,
    ) -> LeaderRecord {
        // Above both the record taken over and any count seen before (a re-created object
        // may start lower than the one deleted).
        let transitions = match (prev.map(|p| p.leader_transitions), seen_transitions) {
            (Some(p), Some(seen)) => p.max(seen).saturating_add(1),
            (Some(n), None) | (None, Some(n)) => n.saturating_add(1),
            (None, None) => 0,
        };
        LeaderRecord {
            holder_identity: me.to_string(),
            lease_duration_seconds: lease_seconds,
            acquire_time: Some(now),
            renew_time: Some(now),
            leader_transitions: transitions,
        }
    }

    /// The renewal of our own record: acquire time and transitions kept, the renew time
    /// moved to `now` (taken with `now_at` at the storage's resolution), but always later
    /// than the one written before, by at least `resolution` (a second for a ConfigMap), so
    /// that a wall clock stepping back never makes a renew look like an older record to a
    /// follower. While `now` is within the last renew's step, the renewal equals the record:
    /// there is nothing to write.
    pub fn renewed(
        &self,
        lease_seconds: i32,
        now: Time,
        resolution: std::time::Duration,
    ) -> LeaderRecord {
        let step = step_of(resolution);
        let renew_time = match self.renew_time {
            Some(last) if now < last => last.checked_add_signed(step).unwrap_or(last),
            _ => now,
        };
        LeaderRecord {
            lease_duration_seconds: lease_seconds,
            renew_time: Some(renew_time),
            ..self.clone()
        }
    }

    /// client-go's ReleaseOnCancel record: no holder, a 1s duration, the transition count
    /// kept so that fencing tokens stay monotonic.
    pub fn released(&self, now: Time) -> LeaderRecord {
        LeaderRecord {
            holder_identity: String::new(),
            lease_duration_seconds: 1,
            acquire_time: Some(now),
            renew_time: Some(now),
            leader_transitions: self.leader_transitions,
        }
    }

    pub fn from_lease_spec(spec: &LeaseSpec) -> LeaderRecord {
        LeaderRecord {
            holder_identity: spec.holder_identity.clone().unwrap_or_default(),
            lease_duration_seconds: spec.lease_duration_seconds.unwrap_or(0),
            acquire_time: spec.acquire_time.as_ref().and_then(micro_to_chrono),
            renew_time: spec.renew_time.as_ref().and_then(micro_to_chrono),
            leader_transitions: spec.lease_transitions.unwrap_or(0),
        }
    }

    /// client-go's `LeaderElectionRecordToLeaseSpec`: every field set, holder
    /// included when empty.
    pub fn to_lease_spec(&self, base: Option<&LeaseSpec>) -> LeaseSpec {
        let mut spec = base.cloned().unwrap_or_default();
        spec.holder_identity = Some(self.holder_identity.clone());
        spec.lease_duration_seconds = Some(self.lease_duration_seconds);
        spec.acquire_time = self.acquire_time.map(chrono_to_micro);
        spec.renew_time = self.renew_time.map(chrono_to_micro);
        spec.lease_transitions = Some(self.leader_transitions);
        spec
    }

    /// Parses the ConfigMap annotation: client-go's JSON, or the Python client's
    /// (duration as a string, times like `2026-11-25 02:40:00.123456`).
    pub fn from_annotation(text: &str) -> Result<LeaderRecord, RecordError> {
        let v: Value = serde_json::from_str(text).map_err(|e| {
            RecordError(format!(
                "the {LEADER_ANNOTATION} annotation is not JSON ({e})"
            ))
        })?;
        let Value::Object(m) = v else {
            return Err(RecordError(format!(
                "the {LEADER_ANNOTATION} annotation is not a JSON object"
            )));
        };
        Ok(LeaderRecord {
            holder_identity: match m.get("holderIdentity") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => {
                    return Err(RecordError(format!(
                        "holderIdentity is {other}, not a string"
                    )))
                }
            },
            lease_duration_seconds: int_field(&m, "leaseDurationSeconds")?,
            acquire_time: time_field(&m, "acquireTime")?,
            renew_time: time_field(&m, "renewTime")?,
            leader_transitions: int_field(&m, "leaderTransitions")?,
        })
    }

    /// client-go's format: metav1.Time in RFC 3339 seconds, the duration a number.
    pub fn to_annotation(&self) -> String {
        let mut m = Map::new();
        m.insert(
            "holderIdentity".into(),
            Value::String(self.holder_identity.clone()),
        );
        m.insert(
            "leaseDurationSeconds".into(),
            Value::from(self.lease_duration_seconds),
        );
        if let Some(t) = self.acquire_time {
            m.insert(
                "acquireTime".into(),
                Value::String(t.to_rfc3339_opts(SecondsFormat::Secs, true)),
            );
        }
        if let Some(t) = self.renew_time {
            m.insert(
                "renewTime".into(),
                Value::String(t.to_rfc3339_opts(SecondsFormat::Secs, true)),
            );
        }
        m.insert(
            "leaderTransitions".into(),
            Value::from(self.leader_transitions),
        );
        Value::Object(m).to_string()
    }
}

fn int_field(m: &Map<String, Value>, key: &str) -> Result<i32, RecordError> {
    let bad = |v: &Value| RecordError(format!("{key} is {v}, not a 32-bit integer"));
    match m.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(v @ Value::Number(n)) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| bad(v)),
        // The Python client writes the duration as a string.
        Some(v @ Value::String(s)) => s.trim().parse::<i32>().map_err(|_| bad(v)),
        Some(v) => Err(bad(v)),
    }
}

fn time_field(m: &Map<String, Value>, key: &str) -> Result<Option<DateTime<Utc>>, RecordError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => parse_time(s)
            .map(Some)
            .ok_or_else(|| RecordError(format!("{key} {s:?} is not a time"))),
        Some(v) => Err(RecordError(format!("{key} is {v}, not a time string"))),
    }
}

/// RFC 3339 with any precision, or Python's `str(datetime)` (naive, read as UTC:
/// the times are only shown to operators, never used to judge expiry).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
                .map(|n| n.and_utc())
        })
}

fn micro_to_chrono(t: &MicroTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(t.0.as_microsecond())
}

fn chrono_to_micro(t: DateTime<Utc>) -> MicroTime {
    // Every chrono time within the years the API accepts fits jiff's range.
    MicroTime(Timestamp::from_microsecond(t.timestamp_micros()).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// The wall clock now, truncated to what a MicroTime can carry, so that a record compares
/// equal after a round trip. Only ever written into records and shown; never used to judge
/// whether a lock lapsed (docs/DESIGN.md §3).
pub fn now() -> Time {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// The wall clock now, at the resolution a storage keeps (a second for a ConfigMap record),
/// so that what is written, read back and remembered compares equal.
pub fn now_at(resolution: std::time::Duration) -> Time {
    at_resolution(now(), resolution)
}

/// `t` floored to the resolution a storage keeps.
pub fn at_resolution(t: Time, resolution: std::time::Duration) -> Time {
    let step = step_of(resolution).num_microseconds().unwrap_or(1).max(1);
    let floored = t.timestamp_micros().div_euclid(step) * step;
    DateTime::from_timestamp_micros(floored).unwrap_or(t)
}

/// `t` plus `d` (None past the calendar's end): for clocks that tests move by hand.
pub fn plus(t: Time, d: std::time::Duration) -> Option<Time> {
    t.checked_add_signed(chrono::TimeDelta::from_std(d).ok()?)
}

fn step_of(resolution: std::time::Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(resolution)
        .ok()
        .filter(|d| *d > chrono::TimeDelta::zero())
        .unwrap_or(chrono::TimeDelta::microseconds(1))
}

/// "3m12s" for a duration in seconds (negative: in the future).
pub fn human(secs: i64) -> String {
    let s = secs.unsigned_abs();
    let text = match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    };
    if secs < 0 {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// Seconds from `a` to `b` (negative if `b` is earlier), with millisecond precision; 0 when
/// the difference does not fit (absurd records).
pub fn seconds_between(a: Time, b: Time) -> f64 {
    b.signed_duration_since(a).num_milliseconds() as f64 / 1000.0
}

/// RFC 3339 with microseconds, as the Lease carries it.
pub fn format_micros(t: Time) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// RFC 3339 in whole seconds, for people.
pub fn format_seconds(t: Time) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_client_go_annotation() {
        let r = LeaderRecord::from_annotation(r#"{"holderIdentity":"x","leaseDurationSeconds":15,"acquireTime":"2026-11-25T02:50:36Z","renewTime":"2026-11-25T02:50:40Z","leaderTransitions":3,"strategy":"","preferredHolder":""}"#).unwrap();
        assert_eq!(r.holder_identity, "x");
        assert_eq!(r.lease_duration_seconds, 15);
        assert_eq!(r.leader_transitions, 3);
        assert_eq!(
            r.renew_time.unwrap().to_rfc3339(),
            "2026-11-25T02:50:40+00:00"
        );
    }

    #[test]
    fn reads_python_annotation() {
        let r = LeaderRecord::from_annotation(r#"{"holderIdentity":"py-candidate-1","leaseDurationSeconds":"17","acquireTime":"2026-11-25 02:49:18.686520","renewTime":"2026-11-25 02:49:20.123456"}"#).unwrap();
        assert_eq!(r.lease_duration_seconds, 17);
        assert_eq!(r.leader_transitions, 0);
        assert_eq!(r.acquire_time.unwrap().timestamp_subsec_micros(), 686520);
    }

    #[test]
    fn missing_fields_are_defaults() {
        assert_eq!(
            LeaderRecord::from_annotation("{}").unwrap(),
            LeaderRecord::default()
        );
    }

    #[test]
    fn unreadable_records_are_errors() {
        assert!(LeaderRecord::from_annotation("not json").is_err());
        assert!(LeaderRecord::from_annotation("[]").is_err());
        assert!(LeaderRecord::from_annotation(r#"{"holderIdentity":5}"#).is_err());
        assert!(LeaderRecord::from_annotation(r#"{"leaseDurationSeconds":"fifteen"}"#).is_err());
        assert!(LeaderRecord::from_annotation(r#"{"renewTime":"yesterday"}"#).is_err());
    }

    #[test]
    fn annotation_is_written_in_client_go_format() {
        let r = LeaderRecord {
            holder_identity: "me".into(),
            lease_duration_seconds: 15,
            acquire_time: parse_time("2026-11-25T02:50:36.5Z"),
            renew_time: parse_time("2026-11-25T02:50:40Z"),
            leader_transitions: 2,
        };
        assert_eq!(
            r.to_annotation(),
            r#"{"holderIdentity":"me","leaseDurationSeconds":15,"acquireTime":"2026-11-25T02:50:36Z","renewTime":"2026-11-25T02:50:40Z","leaderTransitions":2}"#
        );
    }

    #[test]
    fn a_takeover_counts_on_from_the_highest_count_seen() {
        let t = parse_time("2026-11-28T10:00:05Z").unwrap();
        let created = LeaderRecord::taken(None, None, "a", 15, t);
        assert_eq!(created.leader_transitions, 0);
        assert_eq!(
            LeaderRecord::taken(Some(&created), None, "b", 15, t).leader_transitions,
            1
        );
        // A re-created object starting at 0 after one at 5 was seen: 6, not 1.
        assert_eq!(
            LeaderRecord::taken(Some(&created), Some(5), "b", 15, t).leader_transitions,
            6
        );
        assert_eq!(
            LeaderRecord::taken(None, Some(5), "b", 15, t).leader_transitions,
            6
        );
    }

    #[test]
    fn a_renew_never_goes_back_even_when_the_clock_does() {
        let r = LeaderRecord::taken(
            None,
            None,
            "me",
            15,
            parse_time("2026-11-28T10:00:05Z").unwrap(),
        );
        // The wall clock stepped back an hour: the renew is written one step later instead.
        let back = parse_time("2026-11-28T09:00:00Z").unwrap();
        let second = std::time::Duration::from_secs(1);
        let renewed = r.renewed(15, back, second);
        assert_eq!(renewed.renew_time, parse_time("2026-11-28T10:00:06Z"));
        assert_eq!(renewed.acquire_time, r.acquire_time);
        // Within the same step, the renewal equals the record: nothing to write.
        assert_eq!(r.renewed(15, r.renew_time.unwrap(), second), r);
        let micro = std::time::Duration::from_micros(1);
        assert_eq!(
            r.renewed(15, back, micro).renew_time,
            parse_time("2026-11-28T10:00:05.000001Z")
        );
    }

    #[test]
    fn an_absurd_time_lapses_nowhere_rather_than_panicking() {
        let r = LeaderRecord::from_annotation(
            r#"{"holderIdentity":"x","leaseDurationSeconds":2147483647,"renewTime":"+262142-12-31 23:59:59.000000"}"#,
        )
        .expect("chrono reads the year 262142");
        assert_eq!(r.lapses_at(), None);
        assert_eq!(r.state(now()), State::Held);
        assert!(!r.looks_abandoned(now()));
    }

    #[test]
    fn lease_spec_round_trips_with_microseconds() {
        let r = LeaderRecord {
            holder_identity: "me".into(),
            lease_duration_seconds: 15,
            acquire_time: parse_time("2026-11-25T02:50:36.123456Z"),
            renew_time: parse_time("2026-11-25T02:50:40.000001Z"),
            leader_transitions: 7,
        };
        let spec = r.to_lease_spec(None);
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["renewTime"], "2026-11-25T02:50:40.000001Z");
        assert_eq!(LeaderRecord::from_lease_spec(&spec), r);
    }
}
