//! Wait-for cycles through the primitives: [`deadlocks`], and the blockers
//! the locks register while a coroutine waits (see
//! [`coscheduler::deadlock`]).

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;

use coscheduler::deadlock::Blocker;
pub use coscheduler::{Deadlock, DeadlockMember};

/// Every cycle of coroutines of `rt` that wait on each other through
/// [`CoMutex`](crate::CoMutex), [`CoRwLock`](crate::CoRwLock) and
/// [`JoinHandle::join`](coscheduler::JoinHandle::join), with each member's
/// id, name, context and the lock it waits on; empty when there is none.
/// The same as [`Runtime::deadlocks`](coscheduler::Runtime::deadlocks).
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
/// use coprimitives::CoMutex;
///
/// /// Takes `first`, waits until the other side holds its own, takes `second`.
/// fn cross(first: &CoMutex<()>, second: &CoMutex<()>, holding: &AtomicUsize) {
///     let _first = first.lock();
///     holding.fetch_add(1, SeqCst);
///     while holding.load(SeqCst) < 2 {
///         coscheduler::yield_now();
///     }
///     let _second = second.lock(); // never returns
/// }
///
/// let rt = coscheduler::Runtime::builder().threads(1).build().unwrap();
/// let a = Arc::new(CoMutex::with_stats((), "a"));
/// let b = Arc::new(CoMutex::with_stats((), "b"));
/// let holding = Arc::new(AtomicUsize::new(0));
/// let (a2, b2, h2) = (a.clone(), b.clone(), holding.clone());
/// let _left = rt.spawn_named("left", move || cross(&a2, &b2, &h2));
/// let _right = rt.spawn_named("right", move || cross(&b, &a, &holding));
/// let found = loop {
///     let found = coprimitives::deadlocks(&rt);
///     if !found.is_empty() {
///         break found;
///     }
///     std::thread::sleep(std::time::Duration::from_millis(1));
/// };
/// assert_eq!(found[0].names(), ["left", "right"]);
/// assert_eq!(found[0].members()[0].waits_on, "CoMutex 'b'");
/// ```
pub fn deadlocks(rt: &coscheduler::Runtime) -> Vec<Deadlock> {
    rt.deadlocks()
}

/// A CoMutex waiter waits for the holder.
pub(crate) struct MutexBlocker<'a> {
    /// The mutex's holder field (`raw::current_ids().0` of the holder).
    pub(crate) holder: &'a AtomicUsize,
    pub(crate) name: Option<&'a str>,
    /// The mutex's address, to tell unnamed ones apart.
    pub(crate) address: usize,
}

impl Blocker for MutexBlocker<'_> {
    fn blocked_by(&self, out: &mut Vec<usize>) {
        // Relaxed: a snapshot; the deadlock finder confirms a cycle with a
        // second one, and a stable deadlock does not change.
        let holder = self.holder.load(Relaxed);
        if holder != 0 {
            out.push(holder);
        }
    }

    fn describe(&self) -> String {
        describe_lock("CoMutex", self.name, self.address)
    }
}

/// `CoMutex 'name'`, or `CoMutex at 0x…` for an unnamed lock.
pub(crate) fn describe_lock(kind: &str, name: Option<&str>, address: usize) -> String {
    match name {
        Some(name) => format!("{kind} '{name}'"),
        None => format!("{kind} at {address:#x}"),
    }
}
