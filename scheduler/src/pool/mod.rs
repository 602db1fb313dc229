//! The stack pool (layer 2): finished coroutines give their fiber back, and
//! the next coroutine created on any thread reuses it.
//!
//! This is QEMU's design (SEMANTICS.md §7, see the `batch` module) applied to fibers:
//! a per-thread cache of up to two batches of 128, a process-wide pool of
//! batches whose maximum starts at 128 and moves with
//! [`inc_pool_size`]/[`dec_pool_size`], and a hard cap of
//! `(vm.max_map_count − 5000) / 2` because every guarded stack costs two
//! mappings. Each thread caches one stack size (the first it uses, normally
//! the default); other sizes go straight to the shared pool.
//!
//! Counters are per thread, written only by their thread with plain relaxed
//! stores (no read-modify-write on the hot path) and summed on demand.

pub(crate) mod batch;

use std::cell::UnsafeCell;
use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, OnceLock};

use self::batch::{LocalCache, SharedPool};
use crate::fiber::{self, Fiber};
use crate::stack::{DEFAULT_STACK_SIZE, usable_size_for};
use crate::sync::AtomicU64;

/// Stacks per batch moved between a thread's cache and the shared pool
/// (QEMU's `COROUTINE_POOL_BATCH_MAX_SIZE`); a thread caches two batches.
pub const BATCH_SIZE: usize = batch::BATCH;

/// QEMU's initial global pool maximum (`COROUTINE_POOL_BATCH_MAX_SIZE`).
pub const INITIAL_POOL_MAX: usize = 128;

/// Mappings QEMU leaves to everything that is not a coroutine stack.
const RESERVED_MAPPINGS: usize = 5000;

/// A snapshot of the pool's counters (process-wide).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// The shared pool's current maximum (moved by `inc`/`dec_pool_size`).
    pub max_size: usize,
    /// Stacks pooled right now, shared pool and thread caches together.
    pub pooled: usize,
    /// Stacks handed out from a pool.
    pub hits: u64,
    /// Stack requests a pool could not serve.
    pub misses: u64,
    /// Stacks mapped since the process started.
    pub allocated: u64,
    /// Stacks unmapped since the process started.
    pub freed: u64,
    /// The cap derived from `vm.max_map_count` (`usize::MAX` if unknown).
    pub hard_max: usize,
    /// Failed stack allocations (for example `ENOMEM` at the mapping limit).
    pub alloc_failures: u64,
    /// Coroutines that could not be unwound and were leaked with their
    /// stacks since the process started: suspended inside their own
    /// unwinding with nothing left that could resume them, or still stuck
    /// when a shutdown's timeout ran out (each one is also reported by
    /// [`Runtime::shutdown_timeout`](crate::Runtime::shutdown_timeout)).
    pub leaked: u64,
}

impl PoolStats {
    /// Stacks that exist and are not pooled: held by live coroutines.
    pub fn in_use(&self) -> u64 {
        self.allocated - self.freed - self.pooled as u64
    }
}

/// One thread's counters.
#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    allocated: AtomicU64,
    freed: AtomicU64,
    failures: AtomicU64,
    local_pooled: AtomicU64,
}

impl Counters {
    /// Owner-only increment: a relaxed load and store, not an RMW.
    #[inline]
    fn bump(c: &AtomicU64, by: u64) {
        c.store(c.load(Relaxed) + by, Relaxed);
    }
}

struct Global {
    pool: SharedPool<Box<Fiber>>,
    /// Every thread's counters, plus those of exited threads folded into
    /// `retired`.
    threads: Mutex<Vec<Arc<Counters>>>,
    retired: Counters,
}

fn global() -> &'static Global {
    static GLOBAL: OnceLock<Global> = OnceLock::new();
    GLOBAL.get_or_init(|| Global {
        pool: SharedPool::new(INITIAL_POOL_MAX, hard_max_from_os()),
        threads: Mutex::new(Vec::new()),
        retired: Counters::default(),
    })
}

/// QEMU's `get_global_pool_hard_max_size`.
fn hard_max_from_os() -> usize {
    match std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
    {
        Some(n) if n > RESERVED_MAPPINGS => (n - RESERVED_MAPPINGS) / 2,
        Some(_) => 0,
        None => usize::MAX,
    }
}

/// One thread's half of the pool.
struct ThreadPool {
    cache: LocalCache<Box<Fiber>>,
    /// Registered with the global list on first use.
    counters: Option<Arc<Counters>>,
}

impl ThreadPool {
    /// This thread's counters, registering them on first use.
    #[inline]
    fn counters(&mut self) -> &Counters {
        if self.counters.is_none() {
            self.register();
        }
        self.counters.as_deref().expect("registered")
    }

