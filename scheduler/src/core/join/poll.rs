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

use super::slot::Joined;
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
        let joined = self.slot().take_or_register(|current| match current {
            Some(Waiter::Task(w)) if w.will_wake(cx.waker()) => None,
            _ => Some(Waiter::Task(cx.waker().clone())),
        });
        match joined {
            Joined::Ready(r) => Poll::Ready(into_result(r)),
            Joined::Waiting(replaced) => {
                // Dropped outside the slot's lock: a waker's drop can run
                // arbitrary code (the last reference of a coroutine's waker
                // unwinds it).
                drop(replaced);
                Poll::Pending
            }
            Joined::Taken => self.already_taken("polled"),
        }
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
