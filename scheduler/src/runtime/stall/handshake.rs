//! The capture hand-shake between the stall watchdog and a signal handler
//! running on the stalled thread.
//!
//! One request is in flight at a time, process-wide (the requester holds a
//! lock, see `capture`); the data lives in a preallocated slot that the
//! handler fills without allocating.
//!
//! # States of `state`
//!
//! | value | meaning | who may touch `data` |
//! |---|---|---|
//! | `IDLE` | no request | the requester, between requests |
//! | `REQUESTED` | `target` names the thread asked to answer | nobody |
//! | `CAPTURING` | that thread's handler claimed the request | the handler (writes) |
//! | `DONE` | the handler finished writing | the requester (reads) |
//!
//! Transitions:
//! - **request** (requester): store `target` (Relaxed), store `REQUESTED`
//!   (Release: pairs with the handler's Acquire claim, so a handler that
//!   claims sees this request's `target` and no read of the previous
//!   request's data can overlap its writes);
//! - **serve** (handler on the target thread): load `state` (Acquire); if it
//!   is `REQUESTED` and `target` is this thread, CAS `REQUESTED` →
//!   `CAPTURING` (Acquire, same pairing); write `data`; store `DONE`
//!   (Release: pairs with the requester's Acquire load in `poll`, which
//!   publishes the data);
//! - **take** (requester, after seeing `DONE`): read `data`, store `IDLE`
//!   (Relaxed: the next `REQUESTED` store is a Release and orders these
//!   reads before any later handler's writes);
//! - **abandon** (requester, when the thread does not answer in time): CAS
//!   `REQUESTED` → `IDLE`. If the CAS fails, the handler has claimed the
//!   request and is writing: the requester waits for `DONE` and takes the
//!   data after all (writing is bounded: an unwind of a bounded number of
//!   frames).
//!
//! # Why no write of `data` overlaps a read
//!
//! Only the claim CAS lets a handler write, and it succeeds only from
//! `REQUESTED`, which the requester sets after its last read of the
//! previous request (Release) and never again until it has seen `DONE` or
//! won the abandon CAS. A late signal — one that arrives after its request
//! was abandoned, or that was meant for another thread — finds `IDLE`, a
//! foreign `target`, or a claimed request, and leaves `data` alone.
//! Modelled in `loom_tests`.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use crate::sync::{AtomicU8, AtomicU64};

const IDLE: u8 = 0;
const REQUESTED: u8 = 1;
const CAPTURING: u8 = 2;
const DONE: u8 = 3;

#[cfg(loom)]
use loom::cell::UnsafeCell;

/// `std`'s `UnsafeCell` with loom's closure-based access, so that the same
/// protocol code runs under the model.
#[cfg(not(loom))]
struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    const fn new(value: T) -> UnsafeCell<T> {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }
    fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }
    fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// A slot that one thread asks another to fill from a signal handler.
pub(crate) struct Handshake<T> {
    state: AtomicU8,
    /// The thread asked to answer (its kernel thread id).
    target: AtomicU64,
    data: UnsafeCell<T>,
}

// SAFETY: `data` is written only by the handler that won the claim CAS and
// read only by the requester after `DONE` (module docs); `T: Send` because
// its value moves between those threads.
unsafe impl<T: Send> Sync for Handshake<T> {}

/// What a handler did with a signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub(crate) enum Served {
    /// It filled the slot for the request addressed to it.
    Filled,
    /// No request was addressed to this thread: the signal belongs to
    /// someone else (or is a late one of ours).
    NotOurs,
}

/// Where a request stands when the requester looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub(crate) enum Poll {
    /// The data is there: call [`Handshake::take`].
    Done,
    /// The handler has claimed the request and is writing.
    Capturing,
    /// Nobody answered yet.
    Pending,
}

impl<T> Handshake<T> {
    /// An idle slot holding `data` (overwritten by every capture).
    #[cfg(not(loom))]
    pub(crate) const fn new(data: T) -> Handshake<T> {
        Handshake {
            state: AtomicU8::new(IDLE),
            target: AtomicU64::new(0),
            data: UnsafeCell::new(data),
        }
    }

    /// An idle slot holding `data` (overwritten by every capture).
    #[cfg(loom)]
    pub(crate) fn new(data: T) -> Handshake<T> {
        Handshake {
            state: AtomicU8::new(IDLE),
            target: AtomicU64::new(0),
            data: UnsafeCell::new(data),
        }
    }

    /// Requester: asks thread `target` to fill the slot. The caller then
    /// signals that thread.
    ///
    /// # Panics
    /// If a request is already in flight (the caller's lock prevents it).
    pub(crate) fn request(&self, target: u64) {
        let state = self.state.load(Relaxed);
        assert_eq!(
            state, IDLE,
            "capture requested while another is in flight; state = {state}"
        );
        self.target.store(target, Relaxed);
        // Release: pairs with the Acquire load and claim in `serve`.
        self.state.store(REQUESTED, Release);
    }

