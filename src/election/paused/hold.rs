//! The leader in paused time: renews, losses, step-down requests, twins.

use super::*;

/// Acquires, then holds for `for_` (or until lost).
async fn hold_for(
    e: &Election<FakeLock>,
    for_: Duration,
) -> (Leadership<()>, Option<Lost>, Instant) {
    let mut l = acquire(e).await.unwrap();
    let nudge = tokio::sync::Notify::new();
    let t0 = Instant::now();
    let lost = tokio::select! {
        lost = e.hold(&mut l, &Unobserved, &nudge) => Some(lost),
        _ = tokio::time::sleep(for_) => None,
    };
    (l, lost, t0)
}

#[tokio::test(start_paused = true)]
async fn the_leader_renews_with_one_update_per_retry_period_and_no_read() {
    let lock = FakeLock::default();
    let (_, lost, _) = hold_for(&election(&lock, "me"), Duration::from_millis(5100)).await;
    assert!(lost.is_none());
    assert_eq!(lock.calls(Op::Update), 10);
    assert_eq!(
        lock.calls(Op::Get),
        1,
        "only the first read, before acquiring"
    );
}

#[tokio::test(start_paused = true)]
async fn renews_that_would_change_nothing_are_not_sent() {
    // A record in whole seconds (a ConfigMap's) renewed every 500ms: half the renews
    // would rewrite the same record; they are skipped, and never move the anchor.
    let lock = FakeLock::with_seconds();
    let e = election(&lock, "me");
    let (l, lost, _) = hold_for(&e, Duration::from_secs(5)).await;
    assert!(lost.is_none());
    let updates = lock.calls(Op::Update);
    assert!((4..=6).contains(&updates), "{updates} updates in 5s");
    assert_eq!(lock.record().unwrap().renew_time, l.held.record.renew_time);
}

#[tokio::test(start_paused = true)]
async fn the_deadlines_message_counts_every_failed_renew_in_a_row() {
    // Failures of every kind count together (found missing by cargo-mutants: counting only
    // the conflicts passed every test).
    let lock = FakeLock::default();
    let e = election(&lock, "me");
    let mut l = acquire(&e).await.unwrap();
    let before = lock.calls(Op::Update);
    for _ in 0..2 {
        lock.fault(Op::Update, Fault::Fail(fake_lock::transient));
    }
    for _ in 0..100 {
        lock.fault(Op::Update, Fault::Fail(fake_lock::conflict));
    }
    let nudge = tokio::sync::Notify::new();
    let lost = e.hold(&mut l, &Unobserved, &nudge).await;
    let failed = lock.calls(Op::Update) - before;
    assert!(
        lost.to_string().contains(&format!("({failed} in a row)")),
        "{lost}, after {failed} failed renews"
    );
}

#[tokio::test(start_paused = true)]
async fn failing_renews_lose_at_the_deadline_of_the_last_success() {
    let lock = FakeLock::default();
    let e = election(&lock, "me");
    let mut l = acquire(&e).await.unwrap();
    for _ in 0..100 {
        lock.fault(Op::Update, Fault::Fail(fake_lock::transient));
    }
    let nudge = tokio::sync::Notify::new();
    let lost = e.hold(&mut l, &Unobserved, &nudge).await;
    assert!(matches!(lost, Lost::Deadline { .. }), "{lost}");
    assert_eq!(Instant::now(), l.last_renew_sent + T.renew_deadline);
    assert!(lost.to_string().contains("connection refused"), "{lost}");
}

#[tokio::test(start_paused = true)]
async fn a_conflict_that_is_still_ours_goes_on_renewing() {
    let lock = FakeLock::default();
    lock.fault(Op::Update, Fault::Fail(fake_lock::conflict));
    let (_, lost, _) = hold_for(&election(&lock, "me"), Duration::from_secs(5)).await;
    assert!(lost.is_none(), "{lost:?}");
    assert_eq!(lock.calls(Op::Get), 2, "one read after the conflict");
}

#[tokio::test(start_paused = true)]
async fn repeated_conflicts_name_the_conflict_at_the_deadline() {
    let lock = FakeLock::default();
    for _ in 0..100 {
        lock.fault(Op::Update, Fault::Fail(fake_lock::conflict));
    }
    let (_, lost, _) = hold_for(&election(&lock, "me"), Duration::from_secs(10)).await;
    let lost = lost.expect("lost at the deadline");
    assert!(lost.to_string().contains("409 Conflict"), "{lost}");
}

