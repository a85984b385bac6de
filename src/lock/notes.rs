//! What leaderrun keeps on a lock object beside the record: its label and its annotations, and
//! the one statement of what each write does to them. The Kubernetes lock, the paused tests'
//! lock and the simulation's lock all write what these functions return, so a rule changed
//! here is changed for the product and both of its tests.

use std::collections::BTreeMap;

use crate::record::LeaderRecord;

/// The label on every lock object leaderrun creates, so that the locks it manages can be
/// listed with a selector. Other clients ignore it; an object made by someone else is never
/// relabelled.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "leaderrun");

/// The labels of a lock object leaderrun creates.
pub fn created_labels() -> BTreeMap<String, String> {
    [(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string())].into()
}

/// The annotation by which `leaderrun step-down` asks the named holder to stop its child
/// and release. Followers ignore it (it is not the record); a write that changes the holder
/// (a release, a takeover) removes it, so it cannot linger and hit the next leader.
pub const STEP_DOWN: &str = "leaderrun.io/step-down";

/// The annotation by which a leaderrun process marks each record it writes: its own random
/// nonce and the write's number (`NONCE.SEQ`). A process knows its writes by this mark and
/// the record it sent with it, never by the record alone: a twin (another process given the
/// same `--identity`) writing the same holder in the same second carries another nonce. Other
/// clients ignore it; one that keeps it while changing the record does not make the record
/// ours (the record must match too); one that drops it only makes the record not ours.
pub const WRITER: &str = "leaderrun.io/writer";

/// The annotation that carries the last run (lastrun.rs), as JSON.
pub const LAST_RUN: &str = "leaderrun.io/last-run";

/// leaderrun's annotations on one lock object (each None when absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notes {
    /// The mark of the leaderrun process that wrote the record (`WRITER`).
    pub writer: Option<String>,
    /// The holder a `step-down` asked to let go (`STEP_DOWN`).
    pub step_down: Option<String>,
    /// What the last leadership did (`LAST_RUN`, JSON).
    pub last_run: Option<String>,
}

impl Notes {
    /// The notes among an object's annotations.
    pub fn read(annotations: Option<&BTreeMap<String, String>>) -> Notes {
        let get = |key: &str| annotations.and_then(|a| a.get(key)).cloned();
        Notes {
            writer: get(WRITER),
            step_down: get(STEP_DOWN),
            last_run: get(LAST_RUN),
        }
    }

    /// Puts these notes into an object's annotations (a None removes its key); every other
    /// annotation is left as it is.
    pub fn write_into(&self, annotations: &mut Option<BTreeMap<String, String>>) {
        for (key, value) in [
            (WRITER, &self.writer),
            (STEP_DOWN, &self.step_down),
            (LAST_RUN, &self.last_run),
        ] {
            match value {
                Some(v) => {
                    annotations
                        .get_or_insert_with(Default::default)
                        .insert(key.to_string(), v.clone());
                }
                None => {
                    if let Some(a) = annotations.as_mut() {
                        a.remove(key);
                    }
                }
            }
        }
    }

    /// The notes of a new object: the writer's mark only.
    pub fn created(writer: Option<&str>) -> Notes {
        Notes {
            writer: writer.map(String::from),
            ..Notes::default()
        }
    }

    /// The notes of a write of `record` over an object noted `prev`, marked `writer` (None:
    /// unmarked), with `last_run` as the last run's note when given (else the note stays).
    /// A step-down request is for the holder it names: a write that makes someone else the
    /// holder, or frees the lock, clears it.
    pub fn updated(
        prev: &Notes,
        record: &LeaderRecord,
        writer: Option<&str>,
        last_run: Option<&str>,
    ) -> Notes {
        let keep_step_down =
            prev.step_down.as_deref() == Some(record.holder_identity.as_str()) && record.is_held();
        Notes {
            writer: writer.map(String::from),
            step_down: prev.step_down.clone().filter(|_| keep_step_down),
            last_run: last_run.map(String::from).or_else(|| prev.last_run.clone()),
        }
    }

    /// The notes of a step-down request to `holder`: the record and the other notes unchanged.
    pub fn asking_step_down(prev: &Notes, holder: &str) -> Notes {
        Notes {
            step_down: Some(holder.to_string()),
            ..prev.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(holder: &str) -> LeaderRecord {
        LeaderRecord {
            holder_identity: holder.into(),
            lease_duration_seconds: 15,
            ..LeaderRecord::default()
        }
    }

    #[test]
    fn a_step_down_request_survives_only_writes_that_keep_its_holder() {
        let asked = Notes::asking_step_down(&Notes::created(Some("n.1")), "a");
        assert_eq!(
            asked.writer.as_deref(),
            Some("n.1"),
            "a request keeps the mark"
        );
        let renew = Notes::updated(&asked, &held("a"), Some("n.2"), None);
        assert_eq!(renew.step_down.as_deref(), Some("a"));
        assert_eq!(renew.writer.as_deref(), Some("n.2"));
        let takeover = Notes::updated(&asked, &held("b"), Some("m.1"), None);
        assert_eq!(takeover.step_down, None);
        let release = Notes::updated(&asked, &LeaderRecord::default(), None, Some("{}"));
        assert_eq!(release.step_down, None);
        assert_eq!(release.writer, None, "an unmarked write removes the mark");
    }

    #[test]
    fn the_last_run_note_stays_until_a_write_gives_another() {
        let prev = Notes {
            last_run: Some("old".into()),
            ..Notes::default()
        };
        let kept = Notes::updated(&prev, &held("a"), None, None);
        assert_eq!(kept.last_run.as_deref(), Some("old"));
        let new = Notes::updated(&prev, &held("a"), None, Some("new"));
        assert_eq!(new.last_run.as_deref(), Some("new"));
    }

    #[test]
    fn notes_go_into_annotations_and_leave_others_alone() {
        let mut annotations = Some(BTreeMap::from([
            ("other".to_string(), "x".to_string()),
            (STEP_DOWN.to_string(), "a".to_string()),
        ]));
        Notes::created(Some("n.1")).write_into(&mut annotations);
        let a = annotations.as_ref().expect("annotations");
        assert_eq!(a.get("other").map(String::as_str), Some("x"));
        assert_eq!(a.get(WRITER).map(String::as_str), Some("n.1"));
        assert!(!a.contains_key(STEP_DOWN));
        assert_eq!(
            Notes::read(annotations.as_ref()),
            Notes::created(Some("n.1"))
        );
    }
}
