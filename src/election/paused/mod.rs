//! The election driven through a scripted lock in paused time: every transition of
//! `acquire` and `hold`, in milliseconds of real time.

use super::fake_lock::{self, FakeLock, Fault, Op};
use super::*;
use crate::record::LeaderRecord;
use tokio::sync::watch;

mod deletions;
mod hold;
mod pacing;
mod rejoin;
mod waiting;

const T: Timing = Timing {
    lease_duration: Duration::from_secs(4),
    renew_deadline: Duration::from_secs(2),
    retry_period: Duration::from_millis(500),
    kill_grace: Duration::from_secs(1),
};
const LEASE: Duration = T.lease_duration;

/// The wall clock follows paused time from the real one at the start.
fn election(lock: &FakeLock, me: &str) -> Election<FakeLock> {
    let (wall0, t0) = (record::now(), Instant::now());
    Election::new(lock.clone(), me.into(), T).with_wall_clock(std::sync::Arc::new(move || {
        record::plus(wall0, t0.elapsed()).unwrap_or(wall0)
    }))
}

fn held(holder: &str) -> LeaderRecord {
    LeaderRecord::taken(None, Some(4), holder, 4, record::now())
}

async fn acquire_with(
    e: &Election<FakeLock>,
    opts: WaitOptions,
) -> Result<Leadership<()>, AcquireError> {
    let (_tx, mut rx) = watch::channel(None);
    e.acquire(opts, &mut rx, &Unobserved).await
}

async fn acquire(e: &Election<FakeLock>) -> Result<Leadership<()>, AcquireError> {
    acquire_with(e, WaitOptions::default()).await
}

/// Another holder renewing every retry period for `for_` (then it stops).
fn renewing(lock: &FakeLock, holder: &'static str, for_: Duration) {
    let lock = lock.clone();
    tokio::spawn(async move {
        let end = Instant::now() + for_;
        while Instant::now() < end {
            let r = lock.record().unwrap_or_else(|| held(holder));
            lock.write(LeaderRecord {
                renew_time: Some(record::now()),
                ..r
            });
            tokio::time::sleep(T.retry_period).await;
        }
    });
}

fn close(a: Duration, b: Duration) -> bool {
    a.abs_diff(b) <= Duration::from_millis(50)
}

#[tokio::test(start_paused = true)]
async fn a_lock_that_never_existed_is_created_at_once_from_token_0() {
    let lock = FakeLock::default();
    let t0 = Instant::now();
    let l = acquire(&election(&lock, "me")).await.unwrap();
    assert!(t0.elapsed() < Duration::from_millis(10));
    assert_eq!((l.fencing_token, lock.calls(Op::Create)), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_held_lock_is_taken_a_lease_after_its_last_change_with_the_next_token() {
    let lock = FakeLock::default();
    lock.write(held("other"));
    renewing(&lock, "other", Duration::from_secs(3));
    let t0 = Instant::now();
    let l = acquire(&election(&lock, "me")).await.unwrap();
    // The last renew was at about 2.5s (every 500ms for 3s): taken a lease after it.
    assert!(
        close(t0.elapsed(), Duration::from_millis(2500) + LEASE),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(l.fencing_token, 6, "one more than the holder's 5");
}

#[tokio::test(start_paused = true)]
async fn a_release_is_seen_through_the_watch_at_once() {
    let lock = FakeLock::default();
    lock.write(held("other"));
    let l2 = lock.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let r = l2.record().unwrap();
        l2.write(r.released(record::now()));
    });
    let t0 = Instant::now();
    acquire(&election(&lock, "me")).await.unwrap();
    assert!(
        close(t0.elapsed(), Duration::from_secs(1)),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(lock.calls(Op::Get), 1, "one read, then the watch");
}

#[tokio::test(start_paused = true)]
async fn with_watching_refused_it_polls_every_retry_period() {
    let lock = FakeLock::default();
    lock.fault(Op::Watch, Fault::Fail(fake_lock::refused));
    lock.write(held("other"));
    let l2 = lock.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let r = l2.record().unwrap();
        l2.write(r.released(record::now()));
    });
    let t0 = Instant::now();
    acquire(&election(&lock, "me")).await.unwrap();
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(1)
            && took
                <= Duration::from_secs(1) + T.retry_period.mul_f64(1.2) + Duration::from_millis(10),
        "{took:?}"
    );
    assert_eq!(
        lock.calls(Op::Watch),
        1,
        "a refused watch is not tried again"
    );
    assert!(lock.calls(Op::Get) >= 2);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_watch_is_replaced_and_a_release_seen_within_a_few_retry_periods() {
    let lock = FakeLock::default();
    lock.fault(Op::Watch, Fault::Stall);
    lock.write(held("other"));
    let l2 = lock.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = l2.record().unwrap();
        l2.write(r.released(record::now()));
    });
    let t0 = Instant::now();
    acquire(&election(&lock, "me")).await.unwrap();
    let took = t0.elapsed();
    // Silent for 3 retry periods, then a plain read shows the release: well before a lease.
    assert!(
        took <= T.retry_period * 3 + Duration::from_millis(10),
        "{took:?}"
    );
    assert!(took < LEASE);
}

#[tokio::test(start_paused = true)]
async fn the_wait_times_out_when_the_holder_renews_on() {
    let lock = FakeLock::default();
    lock.write(held("other"));
    renewing(&lock, "other", Duration::from_secs(60));
    let t0 = Instant::now();
    let r = acquire_with(
        &election(&lock, "me"),
        WaitOptions {
            no_wait: false,
            wait_timeout: Some(Duration::from_secs(7)),
        },
    )
    .await;
    assert!(matches!(r, Err(AcquireError::WaitTimeout)), "{r:?}");
    assert!(close(t0.elapsed(), Duration::from_secs(7)));
}

