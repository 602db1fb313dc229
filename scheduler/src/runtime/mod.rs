//! The multi-threaded Runtime (layer 5): worker threads, each running its
//! own [`AioContext`], a global injector for spawns from outside, and work
//! stealing of not-yet-started coroutines between workers.

pub mod blocking;
mod builder;
pub mod deadlock;
pub(crate) mod idle;
pub(crate) mod settings;
pub(crate) mod stall;
pub(crate) mod worker;

use std::fmt::Write as _;
use std::panic::Location;
use std::sync::atomic::Ordering::{Relaxed, Release, SeqCst};
use std::sync::atomic::fence;
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_deque::{Injector, Stealer};

pub use self::builder::Builder;
use self::idle::IdleSet;
use crate::aio::AioContext;
use crate::core::control::{self, CoRef};
use crate::core::coroutine::CoroutineBuilder;
use crate::core::home::{ContextMetrics, SuspendedInfo};
use crate::core::join::{JoinError, JoinHandle};
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
    /// The builder's shutdown timeout (`shutdown()` and `Drop` use it).
    pub(crate) shutdown_timeout: Duration,
    /// The timeout of the shutdown in progress, in nanoseconds: how long
    /// each worker waits for its coroutines to unwind. Written before the
    /// shutdown flag (whose Release store publishes it).
    pub(crate) drain_timeout_ns: std::sync::atomic::AtomicU64,
    /// Workers that finished their shutdown, and what they could not unwind.
    pub(crate) stopped: Mutex<Stopped>,
    pub(crate) stopped_cv: Condvar,
    /// The stall detector (`crate::stall`).
    pub(crate) stall: Arc<crate::runtime::stall::detector::Detector>,
    /// The blocking pool (`crate::blocking`).
    pub(crate) blocking: Arc<crate::blocking::BlockingPool>,
}

/// What the workers report back at shutdown.
#[derive(Default)]
pub(crate) struct Stopped {
    pub(crate) workers: usize,
    pub(crate) leaked: Vec<SuspendedInfo>,
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
    /// A runtime with the defaults: one worker per core, placed by the OS (unpinned).
    pub fn new() -> std::io::Result<Runtime> {
        Builder::default().build()
    }

