//! A coroutine's wake mark (QEMU's `co->scheduled`) and the protocol that
//! decides, for every wake, whether to deliver it.
//!
//! # States
//!
//! | `site` | meaning |
//! |---|---|
//! | null | no wake pending: the next wake is accepted |
//! | `&Location` | a wake was accepted (issued there) and the coroutine has not been resumed for it yet |
//!
//! **Claim** (every waker, and the shutdown's canceller): CAS null → site,
//! AcqRel. The winner owns the one resumption that suspension allows and
//! delivers the coroutine; Acquire pairs with the Release of the `clear`
//! that ended the previous wake, so the winner sees what the coroutine left
//! behind when it last ran; Release publishes `site` to a loser's message.
//!
//! **Clear** (whoever resumes the coroutine for the wake, just before it
//! resumes): a Release store of null.
//!
//! # Wakes of a cancelled coroutine ([`decide_wake`])
//!
//! Outside cancellation, a claim that fails is a bug (two wakes for one
//! suspension) and panics. A cancelled coroutine is different: the
//! canceller resumes it to unwind, and a real waker that committed to waking
//! it earlier — a lock granter, a joined coroutine finishing — can arrive
//! while it is resumed again for another reason, or after it suspended again
//! in a destructor. So for a cancelled coroutine a failed claim is
//! *absorbed*, and a wake of a finished one is dropped. Absorbing must not
//! lose the waker's condition (the grant it published before waking):
//!
//! - **waker:** publish the condition; claim fails; load `cancel` (Acquire);
//!   `fence(SeqCst)`; re-read the mark: still set → absorbed (return), null →
//!   claim again;
//! - **coroutine:** the mark is cleared; it resumes; it loads `cancel` and,
//!   when set, issues `fence(SeqCst)` ([`resumed_cancelled`]) before the
//!   wait it was in re-checks its condition.
//!
//! Store-buffering: the fences are totally ordered, so either the
//! coroutine's re-check sees the condition, or the waker's re-read sees the
//! mark cleared and claims again. `cancel` is stored with Release before the
//! canceller's claim (or by the last handle's drop, when no waker exists),
//! so a waker that reads it also sees every clear that preceded it, and its
//! re-read cannot return a stale mark. Modelled in `loom_tests`.

use std::panic::Location;
use std::ptr;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};

use crate::sync::{AtomicBool, AtomicPtr, fence};

/// A coroutine's pending-wake mark.
pub(crate) struct WakeMark {
    site: AtomicPtr<Location<'static>>,
}

