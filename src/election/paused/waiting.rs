//! What a waiting copy says about the wait: who holds the lock, once per change of holders,
//! and whether a record naming this copy is another process's. Only logs, readiness and
//! `--no-wait`'s message read it, so no safety check would notice it wrong (found untested by
//! cargo-mutants, docs/RELIABILITY.md).

use super::*;

/// Records every `waiting` report.
#[derive(Default)]
struct Reports(std::sync::Mutex<Vec<(String, bool)>>);

impl Observer for Reports {
    fn renewed(&self, _: Instant, _: Duration, _: Instant) {}
    fn renew_failed(&self, _: Duration, _: &LockError) {}
    fn waiting(&self, holder: &str, impostor: bool) {
        let mut r = self.0.lock().unwrap_or_else(|p| p.into_inner());
        r.push((holder.to_string(), impostor));
    }
}

/// Waits on `e` for `for_` (it must time out); what it reported.
async fn reports_of(e: &Election<FakeLock>, for_: Duration) -> Vec<(String, bool)> {
    let reports = Reports::default();
    let (_tx, mut rx) = watch::channel(None);
    let opts = WaitOptions {
        no_wait: false,
        wait_timeout: Some(for_),
    };
    let r = e.acquire(opts, &mut rx, &reports).await;
    assert!(matches!(r, Err(AcquireError::WaitTimeout)), "{r:?}");
    reports.0.into_inner().unwrap_or_else(|p| p.into_inner())
}

#[tokio::test(start_paused = true)]
async fn the_wait_is_reported_once_per_set_of_holders_naming_each() {
    let (a, b) = (FakeLock::default(), FakeLock::default());
    a.write(held("x"));
    b.write(held("y"));
    // Renews change the records, not the holders: no new report for them.
    renewing(&a, "x", Duration::from_secs(3));
    renewing(&b, "y", Duration::from_secs(3));
    let b2 = b.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        b2.write(held("z"));
    });
    let e = Election::with_slots(vec![a.clone(), b.clone()], "me".into(), T);
    let reports = reports_of(&e, Duration::from_millis(2500)).await;
    let want = [("x, y".to_string(), false), ("x, z".to_string(), false)];
    assert_eq!(reports, want);
}

#[tokio::test(start_paused = true)]
async fn a_record_naming_us_that_is_not_ours_is_reported_as_an_impostor() {
    let lock = FakeLock::default();
    lock.write(held("me"));
    let reports = reports_of(&election(&lock, "me"), Duration::from_millis(500)).await;
    assert_eq!(reports, [("me".to_string(), true)]);
}

#[tokio::test(start_paused = true)]
async fn no_wait_names_every_holder() {
    let (a, b) = (FakeLock::default(), FakeLock::default());
    a.write(held("x"));
    b.write(held("y"));
    let e = Election::with_slots(vec![a, b], "me".into(), T);
    let opts = WaitOptions {
        no_wait: true,
        wait_timeout: None,
    };
    match acquire_with(&e, opts).await {
        Err(AcquireError::Held { holder }) => assert_eq!(holder, "x, y"),
        r => panic!("{:?}", r.map(|l| l.slot)),
    }
}
