//! CoQueue semantics (docs/SEMANTICS.md §4): FIFO and FRONT order, where woken
//! coroutines run (after the waker suspends inside a coroutine; before
//! `enter_next` returns outside), the lock dropped across the wait, any
//! `Lockable`, and waiters on several threads.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};

use coprimitives::{CoMutex, CoQueue, Lockable, NoLock, SpinLock};
use coscheduler::{Coroutine, Runtime, suspend};

type Log = Arc<Mutex<Vec<String>>>;

fn log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

fn push(log: &Log, s: impl Into<String>) {
    log.lock().unwrap().push(s.into());
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// A coroutine that waits once on `q` (no lock), logging before and after.
fn waiter(q: &Arc<CoQueue>, log: &Log, name: &'static str, front: bool) -> Coroutine {
    let (q, log) = (q.clone(), log.clone());
    let co = Coroutine::new(move || {
        if front {
            q.wait_front_with(&NoLock);
        } else {
            q.wait_with(&NoLock);
        }
        push(&log, name);
    });
    co.enter();
    co
}

#[test]
fn waiters_are_woken_fifo_and_front_goes_first() {
    let q = Arc::new(CoQueue::new());
    let log = log();
    let a = waiter(&q, &log, "a", false);
    let b = waiter(&q, &log, "b", false);
    let c = waiter(&q, &log, "c", true); // CO_QUEUE_WAIT_FRONT
    assert_eq!(q.len(), 3);
    assert!(!q.is_empty());
    q.restart_all();
    assert!(q.is_empty());
    assert_eq!(entries(&log), ["c", "a", "b"]);
    assert!([a, b, c].iter().all(Coroutine::is_finished));
    assert!(!q.next(), "next on an empty queue");
}

/// `qemu_co_queue_next` in coroutine context: the woken coroutine runs after
/// the waker suspends, in the same enter.
#[test]
fn next_in_a_coroutine_runs_the_waiter_after_the_waker_suspends() {
    let q = Arc::new(CoQueue::new());
    let log = log();
    let w = waiter(&q, &log, "woken", false);
    let (q2, log2) = (q.clone(), log.clone());
    let waker = Coroutine::new(move || {
        assert!(q2.next());
        push(&log2, "waker before suspend");
        suspend();
        push(&log2, "waker resumed");
    });
    waker.enter();
    assert_eq!(entries(&log), ["waker before suspend", "woken"]);
    assert!(w.is_finished());
    waker.enter();
}

/// `qemu_co_enter_next` outside coroutine context: entered before it
/// returns.
#[test]
fn enter_next_outside_a_coroutine_enters_before_returning() {
    let q = Arc::new(CoQueue::new());
    let log = log();
    let a = waiter(&q, &log, "a", false);
    let b = waiter(&q, &log, "b", false);
    assert!(q.enter_next());
    assert_eq!(entries(&log), ["a"]);
    assert!(a.is_finished() && !b.is_finished());
    q.enter_all();
    assert_eq!(entries(&log), ["a", "b"]);
    assert!(!q.enter_next());
}

/// `qemu_co_enter_all`: coroutines that re-queue during the loop are woken
/// again (QEMU's loop), until they stop re-queuing.
#[test]
fn enter_all_rewakes_coroutines_that_requeue() {
    let q = Arc::new(CoQueue::new());
    let rounds = Arc::new(AtomicUsize::new(0));
    let (q2, r2) = (q.clone(), rounds.clone());
    let co = Coroutine::new(move || {
        for _ in 0..3 {
            q2.wait_with(&NoLock);
            r2.fetch_add(1, SeqCst);
        }
    });
    co.enter();
    q.enter_all();
    assert_eq!(rounds.load(SeqCst), 3);
    assert!(co.is_finished());
}

/// The classic condition-variable loop with a CoMutex guard: the lock is
/// free while the waiter waits and held again when `wait` returns.
#[test]
fn wait_releases_and_retakes_the_mutex() {
    let state = Arc::new((CoMutex::new(0u32), CoQueue::new()));
    let s = state.clone();
    let consumer = Coroutine::new(move || {
        let (m, q) = &*s;
        let mut g = m.lock();
        while *g == 0 {
            g = q.wait(g);
            assert!(m.is_locked_by_current(), "re-locked on return");
        }
        *g -= 1;
    });
    consumer.enter();
    assert!(!state.0.is_locked(), "released during the wait");
    let s = state.clone();
    Coroutine::new(move || {
        let (m, q) = &*s;
        let mut g = m.lock();
        *g += 1;
        q.next();
        // Still holding the mutex: the consumer runs after we finish, then
        // takes the lock.
    })
    .enter();
    assert!(consumer.is_finished());
    assert_eq!(*state.0.try_lock().unwrap(), 0);
}

/// A spurious wake-up is legal: `wait_front` re-queues at the head.
#[test]
fn wait_front_keeps_the_place_of_a_spurious_wakeup() {
    let state = Arc::new((CoMutex::new(false), CoQueue::new()));
    let log = log();
    let make = |name: &'static str| {
        let (s, log) = (state.clone(), log.clone());
        let co = Coroutine::new(move || {
            let (m, q) = &*s;
            let mut g = m.lock();
            g = q.wait(g);
            while !*g {
                g = q.wait_front(g); // spurious: back to the head
            }
            push(&log, name);
        });
        co.enter();
        co
    };
    let first = make("first");
    let second = make("second");
    // Wake the first without making the condition true: it re-queues at the
    // head, still before `second`.
    let s = state.clone();
    Coroutine::new(move || {
        let _g = s.0.lock();
        s.1.next();
    })
    .enter();
    let s = state.clone();
    Coroutine::new(move || {
        *s.0.lock() = true;
        s.1.restart_all();
    })
    .enter();
    assert_eq!(entries(&log), ["first", "second"]);
    assert!(first.is_finished() && second.is_finished());
}

