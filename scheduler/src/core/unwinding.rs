//! Whose unwind is it? Telling a coroutine's own panic from another
//! coroutine's on the same thread.
//!
//! A suspension inside a coroutine that is itself unwinding must not be a
//! cancellation point: raising the cancellation payload out of a destructor
//! that runs during an unwind aborts the process. `std::thread::panicking()`
//! cannot answer the question alone, because std counts panics per *thread*
//! and knows nothing of coroutines: while coroutine A is suspended in the
//! middle of its unwind (a destructor that waits for a lock), every other
//! coroutine resumed on that thread sees `panicking() == true` as well. Were
//! that enough to shield them, a deadlocked coroutine B could never be
//! cancelled at shutdown and would be leaked with its stack.
//!
//! So each coroutine records, every time it is switched in, whether the
//! thread was already panicking (`resumed_amid_panic`):
//! - not panicking then, panicking now: the panic began while this
//!   coroutine ran, so it is this coroutine's own — shielded, exactly;
//! - panicking then (another coroutine's unwind is in flight): it is our
//!   own only if this coroutine raised a panic since, which a process-wide
//!   panic hook (installed once, chained in front of the previous hook) and
//!   [`rethrow`] record in `own_panic`.
//!
//! The flag errs only towards shielding: a panic the coroutine raised and
//! caught keeps it shielded until its next suspension outside any unwind.
//! The one case it cannot see is a payload re-raised with plain
//! `std::panic::resume_unwind` (no hook runs) by a coroutine resumed while
//! another is suspended mid-unwind, after a user replaced the panic hook;
//! documented in `suspend_running`.

use std::panic::resume_unwind;
use std::sync::Once;

use super::control::CoInner;
use super::tls;

/// Installs the hook that marks the running coroutine's own panics. Cheap
/// after the first call.
pub(crate) fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            mark_own_panic();
            previous(info);
        }));
    });
}

/// Records that the running coroutine (if any) raised a panic.
fn mark_own_panic() {
    let co = tls::current();
    // SAFETY: the running coroutine is alive while it runs, and `own_panic`
    // is an executing-thread field; the hook runs on the panicking thread.
    if let Some(co) = unsafe { co.as_ref() } {
        co.own_panic.set(true);
    }
}

/// [`std::panic::resume_unwind`] for code that re-raises a caught panic
/// inside a coroutine (a joined coroutine's, a worker thread's).
///
/// The unwind is recorded as the running coroutine's own, so a suspension
/// in one of its destructors is not taken for a cancellation point even
/// while another coroutine of the thread is suspended mid-unwind (plain
/// `resume_unwind` runs no panic hook, so the runtime could not tell).
///
/// ```
/// let caught = std::panic::catch_unwind(|| {
///     coscheduler::raw::rethrow(Box::new("re-raised"));
/// });
/// assert!(caught.is_err());
/// ```
pub fn rethrow(payload: Box<dyn std::any::Any + Send>) -> ! {
    mark_own_panic();
    resume_unwind(payload)
}

/// Called on `co`'s stack each time it is switched in.
#[inline]
pub(crate) fn resumed(co: &CoInner) {
    co.resumed_amid_panic.set(std::thread::panicking());
}

/// Whether `co` (running, about to suspend) is in its own unwind.
#[inline]
pub(crate) fn in_own_unwind(co: &CoInner) -> bool {
    if !std::thread::panicking() {
        co.own_panic.set(false);
        return false;
    }
    !co.resumed_amid_panic.get() || co.own_panic.get()
}
