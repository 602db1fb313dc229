//! The stack pool (layer 2): finished coroutines give their stack back, and
//! the next coroutine created on any thread reuses it.
//!
//! This is QEMU's design (docs/SEMANTICS.md §7, see the `batch` module): a
//! per-thread cache of up to two batches of 128, a process-wide pool of
//! batches whose maximum starts at 128 and moves with
//! [`Pool::inc_max`]/[`Pool::dec_max`], and a hard cap of
//! `(vm.max_map_count − 5000) / 2` because every guarded stack costs two
//! mappings. Each thread caches one size class (the first it uses, normally
//! the default); other sizes go straight to the shared pool.
//!
//! The pool is generic over what it keeps ([`Pooled`]): the core pools
//! *fibers* — a stack with its trampoline parked on it, so that reusing one
//! costs a switch, not a stack setup — and owns the process's instance
//! (`core::stacks`). This layer knows stacks and batches, nothing above.
//!
//! Counters are per thread, written only by their thread with plain relaxed
//! stores (no read-modify-write on the hot path) and summed on demand.

pub(crate) mod batch;

use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use self::batch::{LocalCache, SharedPool};
use crate::stack::{DEFAULT_STACK_SIZE, usable_size_for};
use crate::sync::AtomicU64;

/// Stacks per batch moved between a thread's cache and the shared pool
/// (QEMU's `COROUTINE_POOL_BATCH_MAX_SIZE`); a thread caches two batches.
pub const BATCH_SIZE: usize = batch::BATCH;

/// QEMU's initial global pool maximum (`COROUTINE_POOL_BATCH_MAX_SIZE`).
pub const INITIAL_POOL_MAX: usize = 128;

/// Mappings QEMU leaves to everything that is not a coroutine stack.
const RESERVED_MAPPINGS: usize = 5000;

/// What a [`Pool`] keeps: something built on one guarded stack.
pub(crate) trait Pooled: Send + Sized + 'static {
    /// Its usable stack size (the size class it is pooled under).
    fn class(&self) -> usize;
    /// Maps a new one of `class`.
    fn allocate(class: usize) -> io::Result<Self>;
}

/// A snapshot of the pool's counters (process-wide).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// The shared pool's current maximum (moved by `inc`/`dec_pool_size`).
    pub max_size: usize,
    /// Stacks pooled right now, shared pool and thread caches together.
    /// Can exceed `max_size`: the maximum bounds only the shared pool, and
    /// each thread also caches up to two batches of its own.
    pub pooled: usize,
    /// Of `pooled`, the stacks in the shared pool (bounded by `max_size`).
    pub shared_pooled: usize,
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
pub(crate) struct Counters {
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

/// The process-wide half of a pool.
pub(crate) struct Pool<T> {
    shared: SharedPool<T>,
    /// Every thread's counters, plus those of exited threads folded into
    /// `retired`.
    threads: Mutex<Vec<Arc<Counters>>>,
    retired: Counters,
    /// Coroutines leaked with their stacks (see [`PoolStats::leaked`]).
    leaked: AtomicU64,
}

/// One thread's half of a pool. The owner passes `&mut` to it into every
/// [`Pool`] call, which makes it the only access while the call runs; the
/// calls never re-enter the pool and free stacks only after they are done
/// with the cache.
pub(crate) struct ThreadCache<T> {
    cache: LocalCache<T>,
    /// Registered with the pool's list on first use.
    counters: Option<Arc<Counters>>,
}

impl<T> ThreadCache<T> {
    /// An empty cache, registered with its pool on first use.
    pub(crate) const fn new() -> ThreadCache<T> {
        ThreadCache {
            cache: LocalCache::new(0),
            counters: None,
        }
    }
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

impl<T: Pooled> Pool<T> {
    /// An empty pool with QEMU's initial maximum.
    pub(crate) fn new() -> Pool<T> {
        Pool {
            shared: SharedPool::new(INITIAL_POOL_MAX, hard_max_from_os()),
            threads: Mutex::new(Vec::new()),
            retired: Counters::default(),
            leaked: AtomicU64::new(0),
        }
    }

    fn threads(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Counters>>> {
        // Only pushed to and retained under the lock; a poisoned lock
        // cannot hold a half-updated list.
        self.threads.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `tc`'s counters, registering them on first use.
    #[inline]
    fn counters<'a>(&self, tc: &'a mut ThreadCache<T>) -> &'a Counters {
        if tc.counters.is_none() {
            self.register(tc);
        }
        tc.counters.as_deref().expect("registered")
    }

