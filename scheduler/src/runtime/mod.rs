//! The multi-threaded Runtime (layer 5): worker threads, each running its
//! own [`AioContext`], a global injector for spawns from outside, and work
//! stealing of not-yet-started coroutines between workers.
//!
//! This file holds the runtime's shared state and its handle; spawning and
//! its routing are in `spawn`, the shutdown in `shutdown`, the counters and
//! the dump in `inspect`.

pub mod blocking;
mod builder;
pub mod deadlock;
pub(crate) mod idle;
mod inspect;
pub(crate) mod settings;
mod shutdown;
mod spawn;
pub(crate) mod stall;
pub(crate) mod worker;

use std::panic::Location;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use crossbeam_deque::{Injector, Stealer};

pub use self::builder::Builder;
use self::idle::IdleSet;
pub use self::inspect::RuntimeMetrics;
pub use self::shutdown::ShutdownError;
use self::spawn::spawn_on_shared;
pub use self::spawn::{Handle, reschedule_self, spawn};
use crate::aio::AioContext;
use crate::core::control::CoRef;
use crate::core::coroutine::CoroutineBuilder;
use crate::core::home::SuspendedInfo;
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
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("workers", &self.shared.contexts.len())
            .finish()
    }
}
