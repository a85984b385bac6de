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

impl LeaderRecord {
    pub fn is_held(&self) -> bool {
        !self.holder_identity.is_empty()
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

/// Truncates to what a MicroTime can carry, so a record compares equal after a round trip.
pub fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
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
