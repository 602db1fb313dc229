//! Runtime configuration.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_deque::Worker;

use super::settings::Settings;
use super::worker::{self, WorkerLocal};
use super::{IdleSet, Runtime, Shared};
use crate::aio::{AioContext, ContextSettings};
use crate::runtime::stall::StallReport;
use crate::runtime::stall::detector::{self, Detector, Hook};
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
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct Builder {
    /// What a `[runtime]` configuration table can set.
    settings: Settings,
    migrate_started: bool,
    on_stall: Option<Hook>,
    on_stall_end: Option<Hook>,
}

impl Builder {
    /// Worker threads (default: one per available core).
    ///
    /// # Panics
    /// If `n` is zero.
    #[track_caller]
    pub fn threads(mut self, n: usize) -> Self {
        self.settings.threads =
            Some(NonZeroUsize::new(n).expect("a Runtime needs at least one worker thread"));
        self
    }

    /// Pins worker `i` to core `i mod cores` (default false: the OS places
    /// the workers). Where pinning is not available, workers run unpinned.
    ///
    /// The default is unpinned because a pinned worker cannot move away from
    /// a busy neighbour on its core: on two cores with one kept busy by
    /// another process, contended CoMutex throughput (cobench W4, C = 4 and
    /// 32) fell to 1.5–2.2 M ops/s pinned against 4.0–4.3 M unpinned, while
    /// on a quiet machine the two placements measured within noise of each
    /// other (docs/BENCHMARKS.md, "Pinning"). Pin on a dedicated machine
    /// whose cores nothing else uses.
    pub fn pin_threads(mut self, pin: bool) -> Self {
        self.settings.pin_threads = pin;
        self
    }

