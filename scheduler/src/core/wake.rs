//! Wake routing (QEMU's `aio_co_wake` / `aio_co_enter`): where an accepted
//! wake takes the coroutine.
//!
//! - same home, inside a coroutine: the current coroutine's wakeup list, so
//!   the woken one runs right after the waker suspends or finishes (QEMU's
//!   depth-first order);
//! - same home, outside a coroutine: entered now;
//! - another home: its mailbox (the hand-off + notify protocol);
//! - a coroutine that never ran: the waker's home.

use std::panic::Location;
use std::ptr;
use std::sync::atomic::Ordering::Acquire;

use super::control::{self, CoInner, CoRef, State};
use super::home::metrics::bump;
use super::home::{self, Home};
use super::wake_mark::{self, WakeDecision};
use super::{enter, tls};

/// QEMU's `aio_co_wake`: wakes `co` in its home, or in the waker's home if
/// it never ran.
///
/// A coroutine being cancelled tolerates extra wakes (absorbed, or dropped
/// once it finished): see [`wake_mark`] for the protocol and why no wake-up
/// is lost.
#[track_caller]
pub(crate) fn wake(co: &CoRef) {
    let finished = || co.state() == State::Finished;
    match wake_mark::decide_wake(&co.scheduled, &co.cancel, finished, Location::caller()) {
        WakeDecision::Deliver => deliver_woken(co.clone()),
        WakeDecision::Absorbed => {}
        WakeDecision::DoubleWake(first) => control::double_wake(co, first),
        WakeDecision::AfterFinish => woken_after_finish(co),
    }
}

#[cold]
#[track_caller]
fn woken_after_finish(co: &CoInner) -> ! {
    panic!(
        "coroutine {} ({}) was woken after it finished",
        co.id,
        co.display_name()
    )
}

/// Routes an accepted wake (see the module docs).
pub(crate) fn deliver_woken(co: CoRef) {
    let target = co.home.load(Acquire);
    let here = tls::home();
    if target.is_null() || ptr::eq(target, here) {
        if here.is_null() {
            // A never-run coroutine woken from a thread without a home: it
            // runs on this thread's (new) home.
            deliver_queued(&home::current(), co);
            return;
        }
        deliver_local(co);
    } else {
        // SAFETY: `here`, when non-null, is this thread's live home.
        if let Some(h) = unsafe { here.as_ref() } {
            bump(&h.counters.remote_wakes, 1);
        }
        // SAFETY: a started coroutine's home is live (it holds a reference).
        unsafe { (*target).push_remote(co) };
    }
}

/// Queues a scheduled coroutine on `home`: on its ready list if we own it,
/// through its mailbox otherwise.
pub(crate) fn deliver_queued(home: &Home, co: CoRef) {
    match home.owner() {
        Some(owner) => owner.push_ready(co),
        None => home.push_remote(co),
    }
}

/// Same-home delivery of a scheduled coroutine.
pub(crate) fn deliver_local(co: CoRef) {
    let ts = tls::thread_state();
    // SAFETY: this thread's state, read on this thread before any switch.
    let (current, here) = unsafe { ((*ts).current.get(), (*ts).home.get()) };
    // SAFETY: `here` is this thread's live home.
    if let Some(h) = unsafe { here.as_ref() } {
        bump(&h.counters.local_wakes, 1);
    }
    if current.is_null() {
        control::clear_scheduled(&co);
        enter::enter_chain(&co);
    } else {
        // SAFETY: `current` is the running coroutine of this thread.
        unsafe { (*current).push_wakeup(co) };
    }
}