    #[cold]
    fn register(&mut self) {
        let counters = Arc::new(Counters::default());
        global()
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(counters.clone());
        self.counters = Some(counters);
        self.cache = LocalCache::new(default_class());
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        let Some(counters) = self.counters.take() else {
            return;
        };
        let g = global();
        // Unlike QEMU, donate the cache instead of unmapping it: another
        // thread will likely want those stacks.
        let fibers = self.cache.drain();
        let refused = g.pool.give_batch(self.cache.class(), fibers);
        let freed = refused.map_or(0, |r| {
            let n = r.len();
            drop(r);
            n
        });
        Counters::bump(&counters.freed, freed as u64);
        counters.local_pooled.store(0, Relaxed);
        let mut threads = g.threads.lock().unwrap_or_else(|e| e.into_inner());
        threads.retain(|c| !Arc::ptr_eq(c, &counters));
        for (mine, all) in [
            (&counters.hits, &g.retired.hits),
            (&counters.misses, &g.retired.misses),
            (&counters.allocated, &g.retired.allocated),
            (&counters.freed, &g.retired.freed),
            (&counters.failures, &g.retired.failures),
        ] {
            // Under the `threads` lock, so a plain add is not lost.
            all.store(all.load(Relaxed) + mine.load(Relaxed), Relaxed);
        }
    }
}

thread_local! {
    static POOL: UnsafeCell<ThreadPool> =
        const { UnsafeCell::new(ThreadPool { cache: LocalCache::new(0), counters: None }) };
}

/// Runs `f` on this thread's pool; `None` during thread teardown, after the
/// pool was destroyed.
///
/// `f` must not call back into the pool (no nested `with_thread_pool`): the
/// `&mut` it receives is the only access to the thread's pool while it runs.
/// Every caller below only touches the cache, the counters and the shared
/// pool's mutex, and frees stacks only after returning.
#[inline]
fn with_thread_pool<R>(f: impl FnOnce(&mut ThreadPool) -> R) -> Option<R> {
    POOL.try_with(|p| {
        // SAFETY: thread-local, and never re-entered (see above), so this is
        // the only reference to the thread's pool.
        f(unsafe { &mut *p.get() })
    })
    .ok()
}

thread_local! {
    static THREAD_DEFAULT_SIZE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The usable stack size coroutines created on this thread get by default
/// (the Runtime sets its `stack_size` on its workers).
pub(crate) fn thread_default_size() -> usize {
    match THREAD_DEFAULT_SIZE.with(std::cell::Cell::get) {
        0 => DEFAULT_STACK_SIZE,
        n => n,
    }
}

/// Sets this thread's default stack size.
pub(crate) fn set_thread_default_size(bytes: usize) {
    THREAD_DEFAULT_SIZE.with(|c| c.set(bytes));
}

/// The default usable stack size, as a size class.
pub(crate) fn default_class() -> usize {
    usable_size_for(DEFAULT_STACK_SIZE).unwrap_or(DEFAULT_STACK_SIZE)
}

/// The size class for a requested usable size.
pub(crate) fn class_for(size: usize) -> io::Result<usize> {
    usable_size_for(size).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("stack size {size} is too large"),
        )
    })
}

/// Takes a fiber of `class` from the pool or maps a new one.
#[inline]
pub(crate) fn acquire(class: usize) -> io::Result<Box<Fiber>> {
    let got = with_thread_pool(|tp| {
        let fiber = if tp.cache.class() == class {
            tp.cache.get(&global().pool)
        } else {
            None
        };
        if fiber.is_some() {
            let len = tp.cache.len() as u64;
            let c = tp.counters();
            Counters::bump(&c.hits, 1);
            c.local_pooled.store(len, Relaxed);
        }
        fiber
    });
    match got {
        Some(Some(fiber)) => Ok(fiber),
        _ => acquire_slow(class),
    }
}

/// Not in this thread's cache: the shared pool, or a fresh mapping.
#[cold]
fn acquire_slow(class: usize) -> io::Result<Box<Fiber>> {
    let g = global();
    let shared = g.pool.take_one(class);
    with_thread_pool(|tp| {
        let c = tp.counters();
        match &shared {
            Some(_) => Counters::bump(&c.hits, 1),
            None => Counters::bump(&c.misses, 1),
        }
    });
    if let Some(fiber) = shared {
        return Ok(fiber);
    }
    g.pool.note_miss();
    allocate(class)
}

