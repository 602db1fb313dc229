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
use loom::sync::atomic::fence;
use loom::thread;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};

use super::*;

/// A loom thread standing in for a coroutine.
pub(crate) struct Slot {
    thread: thread::Thread,
    /// The pending wake (the scheduler's `scheduled` mark).
    token: AtomicBool,
    /// Cancellation requested (the control block's `cancel`).
    cancel: AtomicBool,
    /// A cancellation unwind is in progress on this "coroutine": its parks
    /// are shielded (the control block's `unwinding_cancel`). Touched by its
    /// own thread only.
    unwinding: std::cell::Cell<bool>,
    /// The context this "coroutine" runs in. Touched by its own thread
    /// only, so a plain std atomic (not a loom one: nothing to explore).
    ctx: std::sync::atomic::AtomicUsize,
    /// What [`Parker::now`] returns on this thread: a fake clock the model
    /// sets, so that "the bound has passed" is a choice of the test, not of
    /// the machine. Own thread only, as `ctx`.
    now: std::sync::atomic::AtomicU64,
}

// SAFETY: `unwinding` is only touched by the slot's own thread (see above);
// everything else is atomic or immutable.
unsafe impl Sync for Slot {}

loom::thread_local! {
    pub(crate) static ME: Arc<Slot> = Arc::new(Slot {
        thread: thread::current(),
        token: AtomicBool::new(false),
        cancel: AtomicBool::new(false),
        unwinding: std::cell::Cell::new(false),
        ctx: std::sync::atomic::AtomicUsize::new(0),
        now: std::sync::atomic::AtomicU64::new(0),
    });
}

/// The unwind payload of a cancelled "coroutine".
pub(crate) struct Cancelled;

pub(crate) struct LoomParker;

impl Parker for LoomParker {
    type Handle = Arc<Slot>;

    fn handle() -> Arc<Slot> {
        ME.with(Arc::clone)
    }

    /// The scheduler's suspension: wait for the token, consume it (the
    /// scheduler clears `scheduled` with a plain Release store before it
    /// resumes the coroutine), and if cancelled, unwind unless already
    /// unwinding (`suspend_running`).
    fn park() {
        ME.with(|me| {
            // Acquire: pairs with the Release of the claim in `unpark`.
            while !me.token.load(Acquire) {
                thread::park();
            }
            // Release: pairs with the Acquire of the next claimer.
            me.token.store(false, Release);
            if me.cancel.load(Relaxed) {
                // Pairs with the fence of an absorbed wake in `unpark`.
                fence(SeqCst);
                if !me.unwinding.replace(true) {
                    std::panic::resume_unwind(Box::new(Cancelled));
                }
            }
        });
    }

    /// `context::wake`: claim the token; a second wake of one suspension is
    /// a bug, unless the target is cancelled, where it is absorbed.
    fn unpark(handle: Arc<Slot>) {
        loop {
            // AcqRel: as `try_schedule`.
            if handle
                .token
                .compare_exchange(false, true, AcqRel, Acquire)
                .is_ok()
            {
                handle.thread.unpark();
                return;
            }
            assert!(
                handle.cancel.load(Acquire),
                "double wake: a waiter was woken twice for one suspension"
            );
            // Pairs with the fence in `park`.
            fence(SeqCst);
            if handle.token.load(Relaxed) {
                return;
            }
        }
    }

    fn stamp() -> u64 {
        STAMP
    }

    fn context() -> usize {
        ME.with(|me| me.ctx.load(Relaxed))
    }

    fn now() -> u64 {
        ME.with(|me| me.now.load(Relaxed))
    }
}

/// The shutdown's cancellation of a suspended coroutine: mark it, then
/// resume it through the wake protocol (leaving it to a wake already in
/// flight).
pub(crate) fn cancel(slot: &Slot) {
    // Release: pairs with the Acquire in `unpark`.
    slot.cancel.store(true, Release);
    if slot
        .token
        .compare_exchange(false, true, AcqRel, Acquire)
        .is_ok()
    {
        slot.thread.unpark();
    }
}

