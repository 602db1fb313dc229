//! Sanitizer annotations of the stack switch.
//!
//! AddressSanitizer keeps shadow state per stack, and ThreadSanitizer a
//! happens-before clock per thread of execution; a stack switch neither
//! can see makes ASan report the other stack's frames as wild accesses and
//! TSan mix up two coroutines' histories. Built with `--cfg coscheduler_asan`
//! or `--cfg coscheduler_tsan` (next to `-Zsanitizer=...`, see `.ci/run`),
//! every switch is announced:
//!
//! - **ASan:** `__sanitizer_start_switch_fiber` before a switch and
//!   `__sanitizer_finish_switch_fiber` after it, on the stack that runs
//!   next. The enterer (a thread's own stack, or the fiber of an outer
//!   coroutine) announces the fiber's usable range and completes when the
//!   fiber hands control back ([`Fiber::resume`](crate::core::fiber::Fiber::resume));
//!   the fiber completes each arrival ([`arrived`]) and records the
//!   enterer's range that ASan reports, which it announces when it suspends
//!   or finishes ([`leaving`]).
//! - **TSan:** each fiber owns a TSan fiber (`__tsan_create_fiber`); the
//!   enterer records its own (`__tsan_get_current_fiber`) and switches to
//!   the fiber's with `__tsan_switch_to_fiber`; the fiber switches back to
//!   the recorded one when it suspends or finishes. Synchronisation between
//!   coroutines is then what it really is: the scheduler's atomics.
//!
//! Stack painting reads and rewrites whole stacks on purpose; under ASan it
//! marks them addressable first ([`unpoison`]), as it tells valgrind they
//! are defined.
//!
//! Without either cfg every function here is empty and inlined away.
//!
//! Both runs are part of CI (`.ci/run`). TSan needs two things beyond the
//! annotations:
//!
//! - **An instrumented std** (`-Zbuild-std`): without it std's atomics are
//!   invisible and every value a std `Mutex` protects looks raced.
//! - **No function entry/exit instrumentation**
//!   (`-Cllvm-args=-tsan-instrument-func-entry-exit=0`): TSan keeps a shadow
//!   call stack per fiber, and the frames between `entering` and the
//!   actual stack switch (corosensei's) are entered on one fiber and left on
//!   another, so the shadow stacks drift until one underflows and TSan
//!   faults. Reports then carry the racing accesses' own frames only;
//!   happens-before tracking does not depend on the shadow stack.
//!
//! TSan does not model fences either, so a protocol TSan checks orders
//! through an atomic access where a fence would do (see
//! `core/refcount.rs`).

#[cfg(coscheduler_asan)]
mod imp {
    use std::cell::Cell;
    use std::ffi::c_void;
    use std::ptr;

    unsafe extern "C" {
        fn __sanitizer_start_switch_fiber(
            fake_stack_save: *mut *mut c_void,
            bottom: *const c_void,
            size: usize,
        );
        fn __sanitizer_finish_switch_fiber(
            fake_stack_save: *mut c_void,
            bottom_old: *mut *const c_void,
            size_old: *mut usize,
        );
        fn __asan_unpoison_memory_region(addr: *const c_void, size: usize);
    }

    /// One fiber's side of the protocol: the range of the stack that
    /// entered it, and its fake-stack handle while it is switched out.
    pub(crate) struct FiberSide {
        from_bottom: Cell<*const c_void>,
        from_size: Cell<usize>,
        fake: Cell<*mut c_void>,
    }

    impl FiberSide {
        pub(crate) fn new() -> FiberSide {
            FiberSide {
                from_bottom: Cell::new(ptr::null()),
                from_size: Cell::new(0),
                fake: Cell::new(ptr::null_mut()),
            }
        }
    }

    /// What the enterer keeps across a switch: its fake-stack handle.
    pub(crate) struct Saved(*mut c_void);

    /// Enterer: switching to `side`'s fiber, whose usable stack is
    /// `bottom..bottom + size`.
    pub(crate) fn entering(_side: &FiberSide, bottom: usize, size: usize) -> Saved {
        let mut save = ptr::null_mut();
        // SAFETY: ASan's documented protocol; `save` outlives the call.
        unsafe { __sanitizer_start_switch_fiber(&mut save, bottom as *const c_void, size) };
        Saved(save)
    }

    /// Enterer: back from the fiber.
    pub(crate) fn returned(save: Saved) {
        // SAFETY: `save` is what `entering` returned on this stack.
        unsafe { __sanitizer_finish_switch_fiber(save.0, ptr::null_mut(), ptr::null_mut()) };
    }