    /// A builder to configure a runtime.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A runtime configured by the `[runtime]` section of a [`Config`](crate::Config).
    #[cfg(feature = "config")]
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
            Err(JoinError::Panicked(p)) => crate::core::unwinding::rethrow(p),
            Err(e) => panic!("Runtime::block_on: {e}"),
        }
    }

    /// Runs the blocking closure `f` on the runtime's blocking pool, from a
    /// coroutine spawned for it (like [`spawn`](Runtime::spawn)), which is
    /// suspended while `f` runs (see [`blocking`](crate::blocking)). The
    /// handle gives `f`'s value, or its panic as
    /// [`JoinError::Panicked`]. Unlike a call to
    /// [`blocking::run`](crate::blocking::run) from a coroutine, the spawn
    /// itself never waits: past the pool's bounds, the spawned coroutines
    /// wait for room.
    ///
    /// ```
    /// let rt = coscheduler::Runtime::builder().threads(1).build().unwrap();
    /// let h = rt.spawn_blocking(|| std::fs::read_to_string("/proc/self/stat").is_ok());
    /// assert!(h.join().unwrap());
    /// ```
    #[track_caller]
    pub fn spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        spawn_on_shared(
            &self.shared,
            CoroutineBuilder::default(),
            move || crate::blocking::run(f),
            Location::caller(),
        )
    }

    /// The workers' contexts, in worker order.
    pub fn contexts(&self) -> &[AioContext] {
        &self.shared.contexts
    }

    /// Counters of every worker context, their sum, and the stall
    /// detector's figures.
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
            pool: crate::core::stacks::stats(),
            stalls: self.shared.stall.metrics(),
            blocking: self.shared.blocking.metrics(),
        }
    }

    /// A human-readable list of the suspended coroutines of every worker:
    /// id, name, home context, and what they wait on when a primitive said;
    /// members of a wait-for cycle are marked `[deadlock N]`, and each cycle
    /// is described at the end (see [`deadlocks`](Runtime::deadlocks)).
    /// Each worker answers from its own thread; one that does not answer
    /// within a second (busy in a coroutine that never yields) is reported
    /// as such.
    pub fn dump(&self) -> String {
        let deadlocks = self.deadlocks();
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
                    // Bottom halves run on their context's owner thread.
                    if let Some(owner) = me.home.owner() {
                        let _ = tx.send((owner.describe_suspended(), owner.registered()));
                    }
                });
                rx
            })
            .collect();
        for (i, (ctx, rx)) in self.shared.contexts.iter().zip(replies).enumerate() {
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
                        let mark = deadlocks
                            .iter()
                            .position(|d| d.contains(s.id))
                            .map_or_else(String::new, |k| format!(" [deadlock {}]", k + 1));
                        let _ = writeln!(out, "  {s}{mark}");
                    }
                }
                Err(_) => {
                    let _ = writeln!(
                        out,
                        "context {} ({}): did not answer within 1 s ({})",
                        ctx.id(),
                        ctx.name(),
                        self.describe_busy_worker(i)
                    );
                }
            }
        }
        for (k, d) in deadlocks.iter().enumerate() {
            let _ = writeln!(out, "[deadlock {}] {d}", k + 1);
        }
        out
    }

    /// QEMU has no such thing: every cycle of coroutines waiting on each
    /// other — through [`JoinHandle::join`], and through the primitives that
    /// say what they wait on (`coprimitives`' `CoMutex` and `CoRwLock`) —
    /// with each member's id, name, context and the lock it waits on. See
    /// [`deadlock`](crate::deadlock) for how the graph is built. Each worker
    /// answers from its own thread; one busy in a coroutine that does not
    /// suspend for a second is left out.
    ///
    /// ```
    /// let rt = coscheduler::Runtime::builder().threads(1).build().unwrap();
    /// assert!(rt.deadlocks().is_empty());
    /// ```
    pub fn deadlocks(&self) -> Vec<crate::Deadlock> {
        crate::deadlock::find(&self.shared.contexts)
    }

    /// What a worker that does not answer is busy with, from the stall
    /// detector.
    fn describe_busy_worker(&self, worker: usize) -> String {
        match describe_running(&self.shared, worker, Duration::from_secs(1)) {
            Some(who) => format!("{who} without suspending"),
            None => "busy running a coroutine that does not yield?".to_owned(),
        }
    }

    /// Stops the workers, unwinds every suspended coroutine on its home
    /// thread (its destructors run), drops coroutines that never started
    /// (their handles report [`JoinError::Cancelled`]), joins the threads and
    /// releases the runtime's share of the stack pool. `Drop` does the same.
    ///
    /// Waits at most the runtime's
    /// [`shutdown_timeout`](Builder::shutdown_timeout) for suspended
    /// coroutines to finish unwinding; those still suspended then are leaked
    /// and reported on stderr (use [`shutdown_timeout`](Runtime::shutdown_timeout)
    /// to get them as an error instead). See
    /// [`shutdown_timeout`](Runtime::shutdown_timeout) for the whole
    /// procedure, and for what happens when called from one of the
    /// runtime's own coroutines.
    pub fn shutdown(mut self) {
        let timeout = self.shared.shutdown_timeout;
        if let Err(e) = self.shutdown_inner(timeout) {
            eprintln!("coscheduler: {e}");
        }
    }

    /// Shuts the runtime down like [`shutdown`](Runtime::shutdown), waiting
    /// at most `timeout` for suspended coroutines to unwind, and returns the
    /// ones that could not be unwound in time as an error.
    ///
    /// The procedure:
    /// 1. The shutdown flag is raised; workers stop taking new work. A spawn
    ///    from then on (from another thread, or from a destructor that runs
    ///    during the shutdown) is dropped unstarted: its handle reports
    ///    [`JoinError::Cancelled`].
    /// 2. Each worker drops the unstarted coroutines it holds, then unwinds
    ///    every coroutine homed on it, on its own thread, while still
    ///    serving wakes from the other workers: a coroutine whose destructor
    ///    waits (for a lock held by a coroutine of another worker, for a
    ///    join) gets what it waits for as the others unwind too.
    /// 3. A worker is done when none of its coroutines is left, or when
    ///    `timeout` has passed: coroutines still suspended then are leaked
    ///    with their stacks (their frames must not be skipped), counted in
    ///    [`PoolStats::leaked`](crate::stackpool::PoolStats::leaked) and in
    ///    [`ContextMetrics::coroutines_leaked`], and listed in the error.
    /// 4. The worker threads are joined. A coroutine that is *running* and
    ///    never suspends cannot be interrupted: the shutdown waits for it,
    ///    and says so on stderr once `timeout` has passed, naming the worker.
    ///
    /// Called from one of the runtime's own coroutines (or by dropping the
    /// runtime there), the shutdown cannot wait for the very worker it runs
    /// on: steps 1–4 then run on a helper thread, this call returns at once
    /// with `Ok(())`, and the calling coroutine is unwound like the others
    /// at its next suspension.
    ///
    /// ```
    /// use std::time::Duration;
    /// let rt = coscheduler::Runtime::builder().threads(1).build().unwrap();
    /// let h = rt.spawn(|| coscheduler::suspend()); // never woken
    /// while h.coroutine().context().is_none() {
    ///     std::thread::yield_now(); // until it has started
    /// }
    /// rt.shutdown_timeout(Duration::from_secs(1)).unwrap();
    /// assert!(matches!(h.join(), Err(coscheduler::JoinError::Cancelled)));
    /// ```
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Result<(), ShutdownError> {
        self.shutdown_inner(timeout)
    }

    fn shutdown_inner(&mut self, timeout: Duration) -> Result<(), ShutdownError> {
        if self.threads.is_empty() {
            return Ok(());
        }
        let ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        self.shared.drain_timeout_ns.store(ns, Relaxed);
        // Release: pairs with the workers' Acquire load of the flag, and
        // publishes the timeout. The fence pairs with the one in
        // `spawn_on_shared` (push, then check).
        self.shared.shutdown.store(true, Release);
        fence(SeqCst);
        for ctx in &self.shared.contexts {
            ctx.notify();
        }
        let threads = std::mem::take(&mut self.threads);
        let shared = self.shared.clone();
        let pool_added = self.pool_added;
        let w = worker::current_worker();
        // SAFETY: the worker-local block lives for the worker thread's whole
        // loop (the pointer is cleared before it ends), and we are on that
        // thread.
        let on_own_worker =
            unsafe { w.as_ref() }.is_some_and(|local| Arc::ptr_eq(&local.shared, &self.shared));
        if on_own_worker {
            let reaper = thread::Builder::new()
                .name("coscheduler-shutdown".to_owned())
                .spawn(move || {
                    if let Err(e) = finish_shutdown(&shared, threads, pool_added, timeout) {
                        eprintln!("coscheduler: {e}");
                    }
                });
            if let Err(e) = reaper {
                // No thread to wait on our behalf: the workers still stop,
                // but their threads are detached.
                eprintln!("coscheduler: cannot start the shutdown thread ({e}); workers detached");
            }
            return Ok(());
        }
        finish_shutdown(&shared, threads, pool_added, timeout)
    }
}

