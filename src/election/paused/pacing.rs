//! When renews go out, and the release's second try: rules no safety check sees (the deadline
//! holds whatever the pace), each found untested by cargo-mutants (docs/RELIABILITY.md). And
//! that a read due now is not held for the timer's next tick.

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
async fn a_conflict_is_read_and_tried_again_at_once_and_a_second_after_a_quarter_retry() {
    // The lock still ours after each 409 (found missing by cargo-mutants: waiting after the
    // first conflict, or four retry periods after the second, passed every test).
    let lock = FakeLock::default();
    let e = election(&lock, "me");
    let mut l = acquire(&e).await.unwrap();
    let first = l.last_renew_sent + T.retry_period;
    for _ in 0..2 {
        lock.fault(Op::Update, Fault::Fail(fake_lock::conflict));
    }
    let until = first + T.retry_period / 4 + Duration::from_millis(1);
    hold_until(&e, &mut l, until).await;
    assert_eq!(l.last_renew_sent, first + T.retry_period / 4);
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

#[tokio::test(start_paused = true)]
async fn an_acquiring_write_that_failed_is_tried_again_a_retry_period_later() {
    // The read after the pause finds no object; the create may have landed and been deleted
    // meanwhile (the view is unsure), so a lease from that read is waited out too.
    let lock = FakeLock::default();
    lock.fault(Op::Create, Fault::Fail(fake_lock::transient));
    let t0 = Instant::now();
    let l = acquire(&election(&lock, "me")).await.unwrap();
    assert_eq!(t0.elapsed(), T.retry_period + LEASE);
    assert_eq!((l.fencing_token, lock.calls(Op::Create)), (0, 2));
}

#[tokio::test(start_paused = true)]
async fn our_create_whose_answer_was_lost_is_resumed_as_the_same_leadership() {
    // It lands after the caller's timeout (the renew deadline); read next, it is our record
    // with our mark of this round: the same leadership, token 0, not a new one.
    let lock = FakeLock::default();
    lock.fault(
        Op::Create,
        Fault::Late(T.renew_deadline + Duration::from_millis(100)),
    );
    let l = acquire(&election(&lock, "me")).await.unwrap();
    assert_eq!(l.fencing_token, 0);
    assert_eq!(lock.record().map(|r| r.leader_transitions), Some(0));
}

#[tokio::test(start_paused = true)]
async fn an_acquiring_write_refused_once_is_read_and_sent_again_refused_twice_it_fails() {
    // Once: a restarting API server's refusal. Twice, with a fresh read between: RBAC's.
    let lock = FakeLock::default();
    lock.fault(Op::Create, Fault::Fail(fake_lock::refused));
    let l = acquire(&election(&lock, "me")).await.unwrap();
    assert_eq!((lock.calls(Op::Create), l.fencing_token), (2, 0));
    let lock = FakeLock::default();
    lock.fault(Op::Create, Fault::Fail(fake_lock::refused));
    lock.fault(Op::Create, Fault::Fail(fake_lock::refused));
    let r = acquire(&election(&lock, "me")).await;
    let refused = matches!(&r, Err(AcquireError::Lock(e)) if e.is_refusal());
    assert!(refused, "{:?}", r.map(|l| l.fencing_token));
    assert_eq!(lock.calls(Op::Create), 2);
}

/// A read that is due goes out at once, not at the timer's next tick (it rounds a deadline
/// up to the next millisecond): the runtime here has no timer at all, and a sleep would
/// panic on it.
#[test]
fn a_read_due_now_goes_out_without_the_timer() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let lock = FakeLock::default();
    lock.write(held("x"));
    let seen = rt.block_on(async {
        let mut follow = crate::lock::watch::Follow::new(&lock, T.retry_period, LEASE);
        follow.next().await
    });
    assert!(matches!(seen, Ok(Some(_))), "{seen:?}");
    assert_eq!(lock.calls(Op::Get), 1);
}
