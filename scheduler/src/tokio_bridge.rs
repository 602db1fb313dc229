//! Calling tokio-based code from coroutines (cargo feature `tokio`).
//!
//! Futures that need tokio's reactor or timers (a `tokio::net::TcpStream`,
//! a client library built on tokio) panic or hang when polled outside a
//! tokio runtime, and a coroutine's worker is not one. [`run`] spawns such a
//! future onto a tokio runtime and suspends the calling coroutine until it
//! completes: the coroutine's worker keeps running its other coroutines,
//! and no thread of either runtime blocks. The result comes back through
//! the tokio task's `JoinHandle`, awaited with [`wait`](crate::wait), so the
//! coroutine resumes on its home thread.
//!
//! Which tokio runtime: the one whose handle was given to [`set_handle`],
//! or else one the bridge starts on first use (one worker thread named
//! `coscheduler-tokio`, I/O and time drivers enabled, kept for the rest of
//! the process). [`run_on`] takes a handle explicitly.
//!
//! ```
//! use std::time::Duration;
//!
//! let rt = coscheduler::Runtime::builder().threads(1).build().unwrap();
//! let v = rt.block_on(|| {
//!     coscheduler::tokio_bridge::run(async {
//!         tokio::time::sleep(Duration::from_millis(1)).await; // needs tokio's timer
//!         7
//!     })
//! });
//! assert_eq!(v, 7);
//! ```
//!
//! Build tokio futures *inside* the `async` block given to [`run`]:
//! several of them (`tokio::time::sleep`, `TcpStream::connect`'s future in
//! some versions) look up the tokio runtime when they are created, and a
//! coroutine's thread has none. The block's body runs on the tokio runtime.
//!
//! ```
//! # use std::time::Duration;
//! # let rt = coscheduler::Runtime::builder().threads(1).build().unwrap();
//! rt.block_on(|| {
//!     // Not `run(tokio::time::sleep(..))`: that would panic here ("there
//!     // is no reactor running").
//!     coscheduler::tokio_bridge::run(async {
//!         tokio::time::sleep(Duration::from_millis(1)).await
//!     });
//! });
//! ```
//!
//! The other direction needs no bridge: a coroutine's
//! [`JoinHandle`](crate::JoinHandle) is a `Future`, so async code awaits a
//! coroutine with `.await` (`Runtime::spawn(..).await` from a tokio task).
//!
//! # Cancellation
//!
//! A coroutine unwound while it waits in [`run`] (its runtime shut down)
//! drops the tokio `JoinHandle`, which aborts the tokio task: its future is
//! dropped on a tokio thread at its next poll point, as tokio's `abort`
//! does. A panic of the future is re-raised in the coroutine.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use tokio::runtime::{Handle, Runtime};

/// The handle given to [`set_handle`].
static CONFIGURED: OnceLock<Handle> = OnceLock::new();
/// The runtime started on first use when none was configured.
static STARTED: OnceLock<Runtime> = OnceLock::new();

/// Makes `handle` the runtime [`run`] uses, for the rest of the process.
///
/// # Errors
/// Gives `handle` back if a handle was already set, or if [`run`] already
/// started its own runtime (futures may be running there).
///
/// ```standalone_crate
/// let tokio_rt = tokio::runtime::Builder::new_multi_thread()
///     .worker_threads(1)
///     .enable_all()
///     .build()
///     .unwrap();
/// assert!(coscheduler::tokio_bridge::set_handle(tokio_rt.handle().clone()).is_ok());
/// assert!(coscheduler::tokio_bridge::set_handle(tokio_rt.handle().clone()).is_err());
/// # std::mem::forget(tokio_rt); // the process keeps using it
/// ```
pub fn set_handle(handle: Handle) -> Result<(), Handle> {
    if STARTED.get().is_some() {
        return Err(handle);
    }
    CONFIGURED.set(handle)
}

/// The tokio runtime [`run`] uses: the one given to [`set_handle`], or one
/// started now (see the module docs).
///
/// # Panics
/// If the runtime cannot be started (the OS refuses a thread or an epoll
/// instance).
pub fn handle() -> Handle {
    if let Some(h) = CONFIGURED.get() {
        return h.clone();
    }
    STARTED
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("coscheduler-tokio")
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("tokio_bridge: cannot start a tokio runtime: {e}"))
        })
        .handle()
        .clone()
}

/// Runs `fut` on the bridge's tokio runtime ([`handle`]) and returns its
/// output. Inside a coroutine, the coroutine suspends meanwhile; outside,
/// the thread blocks, driving its own context (like [`wait`](crate::wait)).
///
/// Do not call it outside a coroutine on one of that tokio runtime's own
/// threads: blocking a tokio worker can stall the very future it waits for
/// (`.await` the future there instead).
///
/// # Panics
/// With the future's panic; if the tokio runtime shut down before the
/// future finished.
pub fn run<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    run_on(&handle(), fut)
}

/// [`run`] on the tokio runtime of `handle`.
///
/// ```
/// let tokio_rt = tokio::runtime::Runtime::new().unwrap();
/// let h = tokio_rt.handle().clone();
/// let ctx = coscheduler::AioContext::current();
/// let co = ctx.spawn(move || {
///     coscheduler::tokio_bridge::run_on(&h, async {
///         let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
///         l.local_addr().unwrap().port()
///     })
/// });
/// assert_ne!(co.join().unwrap(), 0);
/// ```
///
/// # Panics
/// As [`run`].
pub fn run_on<F>(handle: &Handle, fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match crate::wait(AbortOnDrop(handle.spawn(fut))) {
        Ok(v) => v,
        Err(e) if e.is_panic() => crate::core::unwinding::rethrow(e.into_panic()),
        Err(e) => {
            panic!("tokio_bridge: the task did not finish (its tokio runtime shut down?): {e}")
        }
    }
}

/// A tokio task that is aborted if its waiter goes away first (a coroutine
/// unwound while it waits).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        // A no-op for a task that already finished.
        self.0.abort();
    }
}
