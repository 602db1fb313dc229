//! The control block's cross-thread transitions, composed from its atomics:
//! what the last handle's drop, a shutdown's cancellation and the owner's
//! taking of a delivered coroutine do to the state word
//! ([`lifecycle`](super::lifecycle)), the reference count
//! ([`refcount`](super::refcount)), the wake mark
//! ([`wake_mark`](super::wake_mark)) and the `cancel` flag.
//!
//! Each piece has its own protocol in its own file; this file holds the
//! decisions that read several of them at once, so that they compile alone
//! under `--cfg loom` and the models below run them against each other and
//! against the real [`Mailbox`](super::home::mailbox::Mailbox). In the
//! models a coroutine's run (the fiber switch) is a stand-in that performs
//! the same state transitions as `enter.rs` around it.
//!
//! # One resumption per suspension
//!
//! A suspended coroutine is resumed only by whoever wins its wake mark:
//!
//! | who | how it resumes it |
//! |---|---|
//! | a waker (`aio_co_wake`) | wins the mark ([`decide_wake`](super::wake_mark::decide_wake)) and delivers its reference home |
//! | the home's shutdown walk, holding a reference from `try_upgrade` | marks `cancel`, then wins the mark ([`shutdown_claim`]) and enters it at once |
//! | the owner of the last reference | claims the mark and marks `cancel` while the count is zero (the block is its alone), then resurrects it and delivers that reference home ([`last_ref`]) |
//!
//! A walk's `try_inc` either reads zero and leaves the block to the dropper,
//! or reads the resurrected count; resurrection is a Release store and a
//! successful `try_inc` an Acquire, so that walk sees the mark claimed and
//! leaves the resumption to the delivery. (Claiming after resurrecting would
//! let a walk upgrade, win the mark, resume the coroutine and clear the mark
//! before the dropper's claim, which would then succeed: two resumptions for
//! one suspension, the second inside whatever the first left it waiting for.)
//!
//! The owner that takes a delivered reference clears the mark and enters it
//! unless it finished, was cancelled before it started, or is a migratable
//! coroutine still running on its previous home ([`taken`]).

use std::panic::Location;
use std::sync::atomic::Ordering::{Relaxed, Release};

use super::lifecycle::{AtomicState, State};
use super::refcount::RefCount;
use super::wake_mark::WakeMark;
use crate::sync::AtomicBool;

/// The atomics of one control block that its cross-thread transitions
/// read, borrowed from it (`CoInner::atomics`).
#[derive(Clone, Copy)]
pub(crate) struct Atomics<'a> {
    pub(crate) state: &'a AtomicState,
    pub(crate) refs: &'a RefCount,
    pub(crate) scheduled: &'a WakeMark,
    pub(crate) cancel: &'a AtomicBool,
    /// Created with the migratable opt-in (immutable).
    pub(crate) migratable: bool,
}

/// What the owner of a block's last reference does with it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LastRef {
    /// Suspended and not yet cancelled: it is marked scheduled and
    /// cancelled and holds one reference again; that reference goes home,
    /// where the coroutine unwinds.
    SendHome,
    /// Suspended, cancelled already, and unreachable: nothing can ever
    /// resume it, so it is leaked with its stack.
    Orphaned,
    /// Finished or never started: free it.
    Free,
}

/// The last reference is gone ([`RefCount::dec`] returned true): see
/// [`LastRef`] and the module docs.
#[inline]
pub(crate) fn last_ref(b: Atomics<'_>, site: &'static Location<'static>) -> LastRef {
    match b.state.load() {
        State::Suspended if !b.cancel.load(Relaxed) => {
            // The count is zero: nobody else can reach the block, so the
            // claim succeeds, unless a closed home dropped the reference
            // that carried an earlier wake (then the mark stays set, and the
            // closed home drops this reference too).
            let _ = b.scheduled.claim(site);
            // Release: pairs with the Acquire load of `cancel` by a waker
            // that finds the coroutine already scheduled (`wake_mark`).
            b.cancel.store(true, Release);
            // Last, and Release: a walk whose `try_inc` reads this count
            // sees the claim and the flag (module docs).
            b.refs.resurrect();
            LastRef::SendHome
        }
        State::Suspended => LastRef::Orphaned,
        _ => LastRef::Free,
    }
}

