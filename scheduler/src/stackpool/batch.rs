//! QEMU's coroutine pool algorithm (March 2024), generic over the pooled item.
//!
//! Items are kept in batches of [`BATCH`]. Each thread has a [`LocalCache`]
//! of at most two batches (one being filled or drained, one full reserve),
//! so the common create/finish cycle touches no shared state. Whole batches
//! move between a thread and the [`SharedPool`] under its mutex: a thread
//! whose cache overflows donates its full reserve; a thread whose cache is
//! empty takes one batch. The shared pool holds at most
//! `min(max, hard_max)` items (overshooting by up to one batch, as QEMU does);
//! a donated batch that does not fit is handed back to the caller to free,
//! outside the lock, because freeing a stack is a `munmap`.
//!
//! The shared state is guarded by one mutex that is taken once per batch,
//! i.e. at most once every [`BATCH`] operations per thread, so it is not on
//! the per-coroutine path. The algorithm is generic so that the batch
//! transfer can be model-checked with loom on plain tokens.

use crate::sync::Mutex;

/// Items per batch (QEMU's `COROUTINE_POOL_BATCH_MAX_SIZE`).
pub(crate) const BATCH: usize = if cfg!(loom) { 2 } else { 128 };

/// The process-wide half of the pool, for one kind of item.
pub(crate) struct SharedPool<T> {
    state: Mutex<SharedState<T>>,
}

struct SharedState<T> {
    /// Full (or nearly full) batches, per size class.
    classes: Vec<(usize, Vec<Vec<T>>)>,
    /// Items currently held here.
    pooled: usize,
    /// The soft maximum that `inc`/`dec_pool_size` move.
    max: usize,
    /// The OS-derived cap; `max` never lets the pool exceed it.
    hard_max: usize,
    /// Items mapped since the last trim because no pool had one: the pool
    /// keeps up to that many above `max`, since the workload showed it needs
    /// them (an "elastic" maximum; `trim_to_max` resets it).
    credit: usize,
}

impl<T> SharedPool<T> {
    /// An empty pool with the given soft and hard maxima.
    pub(crate) fn new(max: usize, hard_max: usize) -> SharedPool<T> {
        SharedPool {
            state: Mutex::new(SharedState {
                classes: Vec::new(),
                pooled: 0,
                max,
                hard_max,
                credit: 0,
            }),
        }
    }

    fn lock(&self) -> crate::sync::MutexGuard<'_, SharedState<T>> {
        // The state is a few counters and vectors updated without calling
        // out; a panic while holding the lock cannot leave it inconsistent,
        // so a poisoned lock is simply taken over.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one batch of `class` items, if any.
    pub(crate) fn take_batch(&self, class: usize) -> Option<Vec<T>> {
        let mut s = self.lock();
        let batch = s.classes.iter_mut().find(|(c, _)| *c == class)?.1.pop()?;
        s.pooled -= batch.len();
        Some(batch)
    }

    /// Records that a thread had to map a fresh item because no pool had
    /// one.
    pub(crate) fn note_miss(&self) {
        let mut s = self.lock();
        // A quarter of the hard cap at most: a one-off burst must not leave
        // the process holding most of its mappings in idle stacks.
        s.credit = s.credit.saturating_add(1).min(s.hard_max / 4);
    }

    /// Whether more items fit: below the maximum raised by the credit of
    /// recent misses (QEMU lets one batch overshoot, and so do we), never at
    /// or above the hard cap.
    fn admit(s: &SharedState<T>) -> bool {
        s.pooled < s.hard_max && s.pooled < s.max.saturating_add(s.credit)
    }

    /// Offers a batch. Returns it back when the pool is at its maximum: the
    /// caller frees it outside the lock.
    pub(crate) fn give_batch(&self, class: usize, batch: Vec<T>) -> Option<Vec<T>> {
        let mut s = self.lock();
        if batch.is_empty() || !Self::admit(&s) {
            return Some(batch);
        }
        s.pooled += batch.len();
        match s.classes.iter_mut().find(|(c, _)| *c == class) {
            Some((_, batches)) => batches.push(batch),
            None => s.classes.push((class, vec![batch])),
        }
        None
    }

    /// Offers one item of a class no thread caches locally; returns it when
    /// the pool is full.
    pub(crate) fn give_one(&self, class: usize, item: T) -> Option<T> {
        let mut s = self.lock();
        if !Self::admit(&s) {
            return Some(item);
        }
        s.pooled += 1;
        let batches = match s.classes.iter().position(|(c, _)| *c == class) {
            Some(i) => &mut s.classes[i].1,
            None => {
                s.classes.push((class, Vec::new()));
                &mut s.classes.last_mut().expect("just pushed").1
            }
        };
        match batches.last_mut() {
            Some(b) if b.len() < BATCH => b.push(item),
            _ => batches.push(vec![item]),
        }
        None
    }

