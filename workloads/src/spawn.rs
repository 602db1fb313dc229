//! W5: a spawn storm. One spawner spawns `n` tiny coroutines (or tokio tasks), each running
//! `each` once, and drops their join handles: they are detached, and the caller learns that
//! they ran from what `each` does (a countdown, a counter).
//!
//! On coscheduler the spawns go through a [`Handle`] from a coroutine on one worker, so
//! that they land in that worker's deque and the other workers steal them; a coroutine takes
//! a stack only when it first runs, so a million queued ones hold none.

use coscheduler::Handle;

/// The storm on coscheduler: `n` × `handle.spawn(each)`, detached. Call it from a
/// coroutine of `handle`'s runtime (or from `Runtime::block_on`).
#[inline]
pub fn storm<F>(handle: &Handle, n: u64, each: F)
where
    F: Fn() + Clone + Send + 'static,
{
    for _ in 0..n {
        drop(handle.spawn(each.clone()));
    }
}

/// The storm on tokio: `n` × `tokio::spawn` of a task running `each`, detached. Call it
/// from a task of the runtime.
#[cfg(feature = "tokio")]
pub async fn tokio_storm<F>(n: u64, each: F)
where
    F: Fn() + Clone + Send + 'static,
{
    for _ in 0..n {
        let each = each.clone();
        drop(tokio::spawn(async move { each() }));
    }
}
