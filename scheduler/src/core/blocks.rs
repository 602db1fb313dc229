//! Recycling of control-block allocations.
//!
//! Creating and finishing a coroutine is the pool's hot path (QEMU
//! `/perf/lifecycle`), and in a spawn storm one worker allocates control
//! blocks that another worker frees; with the system allocator that is an
//! arena-lock ping-pong between the two threads. Freed blocks therefore go
//! through the same batch pool as stacks ([`SharedPool`]/[`LocalCache`]:
//! two batches per thread, whole batches moved between threads under one
//! mutex), capped at [`MAX_POOLED`] blocks process-wide.
//!
//! [`SharedPool`]: crate::stackpool::batch::SharedPool
//! [`LocalCache`]: crate::stackpool::batch::LocalCache
use std::alloc::{Layout, dealloc, handle_alloc_error};
use std::cell::UnsafeCell;
use std::ptr::NonNull;
use std::sync::OnceLock;

use super::control::CoInner;
use crate::stackpool::batch::{LocalCache, SharedPool};

/// Blocks kept in the shared pool (about 25 MiB of control blocks).
const MAX_POOLED: usize = 65_536;

/// A block of uninitialised memory for one `CoInner`.
struct Block(NonNull<CoInner>);

// SAFETY: a pooled block is plain memory with no value in it; any thread
// may reuse or free it.
unsafe impl Send for Block {}

impl Drop for Block {
    fn drop(&mut self) {
        // SAFETY: every block came from `alloc_fresh` with this layout
        // and holds no value while pooled.
        unsafe { dealloc(self.0.as_ptr().cast(), Layout::new::<CoInner>()) };
    }
}

fn shared() -> &'static SharedPool<Block> {
    static SHARED: OnceLock<SharedPool<Block>> = OnceLock::new();
    SHARED.get_or_init(|| SharedPool::new(MAX_POOLED, MAX_POOLED))
}

struct Cache(LocalCache<Block>);

impl Drop for Cache {
    fn drop(&mut self) {
        let blocks = self.0.drain();
        // Another thread will likely want them; freed if the pool is full.
        drop(shared().give_batch(0, blocks));
    }
}

thread_local! {
    static CACHE: UnsafeCell<Cache> = const { UnsafeCell::new(Cache(LocalCache::new(0))) };
}

fn alloc_fresh() -> NonNull<CoInner> {
    let layout = Layout::new::<CoInner>();
    // SAFETY: CoInner is not zero-sized.
    let p = unsafe { std::alloc::alloc(layout) }.cast::<CoInner>();
    NonNull::new(p).unwrap_or_else(|| handle_alloc_error(layout))
}

/// Uninitialised memory for one control block.
#[inline]
pub(crate) fn alloc() -> NonNull<CoInner> {
    let cached = CACHE
        // SAFETY: thread-local and not re-entered (the cache only calls
        // the shared pool's mutex, never back into this module).
        .try_with(|c| unsafe { (*c.get()).0.get(shared()) })
        .ok()
        .flatten();
    match cached {
        Some(block) => {
            let p = block.0;
            std::mem::forget(block);
            p
        }
        None => alloc_fresh(),
    }
}

/// Gives back a block whose value was dropped.
///
/// # Safety
/// `p` came from [`alloc`] and holds no live value.
#[inline]
pub(crate) unsafe fn free(p: NonNull<CoInner>) {
    let block = Block(p);
    let mut slot = Some(block);
    let refused = CACHE
        // SAFETY: as in `alloc`.
        .try_with(|c| unsafe { (*c.get()).0.put(shared(), slot.take().expect("once")) })
        .ok()
        .flatten();
    // Dropping a `Block` frees its memory: the refused batch, or the
    // block itself during thread teardown.
    drop(refused);
    drop(slot);
}
