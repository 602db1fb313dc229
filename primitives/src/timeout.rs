//! Running a function with a deadline (QEMU's `qemu_co_timeout`,
//! `util/qemu-co-timeout.c`).
//!
//! There is no cancellation: the function runs in its own coroutine, and if
//! the deadline passes first the caller gets [`TimedOut`] while the function
//! keeps running; its late result goes to a clean-up function. Use it to
//! stop *waiting*, and arrange for the abandoned work to end by itself (a
//! socket read ends when the socket is shut down, for example).
//!
//! # Protocol "first to the marker"
//!
//! The caller and the function's coroutine `E` share a `marker` flag, a
//! result cell and a [`CoSleep`]. `E` stores its result, then swaps the
//! marker to true: if it was false, the caller is still waiting and `E`
//! wakes it; if it was true, the caller already gave up and `E` hands the
//! result to the clean-up. The caller, resumed (by `E` or by its timer),
//! swaps the marker too: true means `E` finished first and the result is in
//! the cell; false means the time ran out, and `E` will see true. Whichever
//! swap comes second learns about the other, so the result is delivered
//! exactly once, to the caller or to the clean-up. Both run on the same
//! thread (E is entered on the caller's context and stays there), so the
//! atomics only make the protocol sound without that assumption.

use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::AcqRel;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coscheduler::{AioContext, Coroutine, JoinError};

use crate::CoSleep;

/// The error of [`co_timeout`]: the deadline passed before the function
/// finished (QEMU's `-ETIMEDOUT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TimedOut;

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("operation timed out")
    }
}

impl std::error::Error for TimedOut {}

impl From<TimedOut> for std::io::Error {
    fn from(_: TimedOut) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::TimedOut, TimedOut)
    }
}

/// QEMU's `qemu_co_timeout` without a clean-up: runs `f` in a new coroutine
/// on the current context and waits at most `d` for it.
///
/// On time, returns `f`'s result. Otherwise returns [`TimedOut`] and `f`
/// **keeps running**; its result is dropped when it finishes. A zero `d`
/// runs `f` directly in the caller, with no deadline, as QEMU does. A panic
/// of `f` before the deadline is re-raised in the caller; after it, it is
/// dropped.
///
/// Outside a coroutine, the same runs in a coroutine on this thread's
/// context, which the thread drives until that wait ends; after a timeout
/// `f` goes on only while the thread drives its context again (the crate's
/// rule, [Outside a coroutine](crate#outside-a-coroutine)).
///
/// ```
/// use std::time::Duration;
/// use coprimitives::{co_sleep, co_timeout, TimedOut};
/// let ctx = coscheduler::AioContext::current();
/// let h = ctx.spawn(|| {
///     let fast = co_timeout(Duration::from_secs(5), || 42);
///     let slow = co_timeout(Duration::from_millis(1), || co_sleep(Duration::from_millis(50)));
///     (fast, slow)
/// });
/// assert_eq!(h.join().unwrap(), (Ok(42), Err(TimedOut)));
/// ```
///
/// # Why `f` must be `'static`
///
/// A `co_timeout` whose `f` borrowed from the caller would be unsound: after
/// the deadline it returns [`TimedOut`] while `f` keeps running in its own
/// coroutine, with nothing to stop it (there is no cancellation), so the
/// caller's frame, and whatever `f` borrowed from it, can be gone while `f`
/// still uses it. A scoped form in the manner of `std::thread::scope` would
/// be sound only by waiting for every abandoned `f` when the scope ends,
/// which moves the wait that `co_timeout` exists to end instead of ending
/// it; so there is none. Give `f` what it needs by value: move in an `Arc` of
/// the shared state (or a clone of a small value), and take the result back
/// as `f`'s return value.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use coprimitives::{CoMutex, co_timeout};
///
/// let table = Arc::new(CoMutex::new(vec![1, 2, 3]));
/// let h = coscheduler::AioContext::current().spawn(move || {
///     let t = Arc::clone(&table); // f's own handle: f may outlive this call
///     let sum = co_timeout(Duration::from_secs(5), move || t.lock().iter().sum::<i32>());
///     table.lock().push(4); // the caller keeps its handle
///     sum
/// });
/// assert_eq!(h.join().unwrap(), Ok(6));
/// ```
#[track_caller]
pub fn co_timeout<F, T>(d: Duration, f: F) -> Result<T, TimedOut>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    co_timeout_with_cleanup(d, f, drop)
}

/// QEMU's `qemu_co_timeout` with a `CleanupFunc`: like [`co_timeout`], and
/// if the deadline passes, `cleanup` is called with `f`'s result when `f`
/// finishes late (in `f`'s coroutine). It is not called when `f` finishes
/// in time. `f` and `cleanup` are `'static` for the reason given at
/// [`co_timeout`](co_timeout#why-f-must-be-static).
#[track_caller]
pub fn co_timeout_with_cleanup<F, T, C>(d: Duration, f: F, cleanup: C) -> Result<T, TimedOut>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
    C: FnOnce(T) + Send + 'static,
{
    if d.is_zero() {
        return Ok(f());
    }
    if !coscheduler::in_coroutine() {
        return outside_coroutine(d, f, cleanup);
    }
    let shared = Arc::new(Shared {
        marker: AtomicBool::new(false),
        result: Mutex::new(None),
        sleep: CoSleep::new(),
    });
    let e = {
        let shared = shared.clone();
        Coroutine::new(move || {
            let r = catch_unwind(AssertUnwindSafe(f));
            *lock(&shared.result) = Some(r);
            // AcqRel: Release publishes the result stored above to the
            // caller's swap; Acquire pairs with the caller's swap when it
            // gave up, so that taking the result back below is ordered.
            if !shared.marker.swap(true, AcqRel) {
                shared.sleep.wake();
            } else if let Some(Ok(late)) = lock(&shared.result).take() {
                cleanup(late);
            }
        })
    };
    // QEMU's aio_co_enter from a coroutine of the same context: E runs right
    // after we suspend below.
    AioContext::current().enter(&e);
    let _ = shared.sleep.sleep(d);
    // AcqRel: pairs with E's swap (see there).
    if !shared.marker.swap(true, AcqRel) {
        return Err(TimedOut);
    }
    match lock(&shared.result).take() {
        Some(Ok(v)) => Ok(v),
        Some(Err(panic)) => coscheduler::raw::rethrow(panic),
        None => unreachable!("co_timeout: the marker was set without a result"),
    }
}

/// State shared by the caller and the function's coroutine.
struct Shared<T> {
    marker: AtomicBool,
    result: Mutex<Option<Result<T, Box<dyn Any + Send>>>>,
    sleep: CoSleep,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the Option half-written.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cold]
#[track_caller]
fn outside_coroutine<F, T, C>(d: Duration, f: F, cleanup: C) -> Result<T, TimedOut>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
    C: FnOnce(T) + Send + 'static,
{
    match AioContext::current()
        .spawn(move || co_timeout_with_cleanup(d, f, cleanup))
        .join()
    {
        Ok(r) => r,
        Err(JoinError::Panicked(p)) => coscheduler::raw::rethrow(p),
        Err(e) => panic!("co_timeout: the waiting coroutine did not finish: {e}"),
    }
}
