//! `inspect` without --name: the table of every lock leaderrun manages.

use super::*;

/// `inspect` without --name: every lock leaderrun manages (the objects it created carry the
/// managed-by label) in the namespace, or with -A in every namespace, both kinds. A kind that
/// cannot be listed is named on stderr; the others are still shown.
pub(super) async fn list(args: &InspectArgs) -> Result<u8, InspectError> {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::ConfigMap;
    let target = Target::from(&args.lock);
    if let Some(ns) = &target.namespace {
        crate::settings::validate_namespace(ns).map_err(SetupError::from)?;
    }
    let (client, ns) = crate::client::connect(&target)
        .await
        .map_err(SetupError::from)?;
    let scope = (!args.all_namespaces).then_some(ns.as_str());
    let now = record::now();
    let mut rows: Vec<Row> = Vec::new();
    let mut failures = Vec::new();
    match lock::list_managed::<Lease>(client.clone(), scope).await {
        Ok(found) => rows.extend(found.into_iter().map(|l| row(Kind::Lease, l))),
        Err(e) => failures.push(e),
    }
    match lock::list_managed::<ConfigMap>(client, scope).await {
        Ok(found) => rows.extend(found.into_iter().map(|l| row(Kind::Configmap, l))),
        Err(e) => failures.push(e),
    }
    for e in &failures {
        eprintln!("leaderrun: {e}");
    }
    if failures.len() == 2 {
        return Err(InspectError::Lock(failures.remove(0)));
    }
    rows.sort_by(|a, b| (&a.1, &a.2, a.0.as_str()).cmp(&(&b.1, &b.2, b.0.as_str())));
    match args.output {
        OutputFormat::Json => {
            let locks: Vec<Value> = rows
                .iter()
                .map(|(kind, namespace, name, seen)| {
                    let subject = Subject {
                        kind: *kind,
                        namespace,
                        name,
                    };
                    match seen {
                        Ok(s) => to_json(&subject, Some(&s.shown()), now),
                        Err(e) => json!({"kind": kind.as_str(), "namespace": namespace, "name": name, "exists": true, "state": "unreadable", "error": e}),
                    }
                })
                .collect();
            println!("{}", json!({ "locks": locks }));
        }
        OutputFormat::Text => print!("{}", table(&rows, now)),
    }
    Ok(0)
}

/// One line of the listing: kind, namespace, name, and the record (or why it cannot be read).
pub(super) type Row = (Kind, String, String, Result<ListedRecord, String>);

/// An observed record, owned (the listing keeps them all).
pub(super) struct ListedRecord {
    record: LeaderRecord,
    resource_version: String,
    last_run: Option<LastRun>,
}

impl ListedRecord {
    fn shown(&self) -> Shown<'_> {
        Shown {
            record: &self.record,
            resource_version: &self.resource_version,
            last_run: self.last_run.clone(),
        }
    }
}

fn row<K>(kind: Kind, l: lock::Listed<K>) -> Row {
    let seen = l.seen.map_err(|e| e.to_string()).map(|o| ListedRecord {
        last_run: o.notes.last_run.as_deref().and_then(LastRun::parse),
        record: o.record,
        resource_version: o.resource_version,
    });
    (kind, l.namespace, l.name, seen)
}

/// The listing as a table, for people.
pub(super) fn table(rows: &[Row], now: Time) -> String {
    if rows.is_empty() {
        return "no locks managed by leaderrun here (objects labelled app.kubernetes.io/managed-by=leaderrun)
".into();
    }
    let mut lines = vec![[
        "KIND".to_string(),
        "NAMESPACE".into(),
        "NAME".into(),
        "STATE".into(),
        "HOLDER".into(),
        "TIME LEFT".into(),
        "LAST RUN".into(),
    ]];
    for (kind, ns, name, seen) in rows {
        let cells = match seen {
            Err(e) => ["unreadable".to_string(), "-".into(), "-".into(), e.clone()],
            Ok(s) => {
                let r = &s.record;
                let left = r
                    .seconds_left(now)
                    .filter(|l| *l > 0.0)
                    .map_or("-".into(), |l| format!("{}s", l as i64));
                let last = s.last_run.as_ref().map_or("-".into(), |run| run.brief(now));
                let holder = if r.is_held() {
                    r.holder_identity.clone()
                } else {
                    "-".into()
                };
                [r.state(now).as_str().to_string(), holder, left, last]
            }
        };
        let [state, holder, left, last] = cells;
        lines.push([
            kind.as_str().into(),
            ns.clone(),
            name.clone(),
            state,
            holder,
            left,
            last,
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for l in &lines {
        for (i, w) in widths.iter().enumerate() {
            out.push_str(&format!("{:<w$}  ", l[i], w = *w));
        }
        out.push_str(&l[6]);
        out.push('\n');
    }
    out
}
