//! AddressSanitizer annotations of the stack switch.
//!
//! ASan keeps shadow state per stack, and a switch it cannot see makes it
//! report the other stack's frames as wild accesses. Built with
//! `--cfg coscheduler_asan` (next to `-Zsanitizer=address`, see `.ci/run`),
//! every switch is announced with `__sanitizer_start_switch_fiber` before
//! it and completed with `__sanitizer_finish_switch_fiber` after it, on the
//! stack that runs next:
//!
//! - the enterer (a thread's own stack, or the fiber of an outer coroutine)
//!   announces the fiber's usable range and completes when the fiber hands
//!   control back ([`Fiber::resume`](crate::fiber::Fiber::resume));
//! - the fiber completes each arrival ([`arrived`]) and records the
//!   enterer's range that ASan reports, so that it can announce that range
//!   when it suspends or finishes ([`leaving`]).
//!
//! Stack painting reads and rewrites whole stacks on purpose; it marks them
//! addressable first ([`unpoison`]), as it tells valgrind they are defined.
//!
//! Without the cfg every function here is empty and inlined away.

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

    /// Marks `start..start + len` addressable: stack painting reads and
    /// rewrites a whole stack on purpose, dead frames and their redzones
    /// included.
    pub(crate) fn unpoison(start: usize, len: usize) {
        // SAFETY: only changes ASan's shadow for a range we own.
        unsafe { __asan_unpoison_memory_region(start as *const c_void, len) };
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

    /// Enterer: switching to the fiber whose usable stack is
    /// `bottom..bottom + size`; returns the enterer's fake-stack handle.
    pub(crate) fn entering(bottom: usize, size: usize) -> *mut c_void {
        let mut save = ptr::null_mut();
        // SAFETY: ASan's documented protocol; `save` outlives the call.
        unsafe { __sanitizer_start_switch_fiber(&mut save, bottom as *const c_void, size) };
        save
    }

    /// Enterer: back from the fiber.
    pub(crate) fn returned(save: *mut c_void) {
        // SAFETY: `save` is what `entering` returned on this stack.
        unsafe { __sanitizer_finish_switch_fiber(save, ptr::null_mut(), ptr::null_mut()) };
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
}

#[cfg(not(coscheduler_asan))]
mod imp {
    /// Nothing to record without ASan.
    #[allow(dead_code)]
    pub(crate) struct FiberSide;

    impl FiberSide {
        #[inline(always)]
        pub(crate) fn new() -> FiberSide {
            FiberSide
        }
    }

    #[inline(always)]
    pub(crate) fn entering(_bottom: usize, _size: usize) -> *mut std::ffi::c_void {
        std::ptr::null_mut()
    }

    #[inline(always)]
    pub(crate) fn returned(_save: *mut std::ffi::c_void) {}

    #[inline(always)]
    pub(crate) fn unpoison(_start: usize, _len: usize) {}
}

pub(crate) use imp::{FiberSide, entering, returned, unpoison};
#[cfg(coscheduler_asan)]
pub(crate) use imp::{arrived, leaving};
