//! How a primitive tells the deadlock finder what a waiting coroutine
//! waits for.

use std::sync::Arc;

use super::control::{CoInner, WaitReason};
use super::tls;

/// What a suspended coroutine waits for, as the deadlock finder sees it.
///
/// Implemented by primitives for an object that lives on the waiter's
/// stack for the length of the wait (see [`wait_on`]). Its methods are
/// called on the waiter's home thread, outside any coroutine, while the
/// waiter is suspended inside the wait: they must not block (use
/// `try_lock` on internal locks, and report nothing when it fails).
pub trait Blocker {
    /// Appends the coroutines whose progress this wait needs — a lock's
    /// holders, the waiter queued ahead — as the keys
    /// [`raw::current_ids`](crate::raw::current_ids) returns in them
    /// (its first value). Keys that are not coroutines (a plain thread's
    /// token) are ignored.
    fn blocked_by(&self, out: &mut Vec<usize>);

    /// How the awaited resource is named in a deadlock report, such as
    /// `CoMutex 'accounts'`.
    fn describe(&self) -> String;
}

/// A lifetime-erased pointer to the [`Blocker`] of the wait a coroutine is
/// suspended in. Valid while that coroutine is suspended inside the
/// [`wait_on`] call that stored it, which is when `describe_suspended` reads
/// it (on the coroutine's home thread).
#[derive(Clone, Copy)]
pub(crate) struct BlockerRef(*const (dyn Blocker + 'static));

impl std::fmt::Debug for BlockerRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlockerRef")
    }
}

impl BlockerRef {
    fn new(blocker: &dyn Blocker) -> BlockerRef {
        let p: *const (dyn Blocker + '_) = blocker;
        // SAFETY: only the trait object's lifetime bound changes (same
        // layout); the pointer is dereferenced only while the borrow it came
        // from is alive (see the type's docs).
        BlockerRef(unsafe {
            std::mem::transmute::<*const (dyn Blocker + '_), *const (dyn Blocker + 'static)>(p)
        })
    }

    /// The blocker's coroutines and description.
    ///
    /// # Safety
    /// The coroutine that stored this is suspended inside the `wait_on`
    /// call that did, and the caller is on its home thread.
    pub(crate) unsafe fn read(&self) -> (Vec<usize>, String) {
        // SAFETY: alive per the contract: the waiter's frame, which owns the
        // blocker, is suspended and not unwound while we run on its thread.
        let blocker = unsafe { &*self.0 };
        let mut keys = Vec::new();
        blocker.blocked_by(&mut keys);
        (keys, blocker.describe())
    }
}

/// Runs `f` — a wait that suspends the current coroutine — with `blocker`
/// telling the deadlock finder what it waits for, and `what`/`detail`
/// shown by [`Runtime::dump`](crate::Runtime::dump) (as
/// [`raw::set_wait_reason`](crate::raw::set_wait_reason) would). The
/// previous wait description is put back afterwards, also when `f` unwinds.
/// Outside a coroutine it just runs `f`.
///
/// ```
/// use coscheduler::deadlock::{Blocker, wait_on};
///
/// /// A wait for one given coroutine.
/// struct WaitFor(usize);
/// impl Blocker for WaitFor {
///     fn blocked_by(&self, out: &mut Vec<usize>) {
///         out.push(self.0);
///     }
///     fn describe(&self) -> String {
///         "a hand-made wait".to_owned()
///     }
/// }
///
/// let co = coscheduler::Coroutine::new(|| {
///     wait_on("hand-made", None, &WaitFor(0), coscheduler::suspend);
/// });
/// co.enter();
/// co.enter();
/// assert!(co.is_finished());
/// ```
pub fn wait_on<R>(
    what: &'static str,
    detail: Option<Arc<str>>,
    blocker: &dyn Blocker,
    f: impl FnOnce() -> R,
) -> R {
    let co = tls::current();
    if co.is_null() {
        return f();
    }
    let reason = WaitReason {
        what,
        detail,
        blocker: Some(BlockerRef::new(blocker)),
    };
    // SAFETY: `wait` is an executing-thread field of the running coroutine,
    // and no reference to it is live.
    let previous = unsafe { (*(*co).wait.get()).replace(reason) };
    /// Puts the previous description back, however `f` ends, so that the
    /// blocker pointer never outlives the borrow it came from.
    struct Restore {
        co: *const CoInner,
        previous: Option<WaitReason>,
    }
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: the coroutine that entered `wait_on` is the one
            // running this drop (the guard lives in its frame), and `wait`
            // is its executing-thread field.
            unsafe { *(*self.co).wait.get() = self.previous.take() };
        }
    }
    let _restore = Restore { co, previous };
    f()
}