/// Runs `f` shielded from cancellation (`coscheduler::raw::shield`): its
/// parks do not unwind, as during an unwind already in progress. A
/// cancellation's token still ends one park early; production is stricter
/// (shutdown leaves shielded suspensions to their wakes) but documents
/// such returns as possible, so the models allow them and every wait
/// re-checks its condition.
pub(crate) fn shielded<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            ME.with(|me| me.unwinding.set(self.0));
        }
    }
    let _restore = Restore(ME.with(|me| me.unwinding.replace(true)));
    f()
}

type Mutex = RawCoMutex<LoomParker>;

/// The stamp every granter gives a waiter that asks for one.
const STAMP: u64 = 42;

struct Shared {
    mutex: Mutex,
    counter: UnsafeCell<usize>,
    /// The hand-over choices seen in this execution, one bit per
    /// [`Choice`] (`choice_bit`). A std atomic: bookkeeping of the test,
    /// not part of what is explored.
    seen: std::sync::atomic::AtomicU8,
}

fn choice_bit(c: Choice) -> u8 {
    match c {
        Choice::OldestLocal => 1,
        Choice::OldestRemote => 2,
        Choice::Overtook => 4,
        Choice::Forced => 8,
    }
}

/// The eventual-fairness bound of the models, in fake-clock nanoseconds.
const BOUND: u64 = 100;

impl Shared {
    fn new() -> Arc<Shared> {
        Shared::with_policy(Policy::Fifo)
    }

    fn with_policy(policy: Policy) -> Arc<Shared> {
        Arc::new(Shared {
            mutex: Mutex::new(policy),
            counter: UnsafeCell::new(0),
            seen: std::sync::atomic::AtomicU8::new(0),
        })
    }

    /// lock; counter += 1; unlock — from a "coroutine" of context `ctx`.
    fn critical_section(&self, ctx: usize) {
        self.critical_section_at(ctx, 0);
    }

    /// The same, with this thread's fake clock reading `now`.
    fn critical_section_at(&self, ctx: usize, now: u64) {
        ME.with(|me| {
            me.ctx.store(ctx, Relaxed);
            me.now.store(now, Relaxed);
        });
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
        self.unlock();
    }