/// A shutdown walk holds a reference to a coroutine registered with its
/// home, on the home thread: marks it cancelled and, if it is suspended at
/// a cancellation point (`parked_shielded`, asked only once it is seen
/// suspended, returns false) and nobody owns its next resumption yet,
/// claims it. True: the caller clears the mark and enters it now.
#[inline]
pub(crate) fn shutdown_claim(
    b: Atomics<'_>,
    parked_shielded: impl FnOnce() -> bool,
    site: &'static Location<'static>,
) -> bool {
    // Release: pairs with the waker's Acquire in `wake_mark`.
    b.cancel.store(true, Release);
    b.state.load() == State::Suspended && !parked_shielded() && b.scheduled.claim(site).is_ok()
}

/// What the owner does with a coroutine it took from one of its queues.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Delivered {
    /// Enter it.
    Enter,
    /// Finished, or cancelled before it started: drop the reference.
    Skip,
    /// A migratable coroutine still running on its previous home: its wake
    /// takes effect once it has suspended there, so queue it here again
    /// (its mark is claimed again).
    Requeue,
}

/// The owner took a scheduled coroutine from a queue (its ready list, its
/// hand-off queue, an enter loop's pending list): clears the mark, then
/// decides by the state (see [`Delivered`]).
#[inline]
pub(crate) fn taken(b: Atomics<'_>, site: &'static Location<'static>) -> Delivered {
    b.scheduled.clear();
    match b.state.load() {
        State::Finished => Delivered::Skip,
        State::New if b.cancel.load(Relaxed) => Delivered::Skip,
        // Unless another waker already owns its next wake: then that one
        // delivers it.
        State::Running if b.migratable => {
            if b.scheduled.claim(site).is_ok() {
                Delivered::Requeue
            } else {
                Delivered::Skip
            }
        }
        _ => Delivered::Enter,
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! The models. A block here has the real atomics of a control block,
    //! the real transitions above and, where a reference travels between
    //! threads, the real mailbox; the coroutine's body is a stand-in for
    //! the fiber switch, entered as `enter.rs` enters one (claim, run,
    //! `suspended` or `finished`). References are counts: `release` is
    //! `CoRef::drop` and `last_ref_dropped`, `free` marks the block freed,
    //! and every access checks that it was not.

    use super::*;
    use crate::core::home::mailbox::{Linked, Mailbox};
    use crate::core::wake_mark::{WakeDecision, decide_wake, resumed_cancelled};
    use crate::sync::AtomicPtr;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicUsize;
    use loom::thread;
    use std::ptr;
    use std::sync::atomic::Ordering::{Acquire, SeqCst};

    struct Block {
        state: AtomicState,
        refs: RefCount,
        scheduled: WakeMark,
        cancel: AtomicBool,
        migratable: bool,
        handoff_next: AtomicPtr<Block>,
        /// The executing-thread fields; loom reports two threads in them
        /// at once.
        body: UnsafeCell<u32>,
        /// Torn down (`drop_in_place` and `blocks::free`).
        freed: AtomicBool,
        orphaned: AtomicBool,
        /// Resumptions granted: mark claims that led to a delivery or a
        /// direct enter.
        granted: AtomicUsize,
        /// Times the body was entered.
        entered: AtomicUsize,
        /// Delivered references skipped because the coroutine had finished.
        skipped: AtomicUsize,
    }

    impl Linked for Block {
        fn link(&self) -> &AtomicPtr<Block> {
            &self.handoff_next
        }
    }

    type Home = Mailbox<Block, ()>;

    impl Block {
        /// A started coroutine suspended at a cancellation point, with
        /// `refs` references.
        fn suspended(refs: usize, migratable: bool) -> Arc<Block> {
            let b = Block {
                state: AtomicState::new(),
                refs: RefCount::new(),
                scheduled: WakeMark::new(),
                cancel: AtomicBool::new(false),
                migratable,
                handoff_next: AtomicPtr::new(ptr::null_mut()),
                body: UnsafeCell::new(0),
                freed: AtomicBool::new(false),
                orphaned: AtomicBool::new(false),
                granted: AtomicUsize::new(0),
                entered: AtomicUsize::new(0),
                skipped: AtomicUsize::new(0),
            };
            b.state.claim_new(State::Running).unwrap();
            b.state.suspended();
            for _ in 1..refs {
                b.refs.inc();
            }
            Arc::new(b)
        }

        fn atomics(&self) -> Atomics<'_> {
            Atomics {
                state: &self.state,
                refs: &self.refs,
                scheduled: &self.scheduled,
                cancel: &self.cancel,
                migratable: self.migratable,
            }
        }

        fn live(&self) {
            assert!(!self.freed.load(Relaxed), "use after free");
        }

        fn node(&self) -> *mut Block {
            self as *const Block as *mut Block
        }

        /// `CoRef::drop`, with `last_ref_dropped`: a resurrected reference
        /// is posted to `home`.
        fn release(&self, home: &Home) {
            self.live();
            if !self.refs.dec() {
                return;
            }
            match last_ref(self.atomics(), Location::caller()) {
                LastRef::SendHome => {
                    self.granted.fetch_add(1, Relaxed);
                    self.post(home);
                }
                LastRef::Orphaned => {
                    assert!(!self.orphaned.swap(true, Relaxed), "orphaned twice");
                }
                LastRef::Free => {
                    // SAFETY: loom checks that nobody else touches it.
                    self.body.with_mut(|b| unsafe { *b = u32::MAX });
                    assert!(!self.freed.swap(true, Relaxed), "freed twice");
                }
            }
        }

        /// `Home::push_remote`: a late post to a closed home is dropped.
        fn post(&self, home: &Home) {
            // SAFETY: one reference travels with the node, and a block is on
            // at most one queue (one accepted wake); the model's blocks
            // outlive every queue.
            if let Some(late) = unsafe { home.post_handoff(self.node(), || {}) } {
                for n in late {
                    // SAFETY: the nodes are this model's live blocks.
                    unsafe { &*n }.release(home);
                }
            }
        }

        /// The stand-in for a run: `claim` (a home's store, or the
        /// migratable CAS), the body, then `suspended` or `finished`.
        /// `body` returns whether the coroutine finishes.
        fn run(&self, body: impl FnOnce(&mut u32) -> bool) {
            self.live();
            assert_eq!(
                self.state.load(),
                State::Suspended,
                "entered while not suspended"
            );
            if self.migratable {
                self.state
                    .claim_migratable()
                    .expect("one executing thread at a time");
            } else {
                self.state.enter_at_home();
            }
            self.entered.fetch_add(1, Relaxed);
            // SAFETY: the claim made this thread the executing thread.
            let done = self.body.with_mut(|b| body(unsafe { &mut *b }));
            if done {
                self.state.finished();
            } else {
                self.state.suspended();
            }
        }

        /// The shutdown walk's direct enter after its claim won: whoever
        /// resumes a coroutine owns its mark until it clears it.
        fn resume_claimed(&self, body: impl FnOnce(&mut u32) -> bool) {
            self.granted.fetch_add(1, Relaxed);
            assert!(
                self.scheduled.pending().is_some(),
                "resumed without owning the wake mark"
            );
            self.scheduled.clear();
            self.run(body);
        }

        /// `take_handoffs` then `run_scheduled`: each delivered reference
        /// is entered or skipped, then released.
        fn take_delivered(&self, home: &Home, body: &dyn Fn(&mut u32) -> bool) -> usize {
            let mut n = 0;
            for node in home.take_handoffs() {
                // SAFETY: the nodes are this model's live blocks.
                let b = unsafe { &*node };
                match taken(b.atomics(), Location::caller()) {
                    Delivered::Enter => b.run(body),
                    Delivered::Skip => {
                        b.skipped.fetch_add(1, Relaxed);
                    }
                    Delivered::Requeue => unreachable!("not migratable"),
                }
                b.release(home);
                n += 1;
            }
            n
        }
    }

    /// (a) The last handle of a suspended coroutine is dropped on another
    /// thread while its home's shutdown walks the registry. The walk gets a
    /// reference or leaves the block to the dropper; either way exactly one
    /// resumption is granted (by the walk's claim or the dropper's
    /// delivery), the coroutine is entered once, and the block is never
    /// freed while suspended. The coroutine's unwinding suspends again in
    /// a destructor that waits (shielded) with nothing left to wake it: a
    /// second resumption would enter it there, and it ends orphaned.
    #[test]
    fn last_drop_races_a_shutdown_walk() {
        loom::model(|| {
            let b = Block::suspended(1, false);
            let home = Arc::new(Home::new());
            let dropper = {
                let (b, home) = (b.clone(), home.clone());
                thread::spawn(move || b.release(&home))
            };
            // The home thread: `resume_cancelled`'s walk.
            let unwind = |_: &mut u32| false;
            if b.refs.try_inc() {
                if shutdown_claim(b.atomics(), || false, Location::caller()) {
                    b.resume_claimed(unwind);
                }
                b.release(&home);
            }
            dropper.join().unwrap();
            // Then its turns: what the dropper sent home.
            b.take_delivered(&home, &unwind);
            assert_eq!(b.granted.load(Relaxed), 1, "exactly one resumption granted");
            assert_eq!(b.entered.load(Relaxed), 1, "entered exactly once");
            assert!(!b.freed.load(Relaxed), "a suspended block is never freed");
            assert!(b.orphaned.load(Relaxed), "unreachable at the end: orphaned");
        });
    }

    /// (b) A waker on another thread wakes a suspended coroutine, then
    /// drops its own reference, while the coroutine's home takes one turn
    /// and closes. The delivered reference is run in that turn or taken by
    /// the final drain or handed back to its poster, never stranded; the
    /// last reference's drop resurrects the coroutine (when its wake was
    /// consumed) and sends it home, where the closed mailbox drops it, or
    /// gives it up (when the wake it carried was never consumed): either
    /// way it ends orphaned, every reference given back, never freed while
    /// suspended.
    #[test]
    fn a_wake_races_the_close_of_its_home() {
        loom::model(|| {
            let b = Block::suspended(1, false);
            let home = Arc::new(Home::new());
            let waker = {
                let (b, home) = (b.clone(), home.clone());
                thread::spawn(move || {
                    // `wake`: a clone is delivered, then the waker's own
                    // reference goes.
                    let d = decide_wake(&b.scheduled, &b.cancel, || false, Location::caller());
                    assert_eq!(d, WakeDecision::Deliver);
                    b.refs.inc();
                    b.granted.fetch_add(1, Relaxed);
                    b.post(&home);
                    b.release(&home);
                })
            };
            // The home thread: one turn, in which the coroutine, if it has
            // arrived, runs and waits again (not cancelled); then it closes
            // (`shutdown.rs` step 5), and what it takes is dropped unrun.
            b.take_delivered(&home, &|_| false);
            let (handoffs, _bhs) = home.close();
            for n in handoffs {
                // SAFETY: the model's live block.
                unsafe { &*n }.release(&home);
            }
            waker.join().unwrap();
            assert!(home.take_handoffs().next().is_none(), "nothing stranded");
            assert!(b.entered.load(Relaxed) <= 1, "entered at most for its wake");
            assert!(!b.freed.load(Relaxed), "a suspended block is never freed");
            assert!(b.orphaned.load(Relaxed), "every reference given back");
        });
    }

    /// (c) A shutdown cancels a coroutine suspended in a wait while a
    /// waker on another thread publishes the condition and wakes it. The
    /// walk's claim and the wake's claim decide who resumes it; the loser
    /// is absorbed. Resumed cancelled, the coroutine unwinds; its destructor
    /// waits (shielded) for the same condition, so it finishes only once it
    /// has seen it. No wake is lost: it ends finished and freed; each
    /// granted resumption enters it once, or is dropped when it comes after
    /// the finish; never two at once.
    #[test]
    fn cancellation_races_a_wake() {
        loom::model(|| {
            let b = Block::suspended(2, false); // the walk's, the waker's
            let home = Arc::new(Home::new());
            let condition = Arc::new(AtomicBool::new(false));
            let waker_done = Arc::new(AtomicBool::new(false));
            let waker = {
                let (b, home, condition, waker_done) = (
                    b.clone(),
                    home.clone(),
                    condition.clone(),
                    waker_done.clone(),
                );
                thread::spawn(move || {
                    condition.store(true, Release);
                    let finished = || b.state.load() == State::Finished;
                    match decide_wake(&b.scheduled, &b.cancel, finished, Location::caller()) {
                        WakeDecision::Deliver => {
                            b.refs.inc();
                            b.granted.fetch_add(1, Relaxed);
                            b.post(&home);
                        }
                        WakeDecision::Absorbed => {}
                        d => panic!("{d:?}"),
                    }
                    b.release(&home);
                    waker_done.store(true, Release);
                })
            };
            // The body after each resumption: a cancelled coroutine issues
            // the fence of `resumed_cancelled`, then its wait re-checks.
            let body = {
                let (cancel, condition) = (&b.cancel, &condition);
                move |_: &mut u32| {
                    resumed_cancelled(cancel);
                    condition.load(Acquire)
                }
            };
            if shutdown_claim(b.atomics(), || false, Location::caller()) {
                b.resume_claimed(&body);
            }
            b.release(&home);
            // Later turns, until the waker is gone and nothing came.
            loop {
                let done = waker_done.load(Acquire);
                if b.take_delivered(&home, &body) == 0 && done {
                    break;
                }
                thread::yield_now();
            }
            waker.join().unwrap();
            assert_eq!(b.state.load(), State::Finished, "no lost wake: it finished");
            assert!(b.freed.load(Relaxed), "freed once every reference went");
            assert_eq!(
                b.entered.load(Relaxed) + b.skipped.load(Relaxed),
                b.granted.load(Relaxed),
                "each granted resumption entered once, or dropped once it finished"
            );
        });
    }

    /// (d) A migratable coroutine, still running on its old home, is woken
    /// onto a new one (`AioContext::schedule`, `reschedule_self`): the new
    /// home takes it while the old one has not yet suspended it, and the
    /// two contexts race for it. The new home requeues it until it is
    /// suspended, then wins the migratable claim and runs it once, seeing
    /// what the old home wrote; never both at once (loom reports a race on
    /// the body otherwise).
    #[test]
    fn migration_races_the_old_homes_suspension() {
        loom::model(|| {
            let b = Block::suspended(1, true);
            // The old home's run is in progress.
            b.state.claim_migratable().unwrap();
            let new_home = Arc::new(Home::new());
            let old = {
                let b = b.clone();
                thread::spawn(move || {
                    // SAFETY: the executing thread, until it suspends.
                    b.body.with_mut(|v| unsafe { *v = 7 });
                    b.state.suspended();
                })
            };
            // The wake, from a bottom half of the old home: its claim, then
            // the delivery to the new home.
            let d = decide_wake(&b.scheduled, &b.cancel, || false, Location::caller());
            assert_eq!(d, WakeDecision::Deliver);
            b.refs.inc();
            b.granted.fetch_add(1, Relaxed);
            b.post(&new_home);
            // The new home's turns; a requeued coroutine comes back on the
            // next one (its ready list stands for that here).
            let mut ready = None;
            loop {
                let mut taken_now: Vec<*mut Block> = new_home.take_handoffs().collect();
                taken_now.extend(ready.take());
                for node in taken_now {
                    // SAFETY: the model's live block.
                    let c = unsafe { &*node };
                    match taken(c.atomics(), Location::caller()) {
                        Delivered::Enter => {
                            c.run(|v| {
                                assert_eq!(*v, 7, "the new home sees the old one's writes");
                                true
                            });
                            c.release(&new_home);
                        }
                        Delivered::Requeue => ready = Some(node),
                        Delivered::Skip => c.release(&new_home),
                    }
                }
                if b.entered.load(Relaxed) == 1 {
                    break;
                }
                thread::yield_now();
            }
            old.join().unwrap();
            b.release(&new_home);
            assert_eq!(b.entered.load(Relaxed), 1, "run once for its wake");
            assert!(b.freed.load(SeqCst), "freed once every reference went");
        });
    }
}
