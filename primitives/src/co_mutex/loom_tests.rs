//! loom models of the CoMutex protocol (`raw.rs`).
//!
//! Run with
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p coprimitives --release --lib loom
//! ```
//!
//! A "coroutine" is a loom thread plus a wake token ([`LoomParker`]): park
//! consumes the token (waiting for it), unpark deposits it and asserts there
//! was none — the scheduler's "one wake per suspension" rule. Each model
//! checks:
//!
//! - **mutual exclusion**: the protected counter is a loom `UnsafeCell`, so
//!   two holders at once are reported as a data race (and the total would
//!   be short);
//! - **no lost wake-up / every waiter acquires**: a waiter parked forever
//!   makes loom report a deadlock;
//! - **conservation**: at the end the mutex is back to its initial state
//!   (count 0, both queues empty, no offer outstanding) and the counter
//!   equals the number of critical sections.

use loom::sync::Arc;
use loom::sync::atomic::AtomicBool;
use loom::thread;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use super::*;

/// A loom thread standing in for a coroutine.
struct Slot {
    thread: thread::Thread,
    /// The pending wake (QEMU's "scheduled" mark).
    token: AtomicBool,
    /// The context this "coroutine" runs in. Touched by its own thread
    /// only, so a plain std atomic (not a loom one: nothing to explore).
    ctx: std::sync::atomic::AtomicUsize,
}

loom::thread_local! {
    static ME: Arc<Slot> = Arc::new(Slot {
        thread: thread::current(),
        token: AtomicBool::new(false),
        ctx: std::sync::atomic::AtomicUsize::new(0),
    });
}

struct LoomParker;

impl Parker for LoomParker {
    type Handle = Arc<Slot>;

    fn handle() -> Arc<Slot> {
        ME.with(Arc::clone)
    }

    fn park() {
        ME.with(|me| {
            // Acquire: pairs with the Release swap in `unpark`, as the
            // scheduler's hand-off orders a waker before the woken run.
            while !me.token.swap(false, Acquire) {
                thread::park();
            }
        });
    }

    fn unpark(handle: Arc<Slot>) {
        // Release: pairs with the Acquire swap in `park`.
        let already = handle.token.swap(true, Release);
        assert!(
            !already,
            "double wake: a waiter was woken twice for one suspension"
        );
        handle.thread.unpark();
    }

    fn stamp() -> u64 {
        STAMP
    }

    fn context() -> usize {
        ME.with(|me| me.ctx.load(Relaxed))
    }
}

type Mutex = RawCoMutex<LoomParker>;

/// The stamp every granter gives a waiter that asks for one.
const STAMP: u64 = 42;

struct Shared {
    mutex: Mutex,
    counter: UnsafeCell<usize>,
}

impl Shared {
    fn new() -> Arc<Shared> {
        Shared::with_limit(0)
    }

    fn with_limit(local_limit: u32) -> Arc<Shared> {
        Arc::new(Shared {
            mutex: Mutex::new(local_limit),
            counter: UnsafeCell::new(0),
        })
    }

    /// lock; counter += 1; unlock — from a "coroutine" of context `ctx`.
    fn critical_section(&self, ctx: usize) {
        ME.with(|me| me.ctx.store(ctx, Relaxed));
        // Odd contexts ask for a stamp, even ones do not.
        let want = ctx % 2 == 1;
        if let Err(waiters) = self.mutex.try_lock_fast(ctx) {
            if let Acquired::Queued {
                suspended: true,
                stamp,
                ..
            } = self.mutex.lock_slow(ctx, waiters, want)
            {
                // Every granter (unlocker or stealer) stamps a waiter that
                // asked, and only those.
                assert_eq!(
                    stamp,
                    if want { STAMP } else { 0 },
                    "stamp of a granted waiter"
                );
            }
        }
        // SAFETY: we hold the mutex; loom reports a race if we do not.
        self.counter.with_mut(|c| unsafe { *c += 1 });
        let _ = self.mutex.unlock();
    }

