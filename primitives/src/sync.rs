//! The crate's single source of atomics, cells and spin hints for the lock
//! protocols (CoMutex's waiter stack and hand-off, the spin lock).
//!
//! Protocol code takes these names from here, never from `std`, so that the
//! same source can be model-checked: under `--cfg loom` they resolve to loom's
//! instrumented types, otherwise to `std`'s. The model checks are run with
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p coprimitives --release --lib loom
//! ```
//!
//! (add `-C debug-assertions` to RUSTFLAGS to also check the `debug_assert!`s
//! of code outside the protocols; the protocols' own invariant checks are
//! plain `assert!`s under loom, see [`protocol_assert`]).

// Under `--cfg loom` only the model tests use this module.
#![cfg_attr(loom, allow(dead_code))]

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicUsize};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicUsize};

/// One iteration of a busy-wait loop. Under loom a spin must let the model
/// schedule another thread, or it would explore an endless loop.
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// `std::cell::UnsafeCell` with loom's closure-based access API, so protocol
/// code reads the same under both configurations (the tokio `loom` shim's
/// approach). Under loom every access is checked for causality: a read of a
/// cell that does not happen-after its last write is reported as a race.
#[cfg(not(loom))]
#[derive(Debug, Default)]
#[repr(transparent)]
pub(crate) struct UnsafeCell<T: ?Sized>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    /// A cell holding `value`.
    #[inline]
    pub(crate) const fn new(value: T) -> UnsafeCell<T> {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }
}

#[cfg(not(loom))]
impl<T: ?Sized> UnsafeCell<T> {
    /// Runs `f` with a shared raw pointer to the contents.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with an exclusive raw pointer to the contents.
    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// An invariant of a lock protocol: checked always under loom (whose runs
/// are meant to find exactly these violations, with or without
/// `-C debug-assertions`) and in debug builds; compiled out of release
/// builds.
macro_rules! protocol_assert {
    ($($arg:tt)*) => {
        if cfg!(any(loom, debug_assertions)) {
            assert!($($arg)*);
        }
    };
}
pub(crate) use protocol_assert;
