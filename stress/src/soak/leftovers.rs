//! Coroutines left suspended on purpose when a soak cycle ends its runtime.
//!
//! A workload joins everything it started, so on its own it never tests what shutdown
//! promises: that every *suspended* coroutine is unwound on its home thread, running its
//! destructors and releasing what it holds. So before each teardown the soak parks, on
//! every context, coroutines in each way a coroutine waits:
//!
//! - in a bare `suspend()`, which nothing will ever wake;
//! - in `co_sleep` for an hour (a timer that must be cancelled);
//! - queued on a `CoMutex` that one of them holds while it sleeps for an hour;
//! - queued for a read lock of a `CoRwLock` that one of them holds for writing while it
//!   sleeps for an hour;
//! - in `CoQueue::wait`, which nothing will ever signal;
//! - in `JoinHandle::join` on one of the `suspend()`ed ones, of the next context;
//! - in `co_timeout` of an hour around a `co_sleep` of an hour: the caller waits for its
//!   deadline and the function's own coroutine sleeps.
//!
//! Each holds a [`Token`]: a clone of one shared `Arc` whose drop counts itself. After the
//! teardown every token must have been dropped, the `Arc` must be back to one reference,
//! the mutexes must be free and the `CoQueue` empty. A leaked coroutine keeps its token
//! (and its stack), so these checks see it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use coprimitives::{CoMutex, CoQueue, CoRwLock, co_sleep, co_timeout};
use coscheduler::config::format_duration;
use coscheduler::{Coroutine, JoinHandle, Runtime, suspend};

use crate::outcome::Check;

/// How long a sleeping leftover asks to sleep: far past any cycle.
const FOREVER: Duration = Duration::from_secs(3_600);

/// How long the leftovers may take to reach their suspension points.
const PARK_TIMEOUT: Duration = Duration::from_secs(10);

/// What the leftovers share.
#[derive(Debug, Default)]
struct Shared {
    /// Leftovers that reached (or are about to reach) their suspension point.
    parked: AtomicU64,
    /// Tokens dropped: leftovers unwound.
    dropped: AtomicU64,
    /// The mutex one leftover holds and others wait on.
    lock: CoMutex<()>,
    /// The lock one leftover holds for writing and readers wait on.
    rwlock: CoRwLock<()>,
    /// The queue leftovers wait in, and the mutex they wait with (never held for long:
    /// `CoQueue::wait` releases it).
    queue: CoQueue,
    queue_lock: CoMutex<()>,
}

impl Shared {
    /// Counts a leftover that reached its suspension point.
    fn arrived(&self) {
        self.parked.fetch_add(1, Ordering::Relaxed);
    }
}

/// A leftover's share of [`Shared`]; dropping it is how the unwinding shows.
struct Token(Arc<Shared>);