impl WakeMark {
    /// No wake pending.
    pub(crate) fn new() -> WakeMark {
        WakeMark {
            site: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Claims the next resumption for a wake issued at `site`; on failure,
    /// returns where the pending wake came from.
    #[inline]
    pub(crate) fn claim(
        &self,
        site: &'static Location<'static>,
    ) -> Result<(), &'static Location<'static>> {
        // AcqRel: see the module docs.
        match self.site.compare_exchange(
            ptr::null_mut(),
            site as *const Location<'static> as *mut Location<'static>,
            AcqRel,
            Acquire,
        ) {
            Ok(_) => Ok(()),
            // SAFETY: non-null values stored here are `&'static Location`s.
            Err(prev) => Err(unsafe { &*prev }),
        }
    }

    /// Clears the mark just before the coroutine is resumed for its wake.
    #[inline]
    pub(crate) fn clear(&self) {
        // Release: pairs with the Acquire of the next claim.
        self.site.store(ptr::null_mut(), Release);
    }

    /// Where the pending wake was issued, if one is pending.
    #[inline]
    pub(crate) fn pending(&self) -> Option<&'static Location<'static>> {
        // Acquire: pairs with the Release of the claim, for `site`.
        let p = self.site.load(Acquire);
        // SAFETY: non-null values stored here are `&'static Location`s.
        (!p.is_null()).then(|| unsafe { &*p })
    }
}

/// What to do with a wake.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WakeDecision {
    /// The claim was won: deliver the coroutine.
    Deliver,
    /// A cancelled coroutine, already scheduled (or finished): nothing to do.
    Absorbed,
    /// A second wake for one suspension of a live coroutine: a bug.
    DoubleWake(&'static Location<'static>),
    /// The coroutine finished and was not cancelled: a bug.
    AfterFinish,
}

/// The waker's side of the protocol in the module docs. `finished` reads
/// whether the coroutine has finished.
#[inline]
pub(crate) fn decide_wake(
    mark: &WakeMark,
    cancel: &AtomicBool,
    finished: impl Fn() -> bool,
    site: &'static Location<'static>,
) -> WakeDecision {
    loop {
        if finished() {
            // Acquire: pairs with the Release store of `cancel`.
            return if cancel.load(Acquire) {
                WakeDecision::Absorbed
            } else {
                WakeDecision::AfterFinish
            };
        }
        let Err(first) = mark.claim(site) else {
            return WakeDecision::Deliver;
        };
        // Acquire: pairs with the Release store of `cancel`, so every clear
        // before it is visible to the re-read below.
        if !cancel.load(Acquire) {
            return WakeDecision::DoubleWake(first);
        }
        // Pairs with the fence in `resumed_cancelled`.
        fence(SeqCst);
        if !mark.site.load(Relaxed).is_null() {
            return WakeDecision::Absorbed;
        }
    }
}

/// The coroutine's side: called when it resumes; true if it is cancelled
/// (then the fence of the module docs has been issued).
#[inline]
pub(crate) fn resumed_cancelled(cancel: &AtomicBool) -> bool {
    if !cancel.load(Relaxed) {
        return false;
    }
    // Pairs with the fence in `decide_wake`.
    fence(SeqCst);
    true
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// One suspension of a cancelled coroutine's wait: a granter publishes
    /// the grant and wakes; the canceller marks `cancel` and claims the
    /// resumption too. The "coroutine" is resumed for every claim won and
    /// re-checks the grant after each resumption: its last re-check must
    /// see the grant (an absorbed wake never loses it), and no claim is won
    /// twice for one pending mark.
    #[test]
    fn an_absorbed_wake_never_loses_the_condition() {
        loom::model(|| {
            let mark = Arc::new(WakeMark::new());
            let cancel = Arc::new(AtomicBool::new(false));
            let granted = Arc::new(AtomicBool::new(false));
            let done = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
            let site = Location::caller();
            let granter = {
                let (mark, cancel, granted, done) =
                    (mark.clone(), cancel.clone(), granted.clone(), done.clone());
                thread::spawn(move || {
                    granted.store(true, Relaxed);
                    let d = decide_wake(&mark, &cancel, || false, site);
                    done.fetch_add(1, Release);
                    d
                })
            };
            let canceller = {
                let (mark, cancel, done) = (mark.clone(), cancel.clone(), done.clone());
                thread::spawn(move || {
                    cancel.store(true, Release);
                    let _ = mark.claim(site);
                    done.fetch_add(1, Release);
                })
            };
            let mut last_saw_grant = None;
            loop {
                let finished = done.load(Acquire) == 2;
                if mark.pending().is_some() {
                    mark.clear();
                    resumed_cancelled(&cancel);
                    last_saw_grant = Some(granted.load(Relaxed));
                } else if finished {
                    break;
                } else {
                    thread::yield_now();
                }
            }
            let decision = granter.join().unwrap();
            canceller.join().unwrap();
            assert!(
                decision == WakeDecision::Deliver || decision == WakeDecision::Absorbed,
                "{decision:?}"
            );
            assert_eq!(
                last_saw_grant,
                Some(true),
                "the last resumption saw the grant"
            );
        });
    }

    /// Without cancellation a second claim is a double wake.
    #[test]
    fn a_second_wake_of_a_live_coroutine_is_refused() {
        loom::model(|| {
            let mark = WakeMark::new();
            let cancel = AtomicBool::new(false);
            let site = Location::caller();
            assert_eq!(
                decide_wake(&mark, &cancel, || false, site),
                WakeDecision::Deliver
            );
            assert_eq!(
                decide_wake(&mark, &cancel, || false, site),
                WakeDecision::DoubleWake(site)
            );
            mark.clear();
            assert_eq!(
                decide_wake(&mark, &cancel, || true, site),
                WakeDecision::AfterFinish
            );
        });
    }
}
