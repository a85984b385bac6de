//! When renews go out, and the release's second try: rules no safety check sees (the deadline
//! holds whatever the pace), each found untested by cargo-mutants (docs/RELIABILITY.md).

use super::*;

/// Holds `l` until `until`, which must come before any loss.
async fn hold_until(e: &Election<FakeLock>, l: &mut Leadership<()>, until: Instant) {
    let nudge = tokio::sync::Notify::new();
    tokio::select! {
        lost = e.hold(l, &Unobserved, &nudge) => panic!("lost: {lost}"),
        _ = tokio::time::sleep_until(until) => {}
    }
}

#[tokio::test(start_paused = true)]
async fn the_first_renew_goes_out_a_retry_period_after_the_acquiring_write() {
    let lock = FakeLock::default();
    let e = election(&lock, "me");
    let mut l = acquire(&e).await.unwrap();
    let won = l.last_renew_sent;
    hold_until(&e, &mut l, won + T.retry_period - Duration::from_millis(1)).await;
    assert_eq!(lock.calls(Op::Update), 0, "no renew before a retry period");
    hold_until(&e, &mut l, won + T.retry_period + Duration::from_millis(1)).await;
    assert_eq!(lock.calls(Op::Update), 1);
    assert_eq!(l.last_renew_sent, won + T.retry_period);
}

#[tokio::test(start_paused = true)]
async fn a_renew_that_failed_is_tried_again_half_a_retry_period_later() {
    let lock = FakeLock::default();
    let e = election(&lock, "me");
    let mut l = acquire(&e).await.unwrap();
    let first = l.last_renew_sent + T.retry_period;
    lock.fault(Op::Update, Fault::Fail(fake_lock::transient));
    let again = first + T.retry_period / 2;
    hold_until(&e, &mut l, again + Duration::from_millis(1)).await;
    assert_eq!(l.last_renew_sent, again);
}

#[tokio::test(start_paused = true)]
async fn a_release_that_met_a_conflict_is_sent_again_while_the_lock_is_ours() {
    // Another field of the object written meanwhile (a label, say): the same object, our
    // record still; the release goes out again rather than leaving the lock to expire.
    let lock = FakeLock::default();
    let e = election(&lock, "me");
    let l = acquire(&e).await.unwrap();
    lock.fault(Op::Update, Fault::Fail(fake_lock::conflict));
    e.finish(l, AfterExit::Release, None).await.unwrap();
    assert_eq!(lock.calls(Op::Update), 2);
    assert!(!lock.record().unwrap().is_held(), "released");
}
