//! `JoinHandle` as a `Future`: async code awaits a coroutine.
//!
//! Polling registers the task's `Waker` as the slot's waiter (replacing the
//! one of an earlier poll, unless it would wake the same task), and
//! [`JoinSlot::complete`](super::JoinSlot::complete) wakes it once the
//! coroutine has finished. Completion happens where the coroutine ends, on
//! its home thread (or, for a coroutine that never ran, wherever it was
//! cancelled), so the waker is called from there.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::{Completion, JoinError, JoinHandle, Waiter};

/// Awaits the coroutine's result: `Ok` with its value, or the
/// [`JoinError`] that [`join`](JoinHandle::join) would return.
///
/// ```
/// let rt = coscheduler::Runtime::builder().threads(1).build().unwrap();
/// let h = rt.spawn(|| 6 * 7);
/// let v = futures::executor::block_on(h).unwrap();
/// assert_eq!(v, 42);
///
/// let h = rt.spawn(|| -> u32 { panic!("boom") });
/// let e = futures::executor::block_on(h).unwrap_err();
/// assert_eq!(e.panic_message(), Some("boom"));
/// ```
///
/// # Panics
/// If polled again after it returned `Ready`.
impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let replaced = {
            let mut st = self.slot().lock();
            if let Some(r) = st.result.take() {
                return Poll::Ready(into_result(r));
            }
            assert!(
                !st.completed,
                "JoinHandle of coroutine {} polled after it returned its result",
                self.co.id()
            );
            match &st.waiter {
                Some(Waiter::Task(w)) if w.will_wake(cx.waker()) => None,
                _ => st.waiter.replace(Waiter::Task(cx.waker().clone())),
            }
        };
        // Dropped outside the slot's lock: a waker's drop can run arbitrary
        // code (the last reference of a coroutine's waker unwinds it).
        drop(replaced);
        Poll::Pending
    }
}

/// The typed result of a completion.
fn into_result<T>(completion: Completion) -> Result<T, JoinError> {
    match completion {
        Completion::Value(v) => {
            // SAFETY: only `joinable::<F, T>`'s wrapper stores a value in a
            // slot, boxing a `T`, and a handle of that slot is a
            // `JoinHandle<T>` of the same `T`.
            Ok(*unsafe { Box::from_raw(Box::into_raw(v).cast::<T>()) })
        }
        Completion::Failed(e) => Err(e),
    }
}
