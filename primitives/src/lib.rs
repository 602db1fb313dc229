//! Coroutine synchronization and I/O for [`coscheduler`]: QEMU's CoMutex,
//! CoQueue, CoRwlock, sleep, timeout, lockables and coroutine sockets, in
//! Rust idioms.
//!
//! Every primitive here suspends the calling *coroutine*, never the thread:
//! while one coroutine waits for a lock, a timer or a socket, its thread runs
//! others.
//!
//! ```
//! use std::sync::Arc;
//! use coprimitives::CoMutex;
//!
//! let rt = coscheduler::Runtime::builder().threads(2).build().unwrap();
//! let counter = Arc::new(CoMutex::new(0u64));
//! let handles: Vec<_> = (0..8)
//!     .map(|_| {
//!         let c = counter.clone();
//!         rt.spawn(move || {
//!             for _ in 0..1000 {
//!                 *c.lock() += 1; // suspends the coroutine, not the thread
//!             }
//!         })
//!     })
//!     .collect();
//! handles.into_iter().for_each(|h| h.join().unwrap());
//! assert_eq!(rt.block_on(move || *counter.lock()), 8000);
//! ```
//!
//! # QEMU names
//!
//! | QEMU | coprimitives |
//! |---|---|
//! | `CoMutex`, `qemu_co_mutex_init` | [`CoMutex`], [`CoMutex::new`] |
//! | `qemu_co_mutex_lock` / `qemu_co_mutex_unlock` | [`CoMutex::lock`] / dropping the [`CoMutexGuard`] |
//! | `qemu_co_mutex_assert_locked` | [`CoMutex::is_locked_by_current`] |
//! | `CoQueue`, `qemu_co_queue_init` | [`CoQueue`], [`CoQueue::new`] |
//! | `qemu_co_queue_wait` / `CO_QUEUE_WAIT_FRONT` | [`CoQueue::wait`] / [`CoQueue::wait_front`] (any lock: [`CoQueue::wait_with`]) |
//! | `qemu_co_queue_next` / `qemu_co_queue_restart_all` | [`CoQueue::next`] / [`CoQueue::restart_all`] |
//! | `qemu_co_enter_next` / `qemu_co_enter_all` | [`CoQueue::enter_next`] / [`CoQueue::enter_all`] |
//! | `qemu_co_queue_empty` | [`CoQueue::is_empty`] |
//! | `CoRwlock`, `qemu_co_rwlock_rdlock` / `wrlock` | [`CoRwLock`], [`CoRwLock::read`] / [`CoRwLock::write`] |
//! | `qemu_co_rwlock_upgrade` / `downgrade` | [`CoRwLockReadGuard::upgrade`] / [`CoRwLockWriteGuard::downgrade`] |
//! | `QemuLockable`, `QEMU_MAKE_LOCKABLE`, `QemuSpin` | [`Lockable`], `&lock`, [`SpinLock`] |
//! | `qemu_co_sleep_ns` | [`co_sleep`] |
//! | `QemuCoSleep`, `qemu_co_sleep_ns_wakeable`, `qemu_co_sleep`, `qemu_co_sleep_wake` | [`CoSleep`], [`CoSleep::sleep`], [`CoSleep::sleep_until_woken`], [`CoSleep::wake`] |
//! | `qemu_co_timeout` (+ `CleanupFunc`) | [`co_timeout`], [`co_timeout_with_cleanup`] |
//! | `yield_until_fd_readable` | [`io::wait_readable`] |
//! | `qemu_co_send` / `qemu_co_recv` / `qemu_co_sendv_recvv` | [`io::co_send`] / [`io::co_recv`] / [`io::co_sendv`], [`io::co_recvv`] |
//! | `qemu_coroutine_inc_pool_size` / `dec_pool_size` | [`pool::inc_pool_size`] / [`pool::dec_pool_size`] |
//! | (none: per-lock contention histograms) | [`stats`], [`CoMutex::with_stats`] |
//! | `thread_pool_submit_co` (blocking work off the event loop) | [`co_blocking`] |
//! | — (cooperative budget for long loops) | [`maybe_yield`] |
//! | — (wait-for cycles through locks and joins) | [`deadlocks`], [`Deadlock`] |
//! | — (stall detector, deterministic simulation) | in `coscheduler`: `Builder::stall_threshold`, `coscheduler::sim` |
//!
//! # Guided tour
//!
//! - **Locks:** [`CoMutex`] (QEMU's lockless algorithm, FIFO hand-over;
//!   [`CoMutex::try_lock`] works on plain threads too), [`CoRwLock`] (fair,
//!   with upgrade and downgrade), [`SpinLock`] for sections that never
//!   suspend, and the [`Lockable`] trait that lets [`CoQueue::wait_with`]
//!   drop any of them across a wait.
//! - **Conditions:** [`CoQueue`], the coroutine condition variable.
//! - **Time:** [`co_sleep`], [`CoSleep`] (a sleep another thread can end
//!   early), [`co_timeout`] (stop waiting; the work itself keeps running).
//! - **I/O:** [`io`]: coroutine sockets ([`io::TcpStream`],
//!   [`io::TcpListener`], Unix sockets) and QEMU's send/receive helpers.
//! - **Cooperation and diagnostics:** [`co_blocking`] for blocking calls,
//!   [`maybe_yield`] for long loops, [`deadlocks`] for wait-for cycles,
//!   [`stats`] for contention histograms, [`pool`] for the stack pool.
//!
//! Spawning, the runtime, shutdown and the stall detector are in
//! [`coscheduler`]. The repository's `docs/SEMANTICS.md` says where each
//! primitive follows QEMU and where it differs.
//!
//! # Outside a coroutine
//!
//! The rule: a wait that only takes time works on a plain thread, which
//! blocks while driving its own [`AioContext`](coscheduler::AioContext) (so
//! coroutines homed on the thread keep running). A wait on a lock or a queue
//! panics there instead (QEMU's `coroutine_fn` rule): what those primitives
//! queue, hand the lock to and wake is a coroutine, and they never block a
//! thread. The sockets block like std's. Calls that never wait (`try_lock`,
//! the waking side of [`CoQueue`], [`CoSleep::wake`]) work anywhere.
//!
//! | call | on a plain thread |
//! |---|---|
//! | [`co_sleep`] | blocks for the duration, driving the thread's context |
//! | [`co_timeout`], [`co_timeout_with_cleanup`] | as in a coroutine: `f` runs in a coroutine of the thread's context, driven until it ends or the deadline passes (a zero duration runs `f` directly). After [`TimedOut`], `f` goes on only while the thread drives its context again (a join, a `co_sleep`, `AioContext::poll`) |
//! | [`CoSleep::sleep`], [`CoSleep::sleep_until_woken`] | panic: "CoSleep::sleep / co_sleep called outside a coroutine" |
//! | [`CoMutex::lock`] (also through [`Lockable::lock`]) | panics: "CoMutex::lock() called outside a coroutine: …"; [`CoMutex::try_lock`] works |
//! | [`CoRwLock::read`], [`CoRwLock::write`] | panic: "CoRwLock::read() called outside a coroutine: …" (`write()` alike) |
//! | [`CoQueue::wait`], [`wait_front`](CoQueue::wait_front), [`wait_with`](CoQueue::wait_with), [`wait_front_with`](CoQueue::wait_front_with) | panic: "CoQueue::wait called outside a coroutine: …"; [`CoQueue::next`], [`CoQueue::restart_all`], [`CoQueue::enter_next`] and [`CoQueue::enter_all`] work |
//! | [`io::wait_readable`], [`io::wait_writable`] | return an error without waiting: `ErrorKind::Other`, or the registration's own error (`EPERM` for a regular file) |
//! | [`io::TcpStream`], [`io::TcpListener`], [`io::UnixStream`], [`io::UnixListener`], [`io::co_send`], [`io::co_recv`] and their vectored forms | block the thread in `poll(2)`, as std's blocking sockets do (their timeouts apply); async polls (`futures-io`) fail with `ErrorKind::Unsupported` |
//! | [`co_blocking`] | runs `f` inline on the calling thread |
//! | [`maybe_yield`] | does nothing |
//!
//! Code on a plain thread that needs a lock or a queue has three ways out:
//!
//! - [`CoMutex::try_lock`], when not getting the lock is acceptable;
//! - running the code in a coroutine and waiting for it:
//!   [`Runtime::block_on`](coscheduler::Runtime::block_on) on a runtime's
//!   worker, or without a runtime
//!   [`AioContext::current`](coscheduler::AioContext::current)`().spawn(..).join()`,
//!   whose coroutine runs on this thread while the join drives it;
//! - for data that plain threads and coroutines share, a
//!   `std::sync::Mutex`, held by coroutines only in sections that do not
//!   suspend (if the holder suspends, the next coroutine of its thread to
//!   lock it blocks that thread, and with it the holder: a deadlock).
//!
//! ```
//! use std::sync::Arc;
//! use coprimitives::CoMutex;
//!
//! let m = Arc::new(CoMutex::new(0));
//! // A plain thread: `m.lock()` would panic; `try_lock` never waits.
//! *m.try_lock().unwrap() += 1;
//! let m2 = m.clone();
//! coscheduler::AioContext::current()
//!     .spawn(move || *m2.lock() += 1) // may wait: a coroutine
//!     .join()
//!     .unwrap();
//! assert_eq!(*m.try_lock().unwrap(), 2);
//! ```
//!
//! # Cargo features
//!
//! - `futures-io` (off by default): `futures_io::AsyncRead` and
//!   `AsyncWrite` for [`io::TcpStream`] and [`io::UnixStream`], for async
//!   code polled inside a coroutine (a future awaited with
//!   `coscheduler::wait`); see [`io`], "Async I/O".

