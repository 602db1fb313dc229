//! The multi-threaded Runtime (layer 5): worker threads, each running its
//! own [`AioContext`], a global injector for spawns from outside, and work
//! stealing of not-yet-started coroutines between workers.

mod builder;
pub(crate) mod idle;
pub(crate) mod worker;

use std::fmt::Write as _;
use std::panic::{Location, resume_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering::Release;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crossbeam_deque::{Injector, Stealer};

pub use self::builder::Builder;
use self::idle::IdleSet;
use crate::context::{AioContext, ContextMetrics};
use crate::coroutine::CoroutineBuilder;
use crate::coroutine::control::{self, CoRef};
use crate::join::{JoinError, JoinHandle};
use crate::sync::AtomicBool;

/// State shared by a runtime's workers.
pub(crate) struct Shared {
    pub(crate) injector: Injector<CoRef>,
    pub(crate) stealers: Vec<Stealer<CoRef>>,
    pub(crate) contexts: Vec<AioContext>,
    pub(crate) idle: IdleSet,
    pub(crate) shutdown: AtomicBool,
    /// Every spawned coroutine is migratable (`Builder::migrate_started`).
    pub(crate) migrate_started: bool,
}

impl Shared {
    /// After publishing stealable work: wakes a sleeping worker, if any.
    fn wake_idle_worker(&self) {
        if let Some(i) = self.idle.wake_one() {
            self.contexts[i].notify();
        }
    }
}

/// A pool of worker threads running coroutines.
///
/// ```
/// let rt = coscheduler::Runtime::builder().threads(2).build().unwrap();
/// let answer = rt.block_on(|| {
///     let h = coscheduler::AioContext::current().spawn(|| 40);
///     h.join().unwrap() + 2
/// });
/// assert_eq!(answer, 42);
/// rt.shutdown();
/// ```
pub struct Runtime {
    shared: Arc<Shared>,
    threads: Vec<thread::JoinHandle<()>>,
    pool_added: usize,
}

impl Runtime {
    /// A runtime with the defaults: one pinned worker per core.
    pub fn new() -> std::io::Result<Runtime> {
        Builder::default().build()
    }

    /// A builder to configure a runtime.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A runtime configured by the `[runtime]` section of a [`Config`](crate::Config).
    pub fn from_config(cfg: &crate::Config) -> std::io::Result<Runtime> {
        Builder::default().config(&cfg.runtime).build()
    }

    /// Creates a coroutine running `f`; it goes through the global injector
    /// (or the spawning worker's own deque) and may be stolen by any worker
    /// until it starts. It takes a stack only when it first runs.
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

    /// A cheap, clonable handle that can spawn onto this runtime from
    /// anywhere, including its own coroutines.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
        }
    }

    /// Spawns a named coroutine (shown in dumps and overflow reports).
    #[track_caller]
    pub fn spawn_named<F, T>(&self, name: impl Into<String>, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        spawn_on_shared(
            &self.shared,
            CoroutineBuilder::default().name(name),
            f,
            Location::caller(),
        )
    }

    /// Runs `f` as a coroutine on a worker and blocks the calling thread
    /// until it finishes; re-raises its panic.
    ///
    /// # Panics
    /// With `f`'s panic; if the runtime shut down before `f` finished; if no
    /// stack could be had for it.
    #[track_caller]
    pub fn block_on<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match self.spawn(f).join() {
            Ok(v) => v,
            Err(JoinError::Panicked(p)) => resume_unwind(p),
            Err(e) => panic!("Runtime::block_on: {e}"),
        }
    }

    /// The workers' contexts, in worker order.
    pub fn contexts(&self) -> &[AioContext] {
        &self.shared.contexts
    }

    /// Counters of every worker context, and their sum.
    pub fn metrics(&self) -> RuntimeMetrics {
        let per_context: Vec<ContextMetrics> = self
            .shared
            .contexts
            .iter()
            .map(AioContext::metrics)
            .collect();
        let mut total = ContextMetrics::default();
        per_context.iter().for_each(|m| total.accumulate(m));
        RuntimeMetrics {
            per_context,
            total,
            injector_len: self.shared.injector.len(),
            sleeping_workers: self.shared.idle.count() as usize,
            pool: crate::pool::stats(),
        }
    }

    /// A human-readable list of the suspended coroutines of every worker:
    /// id, name, home context, and what they wait on when a primitive said.
    /// Each worker answers from its own thread; one that does not answer
    /// within a second (busy in a coroutine that never yields) is reported
    /// as such.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        let m = self.metrics();
        let _ = writeln!(
            out,
            "runtime: {} workers, {} sleeping, {} queued in the injector",
            self.shared.contexts.len(),
            m.sleeping_workers,
            m.injector_len
        );
        let replies: Vec<_> = self
            .shared
            .contexts
            .iter()
            .map(|ctx| {
                let (tx, rx) = mpsc::channel();
                let me = ctx.clone();
                ctx.bh_oneshot(move || {
                    let list = me.inner.describe_suspended();
                    let _ = tx.send((list, me.inner.registered()));
                });
                rx
            })
            .collect();
        for (ctx, rx) in self.shared.contexts.iter().zip(replies) {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok((list, started)) => {
                    let _ = writeln!(
                        out,
                        "context {} ({}): {} started, {} suspended",
                        ctx.id(),
                        ctx.name(),
                        started,
                        list.len()
                    );
                    for s in list {
                        let _ = writeln!(out, "  {s}");
                    }
                }
                Err(_) => {
                    let _ = writeln!(
                        out,
                        "context {} ({}): did not answer within 1 s (busy running a coroutine that does not yield?)",
                        ctx.id(),
                        ctx.name()
                    );
                }
            }
        }
        out
    }

    /// Stops the workers, unwinds every suspended coroutine on its home
    /// thread (its destructors run), drops coroutines that never started
    /// (their handles report [`JoinError::Cancelled`]), joins the threads and
    /// releases the runtime's share of the stack pool. `Drop` does the same.
    ///
    /// # Panics
    /// When called from one of the runtime's own workers.
    pub fn shutdown(mut self) {
        self.shutdown_inner();
    }

    fn shutdown_inner(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        let w = worker::current_worker();
        // SAFETY: see `push_stealable`.
        if let Some(local) = unsafe { w.as_ref() } {
            assert!(
                !Arc::ptr_eq(&local.shared, &self.shared),
                "a Runtime cannot be shut down from one of its own workers"
            );
        }
        // Release: pairs with the workers' Acquire load of the flag. The
        // fence pairs with the one in `spawn_on_shared` (push, then check).
        self.shared.shutdown.store(true, Release);
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        for ctx in &self.shared.contexts {
            ctx.notify();
        }
        for t in self.threads.drain(..) {
            // A worker only panics on a scheduler bug; keep shutting down.
            let _ = t.join();
        }
        // Coroutines that never started: drop them (their handles report
        // cancellation).
        drain_injector(&self.shared);
        crate::pool::dec_pool_size(self.pool_added);
        crate::pool::trim_to_max();
    }
}

