//! A fiber: a guarded stack with QEMU's trampoline loop parked on it.
//!
//! QEMU keeps a finished coroutine's stack *and* its context: the trampoline
//! is `while (true) { entry(arg); switch(caller, TERMINATE); }`, so a pooled
//! coroutine resumes inside that loop and simply calls the next entry. A fiber
//! is the same thing on top of `corosensei`: the closure it was created with
//! never returns; each resume from the top of the loop receives the control
//! block of the coroutine to run, and the loop suspends with
//! [`Suspend::Finished`] when that coroutine's body is done. Reusing a fiber
//! therefore costs one switch, not a stack setup.

use std::convert::Infallible;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};

use std::mem::ManuallyDrop;

use corosensei::{Coroutine as RawCoroutine, CoroutineResult, Yielder};

use crate::core::control::{CoInner, Outcome};
use crate::stack::GuardedStack;

/// What a fiber reports when it hands control back to its enterer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Suspend {
    /// The coroutine called `suspend()` and can be entered again.
    Yielded,
    /// The coroutine's body returned, panicked or was unwound; its outcome is
    /// stored in its control block and the fiber is back at the loop's top.
    Finished,
}

/// The yielder type running coroutines use to suspend.
pub(crate) type FiberYielder = Yielder<*const CoInner, Suspend>;

/// A stack plus a parked trampoline. Owned by exactly one coroutine while it
/// runs, otherwise by a pool.
pub(crate) struct Fiber {
    /// Dropped by hand: see `Drop for Fiber`.
    raw: ManuallyDrop<RawCoroutine<*const CoInner, Suspend, Infallible, GuardedStack>>,
    /// The guard page, for the overflow handler.
    guard: Range<usize>,
    /// Usable bytes of the stack: the pool's size class.
    usable: usize,
    /// The sanitizer's bookkeeping of the switches (empty without ASan).
    #[cfg_attr(not(any(coscheduler_asan, coscheduler_tsan)), allow(dead_code))]
    pub(crate) asan: crate::sanitizer::FiberSide,
}

// SAFETY: a fiber only crosses threads while parked at the top of its
// trampoline loop (in a pool, or attached to a coroutine that has not started
// yet) or as part of a migratable coroutine whose creator promised, through
// an `unsafe` opt-in, that no thread-bound state is live across suspension.
// The trampoline itself keeps nothing thread-bound across its suspend: it
// reaches thread-locals only through the `#[inline(never)]` accessors.
unsafe impl Send for Fiber {}

impl Fiber {
    /// Creates a fiber on `stack`; nothing runs until the first resume.
    pub(crate) fn new(stack: GuardedStack) -> Fiber {
        let guard = stack.guard_range();
        let usable = stack.usable_size();
        let raw = ManuallyDrop::new(RawCoroutine::with_stack(stack, trampoline));
        Fiber {
            raw,
            guard,
            usable,
            asan: crate::sanitizer::FiberSide::new(),
        }
    }

    /// Usable stack bytes.
    pub(crate) fn usable_size(&self) -> usize {
        self.usable
    }

    /// The guard page's address range.
    pub(crate) fn guard(&self) -> Range<usize> {
        self.guard.clone()
    }

    /// Runs `co` on this fiber until it suspends or finishes.
    ///
    /// # Safety
    /// `co` must stay alive until this returns, must own this fiber (so that
    /// nobody else resumes it concurrently), and its control block must have
    /// an entry closure if this fiber is at the top of its loop.
    #[inline]
    pub(crate) unsafe fn resume(&mut self, co: *const CoInner) -> Suspend {
        let save = crate::sanitizer::entering(&self.asan, self.guard.end, self.usable);
        let why = match self.raw.resume(co) {
            CoroutineResult::Yield(s) => s,
            CoroutineResult::Return(never) => match never {},
        };
        crate::sanitizer::returned(save);
        why
    }

    /// Releases the stack of a fiber parked at the top of its loop.
    #[cfg(test)]
    pub(crate) fn into_stack(mut self) -> GuardedStack {
        self.park();
        // SAFETY: `self` is forgotten right after, so `raw` is taken once and
        // never dropped again.
        let raw = unsafe { ManuallyDrop::take(&mut self.raw) };
        std::mem::forget(self);
        raw.into_stack()
    }

    /// Marks a fiber parked at the top of its loop as finished, so that
    /// dropping it does not try to unwind it.
    fn park(&mut self) {
        if !self.raw.started() {
            // Never resumed: this only drops the (capture-less) initial
            // closure; no unwinding is involved.
            self.raw.force_unwind();
        } else if !self.raw.done() {
            // SAFETY: fibers are released (pooled memory freed) only when
            // parked at the top of the trampoline loop, where the only live
            // locals are a reference to the yielder and a raw pointer:
            // nothing that needs dropping.
            unsafe { self.raw.force_reset() };
        }
    }

