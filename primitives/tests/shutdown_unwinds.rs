//! Shutdown with coroutines waiting in every primitive: all destructors
//! run, every lock ends free with its `Arc` back to one reference, nothing
//! is leaked. Each scenario runs 20 times under `shutdown()` and 20 times
//! under `Drop` (the failures these tests guard against were racy).

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use coprimitives::{CoMutex, CoMutexGuard, CoQueue, CoRwLock, co_sleep, co_timeout};
use coscheduler::{Coroutine, JoinError, Runtime, suspend};
use testkit::{CountDrop, wait_until};

const HOUR: Duration = Duration::from_secs(3600);

/// Runs `scenario` 20 times ending with `shutdown()` and 20 times ending
/// with `Drop`; the scenario returns the coroutines it started and a check
/// to run once the runtime is gone.
fn both_ways(scenario: impl Fn(&Runtime, &Arc<AtomicUsize>) -> (usize, Box<dyn FnOnce()>)) {
    for round in 0..40 {
        let leaked_before = coscheduler::pool::stats().leaked;
        let drops = Arc::new(AtomicUsize::new(0));
        let rt = Runtime::builder().threads(2).build().unwrap();
        let (expected, check) = scenario(&rt, &drops);
        if round % 2 == 0 {
            rt.shutdown();
        } else {
            drop(rt);
        }
        assert_eq!(
            drops.load(SeqCst),
            expected,
            "round {round}: every destructor ran"
        );
        check();
        assert_eq!(
            coscheduler::pool::stats().leaked,
            leaked_before,
            "round {round}: nothing leaked"
        );
    }
}

/// The first scenario: one coroutine holds the lock and sleeps an
/// hour, 99 wait in `lock()` on both workers.
#[test]
fn comutex_holder_asleep_and_99_waiters() {
    both_ways(|rt, drops| {
        let m = Arc::new(CoMutex::new(()));
        let arrived = Arc::new(AtomicUsize::new(0));
        let (m0, d0) = (m.clone(), drops.clone());
        let holder = rt.contexts()[0].spawn(move || {
            let _d = CountDrop(d0);
            let _g = m0.lock();
            co_sleep(HOUR);
        });
        wait_until("the holder to lock", || m.is_locked());
        for i in 1..100 {
            let (m, d, a) = (m.clone(), drops.clone(), arrived.clone());
            drop(rt.contexts()[i % 2].spawn(move || {
                let _d = CountDrop(d);
                a.fetch_add(1, SeqCst);
                let _g = m.lock();
                unreachable!("the holder never unlocks before the shutdown");
            }));
        }
        wait_until("99 waiters", || arrived.load(SeqCst) == 99);
        // Let the last arrivals get from the counter into the queue.
        std::thread::sleep(Duration::from_millis(5));
        (
            100,
            Box::new(move || {
                assert!(matches!(holder.join(), Err(JoinError::Cancelled)));
                assert!(!m.is_locked(), "the lock ends free");
                assert_eq!(Arc::strong_count(&m), 1, "no waiter kept a reference");
            }),
        )
    });
}

/// A writer asleep holding a CoRwLock, readers and writers queued behind it,
/// a downgraded reader, on both workers.
#[test]
fn corwlock_writer_asleep_with_readers_and_writers_queued() {
    both_ways(|rt, drops| {
        let l = Arc::new(CoRwLock::new(0u32));
        let arrived = Arc::new(AtomicUsize::new(0));
        let (l0, d0, a0) = (l.clone(), drops.clone(), arrived.clone());
        drop(rt.contexts()[0].spawn(move || {
            let _d = CountDrop(d0);
            let mut w = l0.write();
            *w += 1;
            a0.fetch_add(1, SeqCst);
            co_sleep(HOUR);
        }));
        wait_until("the writer", || arrived.load(SeqCst) == 1);
        for i in 0..30 {
            let (l, d, a) = (l.clone(), drops.clone(), arrived.clone());
            drop(rt.contexts()[i % 2].spawn(move || {
                let _d = CountDrop(d);
                a.fetch_add(1, SeqCst);
                match i % 3 {
                    0 => drop(l.read()),
                    1 => drop(l.write()),
                    _ => {
                        let w = l.write();
                        let _r = w.downgrade();
                        co_sleep(HOUR);
                    }
                }
            }));
        }
        wait_until("30 waiters", || arrived.load(SeqCst) == 31);
        std::thread::sleep(Duration::from_millis(5));
        (
            31,
            Box::new(move || {
                assert_eq!(Arc::strong_count(&l), 1, "no waiter kept a reference");
                let l = Arc::try_unwrap(l).unwrap();
                assert_eq!(l.into_inner(), 1);
            }),
        )
    });
}

