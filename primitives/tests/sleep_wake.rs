//! CoSleep: early wakes from the same context and from other threads, the
//! no-op wake, and the 100k-iteration race of cross-thread wakes against
//! short timers (the claim protocol's stress test; the loom model is in
//! `src/sleep/claim.rs`).

mod support_io;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use coprimitives::CoSleep;
use support_io::{runtime, watchdog};

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn cosleep_is_send_and_sync() {
    assert_send_sync::<CoSleep>();
    assert_send_sync::<coprimitives::TimedOut>();
}

#[test]
fn times_out_without_a_wake() {
    let _w = watchdog("times_out_without_a_wake", Duration::from_secs(20));
    let rt = runtime(1);
    let (early, took) = rt.block_on(|| {
        let s = CoSleep::new();
        let t = Instant::now();
        (s.sleep(Duration::from_millis(5)), t.elapsed())
    });
    assert!(!early);
    assert!(took >= Duration::from_millis(5));
    rt.shutdown();
}

#[test]
fn woken_early_by_a_coroutine_of_the_same_context() {
    let _w = watchdog(
        "woken_early_by_a_coroutine_of_the_same_context",
        Duration::from_secs(20),
    );
    let rt = runtime(1);
    let (early, took) = rt.block_on(|| {
        let s = Arc::new(CoSleep::new());
        let s2 = s.clone();
        let waker = coscheduler::AioContext::current().spawn(move || {
            coprimitives::co_sleep(Duration::from_millis(2));
            s2.wake();
        });
        let t = Instant::now();
        let early = s.sleep(Duration::from_secs(60));
        waker.join().unwrap();
        (early, t.elapsed())
    });
    assert!(early);
    assert!(took < Duration::from_secs(10));
    rt.shutdown();
}

#[test]
fn sleep_until_woken_from_a_plain_thread() {
    let _w = watchdog(
        "sleep_until_woken_from_a_plain_thread",
        Duration::from_secs(20),
    );
    let rt = runtime(2);
    let s = Arc::new(CoSleep::new());
    let s2 = s.clone();
    let h = rt.spawn(move || s2.sleep_until_woken());
    // Wakes before the sleep starts are no-ops: keep waking until it ends.
    while !h.is_finished() {
        s.wake();
        std::thread::sleep(Duration::from_micros(200));
    }
    h.join().unwrap();
    rt.shutdown();
}

#[test]
fn a_wake_while_nobody_sleeps_is_a_no_op() {
    let _w = watchdog(
        "a_wake_while_nobody_sleeps_is_a_no_op",
        Duration::from_secs(20),
    );
    let rt = runtime(1);
    let (early, took) = rt.block_on(|| {
        let s = CoSleep::new();
        s.wake();
        s.wake();
        let t = Instant::now();
        (s.sleep(Duration::from_millis(10)), t.elapsed())
    });
    assert!(!early, "a wake is not remembered");
    assert!(took >= Duration::from_millis(10));
    rt.shutdown();
}

#[test]
fn a_wake_after_the_timer_fired_is_a_no_op() {
    let _w = watchdog(
        "a_wake_after_the_timer_fired_is_a_no_op",
        Duration::from_secs(20),
    );
    let rt = runtime(1);
    rt.block_on(|| {
        let s = Arc::new(CoSleep::new());
        assert!(!s.sleep(Duration::from_millis(1)));
        s.wake();
        // The next sleep is not ended by that stale wake.
        let t = Instant::now();
        assert!(!s.sleep(Duration::from_millis(5)));
        assert!(t.elapsed() >= Duration::from_millis(5));
    });
    rt.shutdown();
}

#[test]
fn two_sleepers_on_one_cosleep_panic() {
    let _w = watchdog("two_sleepers_on_one_cosleep_panic", Duration::from_secs(20));
    let rt = runtime(1);
    let s = Arc::new(CoSleep::new());
    let (s1, s2) = (s.clone(), s.clone());
    let first = rt.spawn(move || s1.sleep(Duration::from_secs(60)));
    std::thread::sleep(Duration::from_millis(20));
    let second = rt.spawn(move || s2.sleep(Duration::from_secs(60)));
    let err = second.join().unwrap_err();
    assert!(
        err.panic_message()
            .unwrap_or("")
            .contains("already sleeping"),
        "{err:?}"
    );
    s.wake();
    assert!(first.join().unwrap());
    rt.shutdown();
}

/// The race at the heart of CoSleep, 100k times: a sleeper on worker 0
/// sleeps 0–40 µs at a time while a plain thread keeps calling `wake` at
/// random moments. Every sleep must end exactly once (a double wake panics
/// the sleeper; a lost one hangs it, which the watchdog catches), and both
/// endings must occur.
#[test]
fn stress_cross_thread_wakes_against_short_timers() {
    const ITERATIONS: u64 = 100_000;
    let _w = watchdog(
        "stress_cross_thread_wakes_against_short_timers",
        Duration::from_secs(120),
    );
    let rt = runtime(2);
    let s = Arc::new(CoSleep::new());
    let stop = Arc::new(AtomicBool::new(false));
    let waker = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut x = 0x9E37_79B9_7F4A_7C15u64;
            let mut wakes = 0u64;
            while !stop.load(Relaxed) {
                s.wake();
                wakes += 1;
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                for _ in 0..(x % 2000) {
                    std::hint::spin_loop();
                }
            }
            wakes
        })
    };
    let (early, timed_out) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (e, t, s2) = (early.clone(), timed_out.clone(), s.clone());
    rt.contexts()[0]
        .spawn(move || {
            for i in 0..ITERATIONS {
                let d = Duration::from_micros(i % 41);
                if s2.sleep(d) {
                    e.fetch_add(1, Relaxed);
                } else {
                    t.fetch_add(1, Relaxed);
                }
            }
        })
        .join()
        .unwrap();
    stop.store(true, Relaxed);
    let wakes = waker.join().unwrap();
    let (e, t) = (early.load(Relaxed), timed_out.load(Relaxed));
    eprintln!("{ITERATIONS} sleeps: {e} woken early, {t} timed out; {wakes} wake calls");
    assert_eq!(e + t, ITERATIONS);
    assert!(e > 0 && t > 0, "both sides of the race were exercised");
    rt.shutdown();
}
