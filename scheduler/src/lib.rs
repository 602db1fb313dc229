//! Stackful coroutines with QEMU's semantics, scheduled across cores by work
//! stealing.
//!
//! Code that reads synchronously — lock, sleep, read a socket in the middle
//! of a call chain — runs asynchronously at the cost of a context switch.
//! Each coroutine has its own guard-paged stack; suspending it returns to
//! whoever entered it, exactly as in QEMU's `util/qemu-coroutine.c`.
//!
//! ```
//! use coscheduler::{Coroutine, current, suspend};
//!
//! let co = Coroutine::new(|| {
//!     let me = current().unwrap();
//!     suspend();                 // back to the enterer
//!     assert!(me.entered());     // resumed by the second enter
//! });
//! co.enter();
//! assert!(!co.is_finished());
//! co.enter();
//! assert!(co.is_finished());
//! ```
//!
//! # Layers
//!
//! 1. [`stack`]: mmap'ed stacks with a `PROT_NONE` guard page; a fault in a
//!    running coroutine's guard page is reported by name before aborting.
//! 2. [`pool`]: finished coroutines' stacks are reused (QEMU's batch pool,
//!    capped by `vm.max_map_count`).
//! 3. [`Coroutine`]: create / enter / suspend, nesting, QEMU's wake order.
//! 4. [`AioContext`]: a per-thread event loop (`aio_poll`), cross-thread
//!    hand-off, bottom halves, timers, fd readiness ([`fd`]).
//! 5. [`Runtime`]: worker threads with work stealing of unstarted
//!    coroutines.
//!
//! # Soundness: started coroutines do not migrate implicitly
//!
//! A coroutine's stack can hold `!Send` values and thread-local references
//! across a suspension, and Rust cannot see them. So a coroutine's closure is
//! `Send + 'static` and may start anywhere, but once started it only runs on
//! its *home* context's thread; waking it from elsewhere hands it home. Only
//! coroutines created with the `unsafe` [`CoroutineBuilder::migratable`]
//! opt-in (or spawned on a runtime built with the `unsafe`
//! [`Builder::migrate_started`]) may move after they start. The scheduler's
//! own thread-locals are read through `#[inline(never)]` accessors, never
//! cached across a switch (QEMU's `coroutine-tls.h` problem).
//!
//! The compiler enforces the first half: a coroutine body must be `Send`, so
//! it cannot capture thread-bound values.
//!
//! ```compile_fail
//! let rc = std::rc::Rc::new(1);
//! let co = coscheduler::Coroutine::new(move || drop(rc)); // Rc is not Send
//! ```
//!
//! Inside the body, `!Send` values are fine: the coroutine never leaves its
//! home thread once started.
//!
//! ```
//! let co = coscheduler::Coroutine::new(|| {
//!     let rc = std::rc::Rc::new(1);
//!     coscheduler::suspend();
//!     assert_eq!(*rc, 1);
//! });
//! co.enter();
//! co.enter();
//! ```
//!
//! # QEMU names
//!
//! | QEMU | coscheduler |
//! |---|---|
//! | `qemu_coroutine_create` | [`Coroutine::new`], [`CoroutineBuilder::create`] |
//! | `qemu_coroutine_enter` | [`Coroutine::enter`] |
//! | `qemu_coroutine_enter_if_inactive` | [`Coroutine::enter_if_inactive`] |
//! | `qemu_coroutine_yield` | [`suspend`] |
//! | `qemu_coroutine_self` | [`current`] |
//! | `qemu_in_coroutine` | [`in_coroutine`] |
//! | `qemu_coroutine_entered` | [`Coroutine::entered`] |
//! | `qemu_coroutine_get_aio_context` | [`Coroutine::context`] |
//! | `aio_co_wake` | [`Coroutine::wake`] |
//! | `aio_co_schedule` | [`AioContext::schedule`] |
//! | `aio_co_enter` | [`AioContext::enter`] |
//! | `aio_co_reschedule_self` | [`reschedule_self`] |
//! | `aio_bh_schedule_oneshot` | [`AioContext::bh_oneshot`] |
//! | `aio_notify` | [`AioContext::notify`] |
//! | `aio_poll` | [`AioContext::poll`] |
//! | `qemu_get_current_aio_context` | [`AioContext::current`] |
//! | `timer_new` + `timer_mod` / `timer_del` | [`AioContext::add_timer`] / [`AioContext::cancel_timer`] |
//! | `yield_until_fd_readable` | [`fd::wait_readable`], [`fd::Registration`] |
//! | `qemu_coroutine_inc_pool_size` / `dec_pool_size` | [`pool::inc_pool_size`] / [`pool::dec_pool_size`] |
//! | `qemu_alloc_stack` | [`stack::GuardedStack::new`] |
//! | `COROUTINE_STACK_SIZE` | [`stack::DEFAULT_STACK_SIZE`] |
//! | IOThread | a [`Runtime`] worker |

#![cfg_attr(loom, allow(dead_code, unused_imports))]

#[cfg(not(loom))]
pub mod blocking;
#[cfg(not(loom))]
pub mod config;
#[cfg(not(loom))]
mod context;
#[cfg(not(loom))]
mod coroutine;
#[cfg(not(loom))]
pub mod deadlock;
#[cfg(not(loom))]
pub mod fd;
#[cfg(not(loom))]
mod fiber;
#[cfg(not(loom))]
mod join;
#[cfg(not(loom))]
pub mod pool;
#[cfg(not(loom))]
pub mod raw;
#[cfg(not(loom))]
mod runtime;
#[cfg(not(loom))]
pub mod stack;
#[cfg(not(loom))]
mod stall;
mod sync;
#[cfg(not(loom))]
mod tls;

// The model-checked protocols, compiled alone under `--cfg loom`.
#[cfg(loom)]
#[path = "context/handoff.rs"]
mod handoff_model;
#[cfg(loom)]
#[path = "runtime/idle.rs"]
mod idle_model;
#[cfg(loom)]
#[path = "pool/batch.rs"]
mod pool_batch_model;
#[cfg(loom)]
#[path = "coroutine/refcount.rs"]
mod refcount_model;
#[cfg(loom)]
#[path = "stall/handshake.rs"]
mod stall_handshake_model;
#[cfg(loom)]
#[path = "coroutine/wake_mark.rs"]
mod wake_mark_model;

#[cfg(not(loom))]
pub use config::{Config, ConfigError, RuntimeConfig};
#[cfg(not(loom))]
pub use context::{
    AioContext, ContextMetrics, DEFAULT_POLL_MAX, DEFAULT_SHUTDOWN_TIMEOUT, TimerId,
};
#[cfg(not(loom))]
pub use coroutine::{Coroutine, CoroutineBuilder, current, in_coroutine, suspend, yield_now};
#[cfg(not(loom))]
pub use deadlock::{Deadlock, DeadlockMember};
#[cfg(not(loom))]
pub use join::{JoinError, JoinHandle};
#[cfg(not(loom))]
pub use runtime::{Builder, Handle, Runtime, RuntimeMetrics, ShutdownError, reschedule_self};
#[cfg(not(loom))]
pub use stall::{DEFAULT_STALL_THRESHOLD, StallMetrics, StallReport};