/// CoQueue waiters, a coroutine blocked in `join` on another suspended
/// coroutine, and coroutines inside `co_timeout`.
#[test]
fn coqueue_waiters_joiners_and_timeouts() {
    both_ways(|rt, drops| {
        let m = Arc::new(CoMutex::new(()));
        let q = Arc::new(CoQueue::new());
        let ready = Arc::new(AtomicUsize::new(0));
        for i in 0..10 {
            let (m, q, d, r) = (m.clone(), q.clone(), drops.clone(), ready.clone());
            drop(rt.contexts()[i % 2].spawn(move || {
                let _d = CountDrop(d);
                let g = m.lock();
                r.fetch_add(1, SeqCst);
                let _g = q.wait(g);
            }));
        }
        for i in 0..10 {
            let (d, r) = (drops.clone(), ready.clone());
            let d2 = drops.clone();
            let sleeper = rt.contexts()[i % 2].spawn(move || {
                let _d = CountDrop(d2);
                suspend();
            });
            drop(rt.contexts()[(i + 1) % 2].spawn(move || {
                let _d = CountDrop(d);
                r.fetch_add(1, SeqCst);
                let _ = sleeper.join();
            }));
        }
        for i in 0..10 {
            let (d, r) = (drops.clone(), ready.clone());
            drop(rt.contexts()[i % 2].spawn(move || {
                let _d = CountDrop(d);
                r.fetch_add(1, SeqCst);
                let _ = co_timeout(HOUR, || co_sleep(HOUR));
            }));
        }
        wait_until("everyone waiting", || ready.load(SeqCst) == 30);
        std::thread::sleep(Duration::from_millis(5));
        (
            40,
            Box::new(move || {
                assert!(q.is_empty(), "no record left in the queue");
                assert!(!m.is_locked());
                assert_eq!(Arc::strong_count(&q), 1);
                assert_eq!(Arc::strong_count(&m), 1);
            }),
        )
    });
}

/// A guard leaked with `mem::forget`: the coroutine that did it fails with
/// its own panic, and the worker goes on.
#[test]
fn forgetting_a_guard_fails_the_coroutine_not_the_worker() {
    let rt = Runtime::builder().threads(1).build().unwrap();
    let m = Arc::new(CoMutex::new(()));
    let m2 = m.clone();
    let err = rt
        .spawn(move || std::mem::forget(m2.lock()))
        .join()
        .unwrap_err();
    assert!(
        err.panic_message()
            .unwrap()
            .contains("finished while holding 1 lock(s)"),
        "{err}"
    );
    assert_eq!(rt.spawn(|| 5).join().unwrap(), 5, "the worker lives");
}

/// CoMutex does not poison: a coroutine that panics while holding it
/// releases it (its guard is dropped by the unwind), as tokio's and
/// parking_lot's mutexes do.
#[test]
fn a_panic_while_holding_a_comutex_releases_it() {
    let rt = Runtime::builder().threads(1).build().unwrap();
    let m = Arc::new(CoMutex::new(1));
    let m2 = m.clone();
    let r = rt
        .spawn(move || {
            let mut g = m2.lock();
            *g = 2;
            panic!("holding the lock on purpose");
        })
        .join();
    assert!(r.unwrap_err().is_panic());
    assert!(!m.is_locked());
    let m3 = m.clone();
    assert_eq!(rt.spawn(move || *m3.lock()).join().unwrap(), 2);
}