    /// Handler, on thread `me`: fills the slot if the request in flight is
    /// addressed to this thread. Async-signal-safe if `fill` is.
    pub(crate) fn serve(&self, me: u64, fill: impl FnOnce(&mut T)) -> Served {
        // Acquire: pairs with the Release store in `request`.
        if self.state.load(Acquire) != REQUESTED || self.target.load(Relaxed) != me {
            return Served::NotOurs;
        }
        // Acquire: as above; the CAS makes this handler the only writer.
        if self
            .state
            .compare_exchange(REQUESTED, CAPTURING, Acquire, Relaxed)
            .is_err()
        {
            // Abandoned meanwhile.
            return Served::NotOurs;
        }
        // SAFETY: the claim CAS gives this handler exclusive access to the
        // data until it stores `DONE` (module docs).
        self.data.with_mut(|p| fill(unsafe { &mut *p }));
        // Release: pairs with the Acquire load in `poll`.
        self.state.store(DONE, Release);
        Served::Filled
    }

    /// Requester: where the request stands.
    pub(crate) fn poll(&self) -> Poll {
        // Acquire: pairs with the Release store of `DONE` in `serve`.
        match self.state.load(Acquire) {
            DONE => Poll::Done,
            CAPTURING => Poll::Capturing,
            REQUESTED => Poll::Pending,
            other => panic!("capture polled with no request in flight; state = {other}"),
        }
    }

    /// Requester: gives up a request nobody claimed. Returns
    /// [`Poll::Pending`] if it was withdrawn (the slot is idle again),
    /// otherwise what `poll` would (the handler got there first: wait for
    /// `Done` and `take`).
    pub(crate) fn abandon(&self) -> Poll {
        // Relaxed: winning leaves `data` untouched, so nothing is published.
        match self
            .state
            .compare_exchange(REQUESTED, IDLE, Relaxed, Relaxed)
        {
            Ok(_) => Poll::Pending,
            Err(_) => self.poll(),
        }
    }

    /// Requester, after [`Poll::Done`]: reads the data and makes the slot
    /// idle again.
    pub(crate) fn take<R>(&self, read: impl FnOnce(&T) -> R) -> R {
        debug_assert_eq!(self.state.load(Relaxed), DONE);
        // SAFETY: `DONE` was observed with Acquire: the handler's writes are
        // visible and it writes no more; no other handler can claim before
        // the next `request` (module docs).
        let out = self.data.with(|p| read(unsafe { &*p }));
        // Relaxed: the next request's Release store orders these reads.
        self.state.store(IDLE, Relaxed);
        out
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// The payload: a value and its complement, written non-atomically, so
    /// a torn read or an overlapping write would show (and loom's cell
    /// checker flags any unsynchronised access).
    #[derive(Default)]
    struct Pair(u64, u64);

    /// A requester asks thread 7 to answer, while thread 7's handler and a
    /// late signal on thread 9 race with it; the requester abandons if it
    /// sees nothing at first. Every request ends exactly once: filled and
    /// read whole, or withdrawn with the slot untouched.
    #[test]
    fn each_request_ends_once_and_whole() {
        loom::model(|| {
            let slot = Arc::new(Handshake::new(Pair::default()));
            slot.request(7);
            let handler = {
                let slot = slot.clone();
                thread::spawn(move || {
                    slot.serve(7, |p| {
                        p.0 = 42;
                        p.1 = !42;
                    })
                })
            };
            let stranger = {
                let slot = slot.clone();
                thread::spawn(move || slot.serve(9, |p| p.0 = 1))
            };
            let outcome = match slot.poll() {
                Poll::Done => Some(slot.take(|p| (p.0, p.1))),
                Poll::Capturing | Poll::Pending => match slot.abandon() {
                    Poll::Pending => None,
                    Poll::Capturing | Poll::Done => {
                        while slot.poll() != Poll::Done {
                            thread::yield_now();
                        }
                        Some(slot.take(|p| (p.0, p.1)))
                    }
                },
            };
            let served = handler.join().unwrap();
            assert_eq!(stranger.join().unwrap(), Served::NotOurs);
            match outcome {
                Some(pair) => {
                    assert_eq!(pair, (42, !42), "a whole answer");
                    assert_eq!(served, Served::Filled);
                }
                None => {
                    assert_eq!(served, Served::NotOurs, "withdrawn, never written");
                    slot.take_idle_check();
                }
            }
            // The slot is idle again: the next request is accepted.
            slot.request(9);
        });
    }

    impl<T> Handshake<T> {
        /// After a withdrawal the slot is idle.
        fn take_idle_check(&self) {
            assert_eq!(self.state.load(Relaxed), IDLE);
        }
    }

    /// Two requests in a row to the same thread, the first withdrawn and
    /// its signal delivered late: that handler finds the slot idle, or
    /// fills the second request (which is addressed to it), and never
    /// writes during a read.
    #[test]
    fn a_late_signal_never_overlaps_a_read() {
        loom::model(|| {
            let slot = Arc::new(Handshake::new(Pair::default()));
            // The first request goes unanswered and is withdrawn; its
            // signal is delivered later, by `late`.
            slot.request(7);
            assert_eq!(slot.abandon(), Poll::Pending);
            let late = {
                let slot = slot.clone();
                thread::spawn(move || {
                    slot.serve(7, |p| {
                        p.0 = 5;
                        p.1 = !5;
                    })
                })
            };
            slot.request(7);
            let mut filled = 0;
            loop {
                match slot.poll() {
                    Poll::Done => {
                        let pair = slot.take(|p| (p.0, p.1));
                        assert_eq!(pair, (5, !5));
                        filled += 1;
                        break;
                    }
                    _ if slot.abandon() == Poll::Pending => break,
                    _ => thread::yield_now(),
                }
            }
            let served = late.join().unwrap();
            assert_eq!(filled, usize::from(served == Served::Filled));
        });
    }
}