#[tokio::test(start_paused = true)]
async fn a_takeover_a_release_a_deletion_and_an_impostor_each_end_leadership() {
    type Act = fn(&FakeLock);
    type Want = fn(&Lost) -> bool;
    let cases: [(Act, Want); 4] = [
        (
            |l| l.write(held("x")),
            |l| matches!(l, Lost::TakenOver(h) if h == "x"),
        ),
        (
            |l| l.write(l.record().unwrap().released(record::now())),
            |l| matches!(l, Lost::Released),
        ),
        (|l| l.delete(), |l| matches!(l, Lost::Deleted)),
        (|l| l.write(held("me")), |l| matches!(l, Lost::Impostor(_))),
    ];
    for (act, want) in cases {
        let lock = FakeLock::default();
        let e = election(&lock, "me");
        let mut l = acquire(&e).await.unwrap();
        act(&lock);
        let nudge = tokio::sync::Notify::new();
        let t0 = Instant::now();
        let lost = e.hold(&mut l, &Unobserved, &nudge).await;
        assert!(want(&lost), "{lost}");
        assert!(t0.elapsed() <= T.retry_period, "at the next renew");
    }
}

#[tokio::test(start_paused = true)]
async fn with_slots_a_free_slot_is_taken_and_a_freed_one_seen_at_once() {
    let (a, b) = (FakeLock::default(), FakeLock::default());
    a.write(held("x"));
    let e = Election::with_slots(vec![a.clone(), b.clone()], "me".into(), T);
    let l = acquire(&e).await.unwrap();
    assert_eq!(l.slot, 1, "the free slot");
    // Both held: wait; a release of either is seen through its watch.
    let e2 = Election::with_slots(vec![a.clone(), b.clone()], "me2".into(), T);
    let a2 = a.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let r = a2.record().unwrap();
        a2.write(r.released(record::now()));
    });
    let t0 = Instant::now();
    let l2 = acquire(&e2).await.unwrap();
    assert_eq!(l2.slot, 0);
    assert!(
        close(t0.elapsed(), Duration::from_secs(1)),
        "{:?}",
        t0.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_step_down_request_is_seen_at_once_and_one_for_another_holder_is_not() {
    let lock = FakeLock::default();
    let e = election(&lock, "me");
    let mut l = acquire(&e).await.unwrap();
    let nudge = tokio::sync::Notify::new();
    let l2 = lock.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let seen = l2.get(Duration::from_secs(1)).await.unwrap().unwrap();
        l2.request_step_down(&seen, "someone-else", Duration::from_secs(1))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let seen = l2.get(Duration::from_secs(1)).await.unwrap().unwrap();
        l2.request_step_down(&seen, "me", Duration::from_secs(1))
            .await
            .unwrap();
    });
    let t0 = Instant::now();
    let lost = e.hold(&mut l, &Unobserved, &nudge).await;
    assert!(matches!(lost, Lost::SteppedDown), "{lost}");
    assert!(
        close(t0.elapsed(), Duration::from_millis(1100)),
        "at once: {:?}",
        t0.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_nudge_renews_at_once() {
    let lock = FakeLock::default();
    let e = election(&lock, "me");
    let mut l = acquire(&e).await.unwrap();
    // 100ms later, well before the next renew at 500ms.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let nudge = tokio::sync::Notify::new();
    nudge.notify_one();
    tokio::select! {
        _ = e.hold(&mut l, &Unobserved, &nudge) => panic!("not lost"),
        _ = tokio::time::sleep(Duration::from_millis(10)) => {}
    }
    assert_eq!(lock.calls(Op::Update), 1);
}

#[tokio::test(start_paused = true)]
async fn a_twins_write_of_the_very_record_we_hold_ends_our_leadership() {
    // The twin writes our holder with our renew time (a ConfigMap's whole seconds): the
    // record is the same, the mark is not ours. Two processes must never both lead on it.
    let lock = FakeLock::with_seconds();
    let e = election(&lock, "me");
    let mut l = acquire(&e).await.unwrap();
    let twin = lock.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let same = twin.record().expect("the lock exists");
        twin.write(same);
    });
    let t0 = Instant::now();
    let lost = e
        .hold(&mut l, &Unobserved, &tokio::sync::Notify::new())
        .await;
    assert!(matches!(lost, Lost::Impostor(_)), "{lost}");
    assert!(
        close(t0.elapsed(), Duration::from_millis(100)),
        "{:?}",
        t0.elapsed()
    );
}
