//! `inspect` and `force-release`: see who holds a lock, and clear a stuck one.

use std::time::Duration;

use serde_json::{json, Value};

use crate::cli::{InspectArgs, OutputFormat};
use crate::client::{connect_to_lock, SetupError, Target};
use crate::exit;
use crate::lastrun::LastRun;
use crate::lock::watch::Follow;
use crate::lock::{self, AnyLock, Kind, Lock, LockError, Observed};
use crate::record::{self, LeaderRecord, State, Time};

use crate::client::CALL_TIMEOUT;
/// How often `inspect --watch` reads the lock when it cannot watch it.
mod list;

use list::list;

const POLL_PERIOD: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("cannot listen for TERM: {0}")]
    Signals(std::io::Error),
}

impl InspectError {
    pub fn exit_code(&self) -> u8 {
        match self {
            InspectError::Setup(e) => e.exit_code(),
            InspectError::Lock(_) => exit::API,
            InspectError::Signals(_) => exit::OS,
        }
    }
}

impl crate::exit::Failure for InspectError {
    fn exit_code(&self) -> u8 {
        InspectError::exit_code(self)
    }
}

/// Which lock is described: kind, namespace, name.
struct Subject<'a> {
    kind: Kind,
    namespace: &'a str,
    name: &'a str,
}

/// What `inspect` shows of one object: its record, version and last run.
struct Shown<'a> {
    record: &'a LeaderRecord,
    resource_version: &'a str,
    last_run: Option<LastRun>,
}

impl<'a> Shown<'a> {
    fn of<O>(o: &'a Observed<O>) -> Shown<'a> {
        Shown {
            record: &o.record,
            resource_version: &o.resource_version,
            last_run: o.notes.last_run.as_deref().and_then(LastRun::parse),
        }
    }
}

/// The stable JSON schema of `inspect -o json` (documented in the README).
fn to_json(s: &Subject, seen: Option<&Shown>, now: Time) -> Value {
    let Some(shown) = seen else {
        return json!({"kind": s.kind.as_str(), "namespace": s.namespace, "name": s.name, "exists": false, "state": "missing"});
    };
    let (r, resource_version) = (shown.record, shown.resource_version);
    let ago = |t: Option<Time>| t.map(|t| record::seconds_between(t, now));
    json!({
        "kind": s.kind.as_str(),
        "namespace": s.namespace,
        "name": s.name,
        "exists": true,
        "state": r.state(now).as_str(),
        "holderIdentity": r.holder_identity,
        "acquireTime": r.acquire_time.map(record::format_micros),
        "renewTime": r.renew_time.map(record::format_micros),
        "acquiredAgoSeconds": ago(r.acquire_time),
        "renewedAgoSeconds": ago(r.renew_time),
        "leaseDurationSeconds": r.lease_duration_seconds,
        "timeLeftSeconds": r.seconds_left(now),
        "leaderTransitions": r.leader_transitions,
        "resourceVersion": resource_version,
        "lastRun": shown.last_run,
    })
}

fn to_text(describe: &str, shown: &Shown, now: Time) -> String {
    let r = shown.record;
    let when = |t: Option<Time>| {
        t.map_or("-".to_string(), |t| {
            format!(
                "{} ({})",
                record::format_seconds(t),
                record::human(record::seconds_between(t, now) as i64)
            )
        })
    };
    let left = match r.seconds_left(now) {
        Some(left) if left > 0.0 => format!("{}s (by the record's clock: renewTime + leaseDurationSeconds; other hosts' clocks may differ)", left as i64),
        Some(left) => format!("none, expired {} (by the record's clock)", record::human(-left as i64)),
        None => "-".to_string(),
    };
    let last = shown
        .last_run
        .as_ref()
        .map_or("(none recorded)".to_string(), |run| run.summary(now));
    format!(
        "lock:         {describe}\nstate:        {}\nholder:       {}\nacquired:     {}\nrenewed:      {}\nduration:     {}s\ntime left:    {left}\ntransitions:  {}\nlast run:     {last}\n",
        r.state(now).as_str(),
        if r.is_held() { r.holder_identity.as_str() } else { "(none)" },
        when(r.acquire_time),
        when(r.renew_time),
        r.lease_duration_seconds,
        r.leader_transitions,
    )
}

/// One line of `inspect --watch`.
fn watch_line(
    s: &Subject,
    args: &InspectArgs,
    seen: Option<&LeaderRecord>,
    rv: &str,
    now: Time,
) -> String {
    match (args.output, seen) {
        (OutputFormat::Json, _) => {
            let shown = seen.map(|r| Shown {
                record: r,
                resource_version: rv,
                last_run: None,
            });
            to_json(s, shown.as_ref(), now).to_string()
        }
        (OutputFormat::Text, None) => format!("{} deleted", record::format_seconds(now)),
        (OutputFormat::Text, Some(r)) => format!(
            "{} holder={} renewed={} transitions={} state={}",
            record::format_seconds(now),
            if r.is_held() {
                r.holder_identity.as_str()
            } else {
                "(none)"
            },
            r.renew_time.map_or("-".into(), record::format_micros),
            r.leader_transitions,
            r.state(now).as_str()
        ),
    }
}

pub async fn inspect(args: InspectArgs) -> Result<u8, InspectError> {
    if args.lock.name.is_none() {
        return list(&args).await;
    }
    if args.slots > 1 {
        let names = lock::slot_names(args.lock.name(), args.slots);
        let longest = names.last().cloned().unwrap_or_default();
        let (client, ns) = connect_to_lock(&Target::from(&args.lock), &longest).await?;
        let work = InspectSlots {
            args: &args,
            namespace: &ns,
            names: &names,
        };
        return work
            .with(AnyLock::open_all(args.lock.lock, client, &ns, &names))
            .await;
    }
    let (client, ns) = connect_to_lock(&Target::from(&args.lock), args.lock.name()).await?;
    let work = Inspect {
        args: &args,
        namespace: &ns,
    };
    work.with(AnyLock::open(args.lock.lock, client, &ns, args.lock.name()))
        .await
}

struct Inspect<'a> {
    args: &'a InspectArgs,
    namespace: &'a str,
}

