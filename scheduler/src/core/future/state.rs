//! The await state of a coroutine: how a `Waker` turns into at most one
//! `aio_co_wake` per suspension.
//!
//! # The "poll, then park" protocol
//!
//! A coroutine that awaits a future ([`crate::wait`]) polls it on its own
//! stack and suspends when it is pending. The future's `Waker` may be called
//! any number of times, from any thread, before, during or after the poll,
//! and long after the wait is over (a stale waker kept by a channel).
//! `Coroutine::wake` accepts one wake per suspension and panics on a second;
//! and a coroutine that has moved on to wait on something else (a CoMutex,
//! `suspend()`) must never be resumed by a stale waker, because the thing it
//! waits on relies on being its only waker. So wakers do not call
//! `aio_co_wake` directly: they go through one word of the control block,
//! `CoInner::await_state`.
//!
//! | state | meaning | who leaves it, how |
//! |---|---|---|
//! | `IDLE` | not inside a wait (or inside a nested wait that already ended) | the coroutine: store `POLLING` at the start of a wait |
//! | `POLLING` | the coroutine is inside `poll` | a waker: swap to `NOTIFIED`; the coroutine: CAS to `WAITING` |
//! | `WAITING` | the coroutine suspends (or has suspended) until woken | the one waker whose swap reads it: `NOTIFIED`, then one `aio_co_wake` |
//! | `NOTIFIED` | a wake arrived for this wait; the coroutine polls again | the coroutine: swap to `POLLING` |
//!
//! **Coroutine** ([`run`]): store `POLLING`; poll; if ready, store `IDLE`
//! and return. Otherwise CAS `POLLING → WAITING`. If the CAS fails, a waker
//! (or a nested wait, which leaves `IDLE`) got in during the poll: poll
//! again without suspending. If it succeeds, suspend; on resuming, swap the
//! state back to `POLLING` and poll again.
//!
//! **Waker** ([`notify`]): swap the state to `NOTIFIED`. Only if the swap
//! read `WAITING` does it issue the real wake. Every other value means no
//! real wake is owed: `POLLING` (the coroutine's CAS will fail and it polls
//! again), `NOTIFIED` (another waker already owns this suspension's wake),
//! `IDLE` (nobody waits: a stale waker; the `NOTIFIED` it leaves is
//! overwritten by the next wait's `POLLING` store, or at worst makes that
//! wait poll once more).
//!
//! **One real wake per suspension.** The state enters `WAITING` only by the
//! coroutine's CAS, once per suspension, and every waker leaves it with an
//! unconditional swap; RMWs on one atomic are totally ordered, so exactly one
//! swap reads each `WAITING`. A second real wake would need a second
//! `WAITING`, i.e. a second suspension.
//!
//! **Never a wake for another suspension.** A waker can issue its real wake
//! only by reading `WAITING`, which exists only while the coroutine is inside
//! a wait (between its CAS and its resumption). A stale waker therefore can
//! at most resume a *later wait* early, and a wait tolerates that: it just
//! polls its future again, which the `Future` contract allows. A coroutine
//! suspended on a CoMutex or in `suspend()` is never in `WAITING`.
//!
//! **No lost wake.** Suppose an event happens and its waker is called after
//! the coroutine's poll missed it. The waker's swap is ordered in the state's
//! modification order either before the coroutine's `POLLING → WAITING` CAS
//! (then it wrote `NOTIFIED`, the CAS fails and the coroutine polls again)
//! or after it (then it reads `WAITING`, or `NOTIFIED` written by an earlier
//! waker whose real wake is pending; either way the coroutine resumes and
//! polls again).
//!
//! **Orderings.** The wakers' swap is `AcqRel`: its Release half pairs with
//! the Acquire of the coroutine's failed CAS and of its swap after resuming,
//! so the poll that follows a wake sees what the waker's thread did before
//! calling `wake` (the `Future` contract). Because every waker writes (a
//! swap, even when the value does not change), each is a release head that a
//! later Acquire read of its value synchronises with; a plain load in the
//! waker would not publish anything. The coroutine's stores of `POLLING` at
//! the start and `IDLE` at the end are Relaxed: neither publishes data to a
//! waker, and the real wake's hand-off queue orders the suspension itself.
//! The successful `POLLING → WAITING` CAS is Relaxed for the same reason.
//!
//! **Self-waking futures.** A future that wakes itself during `poll` and
//! returns pending (a cooperative yield) makes the CAS fail every time; a
//! coroutine that re-polled at once forever would starve its context. The
//! first failure in a row re-polls at once (the usual cause is a real event
//! racing with the poll); later ones yield to the context's other ready
//! coroutines first ([`Park::yield_now`]). While yielding, the state stays
//! `NOTIFIED`, so wakers still issue no real wake.
//!
//! **Cancellation.** A coroutine unwound while suspended in a wait (its last
//! handle dropped, its context shut down) drops the future during the unwind,
//! on its home thread; [`run`]'s guard stores `IDLE` on the way out, so
//! later wakes are stale. A waker that read `WAITING` just before the unwind
//! began issues its real wake through the non-panicking path: the coroutine
//! is already scheduled (by the cancellation) or finished, and the wake is
//! dropped, as for any other primitive's waker racing with a shutdown.
//!
//! The suspend/wake side is a trait ([`Park`]) so that `loom_tests` below
//! model-checks this very loop with loom threads standing in for the
//! coroutine and its wakers.