    /// Takes one item of `class`, if any.
    pub(crate) fn take_one(&self, class: usize) -> Option<T> {
        let mut s = self.lock();
        let batches = &mut s.classes.iter_mut().find(|(c, _)| *c == class)?.1;
        let item = batches.last_mut()?.pop()?;
        if batches.last().is_some_and(Vec::is_empty) {
            batches.pop();
        }
        s.pooled -= 1;
        Some(item)
    }

    /// QEMU's `qemu_coroutine_inc_pool_size`.
    pub(crate) fn inc_max(&self, n: usize) {
        let mut s = self.lock();
        s.max = s.max.saturating_add(n);
    }

    /// QEMU's `qemu_coroutine_dec_pool_size`: lowers the maximum; pooled
    /// items above it are not trimmed (they drain as they are reused).
    pub(crate) fn dec_max(&self, n: usize) {
        let mut s = self.lock();
        s.max = s.max.saturating_sub(n);
    }

    /// `(pooled, max, hard_max)`.
    pub(crate) fn levels(&self) -> (usize, usize, usize) {
        let s = self.lock();
        (s.pooled, s.max, s.hard_max)
    }

    /// Removes pooled items above the current maximum (oldest batches
    /// first) and returns them for the caller to free.
    pub(crate) fn trim_to_max(&self) -> Vec<T> {
        let mut s = self.lock();
        s.credit = 0;
        let limit = s.max.min(s.hard_max);
        let mut out = Vec::new();
        while s.pooled > limit {
            let Some(batch) = s.classes.iter_mut().find_map(|(_, b)| b.pop()) else {
                break;
            };
            s.pooled -= batch.len();
            out.extend(batch);
        }
        s.classes.retain(|(_, b)| !b.is_empty());
        out
    }

    /// Removes every pooled item of every class (for trimming under mapping
    /// pressure and for tests).
    pub(crate) fn drain(&self) -> Vec<T> {
        let mut s = self.lock();
        s.pooled = 0;
        s.classes.drain(..).flat_map(|(_, b)| b).flatten().collect()
    }
}

/// One thread's half of the pool: at most two batches of one size class.
pub(crate) struct LocalCache<T> {
    class: usize,
    current: Vec<T>,
    reserve: Option<Vec<T>>,
}

impl<T> LocalCache<T> {
    /// An empty cache for items of `class`.
    pub(crate) const fn new(class: usize) -> LocalCache<T> {
        LocalCache {
            class,
            current: Vec::new(),
            reserve: None,
        }
    }

    /// The size class this cache holds.
    pub(crate) fn class(&self) -> usize {
        self.class
    }

    /// Items held.
    pub(crate) fn len(&self) -> usize {
        self.current.len() + self.reserve.as_ref().map_or(0, Vec::len)
    }

    /// The most recently released item of the current batch, if any (the
    /// common case of [`get`](Self::get), without the refill).
    #[inline]
    pub(crate) fn pop_current(&mut self) -> Option<T> {
        self.current.pop()
    }

    /// Keeps `item` in the current batch if it has room (the common case of
    /// [`put`](Self::put)); gives it back otherwise.
    #[inline]
    pub(crate) fn push_current(&mut self, item: T) -> Result<(), T> {
        if self.current.len() < BATCH && self.current.len() < self.current.capacity() {
            self.current.push(item);
            Ok(())
        } else {
            Err(item)
        }
    }

    /// QEMU's `coroutine_pool_get`: the most recently released item (warm in
    /// cache), refilling from the shared pool when both batches are empty.
    #[inline]
    pub(crate) fn get(&mut self, shared: &SharedPool<T>) -> Option<T> {
        if let Some(item) = self.current.pop() {
            return Some(item);
        }
        self.refill(shared)
    }

    #[cold]
    fn refill(&mut self, shared: &SharedPool<T>) -> Option<T> {
        let batch = match self.reserve.take() {
            Some(b) => b,
            None => shared.take_batch(self.class)?,
        };
        self.current = batch;
        self.current.pop()
    }

    /// QEMU's `coroutine_pool_put`. Returns a batch the shared pool refused,
    /// for the caller to free.
    #[inline]
    pub(crate) fn put(&mut self, shared: &SharedPool<T>, item: T) -> Option<Vec<T>> {
        let mut refused = None;
        if self.current.len() >= BATCH {
            refused = self.rotate(shared);
        }
        if self.current.capacity() == 0 {
            self.current.reserve_exact(BATCH);
        }
        self.current.push(item);
        refused
    }

