//! The `Waker` of an awaiting coroutine: a pointer to its control block,
//! counted by the block's own reference count.
//!
//! Cloning a waker takes a reference (`CoRef`), dropping it gives one back,
//! so wakers cost no allocation, per wait or per wake. A waker therefore
//! keeps its coroutine alive, like any handle: a coroutine suspended in
//! `wait` whose future's waker is stored somewhere can still be woken, and
//! is not unwound when its other handles go (a waker stored only inside the
//! future itself is a cycle, like a coroutine keeping `current()` in a
//! local). The last reference dropped by a waker on another thread sends a
//! suspended coroutine home to be unwound there, as for any handle.
//!
//! Waking goes through the await state (`state.rs`): only the waker whose
//! swap finds the coroutine `WAITING` issues `aio_co_wake`, with the usual
//! routing (same context: after the current coroutine; another thread: the
//! home context's hand-off queue).

use std::mem::ManuallyDrop;
use std::panic::Location;
use std::ptr;
use std::sync::atomic::Ordering::Acquire;
use std::task::{RawWaker, RawWakerVTable, Waker};

use super::state::{self, Notify};
use crate::core::control::{CoInner, CoRef, State};
use crate::core::home::Owner;
use crate::core::wake;
use crate::core::wake_mark::{self, WakeDecision};

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_waker);

/// A waker for the running coroutine `co` that holds no reference of its
/// own: valid while `co` runs, which covers every `poll` of its wait. It
/// must not be dropped (the `ManuallyDrop` sees to it); clones are counted.
///
/// # Safety
/// `co` is this thread's running coroutine, and the returned waker is used
/// only while it runs.
#[inline]
pub(super) unsafe fn borrowed(co: *const CoInner) -> ManuallyDrop<Waker> {
    // SAFETY: the vtable's contract holds for `co` while it runs (the
    // caller's contract); `ManuallyDrop` keeps `drop_waker` from giving back
    // a reference this waker never took.
    ManuallyDrop::new(unsafe { Waker::from_raw(RawWaker::new(co.cast(), &VTABLE)) })
}

/// # Safety
/// `p` is a live control block (the waker being cloned keeps it alive).
unsafe fn clone(p: *const ()) -> RawWaker {
    // SAFETY: live, per the contract.
    let r = unsafe { CoRef::clone_from_ptr(p.cast()) };
    RawWaker::new(r.into_raw().cast(), &VTABLE)
}

/// `Waker::wake`: consumes the waker's reference.
///
/// # Safety
/// `p` carries one reference taken by [`clone`].
unsafe fn wake(p: *const ()) {
    // SAFETY: we own the reference `clone` took; it is given back once,
    // here or by the delivery it is moved into.
    let r = unsafe { CoRef::from_raw(p.cast()) };
    if state::notify(&r.await_state) == Notify::Wake {
        deliver(r);
    }
}

/// `Waker::wake_by_ref`.
///
/// # Safety
/// `p` is a live control block (the waker it belongs to keeps it alive).
unsafe fn wake_by_ref(p: *const ()) {
    // SAFETY: live, per the contract.
    let co = unsafe { &*p.cast::<CoInner>() };
    if state::notify(&co.await_state) == Notify::Wake {
        // SAFETY: live, per the contract.
        deliver(unsafe { CoRef::clone_from_ptr(co) });
    }
}

/// # Safety
/// `p` carries one reference taken by [`clone`].
unsafe fn drop_waker(p: *const ()) {
    // SAFETY: giving back the reference `clone` took, once.
    drop(unsafe { CoRef::from_raw(p.cast()) });
}

/// `w.wake()` for the owner's event loop, which calls the wakers stored by
/// the fd driver: a coroutine's waker (this module's) queues its coroutine
/// on `o`'s ready list when that is its home, as the loop does for the
/// coroutines waiting there, rather than entering it nested inside the loop
/// (possibly between its sleep and its wake-up bookkeeping). Any other waker
/// is called as it is.
pub(crate) fn wake_queued(w: Waker, o: Owner<'_>) {
    if !ptr::eq(w.vtable(), &VTABLE) {
        return w.wake();
    }
    let w = ManuallyDrop::new(w);
    // SAFETY: a `Waker` of this vtable held by value carries one reference
    // taken by `clone` (the only one without, `borrowed`'s, stays inside
    // its `ManuallyDrop` in `wait` and is only lent out); `w` will not
    // give it back, so it is moved into `co`, as `wake` does.
    let co = unsafe { CoRef::from_raw(w.data().cast()) };
    if state::notify(&co.await_state) != Notify::Wake {
        return;
    }
    let finished = || co.state() == State::Finished;
    if wake_mark::decide_wake(&co.scheduled, &co.cancel, finished, Location::caller())
        != WakeDecision::Deliver
    {
        // As in `deliver`: a cancellation's mark, or a stray wake's.
        return;
    }
    // Acquire: as in `wake::deliver_woken`, for the home the coroutine
    // published when it last moved.
    if ptr::eq(co.home.load(Acquire), o.home) {
        o.push_ready(co);
    } else {
        wake::deliver_woken(co);
    }
}

/// The one real wake of a suspension (QEMU's `aio_co_wake`).
///
/// It never panics: the await state guarantees no other *waker* got here
/// for this suspension, so a mark already set belongs to a cancellation
/// that is unwinding the coroutine (absorbed with the wake mark's fence, see
/// `coroutine::wake_mark`) or to a stray `Coroutine::wake` from user code,
/// which resumes it anyway. Panicking there would panic in whatever thread
/// called `wake`, typically another runtime's worker.
fn deliver(co: CoRef) {
    let finished = || co.state() == State::Finished;
    if wake_mark::decide_wake(&co.scheduled, &co.cancel, finished, Location::caller())
        == WakeDecision::Deliver
    {
        wake::deliver_woken(co);
    }
}