use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::task::Poll;

use crate::sync::AtomicUsize;

/// Not in a wait.
pub(crate) const IDLE: usize = 0;
/// Inside the future's `poll`.
pub(crate) const POLLING: usize = 1;
/// Suspended (or about to suspend) until a waker's real wake.
pub(crate) const WAITING: usize = 2;
/// A wake arrived: poll again.
pub(crate) const NOTIFIED: usize = 3;

/// How the awaiting coroutine suspends.
pub(crate) trait Park {
    /// Suspends until the real wake issued by [`notify`]'s `Wake` answer
    /// (which may have been issued already: it then returns at once).
    fn park(&self);
    /// Lets the other ready coroutines of the context run, then continues.
    fn yield_now(&self);
}

/// A waker's answer: whether it owes the coroutine its one real wake.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Notify {
    /// The coroutine is suspended in a wait: issue `aio_co_wake` now.
    Wake,
    /// The coroutine is polling, already notified, or not waiting: nothing
    /// to do.
    Absorbed,
}

/// A waker was called (any thread, any number of times).
#[inline]
pub(crate) fn notify(state: &AtomicUsize) -> Notify {
    // AcqRel: Release pairs with the Acquire of the coroutine's failed CAS
    // and of its swap after resuming, in `run`; Acquire orders this waker
    // after the wait it observes (nothing more is read, but it keeps the
    // swap a full participant of the state's release sequences).
    if state.swap(NOTIFIED, AcqRel) == WAITING {
        Notify::Wake
    } else {
        Notify::Absorbed
    }
}

/// Stores `IDLE` when a wait ends, normally or by unwinding.
struct Reset<'a>(&'a AtomicUsize);

impl Drop for Reset<'_> {
    #[inline]
    fn drop(&mut self) {
        // Relaxed: wakers read nothing the coroutine publishes (see the
        // module docs, "Orderings").
        self.0.store(IDLE, Relaxed);
    }
}

