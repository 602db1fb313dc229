//! A coroutine's lifecycle state and the transitions between states.
//!
//! ```text
//!   New ──first entry (CAS)──▶ Running ──suspend()──▶ Suspended
//!    │                           │  ▲                      │
//!    │                           │  └──enter (home: store; │
//!    │                           │     migratable: CAS)────┘
//!    │                           └──body returns / panics / is unwound──▶ Finished
//!    └──cancelled before it ever ran (CAS)──────────────────────────────▶ Finished
//! ```
//!
//! `Running` is QEMU's "`caller != NULL`": set from an enter until the next
//! suspension or the end of the body, including while the coroutine has
//! itself entered another one.
//!
//! # Who moves the state, and why some moves are a CAS
//!
//! | transition | by | how | why |
//! |---|---|---|---|
//! | New → Running | whoever enters it first | CAS ([`AtomicState::claim_new`]) | a never-run coroutine can be reached by several threads: an `enter` on one, a cancellation at shutdown on another; the winner alone owns its entry closure |
//! | New → Finished | a canceller (shutdown, a closed context, no stack) | CAS ([`AtomicState::claim_new`]) | as above |
//! | Running → New | the starter that could get no stack | Release store ([`AtomicState::give_back`]) | hands the entry back, unrun, to whoever claims it next |
//! | Suspended → Running | its home thread | Relaxed store ([`AtomicState::enter_at_home`]) | a started, non-migratable coroutine only ever runs on its home thread, the only writer |
//! | Suspended → Running | the new home of a migratable coroutine | CAS ([`AtomicState::claim_migratable`]) | its old and new home may both try; the winner becomes the executing thread |
//! | Running → Suspended | the executing thread | Release store ([`AtomicState::suspended`]) | the last write of this thread to the executing-thread fields |
//! | Running → Finished | the executing thread | Release store ([`AtomicState::finished`]) | publishes the outcome to `is_finished` readers |
//!
//! Every load that decides how to enter is an Acquire: it pairs with the
//! Release of the `suspended` store on the thread that ran the coroutine
//! last (which differs only after a migration), so the new executing thread
//! sees the executing-thread fields as they were left. Modelled in
//! `loom_tests`, together with the wake mark: a wake accepted while the
//! coroutine runs and delivered after it finished is dropped, never resumed.

use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

use crate::sync::AtomicU8;

/// A coroutine's lifecycle state (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum State {
    /// Created, never entered: no home, maybe no stack yet.
    New = 0,
    /// Entered and not yet suspended or finished (QEMU: `caller != NULL`).
    Running = 1,
    /// Suspended in the middle of its body.
    Suspended = 2,
    /// The body returned, panicked or was unwound; the stack is gone.
    Finished = 3,
}

impl State {
    fn from_u8(v: u8) -> State {
        match v {
            0 => State::New,
            1 => State::Running,
            2 => State::Suspended,
            _ => State::Finished,
        }
    }
}

/// The state word of a control block.
pub(crate) struct AtomicState(AtomicU8);

impl AtomicState {
    /// A coroutine that was just created.
    pub(crate) fn new() -> AtomicState {
        AtomicState(AtomicU8::new(State::New as u8))
    }

    /// The current state. Acquire: see the module docs.
    #[inline]
    pub(crate) fn load(&self) -> State {
        State::from_u8(self.0.load(Acquire))
    }

    /// The state, by a thread that owns the block exclusively (drop).
    #[cfg(not(loom))]
    pub(crate) fn get_mut(&mut self) -> State {
        State::from_u8(*self.0.get_mut())
    }

    /// Claims a never-run coroutine: `New → to` (`Running` to start it,
    /// `Finished` to cancel it). On failure returns the state found.
    #[inline]
    pub(crate) fn claim_new(&self, to: State) -> Result<(), State> {
        // AcqRel: the winner owns the entry closure; Acquire pairs with the
        // Release of `give_back` (a starter that could not get a stack).
        self.0
            .compare_exchange(State::New as u8, to as u8, AcqRel, Acquire)
            .map(drop)
            .map_err(State::from_u8)
    }

    /// A starter that won [`claim_new`](Self::claim_new) but could not
    /// start gives the coroutine back unstarted.
    pub(crate) fn give_back(&self) {
        // Release: pairs with the Acquire of the next `claim_new`.
        self.0.store(State::New as u8, Release);
    }

    /// Its home thread enters a suspended, non-migratable coroutine.
    #[inline]
    pub(crate) fn enter_at_home(&self) {
        // Relaxed: only this thread writes the state of such a coroutine,
        // and it already read `Suspended` with Acquire.
        self.0.store(State::Running as u8, Relaxed);
    }

    /// A home enters a suspended migratable coroutine: `Suspended →
    /// Running`. On failure returns the state found.
    #[inline]
    pub(crate) fn claim_migratable(&self) -> Result<(), State> {
        // AcqRel: the winner becomes the executing thread; Acquire pairs
        // with the Release of `suspended` on the thread it last ran on.
        self.0
            .compare_exchange(
                State::Suspended as u8,
                State::Running as u8,
                AcqRel,
                Acquire,
            )
            .map(drop)
            .map_err(State::from_u8)
    }