// Locks, queues and lockables (QEMU's qemu-coroutine-lock.c, lockable.h),
// contention statistics and pool controls. Under `--cfg loom` only the
// model-checked protocols compile (`co_mutex::raw`, CoRwLock's tickets,
// the spin lock), with `sync` as their atomics shim; see `sync.rs` for the
// loom command.
mod co_mutex;
#[cfg(not(loom))]
mod co_queue;
#[cfg(not(loom))]
mod co_rwlock;
#[cfg(loom)]
mod co_rwlock {
    pub(crate) mod tickets;
}
mod lockable;
#[cfg(not(loom))]
pub mod pool;
#[cfg(not(loom))]
pub mod stats;
mod sync;
#[cfg(not(loom))]
pub use co_mutex::{CoMutex, CoMutexGuard, DEFAULT_FAIRNESS_BOUND, Fairness};
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

// Diagnostics and cooperation: blocking calls on a thread pool, a budget
// check for long loops, wait-for cycles.
#[cfg(not(loom))]
mod blocking;
#[cfg(not(loom))]
mod deadlock;
#[cfg(not(loom))]
pub use deadlock::{Deadlock, DeadlockMember, deadlocks};
#[cfg(not(loom))]
pub mod budget;
#[cfg(not(loom))]
pub use blocking::co_blocking;
#[cfg(not(loom))]
pub use budget::maybe_yield;
#[cfg(not(loom))]
pub use sleep::{CoSleep, co_sleep};
#[cfg(not(loom))]
pub use timeout::{TimedOut, co_timeout, co_timeout_with_cleanup};

// Test-only breakages, for the tests that show the simulation finds them.
#[cfg(not(loom))]
mod mutation;

/// **Test-only** switches that plant a bug in a primitive, for the tests
/// that show the deterministic simulation catches it (see each item).
/// Nothing here is covered by semver, and a program never calls it.
#[cfg(not(loom))]
#[doc(hidden)]
pub mod __mutation {
    pub use super::mutation::skip_unlock_handoff;
}