    /// Fiber: just switched in.
    pub(crate) fn arrived(side: &FiberSide) {
        let (mut bottom, mut size) = (ptr::null(), 0);
        // SAFETY: ASan's protocol; `fake` is null on the first arrival and
        // the handle saved by `leaving` afterwards.
        unsafe { __sanitizer_finish_switch_fiber(side.fake.get(), &mut bottom, &mut size) };
        side.from_bottom.set(bottom);
        side.from_size.set(size);
    }

    /// Fiber: about to switch back to its enterer.
    pub(crate) fn leaving(side: &FiberSide) {
        let mut save = ptr::null_mut();
        // SAFETY: ASan's protocol; the range is the one `arrived` recorded.
        unsafe {
            __sanitizer_start_switch_fiber(&mut save, side.from_bottom.get(), side.from_size.get())
        };
        side.fake.set(save);
    }

    /// Marks `start..start + len` addressable.
    pub(crate) fn unpoison(start: usize, len: usize) {
        // SAFETY: only changes ASan's shadow for a range we own.
        unsafe { __asan_unpoison_memory_region(start as *const c_void, len) };
    }
}

#[cfg(coscheduler_tsan)]
mod imp {
    use std::cell::Cell;
    use std::ffi::c_void;
    use std::ptr;

    unsafe extern "C" {
        fn __tsan_get_current_fiber() -> *mut c_void;
        fn __tsan_create_fiber(flags: u32) -> *mut c_void;
        fn __tsan_destroy_fiber(fiber: *mut c_void);
        fn __tsan_switch_to_fiber(fiber: *mut c_void, flags: u32);
    }

    /// One fiber's TSan fiber, and the one that entered it.
    pub(crate) struct FiberSide {
        own: *mut c_void,
        from: Cell<*mut c_void>,
    }

    impl FiberSide {
        pub(crate) fn new() -> FiberSide {
            FiberSide {
                // SAFETY: TSan's fiber API; destroyed in `drop`.
                own: unsafe { __tsan_create_fiber(0) },
                from: Cell::new(ptr::null_mut()),
            }
        }
    }

    impl Drop for FiberSide {
        fn drop(&mut self) {
            // SAFETY: created in `new`, not current (a fiber is dropped only
            // while parked).
            unsafe { __tsan_destroy_fiber(self.own) };
        }
    }

    /// Nothing for the enterer to keep: the fiber records where to return.
    pub(crate) struct Saved;

    /// Enterer: switching to `side`'s fiber.
    pub(crate) fn entering(side: &FiberSide, _bottom: usize, _size: usize) -> Saved {
        // SAFETY: TSan's fiber API, on the thread doing the switch.
        unsafe {
            side.from.set(__tsan_get_current_fiber());
            __tsan_switch_to_fiber(side.own, 0);
        }
        Saved
    }

    /// Enterer: back from the fiber (it switched TSan back in `leaving`).
    pub(crate) fn returned(_save: Saved) {}

    /// Fiber: just switched in (TSan switched in `entering`).
    pub(crate) fn arrived(_side: &FiberSide) {}

    /// Fiber: about to switch back to its enterer.
    pub(crate) fn leaving(side: &FiberSide) {
        // SAFETY: `from` is the enterer's fiber, recorded by `entering`.
        unsafe { __tsan_switch_to_fiber(side.from.get(), 0) };
    }

    /// Only ASan poisons memory.
    pub(crate) fn unpoison(_start: usize, _len: usize) {}
}

#[cfg(not(any(coscheduler_asan, coscheduler_tsan)))]
mod imp {
    /// Nothing to record without a sanitizer.
    #[allow(dead_code)]
    pub(crate) struct FiberSide;

    impl FiberSide {
        #[inline(always)]
        pub(crate) fn new() -> FiberSide {
            FiberSide
        }
    }

    /// Nothing to keep.
    pub(crate) struct Saved;

    #[inline(always)]
    pub(crate) fn entering(_side: &FiberSide, _bottom: usize, _size: usize) -> Saved {
        Saved
    }

    #[inline(always)]
    pub(crate) fn returned(_save: Saved) {}

    #[inline(always)]
    pub(crate) fn unpoison(_start: usize, _len: usize) {}
}

pub(crate) use imp::{FiberSide, entering, returned, unpoison};
#[cfg(any(coscheduler_asan, coscheduler_tsan))]
pub(crate) use imp::{arrived, leaving};