    /// The executing thread: the coroutine suspended.
    #[inline]
    pub(crate) fn suspended(&self) {
        // Release: pairs with the Acquire of whoever enters it next.
        self.0.store(State::Suspended as u8, Release);
    }

    /// The executing thread: the body is done.
    #[inline]
    pub(crate) fn finished(&self) {
        // Release: publishes the outcome to `is_finished` readers.
        self.0.store(State::Finished as u8, Release);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;
    use loom::thread;
    use std::panic::Location;

    /// A control block reduced to the lifecycle and one executing-thread
    /// field.
    struct Block {
        state: AtomicState,
        /// Stands for the entry closure and the executing-thread fields.
        body: UnsafeCell<u32>,
    }

    /// An `enter` and a shutdown's cancellation race for a never-run
    /// coroutine: exactly one wins; only the winner touches the entry.
    #[test]
    fn start_races_cancel_unstarted() {
        loom::model(|| {
            let b = Arc::new(Block {
                state: AtomicState::new(),
                body: UnsafeCell::new(0),
            });
            let claim = |b: &Block, to: State| {
                if b.state.claim_new(to).is_ok() {
                    // SAFETY: the winner of the claim owns the entry.
                    b.body.with_mut(|v| unsafe { *v += 1 });
                    if to == State::Running {
                        b.state.finished();
                    }
                    true
                } else {
                    false
                }
            };
            let t = {
                let b = b.clone();
                thread::spawn(move || claim(&b, State::Finished))
            };
            let started = claim(&b, State::Running);
            let cancelled = t.join().unwrap();
            assert!(started != cancelled, "exactly one claim wins");
            assert_eq!(b.state.load(), State::Finished);
            // SAFETY: both threads are done.
            assert_eq!(b.body.with(|v| unsafe { *v }), 1);
        });
    }

    /// A migratable coroutine suspended on one home is entered by two
    /// others at once: one wins the claim, and it sees what the previous
    /// executing thread wrote before suspending.
    #[test]
    fn migratable_claim_has_one_winner() {
        loom::model(|| {
            let b = Arc::new(Block {
                state: AtomicState::new(),
                body: UnsafeCell::new(0),
            });
            // The first home runs it and suspends it.
            b.state.claim_new(State::Running).unwrap();
            // SAFETY: executing thread.
            b.body.with_mut(|v| unsafe { *v = 7 });
            b.state.suspended();
            let homes: Vec<_> = (0..2)
                .map(|_| {
                    let b = b.clone();
                    thread::spawn(move || {
                        if b.state.claim_migratable().is_ok() {
                            // SAFETY: the claim made us the executing thread.
                            let seen = b.body.with(|v| unsafe { *v });
                            assert_eq!(seen, 7, "the new home sees the old home's writes");
                            b.state.suspended();
                            true
                        } else {
                            false
                        }
                    })
                })
                .collect();
            let wins: usize = homes
                .into_iter()
                .map(|h| usize::from(h.join().unwrap()))
                .sum();
            assert!(wins >= 1, "a suspended coroutine can always be claimed");
            // Both may win one after the other (the first suspends it
            // again), never at once: loom reports a race otherwise.
        });
    }

    /// A wake accepted while the coroutine runs (legal: it takes effect
    /// when it suspends), and the coroutine finishes instead: the home
    /// thread, taking the wake from its queue, sees `Finished` and drops
    /// it; it never resumes a finished coroutine.
    #[test]
    fn a_wake_that_arrives_after_finish_is_dropped() {
        loom::model(|| {
            use crate::core::wake_mark::{WakeDecision, WakeMark, decide_wake};
            use loom::sync::atomic::AtomicBool;
            let b = Arc::new(Block {
                state: AtomicState::new(),
                body: UnsafeCell::new(0),
            });
            let mark = Arc::new(WakeMark::new());
            let cancel = Arc::new(AtomicBool::new(false));
            b.state.claim_new(State::Running).unwrap();
            let waker = {
                let (b, mark, cancel) = (b.clone(), mark.clone(), cancel.clone());
                thread::spawn(move || {
                    decide_wake(
                        &mark,
                        &cancel,
                        || b.state.load() == State::Finished,
                        Location::caller(),
                    )
                })
            };
            // The executing thread finishes the body.
            // SAFETY: executing thread.
            b.body.with_mut(|v| unsafe { *v = 1 });
            b.state.finished();
            let decision = waker.join().unwrap();
            // The home thread handles a delivered wake as `run_scheduled`
            // does: clear the mark, then look at the state.
            if decision == WakeDecision::Deliver {
                mark.clear();
                assert_eq!(b.state.load(), State::Finished, "dropped, not resumed");
            } else {
                assert_eq!(decision, WakeDecision::AfterFinish);
            }
        });
    }
}
