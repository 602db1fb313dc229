//! The second scenario: 200 create/drop cycles of a runtime with 50
//! suspended coroutines each — in `suspend()`, in `co_sleep`, queued on a
//! contended CoMutex — end with every coroutine unwound and the process's
//! threads and mappings where they started. One test in its own binary:
//! it counts the whole process.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use coprimitives::{CoMutex, co_sleep};
use coscheduler::{Runtime, suspend};
use testkit::{CountDrop, mapping_count, settled_thread_count, thread_count};

fn cycle(i: usize, drops: &Arc<AtomicUsize>) {
    let rt = Runtime::builder().threads(2).build().unwrap();
    let m = Arc::new(CoMutex::new(()));
    let arrived = Arc::new(AtomicUsize::new(0));
    for k in 0..50 {
        let (d, a, m) = (drops.clone(), arrived.clone(), m.clone());
        drop(rt.contexts()[k % 2].spawn(move || {
            let _g = CountDrop(d);
            match k % 3 {
                0 => {
                    a.fetch_add(1, SeqCst);
                    suspend();
                }
                1 => {
                    a.fetch_add(1, SeqCst);
                    co_sleep(Duration::from_secs(3600));
                }
                _ => {
                    // The first of these holds the lock while it sleeps;
                    // the rest queue behind it.
                    a.fetch_add(1, SeqCst);
                    let _l = m.lock();
                    co_sleep(Duration::from_secs(3600));
                }
            }
        }));
    }
    let start = Instant::now();
    while arrived.load(SeqCst) < 50 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "coroutines did not start"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    if i % 2 == 0 {
        rt.shutdown();
    } else {
        drop(rt);
    }
    assert!(!m.is_locked());
    assert_eq!(Arc::strong_count(&m), 1);
}

#[test]
fn two_hundred_runtimes_with_waiters_unwind_everything() {
    let drops = Arc::new(AtomicUsize::new(0));
    for i in 0..3 {
        cycle(i, &drops);
    }
    let (threads, maps) = (thread_count(), mapping_count());
    let pool_before = coscheduler::pool::stats();
    drops.store(0, SeqCst);
    for i in 0..200 {
        cycle(i, &drops);
    }
    let pool_after = coscheduler::pool::stats();
    assert_eq!(drops.load(SeqCst), 200 * 50, "every coroutine was unwound");
    assert_eq!(pool_after.leaked, pool_before.leaked, "nothing leaked");
    assert_eq!(
        pool_after.in_use(),
        pool_before.in_use(),
        "every stack came back"
    );
    assert_eq!(
        settled_thread_count(threads),
        threads,
        "worker threads were joined"
    );
    let pooled_growth = pool_after.pooled.saturating_sub(pool_before.pooled);
    testkit::assert_mappings_within_pool_growth(maps, pooled_growth);
}
