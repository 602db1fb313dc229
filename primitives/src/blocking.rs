//! [`co_blocking`]: blocking calls from coroutines, on a pool of threads.

/// Runs `f` — a blocking call: a file operation, a DNS lookup, a C library
/// without an asynchronous interface, a long computation — on the blocking
/// pool of the calling coroutine's [`Runtime`](coscheduler::Runtime), and
/// returns its value. The coroutine is suspended meanwhile, so its worker
/// runs other coroutines; the value (or `f`'s panic, re-raised here) comes
/// back on the coroutine's home context. QEMU's `thread_pool_submit_co`.
///
/// The pool has at most
/// [`Builder::blocking_threads`](coscheduler::Builder::blocking_threads)
/// threads and a queue of
/// [`Builder::blocking_queue`](coscheduler::Builder::blocking_queue)
/// closures; a caller that finds both full waits (suspended) for room. The
/// wait is not a cancellation point: a runtime that shuts down lets `f`
/// finish and this call return, and unwinds the coroutine at its next
/// suspension (see [`coscheduler::blocking`] for the details).
///
/// Outside a coroutine, and in a coroutine that does not run on a
/// `Runtime` worker, `f` runs inline on the calling thread.
///
/// ```
/// use std::time::Duration;
///
/// let rt = coscheduler::Runtime::builder().threads(2).build().unwrap();
/// let handles: Vec<_> = (0..20)
///     .map(|i| rt.spawn(move || coprimitives::co_blocking(move || {
///         std::thread::sleep(Duration::from_millis(20)); // blocks a pool thread, not a worker
///         i
///     })))
///     .collect();
/// let sum: i32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
/// assert_eq!(sum, (0..20).sum());
/// ```
pub fn co_blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    coscheduler::blocking::run(f)
}
