//! The process's pool of fibers: the core's instance of the generic stack
//! pool (`stackpool`), and the public pool controls (`coscheduler::pool`).
//!
//! A finished coroutine's fiber keeps its trampoline parked at the top of
//! its loop, so the next coroutine created on it starts with one switch;
//! pooling fibers rather than bare stacks is what keeps creation cheap
//! (QEMU keeps its coroutines' contexts the same way).

use std::cell::UnsafeCell;
use std::io;
use std::sync::OnceLock;

use super::fiber::{self, Fiber};
use crate::stackpool::{Pool, PoolStats, Pooled, ThreadCache};

impl Pooled for Box<Fiber> {
    fn class(&self) -> usize {
        self.usable_size()
    }

    fn allocate(class: usize) -> io::Result<Self> {
        fiber::allocate(class).map(Box::new)
    }
}

fn pool() -> &'static Pool<Box<Fiber>> {
    static POOL: OnceLock<Pool<Box<Fiber>>> = OnceLock::new();
    POOL.get_or_init(Pool::new)
}

/// This thread's cache; retired into the shared pool when the thread exits.
struct Cache(UnsafeCell<ThreadCache<Box<Fiber>>>);

impl Drop for Cache {
    fn drop(&mut self) {
        pool().retire(self.0.get_mut());
    }
}

thread_local! {
    static CACHE: Cache = const { Cache(UnsafeCell::new(ThreadCache::new())) };
}

/// Runs `f` with this thread's cache (`None` during thread teardown, after
/// the cache was retired).
#[inline(always)]
fn with_cache<R>(f: impl FnOnce(Option<&mut ThreadCache<Box<Fiber>>>) -> R) -> R {
    let cache = CACHE.try_with(|c| c.0.get()).ok();
    // SAFETY: the pointer is to this thread's cache, which lives until the
    // thread's TLS teardown (it cannot start during this call), and the
    // pool calls never re-enter this function (`ThreadCache`'s contract),
    // so this is the only access.
    f(cache.map(|p| unsafe { &mut *p }))
}

/// Takes a fiber of `class` from the pool or maps a new one.
#[inline]
pub(crate) fn acquire(class: usize) -> io::Result<Box<Fiber>> {
    with_cache(|tc| pool().acquire(tc, class))
}

/// Gives a finished coroutine's fiber back.
#[inline]
pub(crate) fn release(fiber: Box<Fiber>) {
    with_cache(|tc| pool().release(tc, fiber));
}

/// Counts a coroutine leaked with its stack.
pub(crate) fn note_leaked() {
    pool().note_leaked();
}

/// Counters summed over all threads.
pub fn stats() -> PoolStats {
    pool().stats()
}

/// QEMU's `qemu_coroutine_inc_pool_size`: lets the shared pool keep
/// `additional` more stacks.
pub fn inc_pool_size(additional: usize) {
    pool().inc_max(additional);
}

/// QEMU's `qemu_coroutine_dec_pool_size`: lowers the shared pool's maximum by
/// `removed`. Stacks already pooled above the new maximum stay until reused.
pub fn dec_pool_size(removed: usize) {
    pool().dec_max(removed);
}

/// Unmaps every stack in the shared pool and in this thread's cache; returns
/// how many were freed. Stacks held by other threads' caches stay.
pub fn trim() -> usize {
    with_cache(|tc| pool().trim(tc))
}

/// Unmaps pooled stacks above the shared pool's maximum (after a
/// `dec_pool_size`, e.g. when a Runtime shuts down); returns how many.
pub fn trim_to_max() -> usize {
    with_cache(|tc| pool().trim_to_max(tc))
}