    #[cold]
    fn register(&self, tc: &mut ThreadCache<T>) {
        let counters = Arc::new(Counters::default());
        self.threads().push(counters.clone());
        tc.counters = Some(counters);
        tc.cache = LocalCache::new(default_class());
    }

    /// A thread's cache is going away (thread exit): donates its stacks to
    /// the shared pool (unlike QEMU, which unmaps them: another thread will
    /// likely want them) and folds its counters into the retired ones.
    pub(crate) fn retire(&self, tc: &mut ThreadCache<T>) {
        let Some(counters) = tc.counters.take() else {
            return;
        };
        let items = tc.cache.drain();
        let refused = self.shared.give_batch(tc.cache.class(), items);
        let freed = refused.map_or(0, |r| {
            let n = r.len();
            drop(r);
            n
        });
        Counters::bump(&counters.freed, freed as u64);
        counters.local_pooled.store(0, Relaxed);
        let mut threads = self.threads();
        threads.retain(|c| !Arc::ptr_eq(c, &counters));
        for (mine, all) in [
            (&counters.hits, &self.retired.hits),
            (&counters.misses, &self.retired.misses),
            (&counters.allocated, &self.retired.allocated),
            (&counters.freed, &self.retired.freed),
            (&counters.failures, &self.retired.failures),
        ] {
            // Under the `threads` lock, so a plain add is not lost.
            all.store(all.load(Relaxed) + mine.load(Relaxed), Relaxed);
        }
    }

    /// Takes an item of `class` from the pool or maps a new one. `tc` is
    /// the calling thread's cache (`None` during thread teardown).
    #[inline]
    pub(crate) fn acquire(
        &self,
        mut tc: Option<&mut ThreadCache<T>>,
        class: usize,
    ) -> io::Result<T> {
        if let Some(tc) = tc.as_deref_mut() {
            if let (true, Some(c)) = (tc.cache.class() == class, tc.counters.as_deref()) {
                if let Some(item) = tc.cache.pop_current() {
                    Counters::bump(&c.hits, 1);
                    c.local_pooled
                        .store(c.local_pooled.load(Relaxed) - 1, Relaxed);
                    return Ok(item);
                }
            }
            if tc.cache.class() == class {
                if let Some(item) = tc.cache.get(&self.shared) {
                    let len = tc.cache.len() as u64;
                    let c = self.counters(tc);
                    Counters::bump(&c.hits, 1);
                    c.local_pooled.store(len, Relaxed);
                    return Ok(item);
                }
            }
        }
        self.acquire_slow(tc, class)
    }

    /// Not in the thread's cache: the shared pool, or a fresh mapping.
    #[cold]
    fn acquire_slow(&self, mut tc: Option<&mut ThreadCache<T>>, class: usize) -> io::Result<T> {
        let shared = self.shared.take_one(class);
        if let Some(tc) = tc.as_deref_mut() {
            let c = self.counters(tc);
            match &shared {
                Some(_) => Counters::bump(&c.hits, 1),
                None => Counters::bump(&c.misses, 1),
            }
        }
        if let Some(item) = shared {
            return Ok(item);
        }
        self.shared.note_miss();
        self.allocate(tc, class)
    }

    #[cold]
    fn allocate(&self, mut tc: Option<&mut ThreadCache<T>>, class: usize) -> io::Result<T> {
        let result = T::allocate(class).or_else(|e| {
            // At the mapping limit, stacks of other sizes sitting in the
            // shared pool are pure waste: unmap them and try once more.
            if e.raw_os_error() == Some(libc::ENOMEM) {
                let spare = self.shared.drain();
                if !spare.is_empty() {
                    self.count_freed(tc.as_deref_mut(), spare.len());
                    drop(spare);
                    return T::allocate(class);
                }
            }
            Err(e)
        });
        if let Some(tc) = tc {
            let c = self.counters(tc);
            match &result {
                Ok(_) => Counters::bump(&c.allocated, 1),
                Err(_) => Counters::bump(&c.failures, 1),
            }
        }
        result
    }

    fn count_freed(&self, tc: Option<&mut ThreadCache<T>>, n: usize) {
        match tc {
            Some(tc) => Counters::bump(&self.counters(tc).freed, n as u64),
            None => {
                let _guard = self.threads();
                self.retired
                    .freed
                    .store(self.retired.freed.load(Relaxed) + n as u64, Relaxed);
            }
        }
    }