#[cold]
fn allocate(class: usize) -> io::Result<Box<Fiber>> {
    let result = fiber::allocate(class).or_else(|e| {
        // At the mapping limit, stacks of other sizes sitting in the shared
        // pool are pure waste: unmap them and try once more.
        if e.raw_os_error() == Some(libc::ENOMEM) {
            let spare = global().pool.drain();
            if !spare.is_empty() {
                count_freed(spare.len());
                drop(spare);
                return fiber::allocate(class);
            }
        }
        Err(e)
    });
    with_thread_pool(|tp| {
        let c = tp.counters();
        match &result {
            Ok(_) => Counters::bump(&c.allocated, 1),
            Err(_) => Counters::bump(&c.failures, 1),
        }
    });
    result.map(Box::new)
}

fn count_freed(n: usize) {
    if with_thread_pool(|tp| Counters::bump(&tp.counters().freed, n as u64)).is_none() {
        let g = global();
        let _guard = g.threads.lock().unwrap_or_else(|e| e.into_inner());
        g.retired
            .freed
            .store(g.retired.freed.load(Relaxed) + n as u64, Relaxed);
    }
}

/// Gives a finished coroutine's fiber back.
#[inline]
pub(crate) fn release(fiber: Box<Fiber>) {
    let class = fiber.usable_size();
    let mut slot = Some(fiber);
    let refused = with_thread_pool(|tp| {
        if tp.cache.class() != class {
            return None;
        }
        let refused = tp
            .cache
            .put(&global().pool, slot.take().expect("given once"));
        let len = tp.cache.len() as u64;
        tp.counters().local_pooled.store(len, Relaxed);
        refused
    })
    .flatten();
    if let Some(fiber) = slot {
        release_slow(class, fiber);
    }
    if let Some(batch) = refused {
        count_freed(batch.len());
        drop(batch);
    }
}

/// A size this thread does not cache, or thread teardown: the shared pool.
#[cold]
fn release_slow(class: usize, fiber: Box<Fiber>) {
    if let Some(refused) = global().pool.give_one(class, fiber) {
        count_freed(1);
        drop(refused);
    }
}

/// Counters summed over all threads.
pub fn stats() -> PoolStats {
    let g = global();
    let (shared_pooled, max_size, hard_max) = g.pool.levels();
    let threads = g.threads.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = PoolStats {
        max_size,
        pooled: shared_pooled,
        hits: g.retired.hits.load(Relaxed),
        misses: g.retired.misses.load(Relaxed),
        allocated: g.retired.allocated.load(Relaxed),
        freed: g.retired.freed.load(Relaxed),
        hard_max,
        alloc_failures: g.retired.failures.load(Relaxed),
        leaked: LEAKED.load(Relaxed),
    };
    for c in threads.iter() {
        s.hits += c.hits.load(Relaxed);
        s.misses += c.misses.load(Relaxed);
        s.allocated += c.allocated.load(Relaxed);
        s.freed += c.freed.load(Relaxed);
        s.alloc_failures += c.failures.load(Relaxed);
        s.pooled += c.local_pooled.load(Relaxed) as usize;
    }
    s
}

/// Coroutines leaked since the process started (see [`PoolStats::leaked`]).
static LEAKED: AtomicU64 = AtomicU64::new(0);

/// Counts a coroutine leaked with its stack.
pub(crate) fn note_leaked() {
    // Relaxed: a statistic.
    LEAKED.fetch_add(1, Relaxed);
}

/// QEMU's `qemu_coroutine_inc_pool_size`: lets the shared pool keep
/// `additional` more stacks.
pub fn inc_pool_size(additional: usize) {
    global().pool.inc_max(additional);
}

/// QEMU's `qemu_coroutine_dec_pool_size`: lowers the shared pool's maximum by
/// `removed`. Stacks already pooled above the new maximum stay until reused.
pub fn dec_pool_size(removed: usize) {
    global().pool.dec_max(removed);
}

/// Unmaps every stack in the shared pool and in this thread's cache; returns
/// how many were freed. Stacks held by other threads' caches stay.
pub fn trim() -> usize {
    let mut spare = global().pool.drain();
    if let Some(local) = with_thread_pool(|tp| {
        let v = tp.cache.drain();
        tp.counters().local_pooled.store(0, Relaxed);
        v
    }) {
        spare.extend(local);
    }
    let n = spare.len();
    count_freed(n);
    drop(spare);
    n
}

/// Unmaps pooled stacks above the shared pool's maximum (after a
/// `dec_pool_size`, e.g. when a Runtime shuts down); returns how many.
pub fn trim_to_max() -> usize {
    let spare = global().pool.trim_to_max();
    let n = spare.len();
    if n > 0 {
        count_freed(n);
        drop(spare);
    }
    n
}
