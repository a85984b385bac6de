//! `inspect` and `force-release`: see who holds a lock, and clear a stuck one.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{json, Value};

use crate::cli::{ForceReleaseArgs, InspectArgs, LockArgs, LockKind, OutputFormat};
use crate::election::released_record;
use crate::exit;
use crate::lock::{Change, KubeLock, Lock, LockError, LockObject, Observed};
use crate::record::LeaderRecord;
use crate::run::RunError;
use crate::settings;

const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// How a lock looks, judged by the record's own clock (the only one we have here).
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

pub fn state_of(r: &LeaderRecord, now: DateTime<Utc>) -> State {
    if !r.is_held() {
        return State::Free;
    }
    match r.renew_time {
        Some(t) if t + chrono::Duration::seconds(r.lease_duration_seconds.max(0) as i64) <= now => {
            State::Expired
        }
        _ => State::Held,
    }
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

/// The stable JSON schema of `inspect -o json` (documented in the README).
pub fn to_json(
    kind: &str,
    namespace: &str,
    name: &str,
    seen: Option<&LeaderRecord>,
    resource_version: &str,
    now: DateTime<Utc>,
) -> Value {
    let Some(r) = seen else {
        return json!({"kind": kind, "namespace": namespace, "name": name, "exists": false, "state": "missing"});
    };
    let ago = |t: Option<DateTime<Utc>>| t.map(|t| (now - t).num_milliseconds() as f64 / 1000.0);
    let time_left = r.renew_time.filter(|_| r.is_held()).map(|t| {
        ((t + chrono::Duration::seconds(r.lease_duration_seconds as i64)) - now).num_milliseconds()
            as f64
            / 1000.0
    });
    json!({
        "kind": kind,
        "namespace": namespace,
        "name": name,
        "exists": true,
        "state": state_of(r, now).as_str(),
        "holderIdentity": r.holder_identity,
        "acquireTime": r.acquire_time.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        "renewTime": r.renew_time.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        "acquiredAgoSeconds": ago(r.acquire_time),
        "renewedAgoSeconds": ago(r.renew_time),
        "leaseDurationSeconds": r.lease_duration_seconds,
        "timeLeftSeconds": time_left,
        "leaderTransitions": r.leader_transitions,
        "resourceVersion": resource_version,
    })
}

fn to_text(describe: &str, r: &LeaderRecord, now: DateTime<Utc>) -> String {
    let when = |t: Option<DateTime<Utc>>| {
        t.map_or("-".to_string(), |t| {
            format!(
                "{} ({})",
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                human((now - t).num_seconds())
            )
        })
    };
    let left = match r.renew_time {
        Some(t) if r.is_held() => {
            let left = (t + chrono::Duration::seconds(r.lease_duration_seconds as i64) - now)
                .num_seconds();
            if left > 0 {
                format!("{left}s (by the record's clock: renewTime + leaseDurationSeconds; other hosts' clocks may differ)")
            } else {
                format!("none, expired {} (by the record's clock)", human(-left))
            }
        }
        _ => "-".to_string(),
    };
    format!(
        "lock:         {describe}\nstate:        {}\nholder:       {}\nacquired:     {}\nrenewed:      {}\nduration:     {}s\ntime left:    {left}\ntransitions:  {}\n",
        state_of(r, now).as_str(),
        if r.is_held() { r.holder_identity.as_str() } else { "(none)" },
        when(r.acquire_time),
        when(r.renew_time),
        r.lease_duration_seconds,
        r.leader_transitions,
    )
}

async fn connect(lock: &LockArgs) -> Result<(kube::Client, String), RunError> {
    settings::validate_name(&lock.name)?;
    if let Some(ns) = &lock.namespace {
        settings::validate_namespace(ns)?;
    }
    let (client, ns) = crate::client::connect(lock).await?;
    settings::validate_namespace(&ns)?;
    Ok((client, ns))
}

pub async fn inspect(args: InspectArgs) -> Result<u8, RunError> {
    let (client, ns) = connect(&args.lock).await?;
    match args.lock.lock {
        LockKind::Lease => {
            inspect_with(
                KubeLock::<Lease>::new(client, &ns, &args.lock.name),
                &args,
                &ns,
            )
            .await
        }
        LockKind::Configmap => {
            inspect_with(
                KubeLock::<ConfigMap>::new(client, &ns, &args.lock.name),
                &args,
                &ns,
            )
            .await
        }
    }
}

async fn inspect_with<K: LockObject>(
    lock: KubeLock<K>,
    args: &InspectArgs,
    ns: &str,
) -> Result<u8, RunError> {
    let seen = lock.get(CALL_TIMEOUT).await?;
    let now = Utc::now();
    let kind = args.lock.lock.as_str();
    let code = match &seen {
        None => exit::INSPECT_MISSING,
        Some(o) if state_of(&o.record, now) == State::Held => exit::INSPECT_HELD,
        Some(_) => exit::INSPECT_FREE,
    };
    match args.output {
        OutputFormat::Json => println!(
            "{}",
            to_json(
                kind,
                ns,
                &args.lock.name,
                seen.as_ref().map(|o| &o.record),
                seen.as_ref().map_or("", |o| &o.resource_version),
                now
            )
        ),
        OutputFormat::Text => match &seen {
            None => println!(
                "lock:         {}\nstate:        missing (no such object)",
                lock.describe()
            ),
            Some(o) => print!("{}", to_text(&lock.describe(), &o.record, now)),
        },
    }
    if args.watch {
        watch_changes(&lock, args, ns, seen).await?;
    }
    Ok(code)
}

/// Prints a line each time the holder or the renew time changes, until Ctrl-C or TERM.
async fn watch_changes<K: LockObject>(
    lock: &KubeLock<K>,
    args: &InspectArgs,
    ns: &str,
    mut last: Option<Observed<K>>,
) -> Result<(), RunError> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| RunError::Setup(e.to_string()))?;
    let print = |seen: Option<&Observed<K>>| {
        let now = Utc::now();
        match args.output {
            OutputFormat::Json => println!(
                "{}",
                to_json(
                    args.lock.lock.as_str(),
                    ns,
                    &args.lock.name,
                    seen.map(|o| &o.record),
                    seen.map_or("", |o| &o.resource_version),
                    now
                )
            ),
            OutputFormat::Text => match seen {
                None => println!(
                    "{} deleted",
                    now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
                Some(o) => println!(
                    "{} holder={} renewed={} transitions={} state={}",
                    now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    if o.record.is_held() {
                        o.record.holder_identity.as_str()
                    } else {
                        "(none)"
                    },
                    o.record.renew_time.map_or("-".into(), |t| t
                        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
                    o.record.leader_transitions,
                    state_of(&o.record, now).as_str()
                ),
            },
        }
    };
    loop {
        let rv = last
            .as_ref()
            .map(|o| o.resource_version.clone())
            .unwrap_or_default();
        let mut stream = match lock.watch(&rv, CALL_TIMEOUT).await {
            Ok(s) => s,
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "cannot watch; trying again");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        loop {
            let ev = tokio::select! {
                ev = stream.next() => ev,
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = term.recv() => return Ok(()),
            };
            match ev {
                Some(Ok(Change::Changed(o))) => {
                    let differs = last.as_ref().is_none_or(|l| {
                        l.record.holder_identity != o.record.holder_identity
                            || l.record.renew_time != o.record.renew_time
                    });
                    if differs {
                        print(Some(&o));
                    }
                    last = Some(o);
                }
                Some(Ok(Change::Deleted)) => {
                    print(None);
                    last = None;
                }
                Some(Err(e @ LockError::Unreadable { .. })) => return Err(e.into()),
                Some(Ok(Change::Expired)) | Some(Err(_)) | None => {
                    // Read again, then watch from there.
                    last = lock.get(CALL_TIMEOUT).await.ok().flatten().or(last);
                    break;
                }
            }
        }
    }
}

pub async fn force_release(args: ForceReleaseArgs) -> Result<u8, RunError> {
    if args.holder.is_none() && !args.yes {
        eprintln!("leaderrun: force-release without --holder releases whoever holds the lock; add --yes to confirm, or name the holder with --holder ID");
        return Ok(exit::RELEASE_REFUSED);
    }
    let (client, ns) = connect(&args.lock).await?;
    match args.lock.lock {
        LockKind::Lease => {
            force_release_with(KubeLock::<Lease>::new(client, &ns, &args.lock.name), &args).await
        }
        LockKind::Configmap => {
            force_release_with(
                KubeLock::<ConfigMap>::new(client, &ns, &args.lock.name),
                &args,
            )
            .await
        }
    }
}

async fn force_release_with<K: LockObject>(
    lock: KubeLock<K>,
    args: &ForceReleaseArgs,
) -> Result<u8, RunError> {
    let Some(seen) = lock.get(CALL_TIMEOUT).await? else {
        eprintln!(
            "leaderrun: {} does not exist; nothing to release",
            lock.describe()
        );
        return Ok(exit::INSPECT_MISSING);
    };
    let prev = &seen.record;
    if !prev.is_held() {
        println!(
            "{} is already free (transitions {})",
            lock.describe(),
            prev.leader_transitions
        );
        return Ok(0);
    }
    if let Some(want) = &args.holder {
        if *want != prev.holder_identity {
            eprintln!(
                "leaderrun: {} is held by {:?}, not {:?}; not released",
                lock.describe(),
                prev.holder_identity,
                want
            );
            return Ok(exit::RELEASE_REFUSED);
        }
    }
    // The version we read: if the holder renewed or someone else wrote since, this fails.
    match lock
        .update(&seen, &released_record(prev), CALL_TIMEOUT)
        .await
    {
        Ok(_) => {
            println!(
                "released {} (previous holder {:?}, transitions {})",
                lock.describe(),
                prev.holder_identity,
                prev.leader_transitions
            );
            Ok(0)
        }
        Err(LockError::Conflict(_)) => {
            eprintln!("leaderrun: {} changed while releasing (409 Conflict): somebody else wrote it. Inspect it again and retry if it is still stuck", lock.describe());
            Ok(exit::RELEASE_CONFLICT)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_durations() {
        assert_eq!(human(5), "5s ago");
        assert_eq!(human(192), "3m12s ago");
        assert_eq!(human(-30), "in 30s");
        assert_eq!(human(7300), "2h01m ago");
    }

    #[test]
    fn state_by_the_records_clock() {
        let now = Utc::now();
        let r = LeaderRecord {
            holder_identity: "a".into(),
            lease_duration_seconds: 15,
            renew_time: Some(now - chrono::Duration::seconds(5)),
            ..Default::default()
        };
        assert_eq!(state_of(&r, now), State::Held);
        assert_eq!(
            state_of(&r, now + chrono::Duration::seconds(11)),
            State::Expired
        );
        assert_eq!(state_of(&LeaderRecord::default(), now), State::Free);
    }
}