    /// The stack's lowest address (its guard page), for painting checks.
    #[allow(dead_code)]
    pub(crate) fn limit(&self) -> usize {
        self.guard.start
    }
}

impl Drop for Fiber {
    fn drop(&mut self) {
        self.park();
        // SAFETY: dropped exactly once, here.
        unsafe { ManuallyDrop::drop(&mut self.raw) };
    }
}

/// QEMU's `coroutine_trampoline`: run one coroutine body per iteration.
fn trampoline(yielder: &FiberYielder, mut input: *const CoInner) -> Infallible {
    loop {
        // SAFETY: the coroutine being run owns this fiber (resume's
        // contract); its fiber slot holds it while it runs.
        unsafe { arrived_on_fiber(input) };
        // SAFETY: the enterer keeps the control block alive for the whole
        // resume (Fiber::resume's contract), and it owns this fiber.
        let outcome = unsafe {
            let co = &*input;
            co.own_panic.set(false);
            crate::core::unwinding::resumed(co);
            co.attach_yielder(yielder);
            let entry = co.take_entry();
            let body = || {
                entry.run();
                // SAFETY: still the running coroutine of this thread.
                crate::core::enter::assert_no_locks_held(input);
            };
            match catch_unwind(AssertUnwindSafe(body)) {
                Ok(()) => Outcome::Returned,
                Err(payload) => Outcome::from_unwind(payload),
            }
        };
        // SAFETY: still within the same resume; see above.
        unsafe { (*input).set_outcome(outcome) };
        // SAFETY: as for `arrived_on_fiber` above.
        unsafe { leaving_fiber(input) };
        input = yielder.suspend(Suspend::Finished);
    }
}

/// The sanitizer's "switched in" for the fiber of `co` (nothing without
/// ASan).
///
/// # Safety
/// `co` is the coroutine running on this thread, and its fiber slot holds
/// the fiber it runs on.
#[inline(always)]
pub(crate) unsafe fn arrived_on_fiber(co: *const CoInner) {
    #[cfg(any(coscheduler_asan, coscheduler_tsan))]
    // SAFETY: the caller's contract; executing-thread field.
    if let Some(f) = unsafe { (*(*co).fiber.get()).as_ref() } {
        crate::sanitizer::arrived(&f.asan);
    }
    let _ = co;
}

/// The sanitizer's "about to switch out" for the fiber of `co`.
///
/// # Safety
/// As [`arrived_on_fiber`].
#[inline(always)]
pub(crate) unsafe fn leaving_fiber(co: *const CoInner) {
    #[cfg(any(coscheduler_asan, coscheduler_tsan))]
    // SAFETY: the caller's contract; executing-thread field.
    if let Some(f) = unsafe { (*(*co).fiber.get()).as_ref() } {
        crate::sanitizer::leaving(&f.asan);
    }
    let _ = co;
}

/// Stack-size classes are whole usable sizes; `GuardedStack` rounds.
pub(crate) fn allocate(usable: usize) -> std::io::Result<Fiber> {
    GuardedStack::new(usable).map(Fiber::new)
}

/// A fresh fiber whose stack was painted before the trampoline's first
/// frame was written, for high-water-mark reporting.
pub(crate) fn allocate_painted(usable: usize) -> std::io::Result<Fiber> {
    let mut stack = GuardedStack::new(usable)?;
    stack.paint();
    Ok(Fiber::new(stack))
}

impl Fiber {
    /// Deepest use of a painted stack, in bytes from the top.
    ///
    /// # Safety
    /// The stack must have been painted ([`allocate_painted`]) and the fiber
    /// must not be running.
    pub(crate) unsafe fn high_water_mark(&self) -> usize {
        // SAFETY: the usable area lies right above the guard page; the
        // caller guarantees painting and that nothing runs on it.
        unsafe { GuardedStack::high_water_mark_at(self.guard.end, self.usable) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fiber_reports_its_size_and_guard() {
        let fiber = allocate(64 * 1024).unwrap();
        assert_eq!(fiber.usable_size(), 64 * 1024);
        let g = fiber.guard();
        assert_eq!(g.end - g.start, crate::stack::page_size());
        let stack = fiber.into_stack();
        assert_eq!(corosensei::stack::Stack::limit(&stack).get(), g.start);
    }
}
