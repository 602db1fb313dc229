//! W4's loop loses no increment, in both forms, on `CoMutex` and on tokio's mutex.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use coprimitives::CoMutex;
use workloads::mutex::{Counter, TokioCounter, Until};

const PER_CONTEXT: usize = 4;

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
        let handles: Vec<_> = rt
            .contexts()
            .iter()
            .flat_map(|ctx| {
                (0..PER_CONTEXT).map(|_| {
                    let (counter, until) = (counter.clone(), until.clone());
                    ctx.spawn(move || {
                        let mut seen = 0;
                        let made = counter.increment_observed(&until, |n| seen = n);
                        assert_eq!(seen, made, "the hook sees the running count");
                        made
                    })
                })
            })
            .collect();
        if matches!(until, Until::Stop(_)) {
            std::thread::sleep(Duration::from_millis(20));
            stop.store(true, Relaxed);
        }
        let made: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        if let Until::Count(n) = until {
            assert_eq!(made, n * 2 * PER_CONTEXT as u64);
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
    assert_eq!(made, 1_000 * 2 * PER_CONTEXT as u64);
    assert_eq!(counter.try_count(), Some(made));
}