impl Drop for Token {
    fn drop(&mut self) {
        // Relaxed: the count is read after the teardown, which joins every worker thread
        // (a happens-before edge to the reader).
        self.0.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// The leftovers of one cycle, parked.
#[derive(Debug)]
pub(super) struct Leftovers {
    shared: Arc<Shared>,
    spawned: u64,
}

impl Leftovers {
    /// Parks `per_kind` coroutines of each kind on every context of `runtime`, plus the
    /// holders of the mutex and of the read-write lock on the first (none at all when
    /// `per_kind` is 0), and waits until they have all started.
    ///
    /// # Errors
    ///
    /// A message if a coroutine could not be created or they did not all start in time.
    pub(super) fn park(
        runtime: &Runtime,
        per_kind: usize,
        stack_size: usize,
    ) -> Result<Leftovers, String> {
        let shared = Arc::new(Shared::default());
        if per_kind == 0 {
            return Ok(Leftovers { shared, spawned: 0 });
        }
        let mut spawner = Spawner {
            runtime,
            shared: &shared,
            stack_size,
            spawned: 0,
        };
        spawner.spawn(0, "soak-holder".to_owned(), |shared| {
            let _held = shared.lock.lock();
            shared.arrived();
            co_sleep(FOREVER);
        })?;
        spawner.spawn(0, "soak-writer".to_owned(), |shared| {
            let _held = shared.rwlock.write();
            shared.arrived();
            co_sleep(FOREVER);
        })?;
        // The waiters must find both locks held, so the holders go first.
        wait_until(&shared, 2)?;
        let contexts = runtime.contexts().len();
        for context in 0..contexts {
            for index in 0..per_kind {
                let suspended = spawner.spawn(
                    context,
                    format!("soak-suspended-{context}.{index}"),
                    |shared| {
                        shared.arrived();
                        suspend();
                    },
                )?;
                spawner.spawn(
                    (context + 1) % contexts,
                    format!("soak-joiner-{context}.{index}"),
                    move |shared| {
                        shared.arrived();
                        // The joined coroutine is unwound too, so the join may return
                        // (cancelled) before this one is; either way its token drops.
                        let _ = suspended.join();
                    },
                )?;
                spawner.spawn(
                    context,
                    format!("soak-sleeper-{context}.{index}"),
                    |shared| {
                        shared.arrived();
                        co_sleep(FOREVER);
                    },
                )?;
                spawner.spawn(
                    context,
                    format!("soak-waiter-{context}.{index}"),
                    |shared| {
                        // Counted just before queuing: the teardown may find it about to queue,
                        // which it must handle as well.
                        shared.arrived();
                        drop(shared.lock.lock());
                    },
                )?;
                spawner.spawn(
                    context,
                    format!("soak-reader-{context}.{index}"),
                    |shared| {
                        shared.arrived();
                        drop(shared.rwlock.read());
                    },
                )?;
                spawner.spawn(
                    context,
                    format!("soak-queued-{context}.{index}"),
                    |shared| {
                        let guard = shared.queue_lock.lock();
                        shared.arrived();
                        drop(shared.queue.wait(guard));
                    },
                )?;
                let body = Token(Arc::clone(&shared));
                spawner.spawn(
                    context,
                    format!("soak-timeout-{context}.{index}"),
                    move |shared| {
                        shared.arrived();
                        let _ = co_timeout(FOREVER, move || {
                            let body = body;
                            body.0.arrived();
                            co_sleep(FOREVER);
                        });
                    },
                )?;
                // `co_timeout` runs the function in a coroutine of its own, with a token.
                spawner.spawned += 1;
            }
        }
        let spawned = spawner.spawned;
        wait_until(&shared, spawned)?;
        Ok(Leftovers { shared, spawned })
    }

    /// Coroutines parked.
    pub(super) fn count(&self) -> u64 {
        self.spawned
    }

    /// Makes one more reference to the shared state and leaks it, and parks one more
    /// coroutine outside any runtime and forgets it: the leaks `--test-leak` plants to show
    /// that the checks catch them.
    pub(super) fn leak_on_purpose(&mut self) {
        std::mem::forget(Arc::clone(&self.shared));
        let token = Token(Arc::clone(&self.shared));
        let co = Coroutine::new(move || {
            let token = token;
            token.0.arrived();
            suspend();
        });
        co.enter();
        self.spawned += 1;
        std::mem::forget(co);
    }

    /// The checks to make once the runtime is gone.
    pub(super) fn checks(self) -> Vec<Check> {
        let Leftovers { shared, spawned } = self;
        let dropped = shared.dropped.load(Ordering::Relaxed);
        let locked = u64::from(shared.lock.is_locked());
        let queue_locked = u64::from(shared.queue_lock.is_locked());
        let queued = shared.queue.len() as u64;
        let references = Arc::strong_count(&shared) as u64;
        vec![
            Check::equal(
                "suspended coroutines unwound (their destructors ran)",
                spawned,
                dropped,
            ),
            Check::equal(
                "references to the leftovers' shared state (Arc::strong_count)",
                1,
                references,
            ),
            Check::equal("leftovers' CoMutex left locked", 0, locked),
            Check::equal("leftovers' CoQueue mutex left locked", 0, queue_locked),
            Check::equal("leftovers still queued in their CoQueue", 0, queued),
        ]
    }
}

/// Spawns leftovers, each with a [`Token`], and counts them.
struct Spawner<'a> {
    runtime: &'a Runtime,
    shared: &'a Arc<Shared>,
    stack_size: usize,
    spawned: u64,
}

impl Spawner<'_> {
    /// Spawns `body` on context `context` (modulo their number) with a token of its own.
    fn spawn(
        &mut self,
        context: usize,
        name: String,
        body: impl FnOnce(&Shared) + Send + 'static,
    ) -> Result<JoinHandle<()>, String> {
        let token = Token(Arc::clone(self.shared));
        let contexts = self.runtime.contexts();
        let handle = Coroutine::builder()
            .name(name.clone())
            .stack_size(self.stack_size)
            .spawn_on(&contexts[context % contexts.len()], move || {
                let token = token;
                body(&token.0);
            })
            .map_err(|err| format!("cannot create leftover coroutine {name}: {err}"))?;
        self.spawned += 1;
        // A caller that drops the handle detaches the coroutine: only the teardown ends it.
        Ok(handle)
    }
}

/// Waits until `count` leftovers have started.
fn wait_until(shared: &Shared, count: u64) -> Result<(), String> {
    let started = Instant::now();
    while shared.parked.load(Ordering::Relaxed) < count {
        if started.elapsed() > PARK_TIMEOUT {
            return Err(format!(
                "only {} of {count} leftover coroutines started within {}",
                shared.parked.load(Ordering::Relaxed),
                format_duration(PARK_TIMEOUT)
            ));
        }
        thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}
