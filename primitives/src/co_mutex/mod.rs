//! QEMU's CoMutex: a lockless mutex whose waiters are coroutines.
//!
//! - [`raw`]: the lock-free protocol (lock count, waiter stack, hand-off
//!   token), generic over how a waiter is suspended, and model-checked under
//!   `--cfg loom`;
//! - `queue`: the responsible party's waiter lists and the hand-over policy
//!   (strict FIFO or eventual fairness);
//! - `park`: the production suspension (coroutine `suspend`/`wake`);
//! - `mutex`: the public [`CoMutex`] and its guard.

// Under `--cfg loom` only the model tests use this module.
#![cfg_attr(loom, allow(dead_code))]

mod queue;
pub(crate) mod raw;

#[cfg(not(loom))]
mod fairness;
#[cfg(not(loom))]
mod mutex;
#[cfg(not(loom))]
mod park;

#[cfg(not(loom))]
pub use self::fairness::{DEFAULT_FAIRNESS_BOUND, Fairness};
#[cfg(not(loom))]
pub use self::mutex::{CoMutex, CoMutexGuard};