#[tokio::test(start_paused = true)]
async fn a_lock_deleted_under_its_holder_is_created_a_lease_after_the_deletion() {
    let lock = FakeLock::default();
    lock.write(held("other"));
    let l2 = lock.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        l2.delete();
    });
    let t0 = Instant::now();
    let l = acquire(&election(&lock, "me")).await.unwrap();
    assert!(
        close(t0.elapsed(), Duration::from_secs(1) + LEASE),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(
        l.fencing_token, 6,
        "the token continues from the deleted record's"
    );
}

#[tokio::test(start_paused = true)]
async fn a_record_naming_us_written_by_another_process_is_waited_out() {
    let lock = FakeLock::default();
    lock.write(held("me"));
    let before = lock.record().unwrap().leader_transitions;
    let t0 = Instant::now();
    let l = acquire(&election(&lock, "me")).await.unwrap();
    assert!(close(t0.elapsed(), LEASE), "{:?}", t0.elapsed());
    // Another process's leadership, though it bore our name: the token moves on.
    assert_eq!(l.fencing_token, before + 1);
}

#[tokio::test(start_paused = true)]
async fn a_twins_write_equal_to_our_refused_one_is_not_taken_for_ours() {
    // A ConfigMap record keeps whole seconds: a twin (our identity, another process)
    // renewing in the same second as our acquiring write writes the same holder and
    // renewTime. Ours met a 409, so the record is the twin's: wait it out and take it
    // with the next token, never resume it as our own leadership with the twin's token.
    let lock = FakeLock::with_seconds();
    lock.write(held("me"));
    let before = lock.record().unwrap().leader_transitions;
    lock.fault(Op::Update, Fault::WrittenFirst);
    let t0 = Instant::now();
    let l = acquire(&election(&lock, "me")).await.unwrap();
    assert_eq!(l.fencing_token, before + 2, "the twin had before + 1");
    assert!(t0.elapsed() >= 2 * LEASE, "{:?}", t0.elapsed());
}

#[tokio::test(start_paused = true)]
async fn a_new_leadership_after_our_own_gets_the_next_token() {
    // `--rejoin` after a loss that nobody took over: the lock still shows our last
    // write. It is taken at once, but as a new leadership.
    let lock = FakeLock::default();
    let e = election(&lock, "me");
    let first = acquire(&e).await.unwrap();
    drop(first);
    let t0 = Instant::now();
    let second = acquire(&e).await.unwrap();
    assert!(t0.elapsed() < T.retry_period, "{:?}", t0.elapsed());
    assert_eq!(second.fencing_token, 1);
}

#[tokio::test(start_paused = true)]
async fn a_signal_during_the_acquiring_write_releases_what_landed() {
    let lock = FakeLock::default();
    lock.fault(Op::Create, Fault::Slow(Duration::from_millis(100)));
    let e = election(&lock, "me");
    let (tx, mut rx) = watch::channel(None);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send_replace(Some(15));
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let r = e
        .acquire(WaitOptions::default(), &mut rx, &Unobserved)
        .await;
    assert!(matches!(r, Err(AcquireError::Stopped(15))), "{r:?}");
    let left = lock.record().unwrap();
    assert!(!left.is_held(), "released: {left:?}");
}

#[tokio::test(start_paused = true)]
async fn a_missing_namespace_is_an_error_at_once() {
    let lock = FakeLock::default();
    lock.fault(Op::Create, Fault::Fail(fake_lock::no_namespace));
    let r = acquire(&election(&lock, "me")).await;
    assert!(
        matches!(r, Err(AcquireError::Lock(LockError::NamespaceNotFound(_)))),
        "{r:?}"
    );
    assert_eq!(lock.calls(Op::Create), 1);
}

#[tokio::test(start_paused = true)]
async fn no_wait_gives_up_at_once_on_a_live_lock() {
    let lock = FakeLock::default();
    lock.write(held("other"));
    let t0 = Instant::now();
    let r = acquire_with(
        &election(&lock, "me"),
        WaitOptions {
            no_wait: true,
            wait_timeout: None,
        },
    )
    .await;
    assert!(matches!(r, Err(AcquireError::Held { .. })), "{r:?}");
    assert!(t0.elapsed() < Duration::from_millis(10));
}

fn abandoned(holder: &str) -> LeaderRecord {
    // Renewed an hour ago by its own clock.
    let mut r = held(holder);
    let old = LeaderRecord::from_annotation(r#"{"renewTime":"2000-01-01T00:00:00Z"}"#).unwrap();
    r.renew_time = old.renew_time;
    r
}

#[tokio::test(start_paused = true)]
async fn no_wait_takes_an_abandoned_lock_after_watching_it_for_a_lease() {
    let lock = FakeLock::default();
    lock.write(abandoned("gone"));
    let t0 = Instant::now();
    acquire_with(
        &election(&lock, "me"),
        WaitOptions {
            no_wait: true,
            wait_timeout: None,
        },
    )
    .await
    .unwrap();
    assert!(close(t0.elapsed(), LEASE));
}

#[tokio::test(start_paused = true)]
async fn no_wait_gives_up_when_a_lock_that_looked_abandoned_changes() {
    let lock = FakeLock::default();
    lock.write(abandoned("slow-clock"));
    let l2 = lock.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        // Its holder's clock is far behind, but it renews: it is alive.
        let mut r = abandoned("slow-clock");
        r.lease_duration_seconds = 5;
        l2.write(r);
    });
    let r = acquire_with(
        &election(&lock, "me"),
        WaitOptions {
            no_wait: true,
            wait_timeout: None,
        },
    )
    .await;
    assert!(matches!(r, Err(AcquireError::Held { .. })), "{r:?}");
}