    /// Unlocks, noting the hand-over choice.
    fn unlock(&self) {
        if let Released::HandedOver(c) = self.mutex.unlock() {
            self.seen.fetch_or(choice_bit(c), Relaxed);
        }
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
        let queue_empty = m.queue.with(|q| unsafe { (*q).is_empty() });
        assert!(queue_empty, "a record left on the queue");
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

/// Eventual fairness within the bound: a holder of context 1 and two
/// lockers, one of each context, queued behind it in either order; the
/// unlocker may hand the lock to the younger local waiter over the older
/// remote one (seen in some execution), never forcing FIFO, and the
/// lists, the re-batching when the next unlocker is of the other context
/// and the stealer's oldest-first grant keep every guarantee.
#[test]
fn loom_mutex_eventual_within_bound() {
    static SEEN: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
    loom::model(|| {
        let s = Shared::with_policy(Policy::Eventual { bound_ns: BOUND });
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
        s.unlock();
        for t in lockers {
            t.join().unwrap();
        }
        s.assert_idle(3);
        let seen = s.seen.load(Relaxed);
        assert_eq!(
            seen & choice_bit(Choice::Forced),
            0,
            "forced within the bound"
        );
        SEEN.fetch_or(seen, Relaxed);
    });
    let seen = SEEN.load(Relaxed);
    assert_ne!(
        seen & choice_bit(Choice::Overtook),
        0,
        "a local waiter overtook"
    );
}

/// Eventual fairness past the bound: the holder (context 1, clock 0)
/// unlocks with a remote (context 2) and a local waiter queued, then
/// queues again itself; the waiter of context 1 that got the lock unlocks
/// at a clock past the bound. When the remote record was taken in at
/// clock 0 and a local waiter is queued, FIFO is forced (seen in some
/// execution) — an overtaking past the bound would starve it.
#[test]
fn loom_mutex_eventual_past_bound() {
    static SEEN: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
    loom::model(|| {
        let s = Shared::with_policy(Policy::Eventual { bound_ns: BOUND });
        ME.with(|me| me.ctx.store(1, Relaxed));
        s.mutex.try_lock_fast(1).expect("uncontended");
        let lockers: Vec<_> = [(2, 0), (1, BOUND + 1)]
            .into_iter()
            .map(|(ctx, now)| {
                let s = s.clone();
                thread::spawn(move || s.critical_section_at(ctx, now))
            })
            .collect();
        // SAFETY: we hold the mutex.
        s.counter.with_mut(|c| unsafe { *c += 1 });
        s.unlock();
        s.critical_section(1);
        for t in lockers {
            t.join().unwrap();
        }
        s.assert_idle(4);
        SEEN.fetch_or(s.seen.load(Relaxed), Relaxed);
    });
    let seen = SEEN.load(Relaxed);
    assert_ne!(
        seen & choice_bit(Choice::Forced),
        0,
        "FIFO forced past the bound"
    );
}

/// Eventual fairness with each side locking twice: responsibility, offers
/// and re-batching pass back and forth between the contexts.
#[test]
fn loom_mutex_eventual_repeated_sections() {
    loom::model(|| {
        let s = Shared::with_policy(Policy::Eventual { bound_ns: BOUND });
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

/// Shutdown cancels a waiter queued behind a holder while the holder
/// unlocks: whichever order the cancellation, the grant and the wakes come
/// in, the cancelled waiter leaves the queue consistently (it either
/// abandons its record, which the unlocker then frees, or takes the grant
/// that won the race and passes the lock on), no wake is lost or doubled,
/// and the mutex ends idle. The waiter runs in another context than the
/// holder, so it spins first; see the `_same_context` variant for one that
/// always queues.
#[test]
fn loom_mutex_waiter_cancelled_at_shutdown() {
    waiter_cancelled_at_shutdown(2);
}

/// As `loom_mutex_waiter_cancelled_at_shutdown`, with the waiter in the
/// holder's context: it queues at once instead of spinning, whereas a
/// spinner of another context mostly finds the lock already freed (loom
/// runs a thread that yields in its spin only once the others have
/// moved), so this is the variant that reaches the race between the
/// abandoning CAS and the grant in most of its executions.
#[test]
fn loom_mutex_waiter_cancelled_at_shutdown_same_context() {
    waiter_cancelled_at_shutdown(1);
}

/// The body of the two models above: holder in context 1, the waiter in
/// `waiter_ctx`.
fn waiter_cancelled_at_shutdown(waiter_ctx: usize) {
    loom::model(move || {
        let s = Shared::new();
        s.mutex.try_lock_fast(1).expect("uncontended");
        let (tx, rx) = loom::sync::mpsc::channel();
        let waiter = {
            let s = s.clone();
            thread::spawn(move || {
                tx.send(ME.with(Arc::clone)).unwrap();
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    s.critical_section(waiter_ctx)
                }));
                match r {
                    Ok(()) => 1,
                    Err(p) => {
                        assert!(p.is::<Cancelled>(), "only the cancellation unwinds");
                        0
                    }
                }
            })
        };
        let slot = rx.recv().unwrap();
        let canceller = thread::spawn(move || cancel(&slot));
        // SAFETY: we hold the mutex.
        s.counter.with_mut(|c| unsafe { *c += 1 });
        let _ = s.mutex.unlock();
        canceller.join().unwrap();
        let ran = waiter.join().unwrap();
        s.assert_idle(1 + ran);
    });
}

/// Two waiters, the older one cancelled: the lock still reaches the
/// younger one (the granter skips the abandoned record, or the cancelled
/// waiter passes on the grant it took).
#[test]
fn loom_mutex_cancelled_waiter_passes_the_lock_on() {
    loom::model(|| {
        let s = Shared::new();
        s.mutex.try_lock_fast(1).expect("uncontended");
        let (tx, rx) = loom::sync::mpsc::channel();
        let doomed = {
            let s = s.clone();
            thread::spawn(move || {
                tx.send(ME.with(Arc::clone)).unwrap();
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    s.critical_section(2)
                }));
                usize::from(r.is_ok())
            })
        };
        let slot = rx.recv().unwrap();
        let other = {
            let s = s.clone();
            thread::spawn(move || s.critical_section(3))
        };
        cancel(&slot);
        // SAFETY: we hold the mutex.
        s.counter.with_mut(|c| unsafe { *c += 1 });
        let _ = s.mutex.unlock();
        other.join().unwrap();
        let ran = doomed.join().unwrap();
        s.assert_idle(2 + ran);
    });
}