/// `wait_with` with a SpinLock and with the raw CoMutex (`Lockable`).
#[test]
fn wait_with_any_lockable() {
    let spin = Arc::new((SpinLock::new(), CoQueue::new()));
    let s = spin.clone();
    let co = Coroutine::new(move || {
        s.0.lock();
        s.1.wait_with(&s.0);
        assert!(s.0.is_locked_by_current(), "re-taken after the wait");
        // SAFETY: taken again by `wait_with`.
        unsafe { s.0.unlock() };
    });
    co.enter();
    assert!(!spin.0.is_locked(), "released during the wait");
    spin.1.next();
    assert!(co.is_finished());

    let mq = Arc::new((CoMutex::new(()), CoQueue::new()));
    let s = mq.clone();
    let co = Coroutine::new(move || {
        Lockable::lock(&s.0);
        s.1.wait_with(&s.0);
        assert!(s.0.is_locked_by_current());
        // SAFETY: taken again by `wait_with`.
        unsafe { Lockable::unlock(&s.0) };
    });
    co.enter();
    assert!(!mq.0.is_locked());
    mq.1.enter_next();
    assert!(co.is_finished());
}

/// `qemu_co_enter_next(q, lock)`: the lock is dropped around the synchronous
/// entry, so the woken coroutine can take it.
#[test]
fn enter_next_with_drops_the_lock_around_the_wake() {
    let s = Arc::new((SpinLock::new(), CoQueue::new()));
    let s2 = s.clone();
    let co = Coroutine::new(move || {
        s2.0.lock();
        s2.1.wait_with(&s2.0);
        // SAFETY: held again after the wait.
        unsafe { s2.0.unlock() };
    });
    co.enter();
    s.0.lock();
    assert!(s.1.enter_next_with(&s.0));
    assert!(
        co.is_finished(),
        "it ran, took the spin lock and released it"
    );
    assert!(s.0.is_locked_by_current(), "we hold it again");
    // SAFETY: taken above.
    unsafe { s.0.unlock() };
}

#[test]
fn wait_with_an_unheld_lock_panics_before_queuing() {
    let s = Arc::new((SpinLock::new(), CoQueue::new()));
    let s2 = s.clone();
    let co = Coroutine::new(move || s2.1.wait_with(&s2.0));
    let err = catch_unwind(AssertUnwindSafe(|| co.enter())).expect_err("not held");
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()));
    assert!(msg.unwrap_or_default().contains("not held"));
    assert!(s.1.is_empty());
}

#[test]
#[should_panic(expected = "CoQueue::wait called outside a coroutine")]
fn wait_outside_a_coroutine_panics() {
    CoQueue::new().wait_with(&NoLock);
}

/// A plain thread holding a `CoMutex` through `try_lock` that calls `wait`
/// by mistake gets the panic, and the unwinding guard unlocks the mutex: it
/// is not left locked for ever.
#[test]
fn wait_outside_a_coroutine_leaves_the_mutex_unlocked() {
    let (m, q) = (CoMutex::new(0), CoQueue::new());
    let g = m.try_lock().unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| drop(q.wait(g))));
    assert!(r.is_err(), "wait outside a coroutine must panic");
    assert!(!m.is_locked(), "the panic left the mutex locked");
}

/// Waiters homed on two worker threads, woken from a coroutine on one of
/// them: cross-context wakes are handed to each waiter's home.
#[test]
fn waiters_on_several_contexts() {
    let rt = Runtime::builder()
        .threads(2)
        .pin_threads(false)
        .build()
        .unwrap();
    let state = Arc::new((CoMutex::new(0usize), CoQueue::new(), AtomicUsize::new(0)));
    const PER_CONTEXT: usize = 8;
    let handles: Vec<_> = rt
        .contexts()
        .iter()
        .flat_map(|ctx| {
            let state = state.clone();
            (0..PER_CONTEXT).map(move |_| {
                let s = state.clone();
                ctx.spawn(move || {
                    let (m, q, woken) = &*s;
                    let mut g = m.lock();
                    *g += 1;
                    while *g != usize::MAX {
                        g = q.wait(g);
                    }
                    woken.fetch_add(1, SeqCst);
                })
            })
        })
        .collect();
    let s = state.clone();
    rt.block_on(move || {
        let (m, q, _) = &*s;
        loop {
            let mut g = m.lock();
            if *g == 2 * PER_CONTEXT {
                *g = usize::MAX;
                q.restart_all();
                break;
            }
            drop(g);
            coscheduler::yield_now();
        }
    });
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(state.2.load(SeqCst), 2 * PER_CONTEXT);
    assert!(state.1.is_empty());
    rt.shutdown();
}