    /// The current batch is full: it becomes the reserve, and a previous
    /// reserve goes to the shared pool.
    #[cold]
    fn rotate(&mut self, shared: &SharedPool<T>) -> Option<Vec<T>> {
        let full = std::mem::replace(&mut self.current, Vec::with_capacity(BATCH));
        let old = self.reserve.replace(full)?;
        shared.give_batch(self.class, old)
    }

    /// Empties the cache (thread exit).
    pub(crate) fn drain(&mut self) -> Vec<T> {
        let mut all = std::mem::take(&mut self.current);
        if let Some(r) = self.reserve.take() {
            all.extend(r);
        }
        all
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn local_cache_holds_two_batches_then_donates() {
        let shared = SharedPool::new(usize::MAX, usize::MAX);
        let mut local = LocalCache::new(1);
        for i in 0..2 * BATCH {
            assert!(local.put(&shared, i).is_none());
        }
        assert_eq!(local.len(), 2 * BATCH);
        assert_eq!(shared.levels().0, 0);
        // One more rotates: the reserve goes to the shared pool.
        assert!(local.put(&shared, 9999).is_none());
        assert_eq!(shared.levels().0, BATCH);
        assert_eq!(local.len(), BATCH + 1);
        // LIFO: the most recently released comes back first.
        assert_eq!(local.get(&shared), Some(9999));
    }

    #[test]
    fn shared_pool_refuses_above_its_maximum() {
        let shared = SharedPool::new(BATCH, usize::MAX);
        assert!(shared.give_batch(1, vec![0; BATCH]).is_none());
        let refused = shared.give_batch(1, vec![1; BATCH]).expect("over max");
        assert_eq!(refused.len(), BATCH);
        shared.inc_max(BATCH);
        assert!(shared.give_batch(1, refused).is_none());
        assert_eq!(shared.levels(), (2 * BATCH, 2 * BATCH, usize::MAX));
        shared.dec_max(BATCH);
        // No trimming on decrease; the next donation is refused.
        assert_eq!(shared.levels().0, 2 * BATCH);
        assert!(shared.give_batch(1, vec![2; 1]).is_some());
    }

    #[test]
    fn hard_max_caps_the_soft_maximum() {
        let shared = SharedPool::new(usize::MAX, 0);
        assert!(shared.give_one(1, 5u8).is_some());
        assert!(shared.give_batch(1, vec![5u8]).is_some());
    }

    #[test]
    fn empty_cache_refills_from_the_shared_pool() {
        let shared = SharedPool::new(usize::MAX, usize::MAX);
        assert!(shared.give_batch(7, (0..BATCH).collect()).is_none());
        let mut local = LocalCache::new(7);
        let mut got = 0;
        while local.get(&shared).is_some() {
            got += 1;
        }
        assert_eq!(got, BATCH);
        assert_eq!(shared.levels().0, 0);
        let mut other = LocalCache::<usize>::new(8);
        assert!(other.get(&shared).is_none(), "classes do not mix");
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::thread;

    /// Two threads cycle tokens through their caches and the shared pool;
    /// every token must end up exactly once in a cache, the pool or the
    /// refused (freed) set.
    #[test]
    fn batch_transfer_conserves_items() {
        const N: usize = 3;
        loom::model(|| {
            // A tiny pool so that transfers happen within the model's budget.
            let shared = crate::sync::Arc::new(SharedPool::<usize>::new(BATCH, usize::MAX));
            let handles: Vec<_> = (0..2)
                .map(|t| {
                    let shared = shared.clone();
                    thread::spawn(move || {
                        let mut local = LocalCache::new(1);
                        let mut freed = Vec::new();
                        // Fill past two batches to force a donation.
                        for i in 0..2 * BATCH + N {
                            if let Some(r) = local.put(&shared, t * 10_000 + i) {
                                freed.extend(r);
                            }
                        }
                        let mut taken = Vec::new();
                        for _ in 0..N {
                            if let Some(x) = local.get(&shared) {
                                taken.push(x);
                            }
                        }
                        let mut rest = local.drain();
                        rest.extend(taken);
                        rest.extend(freed);
                        rest
                    })
                })
                .collect();
            let mut all: Vec<usize> = handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect();
            all.extend(shared.drain());
            all.sort_unstable();
            let mut expected: Vec<usize> = (0..2)
                .flat_map(|t| (0..2 * BATCH + N).map(move |i| t * 10_000 + i))
                .collect();
            expected.sort_unstable();
            assert_eq!(all, expected, "every token exactly once");
        });
    }
}
