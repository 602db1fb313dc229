//! Coroutine synchronization and I/O for [`coscheduler`]: QEMU's CoMutex,
//! CoQueue, CoRwlock, sleep, timeout, lockables and coroutine sockets, in
//! Rust idioms.
//!
//! Every primitive here suspends the calling *coroutine*, never the thread:
//! while one coroutine waits for a lock, a timer or a socket, its thread runs
//! others.

// Module declarations and re-exports are added below by each module's
// author, one line each.

// Locks, queues and lockables (QEMU's qemu-coroutine-lock.c, lockable.h),
// contention statistics and pool controls. Under `--cfg loom` only the
// model-checked protocols compile (`co_mutex::raw`, the spin lock), with
// `sync` as their atomics shim; see `sync.rs` for the loom command.
mod co_mutex;
#[cfg(not(loom))]
mod co_queue;
#[cfg(not(loom))]
mod co_rwlock;
mod lockable;
#[cfg(not(loom))]
pub mod pool;
#[cfg(not(loom))]
pub mod stats;
mod sync;
#[cfg(not(loom))]
pub use co_mutex::{CoMutex, CoMutexGuard, LOCAL_FIRST_LIMIT};
#[cfg(not(loom))]
pub use co_queue::CoQueue;
#[cfg(not(loom))]
pub use co_rwlock::{CoRwLock, CoRwLockReadGuard, CoRwLockWriteGuard};
#[cfg(not(loom))]
pub use lockable::SpinLock;
pub use lockable::{Lockable, LockableGuard, NoLock, lock_guard, lock_guard_opt};

// Sleep, timeout and coroutine I/O (QEMU's qemu-coroutine-sleep.c,
// qemu-co-timeout.c, qemu-coroutine-io.c).
#[cfg(not(loom))]
pub mod io;
#[cfg(not(loom))]
mod sleep;
#[cfg(loom)]
#[path = "sleep/claim.rs"]
mod sleep_claim_model;
#[cfg(not(loom))]
mod timeout;
#[cfg(not(loom))]
pub use sleep::{CoSleep, co_sleep};
#[cfg(not(loom))]
pub use timeout::{TimedOut, co_timeout, co_timeout_with_cleanup};
