//! [`wait`](super::wait) outside a coroutine: block the thread, driving its
//! home.
//!
//! The waker sets a flag and `aio_notify`s the thread's context. The loop
//! polls the future, and while the flag is clear runs blocking turns of the
//! context: a notification ends a blocking turn (or the next one, when it
//! came before the turn started), so a wake is never slept through.
//!
//! Each blocking wait allocates its waker (one `Arc`): waits can nest (a
//! future whose `poll` itself waits), and a flag shared by the nested waits
//! could be consumed by the wrong one. The no-allocation rule is for the
//! coroutine path, where the control block is the waker.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::task::{Context, Poll, Wake, Waker};

use crate::core::home::{self, Home};

/// Wakes a thread blocked in [`wait`].
struct ThreadSignal {
    home: Arc<Home>,
    woken: AtomicBool,
}

impl Wake for ThreadSignal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // AcqRel: Release pairs with the Acquire swap in `wait`, so the next
        // poll sees what the waker's thread did before waking; an RMW even
        // when the flag is already set, so that every waker publishes.
        if !self.woken.swap(true, AcqRel) {
            self.home.notify();
        }
    }
}

/// Polls `fut` to completion on this thread, running its context between
/// polls.
pub(super) fn wait<F: Future>(fut: F) -> F::Output {
    let signal = Arc::new(ThreadSignal {
        home: home::current(),
        woken: AtomicBool::new(false),
    });
    let waker = Waker::from(signal.clone());
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        // Acquire: pairs with the Release of the waker's swap.
        if !signal.woken.swap(false, Acquire) {
            home::block_until(|| signal.woken.load(Relaxed));
            // An RMW, so that it acquires from every waker's swap up to now.
            signal.woken.swap(false, Acquire);
        }
    }
}
