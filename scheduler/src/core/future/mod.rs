//! Awaiting a `Future` from synchronous-looking code: [`wait`].
//!
//! Inside a coroutine, [`wait`] polls the future on the coroutine's own
//! stack and suspends while it is pending; the future's `Waker` resumes it
//! with `aio_co_wake` semantics from any thread (handed over to its home
//! context), at most once per suspension, and never while the coroutine waits
//! on something else (`state.rs` has the protocol and its loom model). The
//! waker is the coroutine's control block (`waker.rs`): no allocation per
//! wait or per wake.
//!
//! Outside a coroutine, [`wait`] blocks the calling thread, driving its own
//! [`AioContext`] meanwhile (as [`JoinHandle::join`](crate::JoinHandle::join)
//! does), so coroutines homed on the thread keep running and one of them can
//! be what completes the future.
//!
//! The other direction, awaiting a coroutine from async code, is
//! [`JoinHandle`](crate::JoinHandle)'s `Future` implementation.

mod blocking;
pub(crate) mod state;
mod waker;

pub(crate) use waker::wake_queued;

use std::future::Future;
use std::pin::pin;
use std::task::Context;

use crate::core::control::CoInner;
use crate::core::tls;

/// Waits for `fut` to complete and returns its output.
///
/// Inside a coroutine it suspends the coroutine while the future is pending
/// (other coroutines of its context run meanwhile) and resumes it when the
/// future's waker is called, from any thread: a wake from another thread is
/// handed to the coroutine's home context, so the coroutine, and the
/// future, stay on their home thread. Outside a coroutine it blocks the
/// thread, running the thread's [`AioContext`](crate::AioContext) until the
/// future completes.
///
/// The future is polled on the calling stack, so it need not be `Send` or
/// `'static`: it may borrow locals of the coroutine.
///
/// ```
/// use coscheduler::{AioContext, wait};
///
/// let (tx, rx) = futures::channel::oneshot::channel::<u32>();
/// let h = AioContext::current().spawn(move || wait(rx).unwrap() * 2);
/// std::thread::spawn(move || tx.send(21).unwrap());
/// assert_eq!(h.join().unwrap(), 42);
///
/// // Outside a coroutine, the thread blocks (driving its context).
/// assert_eq!(wait(async { 6 * 7 }), 42);
/// ```
///
/// # Wakes
///
/// A waker may be called any number of times, also after `wait` returned:
/// only the first call while the coroutine is suspended in this wait resumes
/// it; calls during a poll make it poll again without suspending; a waker of
/// a finished wait resumes at most a later `wait` early (which then polls
/// its future again), never a coroutine suspended on anything else. A future
/// that wakes itself and stays pending (a cooperative yield) is polled again
/// after the context's other ready coroutines had their turn.
///
/// # Cancellation
///
/// A coroutine unwound while suspended here (its last handle and waker
/// dropped, or its runtime shut down) drops the future during the unwind, on
/// its home thread. A waker keeps its coroutine alive: a future that stores
/// its own waker and that nothing else can complete keeps the coroutine
/// suspended until its runtime shuts down.
///
/// # Panics
/// With the future's panic, which unwinds the coroutine (or the calling
/// thread) like any panic in its body.
pub fn wait<F: Future>(fut: F) -> F::Output {
    let co = tls::current();
    if co.is_null() {
        return blocking::wait(fut);
    }
    // SAFETY: `co` is this thread's running coroutine, and the waker is only
    // used by the polls below, which all run while it runs.
    let waker = unsafe { waker::borrowed(co) };
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    // SAFETY: the running coroutine is alive until it finishes, which is
    // after this call returns or unwinds.
    let state = unsafe { &(*co).await_state };
    state::run(state, &Suspender(co), || fut.as_mut().poll(&mut cx))
}

/// Parks the running coroutine for the await protocol.
struct Suspender(*const CoInner);

impl state::Park for Suspender {
    #[inline]
    fn park(&self) {
        crate::core::coroutine::set_wait_reason("future", None);
        // SAFETY: `wait` made this from its running coroutine, which is still
        // the running coroutine while its own wait calls `park`.
        unsafe { crate::core::coroutine::suspend_running(self.0) };
        crate::core::coroutine::clear_wait_reason();
    }

    #[inline]
    fn yield_now(&self) {
        crate::yield_now();
    }
}
