//! The crate's single source of atomics and cells.
//!
//! Protocol code (the hand-off queue, the sleep gate, the idle set, the pool's
//! batch transfer) takes its atomics from here so that the same source can be
//! model-checked: under `--cfg loom` these names resolve to loom's
//! instrumented types, otherwise to `std`'s.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, fence,
};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, fence,
};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};

/// What the loom models share: a thread's sleep and wake-up.
#[cfg(all(test, loom))]
pub(crate) mod loom_support {
    use loom::sync::{Condvar, Mutex};

    /// An eventfd stood in for: a flag plus a condition variable. `wake`
    /// sets it, `wait` blocks until it is set and clears it, so a wake
    /// before the wait is not lost, as with the real eventfd.
    #[derive(Default)]
    pub(crate) struct Event {
        set: Mutex<bool>,
        cv: Condvar,
    }

    impl Event {
        pub(crate) fn wake(&self) {
            *self.set.lock().unwrap() = true;
            self.cv.notify_one();
        }

        pub(crate) fn wait(&self) {
            let mut set = self.set.lock().unwrap();
            while !*set {
                set = self.cv.wait(set).unwrap();
            }
            *set = false;
        }
    }
}
