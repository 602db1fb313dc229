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
