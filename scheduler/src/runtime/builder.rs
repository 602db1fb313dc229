//! Runtime configuration.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_deque::Worker;

use super::worker::{self, WorkerLocal};
use super::{IdleSet, Runtime, Shared};
use crate::aio::{AioContext, ContextSettings, DEFAULT_POLL_MAX};
use crate::stack::DEFAULT_STACK_SIZE;
use crate::sync::AtomicBool;

/// Configures and builds a [`Runtime`]. Setters take and return `self`.
///
/// ```
/// use std::time::Duration;
/// let rt = coscheduler::Runtime::builder()
///     .threads(2)
///     .pin_threads(false)
///     .stack_size(256 * 1024)
///     .pool_max(512)
///     .poll_max(Duration::from_micros(50))
///     .thread_name("demo-worker")
///     .build()
///     .unwrap();
/// assert_eq!(rt.contexts().len(), 2);
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct Builder {
    threads: Option<NonZeroUsize>,
    pin_threads: bool,
    stack_size: usize,
    pool_max: usize,
    poll_max: Duration,
    thread_name: String,
    migrate_started: bool,
    shutdown_timeout: Duration,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            threads: None,
            pin_threads: true,
            stack_size: DEFAULT_STACK_SIZE,
            pool_max: crate::stackpool::INITIAL_POOL_MAX,
            poll_max: DEFAULT_POLL_MAX,
            thread_name: "coscheduler-worker".to_owned(),
            migrate_started: false,
            shutdown_timeout: crate::core::home::DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

impl Builder {
    /// Worker threads (default: one per available core).
    ///
    /// # Panics
    /// If `n` is zero.
    #[track_caller]
    pub fn threads(mut self, n: usize) -> Self {
        self.threads =
            Some(NonZeroUsize::new(n).expect("a Runtime needs at least one worker thread"));
        self
    }

    /// Pins worker `i` to core `i mod cores` (default true). Where pinning is
    /// not available, workers run unpinned.
    pub fn pin_threads(mut self, pin: bool) -> Self {
        self.pin_threads = pin;
        self
    }

    /// Usable stack bytes of coroutines created on the workers (default
    /// 1 MiB of address space, touched lazily).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = bytes;
        self
    }

    /// Stacks this runtime adds to the shared pool's maximum while it runs
    /// (QEMU's `qemu_coroutine_inc_pool_size`; default 128).
    pub fn pool_max(mut self, stacks: usize) -> Self {
        self.pool_max = stacks;
        self
    }

    /// The adaptive busy-polling maximum of each worker (QEMU's
    /// `poll-max-ns`; default 32 µs; zero never busy-polls).
    pub fn poll_max(mut self, max: Duration) -> Self {
        self.poll_max = max;
        self
    }

    /// Worker thread name prefix; workers are named `<prefix>-<index>`.
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name = prefix.into();
        self
    }

    /// Makes every coroutine this runtime spawns migratable: idle workers may
    /// steal it even after it started (when it reschedules itself with
    /// `yield_now`), and `AioContext::schedule`/`reschedule_self` may move it.
    ///
    /// # Safety
    /// Every coroutine spawned on the runtime must satisfy the contract of
    /// [`CoroutineBuilder::migratable`](crate::CoroutineBuilder::migratable).
    pub unsafe fn migrate_started(mut self, yes: bool) -> Self {
        self.migrate_started = yes;
        self
    }

    /// How long [`Runtime::shutdown`] (and `Drop`) waits for suspended
    /// coroutines to finish unwinding before it leaks the rest (default
    /// [`DEFAULT_SHUTDOWN_TIMEOUT`](crate::DEFAULT_SHUTDOWN_TIMEOUT), 5 s).
    /// Unwinding normally takes microseconds; the timeout only matters
    /// when a destructor waits for something that never comes.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Applies a `[runtime]` configuration section.
    pub fn config(mut self, cfg: &crate::RuntimeConfig) -> Self {
        if let Some(n) = cfg.threads() {
            self.threads = Some(n);
        }
        self.pin_threads = cfg.pin_threads();
        self.stack_size = cfg.stack_size_bytes();
        self.pool_max = cfg.pool_max();
        self.poll_max = cfg.poll_max();
        self.thread_name = cfg.thread_name().to_owned();
        self
    }

    /// Starts the workers.
    pub fn build(self) -> std::io::Result<Runtime> {
        crate::stackpool::class_for(self.stack_size)?;
        let n = self
            .threads
            .or_else(|| std::thread::available_parallelism().ok())
            .map_or(1, NonZeroUsize::get);
        let deques: Vec<Worker<crate::core::control::CoRef>> =
            (0..n).map(|_| Worker::new_fifo()).collect();
        let contexts: Vec<AioContext> = (0..n)
            .map(|i| {
                AioContext::with_settings(ContextSettings {
                    name: format!("{}-{i}", self.thread_name),
                    poll_max: self.poll_max,
                    stack_size: self.stack_size,
                })
            })
            .collect();
        let shared = Arc::new(Shared {
            injector: crossbeam_deque::Injector::new(),
            stealers: deques.iter().map(Worker::stealer).collect(),
            contexts: contexts.clone(),
            idle: IdleSet::new(n),
            shutdown: AtomicBool::new(false),
            migrate_started: self.migrate_started,
            shutdown_timeout: self.shutdown_timeout,
            drain_timeout_ns: Default::default(),
            stopped: Default::default(),
            stopped_cv: Default::default(),
        });
        let cores = if self.pin_threads {
            core_affinity::get_core_ids().filter(|c| !c.is_empty())
        } else {
            None
        };
        crate::core::stacks::inc_pool_size(self.pool_max);
        let mut rt = Runtime {
            shared: shared.clone(),
            threads: Vec::with_capacity(n),
            pool_added: self.pool_max,
        };
        for (i, (deque, ctx)) in deques.into_iter().zip(contexts).enumerate() {
            let local = WorkerLocal {
                shared: shared.clone(),
                index: i,
                deque,
            };
            let core = cores.as_ref().map(|c| c[i % c.len()]);
            let stack_size = self.stack_size;
            let spawned = std::thread::Builder::new()
                .name(format!("{}-{i}", self.thread_name))
                .spawn(move || worker::run(local, ctx, stack_size, core));
            match spawned {
                Ok(t) => rt.threads.push(t),
                Err(e) => {
                    // Stops and joins the workers already started.
                    drop(rt);
                    return Err(e);
                }
            }
        }
        Ok(rt)
    }
}