    /// Gives an item back (a finished coroutine's).
    #[inline]
    pub(crate) fn release(&self, mut tc: Option<&mut ThreadCache<T>>, item: T) {
        let class = item.class();
        let item = match tc.as_deref_mut() {
            Some(tc) => match (tc.cache.class() == class, tc.counters.as_deref()) {
                (true, Some(c)) => match tc.cache.push_current(item) {
                    Ok(()) => {
                        c.local_pooled
                            .store(c.local_pooled.load(Relaxed) + 1, Relaxed);
                        return;
                    }
                    Err(item) => item,
                },
                _ => item,
            },
            None => item,
        };
        self.release_slow(tc, class, item);
    }

    #[inline(never)]
    fn release_slow(&self, mut tc: Option<&mut ThreadCache<T>>, class: usize, item: T) {
        let mut slot = Some(item);
        let refused = match tc.as_deref_mut() {
            Some(tc) if tc.cache.class() == class => {
                let refused = tc.cache.put(&self.shared, slot.take().expect("given once"));
                let len = tc.cache.len() as u64;
                self.counters(tc).local_pooled.store(len, Relaxed);
                refused
            }
            _ => None,
        };
        if let Some(item) = slot {
            // A size this thread does not cache, or thread teardown.
            if let Some(refused) = self.shared.give_one(class, item) {
                self.count_freed(tc, 1);
                drop(refused);
            }
            return;
        }
        if let Some(batch) = refused {
            self.count_freed(tc, batch.len());
            drop(batch);
        }
    }

    /// Counters summed over all threads.
    pub(crate) fn stats(&self) -> PoolStats {
        let (shared_pooled, max_size, hard_max) = self.shared.levels();
        let threads = self.threads();
        let mut s = PoolStats {
            max_size,
            pooled: shared_pooled,
            shared_pooled,
            hits: self.retired.hits.load(Relaxed),
            misses: self.retired.misses.load(Relaxed),
            allocated: self.retired.allocated.load(Relaxed),
            freed: self.retired.freed.load(Relaxed),
            hard_max,
            alloc_failures: self.retired.failures.load(Relaxed),
            leaked: self.leaked.load(Relaxed),
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

    /// Counts a coroutine leaked with its stack.
    pub(crate) fn note_leaked(&self) {
        // Relaxed: a statistic.
        self.leaked.fetch_add(1, Relaxed);
    }

    /// QEMU's `qemu_coroutine_inc_pool_size`.
    pub(crate) fn inc_max(&self, additional: usize) {
        self.shared.inc_max(additional);
    }

    /// QEMU's `qemu_coroutine_dec_pool_size`.
    pub(crate) fn dec_max(&self, removed: usize) {
        self.shared.dec_max(removed);
    }

    /// Unmaps every item in the shared pool and in `tc`; returns how many.
    pub(crate) fn trim(&self, mut tc: Option<&mut ThreadCache<T>>) -> usize {
        let mut spare = self.shared.drain();
        if let Some(tc) = tc.as_deref_mut() {
            spare.extend(tc.cache.drain());
            self.counters(tc).local_pooled.store(0, Relaxed);
        }
        let n = spare.len();
        self.count_freed(tc, n);
        drop(spare);
        n
    }

    /// Unmaps shared items above the maximum; returns how many.
    pub(crate) fn trim_to_max(&self, tc: Option<&mut ThreadCache<T>>) -> usize {
        let spare = self.shared.trim_to_max();
        let n = spare.len();
        if n > 0 {
            self.count_freed(tc, n);
            drop(spare);
        }
        n
    }
}

thread_local! {
    /// This thread's default usable stack size and its size class (0: the
    /// crate's default, not computed yet).
    static THREAD_DEFAULT: std::cell::Cell<(usize, usize)> = const { std::cell::Cell::new((0, 0)) };
}

/// The usable stack size coroutines created on this thread get by default
/// (the Runtime sets its `stack_size` on its workers).
pub(crate) fn thread_default_size() -> usize {
    match THREAD_DEFAULT.with(std::cell::Cell::get).0 {
        0 => DEFAULT_STACK_SIZE,
        n => n,
    }
}

/// The size class of [`thread_default_size`], computed once per setting.
#[inline]
pub(crate) fn thread_default_class() -> usize {
    THREAD_DEFAULT.with(|c| match c.get() {
        (_, 0) => {
            let size = thread_default_size();
            let class = usable_size_for(size).unwrap_or(size);
            c.set((size, class));
            class
        }
        (_, class) => class,
    })
}

/// Sets this thread's default stack size.
pub(crate) fn set_thread_default_size(bytes: usize) {
    let class = usable_size_for(bytes).unwrap_or(0);
    THREAD_DEFAULT.with(|c| c.set((bytes, class)));
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
