//! co_timeout: in time, late (the function keeps running and its result
//! goes to the clean-up), zero (runs in the caller), panics, and use from a
//! plain thread.

mod support_io;

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use coprimitives::{TimedOut, co_sleep, co_timeout, co_timeout_with_cleanup};
use support_io::{runtime, watchdog};

#[test]
fn finishes_in_time() {
    let _w = watchdog("finishes_in_time", Duration::from_secs(20));
    let rt = runtime(2);
    let (r, took) = rt.block_on(|| {
        let t = Instant::now();
        let r = co_timeout(Duration::from_secs(10), || {
            co_sleep(Duration::from_millis(2));
            "done"
        });
        (r, t.elapsed())
    });
    assert_eq!(r, Ok("done"));
    assert!(
        took < Duration::from_secs(5),
        "returned as soon as f finished: {took:?}"
    );
    rt.shutdown();
}

#[test]
fn late_completion_goes_to_the_cleanup() {
    let _w = watchdog(
        "late_completion_goes_to_the_cleanup",
        Duration::from_secs(20),
    );
    let rt = runtime(2);
    let (tx, rx) = mpsc::channel();
    let finished = Arc::new(AtomicBool::new(false));
    let fin = finished.clone();
    let (r, took) = rt.block_on(move || {
        let t = Instant::now();
        let r = co_timeout_with_cleanup(
            Duration::from_millis(5),
            move || {
                co_sleep(Duration::from_millis(60));
                fin.store(true, SeqCst);
                vec![1, 2, 3]
            },
            move |late| tx.send(late).unwrap(),
        );
        (r, t.elapsed())
    });
    assert_eq!(r, Err(TimedOut));
    assert!(
        took >= Duration::from_millis(5) && took < Duration::from_millis(60),
        "{took:?}"
    );
    assert!(!finished.load(SeqCst), "the caller did not wait for f");
    let late = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the clean-up got the late result");
    assert_eq!(late, vec![1, 2, 3]);
    assert!(finished.load(SeqCst));
    rt.shutdown();
}

#[test]
fn cleanup_is_not_called_when_in_time() {
    let _w = watchdog(
        "cleanup_is_not_called_when_in_time",
        Duration::from_secs(20),
    );
    let rt = runtime(1);
    let called = Arc::new(AtomicBool::new(false));
    let c = called.clone();
    let r = rt.block_on(move || {
        co_timeout_with_cleanup(Duration::from_secs(5), || 7, move |_| c.store(true, SeqCst))
    });
    assert_eq!(r, Ok(7));
    std::thread::sleep(Duration::from_millis(20));
    assert!(!called.load(SeqCst));
    rt.shutdown();
}

#[test]
fn zero_runs_f_directly_in_the_caller() {
    let _w = watchdog(
        "zero_runs_f_directly_in_the_caller",
        Duration::from_secs(20),
    );
    let rt = runtime(1);
    let r = rt.block_on(|| {
        let me = coscheduler::current().unwrap();
        co_timeout(Duration::ZERO, move || {
            // No deadline: even a long f completes.
            co_sleep(Duration::from_millis(20));
            coscheduler::current().unwrap() == me
        })
    });
    assert_eq!(r, Ok(true), "same coroutine, no timeout");
    // Outside a coroutine too.
    assert_eq!(co_timeout(Duration::ZERO, || 3), Ok(3));
    rt.shutdown();
}

#[test]
fn a_panic_before_the_deadline_reaches_the_caller() {
    let _w = watchdog(
        "a_panic_before_the_deadline_reaches_the_caller",
        Duration::from_secs(20),
    );
    let rt = runtime(1);
    let h = rt.spawn(|| co_timeout(Duration::from_secs(5), || -> u32 { panic!("inside f") }));
    let err = h.join().unwrap_err();
    assert_eq!(err.panic_message(), Some("inside f"));
    rt.shutdown();
}

#[test]
fn a_late_panic_is_contained() {
    let _w = watchdog("a_late_panic_is_contained", Duration::from_secs(20));
    let rt = runtime(1);
    let r = rt.block_on(|| {
        let r = co_timeout(Duration::from_millis(2), || {
            co_sleep(Duration::from_millis(20));
            panic!("too late to matter")
        });
        // The context keeps working after f panics late.
        co_sleep(Duration::from_millis(40));
        r
    });
    assert_eq!(r, Err::<(), _>(TimedOut));
    assert_eq!(rt.block_on(|| 5), 5);
    rt.shutdown();
}

#[test]
fn works_from_a_plain_thread() {
    let _w = watchdog("works_from_a_plain_thread", Duration::from_secs(20));
    assert_eq!(co_timeout(Duration::from_secs(5), || 11), Ok(11));
    let t = Instant::now();
    assert_eq!(
        co_timeout(Duration::from_millis(5), || co_sleep(Duration::from_secs(
            10
        ))),
        Err(TimedOut)
    );
    // The timeout did not wait for the body's sleep (a margin wide enough
    // for a loaded machine).
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn many_concurrent_timeouts() {
    let _w = watchdog("many_concurrent_timeouts", Duration::from_secs(30));
    let rt = runtime(2);
    let hs: Vec<_> = (0..500u64)
        .map(|i| {
            rt.spawn(move || {
                let work = Duration::from_millis(i % 7);
                co_timeout(Duration::from_millis(3), move || {
                    co_sleep(work);
                    i
                })
            })
        })
        .collect();
    let (mut ok, mut late) = (0, 0);
    for (i, h) in hs.into_iter().enumerate() {
        match h.join().unwrap() {
            Ok(v) => {
                assert_eq!(v, i as u64);
                ok += 1;
            }
            Err(TimedOut) => late += 1,
        }
    }
    assert_eq!(ok + late, 500);
    assert!(ok > 0 && late > 0, "ok {ok}, late {late}");
    rt.shutdown();
}

#[test]
fn timed_out_is_an_error() {
    let e: Box<dyn std::error::Error> = Box::new(TimedOut);
    assert_eq!(e.to_string(), "operation timed out");
    let io: std::io::Error = TimedOut.into();
    assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(format!("{TimedOut:?}"), "TimedOut");
}