/// The coroutine's side: polls until ready, parking in between.
///
/// `state` is the running coroutine's await state; `poll` polls the future
/// with a waker whose wake calls [`notify`] on the same state.
#[inline]
pub(crate) fn run<T, P: Park>(
    state: &AtomicUsize,
    park: &P,
    mut poll: impl FnMut() -> Poll<T>,
) -> T {
    // Relaxed: see "Orderings"; overwrites a stale waker's `NOTIFIED`.
    state.store(POLLING, Relaxed);
    let reset = Reset(state);
    let mut raced = 0u32;
    loop {
        if let Poll::Ready(v) = poll() {
            drop(reset);
            return v;
        }
        // Failure Acquire: pairs with the Release of the waker's swap, so the
        // next poll sees what that waker published before waking.
        match state.compare_exchange(POLLING, WAITING, Relaxed, Acquire) {
            Ok(_) => {
                raced = 0;
                park.park();
            }
            Err(_) => {
                raced += 1;
                if raced > 1 {
                    park.yield_now();
                }
            }
        }
        // Acquire: pairs with the Release of the swap of whichever waker
        // woke us (or notified us during the poll).
        let _ = state.swap(POLLING, Acquire);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// Counts parks and yields; a park can be made to panic, standing in
    /// for the cancellation unwind that `suspend` starts.
    #[derive(Default)]
    struct Probe {
        parks: Cell<u32>,
        yields: Cell<u32>,
        unwind_in_park: bool,
    }

    impl Park for Probe {
        fn park(&self) {
            self.parks.set(self.parks.get() + 1);
            if self.unwind_in_park {
                std::panic::panic_any("cancelled");
            }
        }
        fn yield_now(&self) {
            self.yields.set(self.yields.get() + 1);
        }
    }

    #[test]
    fn a_ready_future_neither_parks_nor_yields() {
        let state = AtomicUsize::new(IDLE);
        let probe = Probe::default();
        assert_eq!(run(&state, &probe, || Poll::Ready(7)), 7);
        assert_eq!((probe.parks.get(), probe.yields.get()), (0, 0));
        assert_eq!(state.load(Relaxed), IDLE);
    }

    #[test]
    fn a_wake_during_poll_re_polls_without_parking() {
        let state = AtomicUsize::new(IDLE);
        let probe = Probe::default();
        let mut polls = 0;
        let v = run(&state, &probe, || {
            polls += 1;
            if polls == 1 {
                assert_eq!(notify(&state), Notify::Absorbed, "polling: no real wake");
                Poll::Pending
            } else {
                Poll::Ready(polls)
            }
        });
        assert_eq!(v, 2);
        assert_eq!((probe.parks.get(), probe.yields.get()), (0, 0));
    }

    #[test]
    fn a_self_waking_future_yields_after_its_first_re_poll() {
        let state = AtomicUsize::new(IDLE);
        let probe = Probe::default();
        let mut polls = 0;
        run(&state, &probe, || {
            polls += 1;
            if polls < 5 {
                let _ = notify(&state);
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        });
        // Four failed CASes: the first re-polls at once, the other three
        // let the context run first.
        assert_eq!((probe.parks.get(), probe.yields.get()), (0, 3));
    }

    #[test]
    fn only_a_waker_that_finds_the_coroutine_waiting_owes_a_wake() {
        let state = AtomicUsize::new(IDLE);
        assert_eq!(notify(&state), Notify::Absorbed, "idle: stale");
        state.store(WAITING, Relaxed);
        assert_eq!(notify(&state), Notify::Wake);
        assert_eq!(notify(&state), Notify::Absorbed, "already notified");
        assert_eq!(state.load(Relaxed), NOTIFIED);
    }

    #[test]
    fn an_unwind_while_parked_leaves_the_state_idle() {
        let state = AtomicUsize::new(IDLE);
        let probe = Probe {
            unwind_in_park: true,
            ..Probe::default()
        };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run(&state, &probe, || Poll::<()>::Pending)
        }));
        assert!(r.is_err());
        assert_eq!(probe.parks.get(), 1);
        assert_eq!(state.load(Relaxed), IDLE, "later wakes are stale");
        assert_eq!(notify(&state), Notify::Absorbed);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! The coroutine is a loom thread; its suspension is a one-slot mailbox
    //! that panics if a second wake arrives for one suspension, exactly like
    //! `Coroutine::wake`.

    use super::*;
    use loom::sync::atomic::{AtomicBool, AtomicUsize};
    use loom::sync::{Arc, Condvar, Mutex};
    use loom::thread;
    use std::sync::atomic::Ordering::Release;

    /// Why a parked "coroutine" was resumed.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Cause {
        /// A real wake from `notify`.
        Await,
        /// The owner of some other thing the coroutine waits on.
        Other,
    }

    /// One suspension's mailbox: `Coroutine::wake` rules (a wake may come
    /// before the suspension; a second one for the same suspension is a
    /// bug).
    #[derive(Default)]
    struct Mailbox {
        slot: Mutex<Option<Cause>>,
        cv: Condvar,
        wakes: AtomicUsize,
    }

    impl Mailbox {
        fn wake(&self, cause: Cause) {
            let mut slot = self.slot.lock().unwrap();
            assert!(slot.is_none(), "one wake per suspension: had {slot:?}");
            *slot = Some(cause);
            self.wakes.fetch_add(1, Relaxed);
            self.cv.notify_one();
        }

        fn wait(&self) -> Cause {
            let mut slot = self.slot.lock().unwrap();
            loop {
                if let Some(c) = slot.take() {
                    return c;
                }
                slot = self.cv.wait(slot).unwrap();
            }
        }
    }

    struct Co {
        state: AtomicUsize,
        mailbox: Mailbox,
        parks: AtomicUsize,
    }

    impl Co {
        fn new() -> Arc<Co> {
            Arc::new(Co {
                state: AtomicUsize::new(IDLE),
                mailbox: Mailbox::default(),
                parks: AtomicUsize::new(0),
            })
        }

        /// A waker's `wake`.
        fn waker_wake(&self) {
            if notify(&self.state) == Notify::Wake {
                self.mailbox.wake(Cause::Await);
            }
        }
    }

    impl Park for Co {
        fn park(&self) {
            self.parks.fetch_add(1, Relaxed);
            let cause = self.mailbox.wait();
            assert_eq!(cause, Cause::Await, "resumed from a wait by {cause:?}");
        }
        fn yield_now(&self) {
            thread::yield_now();
        }
    }

    /// A future in the style of a oneshot channel: the consumer registers
    /// its waker under a lock at its first poll and keeps it, the producer
    /// sets `ready` and calls the waker only if one was registered. `ready`
    /// is Relaxed on purpose: the future relies on the executor's guarantee
    /// that a wake happens before the poll it causes, which is the await
    /// state's job, and a re-poll takes no lock that would hide a missing
    /// Acquire/Release pair.
    #[derive(Default)]
    struct Fut {
        ready: AtomicBool,
        registered: Mutex<bool>,
    }

    impl Fut {
        fn poll(&self, first: &mut bool) -> Poll<()> {
            if std::mem::take(first) {
                *self.registered.lock().unwrap() = true;
            }
            if self.ready.load(Relaxed) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }

        /// Completes the future; true if a waker was registered (and woken).
        fn complete(&self, co: &Co) -> bool {
            self.ready.store(true, Relaxed);
            let registered = *self.registered.lock().unwrap();
            if registered {
                co.waker_wake();
            }
            registered
        }

        /// A spurious wake from whoever holds the registered waker.
        fn spurious(&self, co: &Co) {
            if *self.registered.lock().unwrap() {
                co.waker_wake();
            }
        }
    }

    /// One thread completes the future, another wakes spuriously: the
    /// coroutine returns (no lost wake: loom reports a deadlock otherwise),
    /// never gets two wakes for one suspension (the mailbox panics), and
    /// every real wake is consumed by the suspension it was issued for.
    #[test]
    fn wakers_from_two_threads_give_one_wake_per_suspension() {
        loom::model(|| {
            let co = Co::new();
            let fut = Arc::new(Fut::default());
            let wakers: Vec<_> = (0..2)
                .map(|i| {
                    let (co, fut) = (co.clone(), fut.clone());
                    thread::spawn(move || {
                        if i == 0 {
                            fut.complete(&co);
                        } else {
                            fut.spurious(&co);
                        }
                    })
                })
                .collect();
            let mut first = true;
            run(&co.state, &*co, || fut.poll(&mut first));
            for w in wakers {
                w.join().unwrap();
            }
            // A waker that came after the wait ended leaves a harmless
            // `NOTIFIED` (the next wait overwrites it).
            let end = co.state.load(Relaxed);
            assert!(end == IDLE || end == NOTIFIED, "ended in state {end}");
            // Each waker can cost at most one suspension, and each
            // suspension took exactly one wake.
            let wakes = co.mailbox.wakes.load(Relaxed);
            assert!(wakes <= 2, "two wakers, {wakes} wakes");
            assert_eq!(wakes, co.parks.load(Relaxed), "one wake per suspension");
            assert_eq!(*co.mailbox.slot.lock().unwrap(), None, "a wake left over");
        });
    }

    /// A waker kept after its wait returned, woken while the coroutine is
    /// suspended on something else, must not resume it: the other thing's
    /// owner is the only one that does.
    #[test]
    fn stale_waker_never_resumes_another_suspension() {
        loom::model(|| {
            let co = Co::new();
            let fut = Arc::new(Fut::default());
            let producer = {
                let (co, fut) = (co.clone(), fut.clone());
                thread::spawn(move || {
                    fut.complete(&co);
                    // Stale from here on, or about to be.
                    fut.spurious(&co);
                })
            };
            let mut first = true;
            run(&co.state, &*co, || fut.poll(&mut first));
            // Now suspended "on a CoMutex": only its owner may resume us. A
            // stale real wake would either resume this park (`Await`) or
            // collide with the owner's wake in the mailbox; both panic. The
            // owner starts only now, as a CoMutex's unlocker can only wake a
            // waiter that queued itself.
            let owner = {
                let co = co.clone();
                thread::spawn(move || co.mailbox.wake(Cause::Other))
            };
            assert_eq!(co.mailbox.wait(), Cause::Other);
            producer.join().unwrap();
            owner.join().unwrap();
            assert_eq!(*co.mailbox.slot.lock().unwrap(), None, "a wake left over");
        });
    }
}
