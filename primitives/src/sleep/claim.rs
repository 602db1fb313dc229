//! The "timer vs wake" claim: who resumes a sleeping coroutine.
//!
//! A sleeping coroutine can be ended by two parties: its timer (a callback on
//! its own context's thread) and [`CoSleep::wake`](crate::CoSleep::wake),
//! which may run on any thread at any moment, even while the sleeper is
//! still on its way into the sleep. The scheduler allows exactly one wake per
//! suspension, so exactly one of them must call `wake`, and the loser must
//! not touch the coroutine afterwards. QEMU's `QemuCoSleep` gets away with a
//! plain `to_wake` pointer because its timer and its wakers all run in the
//! sleeper's AioContext; ours are cross-thread.
//!
//! # State
//!
//! Two atomics, each a one-way door:
//!
//! | object | field | values | transitions |
//! |---|---|---|---|
//! | [`Sleeper`] (one per sleep, shared by `Arc`) | `state` | `WAITING`, `TIMER`, `WAKER`, `WITHDRAWN` | `WAITING` → any other, once (CAS) |
//! | [`Slot`] (one per `CoSleep`) | `ptr` | null, or one `Arc<Sleeper>` reference | null → sleeper (`publish`, CAS), sleeper → null (`wake`: swap; `retract`: CAS) |
//!
//! # Protocol "claim the wake"
//!
//! 1. The sleeper makes a `Sleeper` (`WAITING`), **publishes** it in the
//!    slot, arms its timer with a second reference, and suspends.
//! 2. The timer callback calls `fire(TIMER)`; [`Slot::wake`] swaps the slot
//!    to null and, if it took a sleeper, calls `fire(WAKER)` on it. `fire` is
//!    a CAS `WAITING → by`: **only the winner of that CAS wakes the
//!    coroutine.** The CAS is the whole mutual exclusion; the slot only
//!    routes `CoSleep::wake` to the current sleeper.
//! 3. Resumed, the sleeper **retracts** its sleeper from the slot (a CAS, so
//!    that it never removes the sleeper of a later sleep on the same
//!    `CoSleep`), cancels its timer, and reads the outcome with a CAS
//!    `WAITING → WITHDRAWN`: if that succeeds, nobody had claimed the wake
//!    (the coroutine was resumed by something else, or is being unwound),
//!    and now nobody ever will.
//!
//! **No lost wake-up:** the sleeper is published before it suspends, and a
//! wake that finds the slot empty happened before the publication (or after
//! the retraction), so it is correctly a no-op. **No double wake:** `fire`'s
//! CAS succeeds once per `Sleeper`, and `WITHDRAWN` closes the door when the
//! sleeper resumed without a claim. **No use after free:** the timer and the
//! slot each own an `Arc` reference, so a late timer (one already taken as
//! due when the sleeper cancelled it) or a waker that swapped the pointer
//! just before the retraction touches live memory; it finds the state
//! decided and does nothing.
//!
//! The model in `loom_tests` checks these three properties with a waker on
//! another thread racing the timer and the sleeper's retraction.

// The crate's `sync` shim (shared with the lock protocols) has no `AtomicU8`
// or `Arc`; this module takes them the same way, from loom under `--cfg loom`.
#[cfg(loom)]
use loom::sync::Arc;
#[cfg(loom)]
use loom::sync::atomic::{AtomicPtr, AtomicU8};
#[cfg(not(loom))]
use std::sync::Arc;
#[cfg(not(loom))]
use std::sync::atomic::{AtomicPtr, AtomicU8};

use std::ptr;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

/// Nobody has claimed the wake yet.
const WAITING: u8 = 0;
/// The timer claimed it.
const TIMER: u8 = 1;
/// [`Slot::wake`] claimed it.
const WAKER: u8 = 2;
/// The sleeper resumed without a claim and closed the door.
const WITHDRAWN: u8 = 3;

/// Resumes the sleeping coroutine (`Coroutine::wake` in production).
pub(crate) trait Wake {
    /// Called at most once per [`Sleeper`], by the winner of the claim.
    fn wake(&self);
}

/// Who ended a sleep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub(crate) enum Outcome {
    /// The timer fired first.
    Timer,
    /// `CoSleep::wake` came first.
    Woken,
    /// Nobody claimed the wake: the sleeper was resumed some other way (a
    /// stray wake, or unwinding); any later claim is now refused.
    Withdrawn,
}

/// One sleep's claim.
pub(crate) struct Sleeper<W> {
    state: AtomicU8,
    waker: W,
}

