//! Property tests of both record formats: nothing panics on any input, and
//! what is parsed and written back reads the same.

use chrono::{DateTime, Utc};
use leaderrun::record::LeaderRecord;
use proptest::prelude::*;

fn time() -> impl Strategy<Value = Option<DateTime<Utc>>> {
    // Years 1970 to 2200, microsecond precision, as the API carries them.
    proptest::option::of(
        (0i64..7_258_118_400_000_000).prop_map(|us| DateTime::from_timestamp_micros(us).unwrap()),
    )
}

fn record() -> impl Strategy<Value = LeaderRecord> {
    (".{0,40}", any::<i32>(), time(), time(), any::<i32>()).prop_map(|(h, d, a, r, t)| {
        LeaderRecord {
            holder_identity: h,
            lease_duration_seconds: d,
            acquire_time: a,
            renew_time: r,
            leader_transitions: t,
        }
    })
}

fn to_seconds(t: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    t.map(|t| DateTime::from_timestamp(t.timestamp(), 0).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_text_parses_or_fails_cleanly(s in ".{0,200}") {
        let _ = LeaderRecord::from_annotation(&s);
    }

    #[test]
    fn json_shaped_text_parses_or_fails_cleanly(
        h in prop_oneof![Just("null".to_string()), ".{0,10}".prop_map(|s| format!("{s:?}")), any::<i64>().prop_map(|n| n.to_string())],
        d in prop_oneof![Just("null".to_string()), any::<i64>().prop_map(|n| n.to_string()), any::<i64>().prop_map(|n| format!("\"{n}\"")), Just("1e99".to_string()), Just("[]".to_string())],
        t in prop_oneof![Just("null".to_string()), ".{0,30}".prop_map(|s| format!("{s:?}")), Just("\"2026-11-25 02:40:00.123456\"".to_string())],
    ) {
        let text = format!(r#"{{"holderIdentity":{h},"leaseDurationSeconds":{d},"renewTime":{t},"leaderTransitions":{d}}}"#);
        let _ = LeaderRecord::from_annotation(&text);
    }

    #[test]
    fn annotation_round_trips(r in record()) {
        let back = LeaderRecord::from_annotation(&r.to_annotation()).expect("our own output parses");
        // The annotation carries seconds (metav1.Time), as client-go writes it.
        let want = LeaderRecord { acquire_time: to_seconds(r.acquire_time), renew_time: to_seconds(r.renew_time), ..r.clone() };
        prop_assert_eq!(&back, &want);
        prop_assert_eq!(LeaderRecord::from_annotation(&back.to_annotation()).unwrap(), back);
    }

    #[test]
    fn lease_spec_round_trips_exactly(r in record()) {
        let spec = r.to_lease_spec(None);
        let json = serde_json::to_string(&spec).unwrap();
        let parsed: k8s_openapi::api::coordination::v1::LeaseSpec = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(LeaderRecord::from_lease_spec(&parsed), r);
    }
}

/// Any time chrono can hold, from the first to the last representable microsecond.
fn any_time() -> impl Strategy<Value = Option<DateTime<Utc>>> {
    let (min, max) = (
        DateTime::<Utc>::MIN_UTC.timestamp_micros(),
        DateTime::<Utc>::MAX_UTC.timestamp_micros(),
    );
    proptest::option::of((min..=max).prop_map(|us| DateTime::from_timestamp_micros(us).unwrap()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The record's time arithmetic never panics, whatever a record holds (a ConfigMap
    /// record can carry any year chrono reads).
    #[test]
    fn the_records_rules_never_panic(
        holder in ".{0,8}",
        duration in any::<i32>(),
        renewed in any_time(),
        acquired in any_time(),
        now in any_time(),
        transitions in any::<i32>(),
        resolution_us in 1u64..2_000_000,
    ) {
        let r = LeaderRecord {
            holder_identity: holder,
            lease_duration_seconds: duration,
            acquire_time: acquired,
            renew_time: renewed,
            leader_transitions: transitions,
        };
        let now = now.unwrap_or(DateTime::<Utc>::MIN_UTC);
        let res = std::time::Duration::from_micros(resolution_us);
        let _ = r.lapses_at();
        let _ = r.state(now);
        let _ = r.seconds_left(now);
        let _ = r.looks_abandoned(now);
        let renewed = r.renewed(duration, now, res);
        // A renew never goes backwards.
        if let (Some(before), Some(after)) = (r.renew_time, renewed.renew_time) {
            prop_assert!(after >= before);
        }
        let _ = r.released(now);
        let _ = LeaderRecord::taken(Some(&r), None, "me", duration, now);
        let _ = leaderrun::record::at_resolution(now, res);
        let _ = leaderrun::record::seconds_between(now, r.renew_time.unwrap_or(now));
    }
}