impl Inspect<'_> {
    async fn with<L: Lock>(self, lock: L) -> Result<u8, InspectError> {
        let args = self.args;
        let subject = Subject {
            kind: args.lock.lock,
            namespace: self.namespace,
            name: args.lock.name(),
        };
        let seen = lock.get(CALL_TIMEOUT).await?;
        let now = record::now();
        let code = match &seen {
            None => exit::INSPECT_MISSING,
            Some(o) if o.record.state(now) == State::Held => exit::INSPECT_HELD,
            Some(_) => exit::INSPECT_FREE,
        };
        match args.output {
            OutputFormat::Json => println!(
                "{}",
                to_json(&subject, seen.as_ref().map(Shown::of).as_ref(), now)
            ),
            OutputFormat::Text => match &seen {
                None => println!(
                    "lock:         {}\nstate:        missing (no such object)",
                    lock.describe()
                ),
                Some(o) => print!("{}", to_text(&lock.describe(), &Shown::of(o), now)),
            },
        }
        if args.watch {
            watch_changes(&lock, &subject, args, seen).await?;
        }
        Ok(code)
    }
}

/// `inspect --slots N`: every slot, one after the other.
struct InspectSlots<'a> {
    args: &'a InspectArgs,
    namespace: &'a str,
    names: &'a [String],
}

impl InspectSlots<'_> {
    async fn with<L: Lock>(self, locks: Vec<L>) -> Result<u8, InspectError> {
        let now = record::now();
        let mut slots = Vec::new();
        let (mut held, mut existing) = (0, 0);
        for (lock, name) in locks.iter().zip(self.names) {
            let seen = lock.get(CALL_TIMEOUT).await?;
            let subject = Subject {
                kind: self.args.lock.lock,
                namespace: self.namespace,
                name,
            };
            existing += seen.is_some() as usize;
            held += seen
                .as_ref()
                .is_some_and(|o| o.record.state(now) == State::Held) as usize;
            match self.args.output {
                OutputFormat::Json => slots.push(to_json(
                    &subject,
                    seen.as_ref().map(Shown::of).as_ref(),
                    now,
                )),
                OutputFormat::Text => match &seen {
                    None => println!(
                        "lock:         {}\nstate:        missing (no such object)\n",
                        lock.describe()
                    ),
                    Some(o) => println!("{}", to_text(&lock.describe(), &Shown::of(o), now)),
                },
            }
        }
        if self.args.output == OutputFormat::Json {
            println!(
                "{}",
                json!({"kind": self.args.lock.lock.as_str(), "namespace": self.namespace, "name": self.args.lock.name(), "slots": slots})
            );
        }
        // Held: every slot is taken; free: at least one can be taken; missing: none exists.
        Ok(if existing == 0 {
            exit::INSPECT_MISSING
        } else if held == locks.len() {
            exit::INSPECT_HELD
        } else {
            exit::INSPECT_FREE
        })
    }
}

/// Prints a line each time the holder or the renew time changes, until Ctrl-C or TERM.
async fn watch_changes<L: Lock>(
    lock: &L,
    subject: &Subject<'_>,
    args: &InspectArgs,
    mut last: Option<Observed<L::Object>>,
) -> Result<(), InspectError> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(InspectError::Signals)?;
    let mut follow = Follow::new(lock, POLL_PERIOD, CALL_TIMEOUT);
    // Ends on Ctrl-C or TERM; `Follow` pauses between retries on its own.
    loop {
        let seen = tokio::select! {
            seen = follow.next() => seen?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
        };
        let differs = match (&last, &seen) {
            (Some(l), Some(o)) => {
                l.record.holder_identity != o.record.holder_identity
                    || l.record.renew_time != o.record.renew_time
            }
            (None, None) => false,
            _ => true,
        };
        if differs {
            println!(
                "{}",
                watch_line(
                    subject,
                    args,
                    seen.as_ref().map(|o| &o.record),
                    seen.as_ref().map_or("", |o| &o.resource_version),
                    record::now()
                )
            );
        }
        last = seen;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_durations() {
        assert_eq!(record::human(5), "5s ago");
        assert_eq!(record::human(192), "3m12s ago");
        assert_eq!(record::human(-30), "in 30s");
        assert_eq!(record::human(7300), "2h01m ago");
    }

    #[test]
    fn an_absurd_record_is_described_without_panicking() {
        let r = LeaderRecord::from_annotation(
            r#"{"holderIdentity":"x","leaseDurationSeconds":2147483647,"renewTime":"+262142-12-31 23:59:59.000000"}"#,
        )
        .expect("chrono reads the year 262142");
        let s = Subject {
            kind: Kind::Configmap,
            namespace: "default",
            name: "x",
        };
        let now = record::now();
        let shown = Shown {
            record: &r,
            resource_version: "1",
            last_run: None,
        };
        assert!(to_text("x", &shown, now).contains("state:        held"));
        assert_eq!(
            to_json(&s, Some(&shown), now)["timeLeftSeconds"],
            serde_json::Value::Null
        );
    }
}