    /// Usable stack bytes of coroutines created on the workers (default
    /// 1 MiB of address space, touched lazily).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.settings.stack_size = bytes;
        self
    }

    /// Stacks this runtime adds to the shared pool's maximum while it runs
    /// (QEMU's `qemu_coroutine_inc_pool_size`; default 128).
    pub fn pool_max(mut self, stacks: usize) -> Self {
        self.settings.pool_max = stacks;
        self
    }

    /// The adaptive busy-polling maximum of each worker (QEMU's
    /// `poll-max-ns`; default 32 µs; zero never busy-polls).
    pub fn poll_max(mut self, max: Duration) -> Self {
        self.settings.poll_max = max;
        self
    }

    /// Worker thread name prefix; workers are named `<prefix>-<index>`.
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.settings.thread_name = prefix.into();
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
        self.settings.shutdown_timeout = timeout;
        self
    }

    /// How long a coroutine may run without suspending before the stall
    /// detector reports it (default
    /// [`DEFAULT_STALL_THRESHOLD`](crate::DEFAULT_STALL_THRESHOLD), 100 ms;
    /// `Duration::ZERO` turns the detector off, and no watchdog thread is
    /// started). See [`on_stall`](Builder::on_stall) for what a report
    /// holds and where it goes.
    pub fn stall_threshold(mut self, threshold: Duration) -> Self {
        self.settings.stall_threshold = threshold;
        self
    }

    /// Called once per stall, on the runtime's watchdog thread, when a
    /// coroutine has run longer than the
    /// [`stall_threshold`](Builder::stall_threshold) without suspending:
    /// with its id, name, context, the time so far and the backtrace of
    /// its thread. It is *not* called again when the stall ends: the total
    /// goes to [`on_stall_end`](Builder::on_stall_end) and into
    /// [`RuntimeMetrics::stalls`](crate::RuntimeMetrics::stalls). Without
    /// a callback each report is one line on stderr.
    ///
    /// The callback should be quick (the watchdog samples no other worker
    /// while it runs); a panic in it is caught and reported.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    /// use std::sync::{Arc, Mutex};
    /// use std::time::{Duration, Instant};
    ///
    /// /// Computes without suspending until someone noticed (or ten seconds).
    /// #[inline(never)]
    /// fn crunch(noticed: &AtomicBool) {
    ///     let give_up = Instant::now() + Duration::from_secs(10);
    ///     while !noticed.load(SeqCst) && Instant::now() < give_up {
    ///         std::hint::spin_loop();
    ///     }
    /// }
    ///
    /// let noticed = Arc::new(AtomicBool::new(false));
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let (n, s) = (noticed.clone(), seen.clone());
    /// let rt = coscheduler::Runtime::builder()
    ///     .threads(1)
    ///     .stall_threshold(Duration::from_millis(20))
    ///     .on_stall(move |r| {
    ///         s.lock().unwrap().push(r.name().map(str::to_owned));
    ///         n.store(true, SeqCst);
    ///     })
    ///     .build()
    ///     .unwrap();
    /// rt.spawn_named("cruncher", move || crunch(&noticed)).join().unwrap();
    /// rt.shutdown();
    /// assert_eq!(*seen.lock().unwrap(), [Some("cruncher".to_owned())]);
    /// ```
    pub fn on_stall(mut self, f: impl Fn(&StallReport) + Send + Sync + 'static) -> Self {
        self.on_stall = Some(Hook(Arc::new(f)));
        self
    }

    /// Called once per stall when it is over (the coroutine suspended or
    /// returned), on the watchdog thread or on a thread reading
    /// [`Runtime::metrics`]; the report's
    /// [`elapsed`](StallReport::elapsed) is the total and
    /// [`has_ended`](StallReport::has_ended) is true. Without this callback
    /// the end is one more line on stderr, unless
    /// [`on_stall`](Builder::on_stall) is set (then nothing is printed).
    pub fn on_stall_end(mut self, f: impl Fn(&StallReport) + Send + Sync + 'static) -> Self {
        self.on_stall_end = Some(Hook(Arc::new(f)));
        self
    }

    /// The most threads the runtime's blocking pool starts (default
    /// [`DEFAULT_BLOCKING_THREADS`](crate::blocking::DEFAULT_BLOCKING_THREADS),
    /// 64); they start on demand. See [`blocking`](crate::blocking).
    ///
    /// # Panics
    /// If `n` is zero.
    #[track_caller]
    pub fn blocking_threads(mut self, n: usize) -> Self {
        assert!(n > 0, "a blocking pool needs at least one thread");
        self.settings.blocking_threads = n;
        self
    }

    /// How many blocking closures may wait for a pool thread before a
    /// coroutine submitting one waits for room (default
    /// [`DEFAULT_BLOCKING_QUEUE`](crate::blocking::DEFAULT_BLOCKING_QUEUE),
    /// 256; zero: submitters wait until a thread is free).
    pub fn blocking_queue(mut self, depth: usize) -> Self {
        self.settings.blocking_queue = depth;
        self
    }

    /// Applies a `[runtime]` configuration section: every setting it holds
    /// (a key the file left out holds its default) replaces the builder's.
    /// Callbacks and [`migrate_started`](Builder::migrate_started) are not
    /// configuration and stay as they are.
    ///
    /// ```
    /// let cfg = coscheduler::Config::from_toml_str("[runtime]\nthreads = 2\npool_max = 16")
    ///     .unwrap();
    /// let rt = coscheduler::Runtime::builder().config(&cfg.runtime).build().unwrap();
    /// assert_eq!(rt.contexts().len(), 2);
    /// ```
    #[cfg(feature = "config")]
    pub fn config(mut self, cfg: &crate::RuntimeConfig) -> Self {
        self.settings = cfg.settings().clone();
        self
    }

    /// Starts the workers.
    pub fn build(self) -> std::io::Result<Runtime> {
        crate::stackpool::class_for(self.settings.stack_size)?;
        let n = self
            .settings
            .threads
            .or_else(|| std::thread::available_parallelism().ok())
            .map_or(1, NonZeroUsize::get);
        let deques: Vec<Worker<crate::core::control::CoRef>> =
            (0..n).map(|_| Worker::new_fifo()).collect();
        let contexts: Vec<AioContext> = (0..n)
            .map(|i| {
                AioContext::with_settings(ContextSettings {
                    name: format!("{}-{i}", self.settings.thread_name),
                    poll_max: self.settings.poll_max,
                    stack_size: self.settings.stack_size,
                })
            })
            .collect();
        let stall = Arc::new(Detector::new(
            detector::Settings {
                threshold: self.settings.stall_threshold,
                on_stall: self.on_stall.clone(),
                on_stall_end: self.on_stall_end.clone(),
            },
            contexts.clone(),
        ));
        let shared = Arc::new(Shared {
            injector: crossbeam_deque::Injector::new(),
            stealers: deques.iter().map(Worker::stealer).collect(),
            contexts: contexts.clone(),
            idle: IdleSet::new(n),
            shutdown: AtomicBool::new(false),
            migrate_started: self.migrate_started,
            shutdown_timeout: self.settings.shutdown_timeout,
            drain_timeout_ns: Default::default(),
            stopped: Default::default(),
            stopped_cv: Default::default(),
            stall,
            blocking: Arc::new(crate::blocking::BlockingPool::new(
                self.settings.blocking_threads,
                self.settings.blocking_queue,
                format!("{}-blocking", self.settings.thread_name),
            )),
        });
        let cores = if self.settings.pin_threads {
            core_affinity::get_core_ids().filter(|c| !c.is_empty())
        } else {
            None
        };
        crate::core::stacks::inc_pool_size(self.settings.pool_max);
        let mut rt = Runtime {
            shared: shared.clone(),
            threads: Vec::with_capacity(n),
            pool_added: self.settings.pool_max,
        };
        for (i, (deque, ctx)) in deques.into_iter().zip(contexts).enumerate() {
            let local = WorkerLocal {
                shared: shared.clone(),
                index: i,
                deque,
            };
            let core = cores.as_ref().map(|c| c[i % c.len()]);
            let stack_size = self.settings.stack_size;
            let spawned = std::thread::Builder::new()
                .name(format!("{}-{i}", self.settings.thread_name))
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
        let weak = Arc::downgrade(&shared);
        let started = shared.stall.start(move |_stalled| {
            // Someone should look at the stalled worker's stealable work.
            if let Some(shared) = weak.upgrade() {
                shared.wake_idle_worker();
            }
        });
        if let Err(e) = started {
            // Everything else works without it.
            eprintln!("coscheduler: cannot start the stall watchdog ({e}); stalls go unreported");
        }
        Ok(rt)
    }
}