/// Steps 2–4 of [`Runtime::shutdown_timeout`], from a thread that is not a
/// worker: waits for every worker to report, joins them, drops whatever
/// was spawned meanwhile and gives back the pool share.
fn finish_shutdown(
    shared: &Shared,
    threads: Vec<thread::JoinHandle<()>>,
    pool_added: usize,
    timeout: Duration,
) -> Result<(), ShutdownError> {
    // The workers' own drains end by `timeout`; past that (plus a grace for
    // the last turn), a worker that has not reported is inside a coroutine
    // that does not suspend.
    let warn_at = Instant::now() + timeout + Duration::from_millis(100);
    let mut warned = false;
    let mut stopped = shared.stopped.lock().unwrap_or_else(|e| e.into_inner());
    while stopped.workers < threads.len() {
        let now = Instant::now();
        let wait = if warned || now >= warn_at {
            if !warned {
                warned = true;
                for (i, t) in threads.iter().enumerate() {
                    if !t.is_finished() {
                        let who = describe_running(shared, i, timeout).unwrap_or_else(|| {
                            format!("a coroutine there has been running for over {timeout:?}")
                        });
                        eprintln!(
                            "coscheduler: shutdown is waiting for worker {i} ({}): {who} \
                             without suspending; a running \
                             coroutine cannot be interrupted, so the shutdown waits until it \
                             suspends or returns",
                            shared.contexts[i].name()
                        );
                    }
                }
            }
            Duration::from_secs(3600)
        } else {
            warn_at - now
        };
        stopped = shared
            .stopped_cv
            .wait_timeout(stopped, wait)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    let leaked = std::mem::take(&mut stopped.leaked);
    drop(stopped);
    for t in threads {
        // Worker panics are contained inside their loops; a join error here
        // would be a scheduler bug, and shutting down goes on regardless.
        let _ = t.join();
    }
    // Coroutines waiting for blocking closures were waited for by the
    // drains above; what is still queued runs now, with the same timeout.
    shared
        .blocking
        .close(crate::blocking::close_deadline(timeout));
    shared.stall.stop();
    // Coroutines that never started: drop them (their handles report
    // cancellation).
    drain_injector(shared);
    crate::core::stacks::dec_pool_size(pool_added);
    crate::core::stacks::trim_to_max();
    if leaked.is_empty() {
        Ok(())
    } else {
        Err(ShutdownError { leaked })
    }
}

/// "coroutine 7 (name) has been running for 1200ms", naming what runs on
/// a worker that does not answer, when the stall detector can tell; how
/// long defaults to "over `at_least`".
fn describe_running(shared: &Shared, worker: usize, at_least: Duration) -> Option<String> {
    let running = shared.stall.running_on(worker)?;
    let name = running.name.as_deref().unwrap_or("unnamed");
    let how_long = match running.running_for {
        Some(d) if d >= at_least => format!("{}ms", d.as_millis()),
        _ => format!("over {at_least:?}"),
    };
    Some(format!(
        "coroutine {} ({name}) has been running for {how_long}",
        running.id
    ))
}

/// Coroutines a shutdown could not unwind in time (see
/// [`Runtime::shutdown_timeout`]); they were leaked with their stacks.
#[derive(Debug)]
pub struct ShutdownError {
    leaked: Vec<SuspendedInfo>,
}

impl ShutdownError {
    /// How many coroutines were leaked.
    pub fn leaked(&self) -> usize {
        self.leaked.len()
    }

    /// One line per leaked coroutine: id, name, context and what it was
    /// waiting on, as [`Runtime::dump`] shows them.
    pub fn coroutines(&self) -> Vec<String> {
        self.leaked.iter().map(ToString::to_string).collect()
    }
}

impl std::fmt::Display for ShutdownError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "shutdown could not unwind {} coroutine(s) in time; leaked with their stacks:",
            self.leaked.len()
        )?;
        for s in &self.leaked {
            write!(f, "\n  {s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ShutdownError {}

fn co_cancel_unstarted(co: CoRef) {
    crate::core::join::cancel_unstarted(&co, JoinError::Cancelled);
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let timeout = self.shared.shutdown_timeout;
        if let Err(e) = self.shutdown_inner(timeout) {
            eprintln!("coscheduler: {e}");
        }
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
    pub pool: crate::stackpool::PoolStats,
    /// The stall detector: how many coroutines ran past the
    /// [`stall_threshold`](Builder::stall_threshold) without suspending,
    /// and for how long.
    pub stalls: crate::StallMetrics,
    /// The blocking pool ([`blocking`](crate::blocking)): threads, queue,
    /// and how long closures waited for a thread.
    pub blocking: crate::blocking::BlockingMetrics,
}

/// Spawns `f` where the caller runs, as `tokio::spawn` does: on one of a
/// [`Runtime`]'s workers (in a coroutine or a bottom half there), onto that
/// runtime — through its injector, stealable by any worker until it starts
/// ([`Runtime::spawn`]); on any other thread, onto the thread's own
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
