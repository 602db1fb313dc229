//! co_sleep: never early, late by a bounded amount, in deadline order, and
//! the thread keeps running other coroutines meanwhile.

mod support_io;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coprimitives::co_sleep;
use support_io::{median_max, runtime, watchdog};

#[test]
fn never_undersleeps_and_oversleep_is_bounded() {
    let _w = watchdog(
        "never_undersleeps_and_oversleep_is_bounded",
        Duration::from_secs(30),
    );
    let rt = runtime(2);
    for d in [
        Duration::ZERO,
        Duration::from_micros(100),
        Duration::from_millis(1),
        Duration::from_millis(7),
    ] {
        let samples = rt.block_on(move || {
            (0..30)
                .map(|_| {
                    let t = Instant::now();
                    co_sleep(d);
                    t.elapsed()
                })
                .collect::<Vec<_>>()
        });
        for s in &samples {
            assert!(*s >= d, "slept {s:?}, asked {d:?}");
        }
        let (median, max) = median_max(samples.iter().map(|s| *s - d).collect());
        // Generous bounds: the test machine is shared. The benchmark
        // (`cargo bench --bench timers`) measures the real figures.
        assert!(
            median < Duration::from_millis(3),
            "median oversleep {median:?} for {d:?}"
        );
        assert!(
            max < Duration::from_millis(100),
            "max oversleep {max:?} for {d:?}"
        );
    }
    rt.shutdown();
}

#[test]
fn sleepers_wake_in_deadline_order_on_one_context() {
    let _w = watchdog(
        "sleepers_wake_in_deadline_order_on_one_context",
        Duration::from_secs(20),
    );
    let rt = runtime(1);
    let order = Arc::new(Mutex::new(Vec::new()));
    let o = order.clone();
    rt.block_on(move || {
        let ctx = coscheduler::AioContext::current();
        let hs: Vec<_> = [30u64, 10, 20, 0, 5]
            .into_iter()
            .map(|ms| {
                let o = o.clone();
                ctx.spawn(move || {
                    co_sleep(Duration::from_millis(ms));
                    o.lock().unwrap().push(ms);
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
    });
    assert_eq!(*order.lock().unwrap(), vec![0, 5, 10, 20, 30]);
    rt.shutdown();
}

#[test]
fn a_sleeping_coroutine_does_not_block_its_thread() {
    let _w = watchdog(
        "a_sleeping_coroutine_does_not_block_its_thread",
        Duration::from_secs(20),
    );
    let rt = runtime(1);
    let (slept, spun) = rt.block_on(|| {
        let ctx = coscheduler::AioContext::current();
        let sleeper = ctx.spawn(|| {
            let t = Instant::now();
            co_sleep(Duration::from_millis(50));
            t.elapsed()
        });
        // Meanwhile, on the same thread, another coroutine runs 1000 turns.
        let spinner = ctx.spawn(|| {
            let t = Instant::now();
            for _ in 0..1000 {
                coscheduler::yield_now();
            }
            t.elapsed()
        });
        (sleeper.join().unwrap(), spinner.join().unwrap())
    });
    assert!(slept >= Duration::from_millis(50));
    assert!(
        spun < Duration::from_millis(50),
        "the spinner was held up by the sleeper: {spun:?}"
    );
    rt.shutdown();
}

#[test]
fn many_sleepers_on_two_workers_all_finish() {
    let _w = watchdog(
        "many_sleepers_on_two_workers_all_finish",
        Duration::from_secs(30),
    );
    let rt = runtime(2);
    let t = Instant::now();
    let hs: Vec<_> = (0..2000)
        .map(|i| {
            rt.spawn(move || {
                for _ in 0..5 {
                    co_sleep(Duration::from_millis(1 + i % 3));
                }
            })
        })
        .collect();
    hs.into_iter().for_each(|h| h.join().unwrap());
    // 5 sleeps of at most 3 ms each: far less than sequential (2000 × 10 ms).
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    rt.shutdown();
}

/// Outside a coroutine the thread sleeps, and coroutines homed on it keep
/// running meanwhile (the crate's rule for waits outside coroutines).
#[test]
fn sleeping_outside_a_coroutine_sleeps_the_thread_and_runs_its_context() {
    let ran = Arc::new(Mutex::new(false));
    let r = ran.clone();
    let ctx = coscheduler::AioContext::current();
    drop(ctx.spawn(move || *r.lock().unwrap() = true));
    let t = Instant::now();
    co_sleep(Duration::from_millis(5));
    assert!(t.elapsed() >= Duration::from_millis(5), "never early");
    assert!(
        *ran.lock().unwrap(),
        "the context ran while the thread slept"
    );
}

#[test]
fn shutdown_unwinds_sleeping_coroutines() {
    let _w = watchdog(
        "shutdown_unwinds_sleeping_coroutines",
        Duration::from_secs(20),
    );
    struct Flag(Arc<Mutex<bool>>);
    impl Drop for Flag {
        fn drop(&mut self) {
            *self.0.lock().unwrap() = true;
        }
    }
    let dropped = Arc::new(Mutex::new(false));
    let rt = runtime(1);
    let d = dropped.clone();
    let h = rt.spawn(move || {
        let _f = Flag(d);
        co_sleep(Duration::from_secs(3600));
    });
    while !h.coroutine().entered() && h.coroutine().context().is_none() {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(20));
    rt.shutdown();
    assert!(
        *dropped.lock().unwrap(),
        "the sleeping coroutine's destructors ran"
    );
    assert!(h.join().is_err(), "it never finished its sleep");
}
