//! What a copy remembers from one acquiring round to the next (`--rejoin`), and how little it
//! trusts it: between rounds it watched nothing, so a memory is a floor, never a fact of now.

use super::*;

/// Waits with a timeout shorter than a lease; the wait must time out.
async fn wait_in_vain(e: &Election<FakeLock>, for_: Duration) {
    let opts = WaitOptions {
        no_wait: false,
        wait_timeout: Some(for_),
    };
    let r = acquire_with(e, opts).await;
    assert!(matches!(r, Err(AcquireError::WaitTimeout)), "{r:?}");
}

#[tokio::test(start_paused = true)]
async fn a_lock_seen_held_in_an_earlier_round_is_waited_out_from_the_rejoin() {
    // The holder's record looks the same two leases later, but this copy did not watch in
    // between: its lease counts from the new round, as a fresh copy's would.
    let lock = FakeLock::default();
    lock.write(held("other"));
    let e = election(&lock, "me");
    wait_in_vain(&e, Duration::from_millis(100)).await;
    tokio::time::sleep(2 * LEASE).await;
    let t1 = Instant::now();
    acquire(&e).await.unwrap();
    assert!(close(t1.elapsed(), LEASE), "{:?}", t1.elapsed());
}

#[tokio::test(start_paused = true)]
async fn a_deletion_seen_in_an_earlier_round_is_waited_out_from_the_rejoin() {
    // Between the rounds the lock may have been created and deleted again, unseen (here it
    // was): the deletion counts from the new round, not from when it was seen.
    let lock = FakeLock::default();
    lock.write(held("other"));
    let e = election(&lock, "me");
    let l2 = lock.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        l2.delete();
        tokio::time::sleep(Duration::from_millis(400)).await;
        l2.write(held("another"));
        tokio::time::sleep(Duration::from_millis(600)).await;
        l2.delete();
    });
    wait_in_vain(&e, Duration::from_millis(300)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t1 = Instant::now();
    let l = acquire(&e).await.unwrap();
    assert!(close(t1.elapsed(), LEASE), "{:?}", t1.elapsed());
    assert_eq!(l.fencing_token, 6, "above the count seen, 5");
}

#[tokio::test(start_paused = true)]
async fn a_slot_remembered_free_is_not_written_before_it_is_read_again() {
    // Slot 1 was ours and released; another copy took it between the rounds. Slot 0's read
    // comes first in the new round: the decision must wait for slot 1's own read, not act on
    // its memory (a write to a lock it has not seen this round).
    let (a, b) = (FakeLock::default(), FakeLock::default());
    a.write(held("x"));
    let e = Election::with_slots(vec![a.clone(), b.clone()], "me".into(), T);
    let l = acquire(&e).await.unwrap();
    assert_eq!(l.slot, 1);
    e.finish(l, AfterExit::Release, None).await.unwrap();
    b.write(held("y"));
    let writes = b.calls(Op::Update) + b.calls(Op::Create);
    wait_in_vain(&e, Duration::from_millis(500)).await;
    assert_eq!(b.calls(Op::Update) + b.calls(Op::Create), writes);
    assert_eq!(b.record().map(|r| r.holder_identity), Some("y".into()));
}

#[tokio::test(start_paused = true)]
async fn a_lock_we_released_and_find_gone_is_waited_out() {
    // We led and released; another copy took the lock and it was deleted under that copy,
    // all between our rounds. The lock existed: its absence is a deletion, waited out a
    // lease, not a lock that never existed (created at once).
    let lock = FakeLock::default();
    let e = election(&lock, "me");
    let l = acquire(&e).await.unwrap();
    e.finish(l, AfterExit::Release, None).await.unwrap();
    lock.write(held("other"));
    lock.delete();
    let t1 = Instant::now();
    let l = acquire(&e).await.unwrap();
    assert!(close(t1.elapsed(), LEASE), "{:?}", t1.elapsed());
    assert_eq!(l.fencing_token, 1, "above our own, 0");
}
