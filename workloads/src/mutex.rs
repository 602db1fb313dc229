//! W4: a contended mutex, QEMU's `test_multi_co_mutex`, and the uncontended path beside it
//! ([`uncontended`]). Coroutines on two workers loop {
//! lock; counter += 1; unlock } until [`Until`] says stop, on coprimitives' `CoMutex`
//! ([`Counter`]) or on `tokio::sync::Mutex` ([`TokioCounter`], feature `tokio`).
//!
//! The counter is a plain integer, as in QEMU's test, so that a broken lock loses
//! increments instead of hiding behind an atomic: a caller checks that the count equals the
//! increments its coroutines report. Each counter sits on cache lines of its own, with its
//! mutex: where an allocation falls decides which lines bounce between the workers, which
//! otherwise moves the figure by several percent from run to run (an A/A run of
//! `primitives/examples/comutex_w4.rs`, `W4_AA=1`, shows it).

use std::cell::UnsafeCell;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use coprimitives::CoMutex;
use coscheduler::{JoinHandle, Runtime};

/// When one coroutine (or task) stops incrementing.
#[derive(Clone, Debug)]
pub enum Until {
    /// After its own share of increments (QEMU's fixed-total form).
    Count(u64),
    /// When someone raises the flag (the set-time form).
    Stop(Arc<AtomicBool>),
}

impl Until {
    /// Whether a coroutine that has made `done` increments goes on.
    #[inline]
    pub fn more(&self, done: u64) -> bool {
        match self {
            Until::Count(n) => done < *n,
            // Relaxed: the flag orders nothing, it only has to be seen eventually; the
            // caller collects each coroutine's count through a join or a release of its own.
            Until::Stop(flag) => !flag.load(Ordering::Relaxed),
        }
    }
}

/// A `CoMutex<()>` and the plain counter it protects, on cache lines of their own.
#[repr(align(128))]
pub struct Counter {
    lock: CoMutex<()>,
    count: UnsafeCell<u64>,
}

// SAFETY: `count` is only touched by a holder of `lock` (`increment_observed`,
// `try_count`) or through `&mut`/ownership (`into_count`); `CoMutex<()>` is Sync.
unsafe impl Sync for Counter {}

impl Counter {
    /// A zero count behind a default (eventually fair) `CoMutex`.
    pub fn new() -> Counter {
        Counter::with_lock(CoMutex::new(()))
    }

    /// A zero count behind `lock`: a `CoMutex::with_stats` for its contention figures, a
    /// `CoMutex::new_fifo` for strict hand-over.
    pub fn with_lock(lock: CoMutex<()>) -> Counter {
        Counter {
            lock,
            count: UnsafeCell::new(0),
        }
    }

    /// W4's loop, in a coroutine: lock, add one, unlock, until `until` says stop. Returns
    /// the increments this call made.
    #[inline]
    pub fn increment(&self, until: &Until) -> u64 {
        self.increment_observed(until, |_| {})
    }

    /// [`increment`](Counter::increment), calling `each` with the increments made so far
    /// after every one, outside the lock: where costress tallies its progress and yields.
    #[inline]
    pub fn increment_observed(&self, until: &Until, mut each: impl FnMut(u64)) -> u64 {
        let mut mine = 0;
        while until.more(mine) {
            let guard = self.lock.lock();
            // SAFETY: we hold `lock` (see the Sync argument).
            unsafe { *self.count.get() += 1 };
            drop(guard);
            mine += 1;
            each(mine);
        }
        mine
    }

    /// The count, or `None` while the lock is held. Works on a plain thread; with a
    /// `with_stats` lock it counts as one uncontended acquisition.
    pub fn try_count(&self) -> Option<u64> {
        let _guard = self.lock.try_lock()?;
        // SAFETY: we hold `lock` (see the Sync argument).
        Some(unsafe { *self.count.get() })
    }

    /// The count, once nothing else can touch it.
    pub fn into_count(self) -> u64 {
        self.count.into_inner()
    }
}

/// The uncontended fast path that cobench's deterministic `comutex_uncontended` counts:
/// `iters` × (lock, add one, unlock) of `mutex` by the calling coroutine, with nobody else
/// wanting it. `mutex` goes through `black_box` once, so that the loop cannot be folded.
#[inline]
pub fn uncontended(mutex: &CoMutex<u64>, iters: u64) {
    let mutex = black_box(mutex);
    for _ in 0..iters {
        *mutex.lock() += 1;
    }
}

/// W4's coroutines on coscheduler: `per_context` on every context of `rt`, placed with
/// `AioContext::spawn` (so never stolen), each running [`Counter::increment`] on `counter`
/// until `until` says stop. Returns their handles, whose results are the increments each
/// made.
pub fn spawn_incrementers(
    rt: &Runtime,
    per_context: u64,
    counter: &Arc<Counter>,
    until: &Until,
) -> Vec<JoinHandle<u64>> {
    rt.contexts()
        .iter()
        .flat_map(|ctx| {
            (0..per_context).map(|_| {
                let (counter, until) = (counter.clone(), until.clone());
                ctx.spawn(move || counter.increment(&until))
            })
        })
        .collect()
}

impl Default for Counter {
    fn default() -> Counter {
        Counter::new()
    }
}

/// `tokio::sync::Mutex<u64>`, aligned as [`Counter`] is so that a tokio row pays for the
/// same cache-line traffic.
#[cfg(feature = "tokio")]
#[repr(align(128))]
#[derive(Debug, Default)]
pub struct TokioCounter {
    lock: tokio::sync::Mutex<u64>,
}

#[cfg(feature = "tokio")]
impl TokioCounter {
    /// A zero count.
    pub fn new() -> TokioCounter {
        TokioCounter::default()
    }

    /// W4's loop, in a task: `*lock().await += 1` until `until` says stop. Returns the
    /// increments this call made.
    pub async fn increment(&self, until: &Until) -> u64 {
        let mut mine = 0;
        while until.more(mine) {
            *self.lock.lock().await += 1;
            mine += 1;
        }
        mine
    }

    /// The count, or `None` while the lock is held.
    pub fn try_count(&self) -> Option<u64> {
        self.lock.try_lock().ok().map(|count| *count)
    }
}
