//! W4's loop loses no increment, in both forms, on `CoMutex` and on tokio's mutex.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use coprimitives::CoMutex;
use workloads::mutex::{Counter, TokioCounter, Until, spawn_incrementers};

const PER_CONTEXT: u64 = 4;

#[test]
fn the_comutex_counter_sees_every_increment() {
    let rt = coscheduler::Runtime::builder().threads(2).build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    for (counter, until) in [
        (Counter::new(), Until::Count(1_000)),
        (
            Counter::with_lock(CoMutex::new_fifo(())),
            Until::Stop(stop.clone()),
        ),
    ] {
        let counter = Arc::new(counter);
        let handles = spawn_incrementers(&rt, PER_CONTEXT, &counter, &until);
        if matches!(until, Until::Stop(_)) {
            std::thread::sleep(Duration::from_millis(20));
            stop.store(true, Relaxed);
        }
        let made: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        if let Until::Count(n) = until {
            assert_eq!(made, n * 2 * PER_CONTEXT);
        }
        assert_eq!(counter.try_count(), Some(made));
        let counter = Arc::try_unwrap(counter)
            .ok()
            .expect("every coroutine joined");
        assert_eq!(counter.into_count(), made);
    }
    rt.shutdown();
}

#[test]
fn the_hook_sees_the_running_count() {
    let rt = coscheduler::Runtime::builder().threads(1).build().unwrap();
    let (made, seen) = rt.block_on(|| {
        let counter = Counter::new();
        let mut seen = Vec::new();
        let made = counter.increment_observed(&Until::Count(5), |n| seen.push(n));
        (made, seen)
    });
    assert_eq!(made, 5);
    assert_eq!(seen, [1, 2, 3, 4, 5]);
    rt.shutdown();
}

#[test]
fn the_tokio_counter_sees_every_increment() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let counter = Arc::new(TokioCounter::new());
    let tasks: Vec<_> = (0..2 * PER_CONTEXT)
        .map(|_| {
            let counter = counter.clone();
            rt.spawn(async move { counter.increment(&Until::Count(1_000)).await })
        })
        .collect();
    let made: u64 = rt.block_on(async {
        let mut sum = 0;
        for task in tasks {
            sum += task.await.unwrap();
        }
        sum
    });
    assert_eq!(made, 1_000 * 2 * PER_CONTEXT);
    assert_eq!(counter.try_count(), Some(made));
}