impl<W: Wake> Sleeper<W> {
    /// A sleeper nobody has claimed.
    pub(crate) fn new(waker: W) -> Arc<Sleeper<W>> {
        Arc::new(Sleeper {
            state: AtomicU8::new(WAITING),
            waker,
        })
    }

    /// Claims the wake for the timer; wakes if the claim is won.
    pub(crate) fn fire_timer(&self) -> bool {
        self.fire(TIMER)
    }

    fn fire(&self, by: u8) -> bool {
        // Release: pairs with the Acquire of `outcome`'s CAS, so the sleeper
        // reads who claimed it even without the scheduler's own hand-off
        // ordering (which also exists: the wake below is a release).
        // Failure Relaxed: the loser does nothing with what it read.
        let won = self
            .state
            .compare_exchange(WAITING, by, Release, Relaxed)
            .is_ok();
        if won {
            self.waker.wake();
        }
        won
    }

    /// After resuming (or while unwinding): who claimed the wake; closes the
    /// door if nobody did.
    pub(crate) fn outcome(&self) -> Outcome {
        // Acquire: pairs with the Release of `fire`'s CAS.
        match self
            .state
            .compare_exchange(WAITING, WITHDRAWN, Acquire, Acquire)
        {
            Ok(_) => Outcome::Withdrawn,
            Err(TIMER) => Outcome::Timer,
            Err(WAKER) => Outcome::Woken,
            Err(other) => panic!("a sleep's outcome was read twice; state = {other}"),
        }
    }
}

/// Where a `CoSleep` publishes its current sleeper for [`Slot::wake`].
pub(crate) struct Slot<W> {
    ptr: AtomicPtr<Sleeper<W>>,
}

