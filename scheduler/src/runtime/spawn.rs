//! Spawning onto a runtime, and the routing of a spawn: onto the worker
//! that spawns (its own deque), through the global injector, or onto the
//! calling thread's own context when it is not a worker.

use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::fence;

use super::{Shared, worker};
use crate::aio::AioContext;
use crate::core::control::{self, CoRef};
use crate::core::coroutine::CoroutineBuilder;
use crate::core::join::{JoinError, JoinHandle};

/// Spawns onto a [`Runtime`](crate::Runtime) without owning it (see [`Runtime::handle`](crate::Runtime::handle)).
/// Spawning after the runtime shut down gives a handle that reports
/// [`JoinError::Cancelled`](crate::JoinError::Cancelled).
#[derive(Clone)]
pub struct Handle {
    pub(super) shared: Arc<Shared>,
}

impl Handle {
    /// Like [`Runtime::spawn`](crate::Runtime::spawn).
    #[track_caller]
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        spawn_on_shared(
            &self.shared,
            CoroutineBuilder::default(),
            f,
            Location::caller(),
        )
    }

    /// The runtime's worker contexts.
    pub fn contexts(&self) -> &[AioContext] {
        &self.shared.contexts
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("workers", &self.shared.contexts.len())
            .finish()
    }
}

/// Builds a lazily-stacked coroutine and makes it stealable.
pub(super) fn spawn_on_shared<F, T>(
    shared: &Arc<Shared>,
    mut b: CoroutineBuilder,
    f: F,
    site: &'static Location<'static>,
) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if shared.migrate_started {
        // SAFETY: the runtime's creator accepted the migratable contract for
        // every coroutine it spawns (`Builder::migrate_started`).
        b = unsafe { b.migratable() };
    }
    let (co, handle) = b.build_lazy(f);
    if let Err(first) = control::try_schedule(&co, site) {
        control::double_wake(&co, first);
    }
    let w = worker::current_worker();
    // SAFETY: the worker-local block lives for the worker thread's whole
    // loop (the pointer is cleared before it ends), and we are on that
    // thread.
    match unsafe { w.as_ref() } {
        Some(local) if Arc::ptr_eq(&local.shared, shared) => local.deque.push(co),
        _ => shared.injector.push(co),
    }
    // Push, then check (SeqCst fence, paired with the one in
    // `shutdown_inner`): either shutdown's final drain sees the coroutine,
    // or we see the flag and drain the injector ourselves.
    fence(SeqCst);
    if shared.shutdown.load(Relaxed) {
        drain_injector(shared);
        return handle;
    }
    shared.wake_idle_worker();
    handle
}

/// Cancels everything in the injector (after shutdown). Concurrent drainers
/// are fine: each coroutine is stolen once.
pub(super) fn drain_injector(shared: &Shared) {
    loop {
        match shared.injector.steal() {
            crossbeam_deque::Steal::Success(co) => co_cancel_unstarted(co),
            crossbeam_deque::Steal::Retry => continue,
            crossbeam_deque::Steal::Empty => break,
        }
    }
}

fn co_cancel_unstarted(co: CoRef) {
    crate::core::join::cancel_unstarted(&co, JoinError::Cancelled);
}

/// Spawns `f` where the caller runs, as `tokio::spawn` does: on one of a
/// [`Runtime`](crate::Runtime)'s workers (in a coroutine or a bottom half there), onto that
/// runtime — through its injector, stealable by any worker until it starts
/// ([`Runtime::spawn`](crate::Runtime::spawn)); on any other thread, onto the thread's own
/// [`AioContext`] ([`AioContext::spawn`]), where it runs when the thread
/// drives its context (joins, polls, waits).
///
/// ```
/// let rt = coscheduler::Runtime::builder().threads(2).build().unwrap();
/// let total = rt.block_on(|| {
///     let hs: Vec<_> = (1..=10u64).map(|i| coscheduler::spawn(move || i)).collect();
///     hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
/// });
/// assert_eq!(total, 55);
/// ```
#[track_caller]
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let w = worker::current_worker();
    // SAFETY: the worker-local block lives for the worker thread's whole
    // loop (the pointer is cleared before it ends), and we are on that
    // thread.
    match unsafe { w.as_ref() } {
        Some(local) => spawn_on_shared(
            &local.shared,
            CoroutineBuilder::default(),
            f,
            Location::caller(),
        ),
        None => AioContext::current().spawn(f),
    }
}

/// QEMU's `aio_co_reschedule_self`: moves the current (migratable) coroutine
/// to `ctx` and continues there. Returns once it runs on `ctx`.
///
/// # Panics
/// Outside a coroutine, or if the current coroutine is not migratable (the
/// message names it and both contexts).
#[track_caller]
pub fn reschedule_self(ctx: &AioContext) {
    let me = crate::current().expect("reschedule_self() called outside a coroutine");
    let here = AioContext::current();
    if here == *ctx {
        return;
    }
    if !me.is_migratable() {
        panic!(
            "coroutine {} ({}) is homed on context {} ({}) and cannot be moved to context {} ({}): \
             only coroutines created migratable may change context after they start",
            me.id(),
            me.name().unwrap_or("unnamed"),
            here.id(),
            here.name(),
            ctx.id(),
            ctx.name()
        );
    }
    // As QEMU does: schedule from a bottom half of the old context, which
    // runs only after this coroutine has finished suspending here.
    let target = ctx.clone();
    here.bh_oneshot(move || target.schedule(&me));
    crate::suspend();
}