fn co_cancel_unstarted(co: CoRef) {
    crate::join::cancel_unstarted(&co, JoinError::Cancelled);
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown_inner();
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("workers", &self.shared.contexts.len())
            .finish()
    }
}

/// Spawns onto a [`Runtime`] without owning it (see [`Runtime::handle`]).
/// Spawning after the runtime shut down gives a handle that reports
/// [`JoinError::Cancelled`].
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    /// Like [`Runtime::spawn`].
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
fn spawn_on_shared<F, T>(
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
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    if shared.shutdown.load(std::sync::atomic::Ordering::Relaxed) {
        drain_injector(shared);
        return handle;
    }
    shared.wake_idle_worker();
    handle
}

/// Cancels everything in the injector (after shutdown). Concurrent drainers
/// are fine: each coroutine is stolen once.
fn drain_injector(shared: &Shared) {
    loop {
        match shared.injector.steal() {
            crossbeam_deque::Steal::Success(co) => co_cancel_unstarted(co),
            crossbeam_deque::Steal::Retry => continue,
            crossbeam_deque::Steal::Empty => break,
        }
    }
}

/// A snapshot of a runtime's counters.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RuntimeMetrics {
    /// One entry per worker, in worker order.
    pub per_context: Vec<ContextMetrics>,
    /// The sum over workers.
    pub total: ContextMetrics,
    /// Coroutines waiting in the global injector.
    pub injector_len: usize,
    /// Workers asleep right now.
    pub sleeping_workers: usize,
    /// The process-wide stack pool.
    pub pool: crate::pool::PoolStats,
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