impl<W: Wake> Slot<W> {
    /// An empty slot.
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Slot<W> {
        Slot {
            ptr: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// An empty slot (loom's atomics have no `const` constructor).
    #[cfg(loom)]
    pub(crate) fn new() -> Slot<W> {
        Slot {
            ptr: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Step 1: makes `sleeper` the target of [`Slot::wake`]. Fails if
    /// another sleeper is published (two coroutines on one `CoSleep`).
    pub(crate) fn publish(&self, sleeper: &Arc<Sleeper<W>>) -> Result<(), ()> {
        let raw = Arc::into_raw(sleeper.clone()) as *mut Sleeper<W>;
        // Release: pairs with the Acquire swap in `wake`, which dereferences
        // the pointer. Failure Relaxed: we only learn that it is taken.
        match self
            .ptr
            .compare_exchange(ptr::null_mut(), raw, Release, Relaxed)
        {
            Ok(_) => Ok(()),
            Err(_) => {
                // SAFETY: `raw` came from `Arc::into_raw` above and was not
                // published, so we still own its reference.
                drop(unsafe { Arc::from_raw(raw) });
                Err(())
            }
        }
    }

    /// Step 3: takes `sleeper` back out of the slot if it is still there.
    pub(crate) fn retract(&self, sleeper: &Arc<Sleeper<W>>) {
        let ours = Arc::as_ptr(sleeper) as *mut Sleeper<W>;
        // Relaxed: the reference taken back is one we published ourselves;
        // no data is read through the slot here. A different sleeper cannot
        // sit at our address while we hold an `Arc` to ours.
        if self
            .ptr
            .compare_exchange(ours, ptr::null_mut(), Relaxed, Relaxed)
            .is_ok()
        {
            // SAFETY: the slot owned one reference, from `publish`'s
            // `into_raw`, and the CAS moved it to us.
            drop(unsafe { Arc::from_raw(ours) });
        }
    }

    /// Step 2, waker side: claims the published sleeper's wake, if any.
    /// Returns true if this call woke it.
    pub(crate) fn wake(&self) -> bool {
        // Acquire: pairs with the Release in `publish`; we read the sleeper
        // through the pointer. AcqRel is not needed: nothing of ours is
        // published by storing null.
        let raw = self.ptr.swap(ptr::null_mut(), Acquire);
        if raw.is_null() {
            return false;
        }
        // SAFETY: a non-null slot value is a reference given up by
        // `publish`'s `into_raw`; the swap made it ours.
        let sleeper = unsafe { Arc::from_raw(raw) };
        sleeper.fire(WAKER)
    }
}

impl<W> Drop for Slot<W> {
    fn drop(&mut self) {
        // A sleep retracts its sleeper before returning, and a `CoSleep`
        // cannot be dropped while borrowed by a sleep; this only runs if a
        // sleeping coroutine's frame was leaked.
        // Relaxed: `&mut self` means no other thread can reach the slot.
        let raw = self.ptr.load(Relaxed);
        if !raw.is_null() {
            // SAFETY: as in `wake`: the slot owned this reference.
            drop(unsafe { Arc::from_raw(raw) });
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! `RUSTFLAGS="--cfg loom" cargo test -p coprimitives --lib --release
    //! sleep_claim` (part of the crate's loom run, see `sync.rs`). Every
    //! check here is a plain `assert!`, so the models check with or without
    //! `-C debug-assertions`; they explore all interleavings in well under a
    //! second, so no preemption bound is needed.
    use super::*;
    use loom::sync::atomic::AtomicUsize;
    use loom::thread;

    /// Counts wakes; the "coroutine" resumes when it sees one.
    #[derive(Clone)]
    struct Counter(Arc<AtomicUsize>);
    impl Wake for Counter {
        fn wake(&self) {
            // Release: pairs with the sleeper's Acquire spin (the scheduler's
            // hand-off in production).
            self.0.fetch_add(1, Release);
        }
    }

    fn resumed(wakes: &AtomicUsize) {
        while wakes.load(Acquire) == 0 {
            thread::yield_now();
        }
    }

    /// Timer and a cross-thread waker race for one sleep: exactly one wake,
    /// and the sleeper's verdict names the winner.
    #[test]
    fn sleep_claim_timer_vs_waker() {
        loom::model(|| {
            let wakes = Arc::new(AtomicUsize::new(0));
            let slot = Arc::new(Slot::new());
            let sleeper = Sleeper::new(Counter(wakes.clone()));
            slot.publish(&sleeper).expect("empty slot");
            let timer = {
                let s = sleeper.clone();
                thread::spawn(move || s.fire_timer())
            };
            let waker = {
                let slot = slot.clone();
                thread::spawn(move || slot.wake())
            };
            resumed(&wakes);
            slot.retract(&sleeper);
            let outcome = sleeper.outcome();
            let by_timer = timer.join().unwrap();
            let by_waker = waker.join().unwrap();
            assert_eq!(wakes.load(Acquire), 1, "exactly one wake per sleep");
            assert!(by_timer ^ by_waker);
            assert_eq!(
                outcome,
                if by_timer {
                    Outcome::Timer
                } else {
                    Outcome::Woken
                }
            );
        });
    }

    /// A wake racing a sleeper that resumes without a claim (unwinding):
    /// either the waker won before the withdrawal, or it wakes nobody.
    #[test]
    fn sleep_claim_waker_vs_withdraw() {
        loom::model(|| {
            let wakes = Arc::new(AtomicUsize::new(0));
            let slot = Arc::new(Slot::new());
            let sleeper = Sleeper::new(Counter(wakes.clone()));
            slot.publish(&sleeper).expect("empty slot");
            let waker = {
                let slot = slot.clone();
                thread::spawn(move || slot.wake())
            };
            slot.retract(&sleeper);
            let outcome = sleeper.outcome();
            let woke = waker.join().unwrap();
            assert_eq!(wakes.load(Acquire), usize::from(woke));
            assert_eq!(outcome == Outcome::Woken, woke);
            assert_ne!(outcome, Outcome::Timer);
        });
    }

    /// Two sleeps in a row on one slot with a late waker: the waker can only
    /// claim the sleep that is published, and the first sleep's retraction
    /// never removes the second sleeper.
    #[test]
    fn sleep_claim_second_sleep_keeps_its_slot() {
        loom::model(|| {
            let wakes1 = Arc::new(AtomicUsize::new(0));
            let wakes2 = Arc::new(AtomicUsize::new(0));
            let slot = Arc::new(Slot::new());
            let first = Sleeper::new(Counter(wakes1.clone()));
            slot.publish(&first).expect("empty slot");
            let waker = {
                let slot = slot.clone();
                thread::spawn(move || slot.wake())
            };
            // The first sleep ends by its timer.
            let _ = first.fire_timer();
            resumed(&wakes1);
            slot.retract(&first);
            let o1 = first.outcome();
            let second = Sleeper::new(Counter(wakes2.clone()));
            let published = slot.publish(&second).is_ok();
            assert!(published, "the first sleep left the slot empty");
            let woke = waker.join().unwrap();
            slot.retract(&second);
            let o2 = second.outcome();
            assert_eq!(wakes1.load(Acquire), 1, "the first sleep was woken once");
            assert_eq!(wakes2.load(Acquire), usize::from(o2 == Outcome::Woken));
            assert!(o1 == Outcome::Timer || o1 == Outcome::Woken);
            assert_eq!(woke, o1 == Outcome::Woken || o2 == Outcome::Woken);
        });
    }
}