/// Two "coroutines" in a lock cycle (a holds m1 and waits for m2, b holds
/// m2 and waits for m1), both cancelled: neither waits for a grant that
/// only the other could give, so both unwind, each releasing the lock it
/// held on the way out, and both mutexes end idle. Where one unwinds
/// before the other has parked, the survivor may take the released lock
/// and finish normally instead.
#[test]
fn loom_mutex_two_lock_cycle_unwinds() {
    loom::model(|| {
        let m1 = Shared::new();
        let m2 = Shared::new();
        m1.mutex.try_lock_fast(1).expect("uncontended");
        m2.mutex.try_lock_fast(2).expect("uncontended");
        let member = |held: Arc<Shared>, wanted: Arc<Shared>, ctx: usize| {
            let (tx, rx) = loom::sync::mpsc::channel();
            let t = thread::spawn(move || {
                tx.send(ME.with(Arc::clone)).unwrap();
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    wanted.critical_section(ctx)
                }));
                if let Err(p) = &r {
                    assert!(p.is::<Cancelled>(), "only the cancellation unwinds");
                }
                // The held guard's drop, on either path.
                // SAFETY: this "coroutine" holds `held`.
                held.counter.with_mut(|c| unsafe { *c += 1 });
                held.unlock();
                usize::from(r.is_ok())
            });
            (t, rx.recv().unwrap())
        };
        let (a, slot_a) = member(m1.clone(), m2.clone(), 1);
        let (b, slot_b) = member(m2.clone(), m1.clone(), 2);
        cancel(&slot_a);
        cancel(&slot_b);
        let a_ran = a.join().unwrap();
        let b_ran = b.join().unwrap();
        m1.assert_idle(1 + b_ran);
        m2.assert_idle(1 + a_ran);
    });
}

/// A holder unlocks while another "coroutine", already cancelled, locks
/// shielded (as CoRwLock does when a cancelled waiter withdraws its
/// ticket): its parks do not unwind, it waits for the grant like any
/// waiter, and the cancellation's own resumption at most wakes it early,
/// which the wait loop absorbs. Both sections run. Both run in one
/// context, so the locker queues at once instead of spinning (loom runs a
/// spinning thread's yields only after the others have moved, so a
/// locker of another context would always find the lock freed).
#[test]
fn loom_mutex_shielded_lock_after_cancel() {
    loom::model(|| {
        let s = Shared::new();
        ME.with(|me| me.ctx.store(1, Relaxed));
        s.mutex.try_lock_fast(1).expect("uncontended");
        let locker = {
            let s = s.clone();
            thread::spawn(move || {
                ME.with(|me| cancel(me));
                shielded(|| s.critical_section(1));
            })
        };
        // SAFETY: we hold the mutex.
        s.counter.with_mut(|c| unsafe { *c += 1 });
        s.unlock();
        locker.join().unwrap();
        s.assert_idle(2);
    });
}

/// Waiters of context 0 (the id of a thread without a home) under FIFO:
/// the queue puts their records where FIFO pops them, so the unlocker
/// grants them instead of offering a hand-off to a locker that has parked.
#[test]
fn loom_mutex_context_zero() {
    loom::model(|| {
        let s = Shared::new();
        let t = {
            let s = s.clone();
            thread::spawn(move || s.critical_section(0))
        };
        s.critical_section(0);
        t.join().unwrap();
        s.assert_idle(2);
    });
}