    /// Conservation: the mutex is back to its initial state and every
    /// critical section counted once.
    fn assert_idle(&self, sections: usize) {
        let m = &self.mutex;
        assert_eq!(m.locked.load(Relaxed), 0, "lock count after all unlocks");
        assert!(
            m.from_push.load(Relaxed).is_null(),
            "a record left on from_push"
        );
        // SAFETY: every thread has been joined; we are the only user.
        let to_pop_empty = m.to_pop.with(|p| unsafe { (*p).is_null() });
        assert!(to_pop_empty, "a record left on to_pop");
        assert_eq!(
            m.handoff.load(Relaxed),
            0,
            "a hand-off offer left outstanding"
        );
        // SAFETY: as above.
        let counted = self.counter.with(|c| unsafe { *c });
        assert_eq!(counted, sections, "each critical section exactly once");
    }
}

/// Two contexts contend once each: covers the fast path, spinning on a
/// holder of another context, the `fetch_add` race, queuing, direct
/// hand-over and the hand-off offer (the unlocker finds the counted locker
/// not yet pushed).
#[test]
fn loom_mutex_two_contexts() {
    loom::model(|| {
        let s = Shared::new();
        let t = {
            let s = s.clone();
            thread::spawn(move || s.critical_section(1))
        };
        s.critical_section(2);
        t.join().unwrap();
        s.assert_idle(2);
    });
}

/// Same context on both sides: no spinning, straight to the queue.
#[test]
fn loom_mutex_same_context() {
    loom::model(|| {
        let s = Shared::new();
        let t = {
            let s = s.clone();
            thread::spawn(move || s.critical_section(7))
        };
        s.critical_section(7);
        t.join().unwrap();
        s.assert_idle(2);
    });
}

/// A held lock, two lockers arriving, then the unlock: two waiters in the
/// queue at once (FIFO reversal of `from_push`), the hand-off offered to
/// one of two counted lockers, and a stealer that hands the lock to an
/// older waiter rather than itself.
#[test]
fn loom_mutex_two_waiters_behind_holder() {
    loom::model(|| {
        let s = Shared::new();
        s.mutex.try_lock_fast(1).expect("uncontended");
        let lockers: Vec<_> = [2, 3]
            .into_iter()
            .map(|ctx| {
                let s = s.clone();
                thread::spawn(move || s.critical_section(ctx))
            })
            .collect();
        // SAFETY: we hold the mutex.
        s.counter.with_mut(|c| unsafe { *c += 1 });
        let _ = s.mutex.unlock();
        for t in lockers {
            t.join().unwrap();
        }
        s.assert_idle(3);
    });
}

/// Each side locks twice: offers are numbered and a stale reclaim cannot
/// take a newer offer (ABA), and responsibility passes back and forth.
#[test]
fn loom_mutex_repeated_sections() {
    loom::model(|| {
        let s = Shared::new();
        let t = {
            let s = s.clone();
            thread::spawn(move || {
                s.critical_section(1);
                s.critical_section(1);
            })
        };
        s.critical_section(2);
        s.critical_section(2);
        t.join().unwrap();
        s.assert_idle(4);
    });
}

/// Local-first hand-over (lock cohorting): a holder of context 1 and two
/// lockers, one of each context, queued behind it; the unlocker may pick
/// the younger local waiter over the older remote one. Same guarantees.
#[test]
fn loom_mutex_local_first() {
    loom::model(|| {
        let s = Shared::with_limit(1);
        ME.with(|me| me.ctx.store(1, Relaxed));
        s.mutex.try_lock_fast(1).expect("uncontended");
        let lockers: Vec<_> = [2, 1]
            .into_iter()
            .map(|ctx| {
                let s = s.clone();
                thread::spawn(move || s.critical_section(ctx))
            })
            .collect();
        // SAFETY: we hold the mutex.
        s.counter.with_mut(|c| unsafe { *c += 1 });
        let _ = s.mutex.unlock();
        for t in lockers {
            t.join().unwrap();
        }
        s.assert_idle(3);
    });
}
