//! `co_blocking` and `Runtime::spawn_blocking` (issue 14): blocking closures
//! run on a bounded pool while their coroutines are suspended.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use coprimitives::co_blocking;
use coscheduler::Runtime;

/// Counts closures running at once and remembers the most.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    most: AtomicUsize,
}

impl InFlight {
    fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        let n = self.now.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(n, SeqCst);
        let r = f();
        self.now.fetch_sub(1, SeqCst);
        r
    }
}

#[test]
fn a_thousand_sleeps_share_the_pool_within_its_bound() {
    const BOUND: usize = 32;
    let rt = Runtime::builder()
        .threads(2)
        .pin_threads(false)
        .blocking_threads(BOUND)
        .build()
        .unwrap();
    let in_flight = Arc::new(InFlight::default());
    let start = Instant::now();
    let handles: Vec<_> = (0..1000)
        .map(|i| {
            let in_flight = in_flight.clone();
            rt.spawn(move || {
                co_blocking(move || {
                    in_flight.run(|| std::thread::sleep(Duration::from_millis(10)));
                    i
                })
            })
        })
        .collect();
    let sum: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let took = start.elapsed();
    assert_eq!(sum, (0..1000).sum());
    let most = in_flight.most.load(SeqCst);
    assert!(most <= BOUND, "{most} closures ran at once");
    assert!(most > 2, "the pool ran only {most} at once");
    // Serially this is 10 s; the pool's 32 threads make it about 0.3 s.
    assert!(took < Duration::from_secs(5), "{took:?}");
    // A pool thread counts a closure completed just after it has woken the
    // closure's caller, so the last counts may trail the joins briefly.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut m = rt.metrics().blocking;
    while m.completed < 1000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
        m = rt.metrics().blocking;
    }
    assert_eq!(m.completed, 1000);
    assert!(m.threads <= BOUND);
    assert_eq!(m.wait.len(), 1000);
    rt.shutdown();
}

#[test]
fn a_panic_in_the_closure_comes_back_to_the_caller() {
    let rt = Runtime::builder().threads(1).build().unwrap();
    let caught = rt.block_on(|| {
        let r = catch_unwind(AssertUnwindSafe(|| {
            co_blocking(|| -> u32 { panic!("the disk is on fire") })
        }));
        let payload = r.expect_err("the panic is re-raised in the coroutine");
        payload.downcast_ref::<&str>().map(|s| s.to_string())
    });
    assert_eq!(caught.as_deref(), Some("the disk is on fire"));
    let err = rt
        .spawn_blocking(|| -> u32 { panic!("again") })
        .join()
        .unwrap_err();
    assert_eq!(err.panic_message(), Some("again"));
    // The pool thread survived both.
    assert_eq!(rt.block_on(|| co_blocking(|| 5)), 5);
    rt.shutdown();
}

#[test]
fn back_pressure_keeps_the_queue_bounded() {
    let rt = Runtime::builder()
        .threads(2)
        .pin_threads(false)
        .blocking_threads(2)
        .blocking_queue(1)
        .build()
        .unwrap();
    let in_flight = Arc::new(InFlight::default());
    let handles: Vec<_> = (0..20)
        .map(|_| {
            let in_flight = in_flight.clone();
            rt.spawn(move || {
                co_blocking(move || in_flight.run(|| std::thread::sleep(Duration::from_millis(5))))
            })
        })
        .collect();
    let (mut most_queued, mut most_waiting) = (0, 0);
    while !handles.iter().all(|h| h.is_finished()) {
        let m = rt.metrics().blocking;
        most_queued = most_queued.max(m.queued);
        most_waiting = most_waiting.max(m.waiting_to_submit);
        std::thread::sleep(Duration::from_millis(1));
    }
    for h in handles {
        h.join().unwrap();
    }
    assert!(in_flight.most.load(SeqCst) <= 2);
    assert!(most_queued <= 1, "{most_queued} queued");
    assert!(most_waiting > 0, "nobody ever waited for room");
    rt.shutdown();
}

/// Shutting down while closures run loses none of them, and each caller
/// gets its result before it is unwound.
#[test]
fn shutdown_with_calls_in_flight_loses_nothing() {
    const CALLS: usize = 40;
    let rt = Runtime::builder()
        .threads(2)
        .pin_threads(false)
        .blocking_threads(8)
        .build()
        .unwrap();
    let submitted = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let returned = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..CALLS)
        .map(|_| {
            let (s, f, r) = (submitted.clone(), finished.clone(), returned.clone());
            rt.spawn(move || {
                s.fetch_add(1, SeqCst);
                co_blocking(move || {
                    std::thread::sleep(Duration::from_millis(50));
                    f.fetch_add(1, SeqCst);
                });
                r.fetch_add(1, SeqCst);
                coscheduler::suspend(); // the unwind happens here
            })
        })
        .collect();
    while submitted.load(SeqCst) < CALLS {
        std::thread::sleep(Duration::from_millis(1));
    }
    rt.shutdown();
    assert_eq!(finished.load(SeqCst), CALLS);
    assert_eq!(returned.load(SeqCst), CALLS);
    for h in handles {
        assert!(matches!(h.join(), Err(coscheduler::JoinError::Cancelled)));
    }
}

#[test]
fn outside_a_runtime_the_closure_runs_inline() {
    let here = std::thread::current().id();
    assert_eq!(co_blocking(move || std::thread::current().id()), here);
    let co = coscheduler::Coroutine::new(move || {
        assert_eq!(co_blocking(move || std::thread::current().id()), here);
    });
    co.enter();
    assert!(co.is_finished());
}