/// The lock is held by a plain thread, outside the runtime, so nothing the
/// shutdown unwinds will ever release it: the queued waiters still leave
/// (each abandons its place in the queue), and when the thread unlocks
/// later the lock ends free rather than handed to a waiter that is gone.
#[test]
fn waiters_of_a_lock_held_outside_the_runtime_leave_at_shutdown() {
    for round in 0..40 {
        let leaked_before = coscheduler::pool::stats().leaked;
        let drops = Arc::new(AtomicUsize::new(0));
        let rt = Runtime::builder().threads(2).build().unwrap();
        let m = Arc::new(CoMutex::new(0));
        let held = m.try_lock().expect("uncontended");
        let arrived = Arc::new(AtomicUsize::new(0));
        for i in 0..20 {
            let (m, d, a) = (m.clone(), drops.clone(), arrived.clone());
            drop(rt.contexts()[i % 2].spawn(move || {
                let _d = CountDrop(d);
                a.fetch_add(1, SeqCst);
                let _g = m.lock();
                unreachable!("the thread never unlocks before the shutdown");
            }));
        }
        wait_until("20 waiters", || arrived.load(SeqCst) == 20);
        std::thread::sleep(Duration::from_millis(5));
        if round % 2 == 0 {
            rt.shutdown();
        } else {
            drop(rt);
        }
        assert_eq!(
            drops.load(SeqCst),
            20,
            "round {round}: every destructor ran"
        );
        assert_eq!(
            Arc::strong_count(&m),
            1,
            "round {round}: no waiter kept a reference"
        );
        drop(held);
        assert_eq!(*m.try_lock().expect("the lock ends free"), 0);
        assert_eq!(
            coscheduler::pool::stats().leaked,
            leaked_before,
            "round {round}: nothing leaked"
        );
    }
}

/// A mutex dropped while still held, with abandoned waiters queued: their
/// records are freed with it (ASan's leak check in CI would see them
/// otherwise).
#[test]
fn a_mutex_dropped_held_frees_its_abandoned_waiters() {
    both_ways(|rt, drops| {
        let m = Arc::new(CoMutex::new(()));
        std::mem::forget(m.try_lock().expect("uncontended"));
        let arrived = Arc::new(AtomicUsize::new(0));
        for i in 0..8 {
            let (m, d, a) = (m.clone(), drops.clone(), arrived.clone());
            drop(rt.contexts()[i % 2].spawn(move || {
                let _d = CountDrop(d);
                a.fetch_add(1, SeqCst);
                let _g = m.lock();
            }));
        }
        wait_until("8 waiters", || arrived.load(SeqCst) == 8);
        std::thread::sleep(Duration::from_millis(5));
        (
            8,
            Box::new(move || {
                assert!(m.is_locked());
                let m = Arc::into_inner(m).expect("no waiter kept a reference");
                drop(m);
            }),
        )
    });
}

/// A guard moved through a thread-local from the coroutine that locked to
/// another coroutine of the same context, which unlocks. The lock protocol
/// does not care who unlocks; the `locks_held` count is per coroutine, so the
/// locking coroutine finishes with one lock counted and fails with its own
/// panic, while the unlocking one finishes normally (its count does not go
/// below zero). The worker lives, the waiter queued behind the moved guard
/// gets the lock, and the lock ends free.
#[test]
fn a_guard_moved_to_another_coroutine_of_the_thread_is_released_there() {
    static M: CoMutex<u32> = CoMutex::new(0);
    thread_local! {
        static STASH: RefCell<Option<(CoMutexGuard<'static, u32>, Coroutine)>> =
            const { RefCell::new(None) };
    }
    let rt = Runtime::builder().threads(1).build().unwrap();
    let locker = rt.spawn(|| {
        let mut guard = M.lock();
        *guard += 1;
        let me = coscheduler::current().expect("in a coroutine");
        STASH.with(|s| *s.borrow_mut() = Some((guard, me)));
        // Woken by the coroutine that takes the guard, once it has unlocked.
        suspend();
    });
    wait_until("the locker to stash its guard", || M.is_locked());
    let queued = Arc::new(AtomicUsize::new(0));
    let q = queued.clone();
    let waiter = rt.spawn(move || {
        q.fetch_add(1, SeqCst);
        let mut guard = M.lock();
        *guard += 10;
        *guard
    });
    wait_until("the waiter", || queued.load(SeqCst) == 1);
    std::thread::sleep(Duration::from_millis(5));
    let unlocker = rt.spawn(|| {
        let (guard, locker) = STASH
            .with(|s| s.borrow_mut().take())
            .expect("the same thread: the guard is in its thread-local");
        assert_eq!(*guard, 1);
        drop(guard);
        locker.wake();
        coscheduler::raw::locks_held()
    });
    assert_eq!(unlocker.join().unwrap(), 0, "the unlocker's count stays 0");
    assert_eq!(waiter.join().unwrap(), 11, "the waiter got the lock");
    let err = locker.join().unwrap_err();
    assert!(
        err.panic_message()
            .is_some_and(|m| m.contains("finished while holding 1 lock(s)")),
        "{err}"
    );
    assert!(!M.is_locked(), "the lock ends free");
    assert_eq!(
        rt.spawn(|| *M.lock()).join().unwrap(),
        11,
        "the worker lives"
    );
    rt.shutdown();
    assert!(!M.is_locked());
}
