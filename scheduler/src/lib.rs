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
//! # Guided tour
//!
//! 1. **Spawn.** [`Runtime::builder`] starts worker threads;
//!    [`Runtime::spawn`] (or [`spawn`] from inside a coroutine,
//!    [`AioContext::spawn`] on one context) starts a coroutine and returns a
//!    [`JoinHandle`]; [`Runtime::block_on`] runs one and waits for it. For
//!    hand-driven coroutines: [`Coroutine::new`], [`Coroutine::enter`],
//!    [`suspend`], [`Coroutine::wake`], [`yield_now`].
//! 2. **Synchronize.** The [`coprimitives`](../coprimitives/index.html)
//!    crate has the coroutine locks and queues:
//!    [`CoMutex`](../coprimitives/struct.CoMutex.html),
//!    [`CoRwLock`](../coprimitives/struct.CoRwLock.html),
//!    [`CoQueue`](../coprimitives/struct.CoQueue.html),
//!    [`Lockable`](../coprimitives/trait.Lockable.html). They suspend the
//!    coroutine, never the thread; what they do on a plain thread is in
//!    coprimitives' [Outside a coroutine](../coprimitives/index.html#outside-a-coroutine).
//! 3. **Sleep and time out.**
//!    [`coprimitives::co_sleep`](../coprimitives/fn.co_sleep.html),
//!    [`CoSleep`](../coprimitives/struct.CoSleep.html) (a sleep another
//!    thread can end early),
//!    [`co_timeout`](../coprimitives/fn.co_timeout.html). They build on the
//!    context's timers ([`AioContext::add_timer`]).
//! 4. **I/O.** [`coprimitives::io`](../coprimitives/io/index.html) has
//!    sockets whose `Read`/`Write` suspend the coroutine, and QEMU's
//!    `qemu_co_send`/`recv` family; underneath is
//!    [`fd::Registration`] (for async code polled on its context's thread,
//!    [`fd::Registration::poll_ready`]; the sockets' `futures-io` traits use
//!    it). Any `Future` can be awaited with [`wait`].
//! 5. **Shut down.** [`Runtime::shutdown`] (or dropping the runtime) unwinds
//!    every suspended coroutine on its home thread, within
//!    [`Builder::shutdown_timeout`]. The unwinding starts at the coroutine's
//!    suspension point: a cancelled coroutine's [`suspend`] (under every
//!    lock, sleep and join) raises a private panic payload instead of
//!    returning. A `catch_unwind` around a suspending call can catch it but
//!    not stop it: the coroutine's next suspension raises it again, so the
//!    coroutine still ends and its stack is not leaked (see
//!    [`suspend`](crate::suspend#cancellation)).
//! 6. **Diagnose.** The stall detector ([`Builder::stall_threshold`],
//!    [`Builder::on_stall`]) names a coroutine that runs too long without
//!    suspending; blocking calls go to the blocking pool
//!    ([`Runtime::spawn_blocking`],
//!    [`coprimitives::co_blocking`](../coprimitives/fn.co_blocking.html));
//!    [`coprimitives::maybe_yield`](../coprimitives/budget/fn.maybe_yield.html)
//!    keeps long loops cooperative;
//!    [`Runtime::deadlocks`] finds wait-for cycles and [`Runtime::dump`]
//!    lists what every coroutine waits on; [`RuntimeMetrics`] and
//!    [`pool::stats`] count. [`sim`] replays concurrency bugs
//!    deterministically from a seed.
//!
//! # Glossary
//!
//! - **context** ([`AioContext`], QEMU's name): one per thread that runs
//!   coroutines: its ready list, timers, file descriptors, and a mailbox
//!   other threads post to. [`AioContext::poll`] is one turn of its loop.
//! - **home**: the context a coroutine first ran on. A started coroutine
//!   runs only there; a wake from elsewhere is a **hand-off** to it.
//! - **bottom half**: a one-shot callback a context runs on its own thread,
//!   outside any coroutine ([`AioContext::bh_oneshot`]).
//! - **injector**: the runtime's shared queue of spawned coroutines that
//!   have not started; idle workers take from it and steal from each other.
//! - **migratable**: a coroutine allowed, by an `unsafe` promise, to move
//!   after it started (see Soundness below).
//!
//! Reading these pages: the blanket implementations from crossbeam-epoch
//! (`Pointable`, which comes with the work-stealing deques of
//! crossbeam-deque) appear on every type page, here and in coprimitives;
//! they are not part of our API.
//!
//! # Layers
//!
//! Bottom up, each using only those below: `sync` (atomics, loom-swappable),
//! `sanitizer`, [`stack`] (guard-paged stacks, the overflow report),
//! `stackpool` (QEMU's batch pool, controlled through [`pool`]), `core` (the
//! control block, enter loop, wake routing, a thread's home), `aio`
//! ([`AioContext`]: poll, timers, [`fd`]), [`sim`], and `runtime`
//! ([`Runtime`], work stealing of unstarted coroutines, the stall detector,
//! [`blocking`] pool and [`deadlock`] detection). The repository's
//! `docs/ARCHITECTURE.md` describes each layer and lists every atomic
//! protocol with its loom model; `docs/SEMANTICS.md` lists where we follow
//! QEMU and where we differ.
//!
//! # Async interop
//!
//! Coroutines and `Future`s mix in both directions:
//!
//! - [`wait`]`(fut)` awaits any future from a coroutine, suspending it until
//!   the future's waker (called from any thread) hands it back home; outside
//!   a coroutine it blocks the thread while driving its context.
//! - [`JoinHandle`] is a `Future` (output `Result<T, JoinError>`): async code
//!   on any executor awaits a coroutine with `.await`.
//! - With the cargo feature `tokio`, `tokio_bridge::run(fut)` runs a
//!   future that needs tokio's reactor (sockets, timers, tokio-based client
//!   libraries) on a tokio runtime — the one given to
//!   `tokio_bridge::set_handle`, or one started on first use — while the
//!   coroutine is suspended; `tokio_bridge::run_on(&handle, fut)` names the
//!   runtime.
//!
//! ```
//! let rt = coscheduler::Runtime::builder().threads(2).build().unwrap();
//! let (tx, rx) = futures::channel::oneshot::channel::<u32>();
//! // A coroutine awaits a future; a plain thread completes it.
//! let h = rt.spawn(move || coscheduler::wait(rx).unwrap() + 1);
//! std::thread::spawn(move || tx.send(41).unwrap());
//! // Async code awaits the coroutine.
//! assert_eq!(futures::executor::block_on(h).unwrap(), 42);
//! ```
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
//! | `thread_pool_submit_co` | [`blocking::run`], [`Runtime::spawn_blocking`] (`coprimitives::co_blocking`) |
//! | — (reschedule to the back of the queue) | [`yield_now`] (`coprimitives::maybe_yield` on a budget) |
//! | — (stall detector) | [`Builder::stall_threshold`], [`Builder::on_stall`], [`StallReport`] |
//! | — (deadlock detection) | [`Runtime::deadlocks`], [`Deadlock`], [`Runtime::dump`] |
//! | — (deterministic simulation) | [`sim::Simulation`], [`sim::check`] |
//! | — (spawn on the current worker) | [`spawn`], [`Runtime::spawn`], [`AioContext::spawn`] |
//! | — (no QEMU counterpart) | [`wait`] (await a `Future`), `tokio_bridge::run` (a future on tokio) |

#![cfg_attr(loom, allow(dead_code, unused_imports))]

/// The Rust snippets of the workspace's README.md, compiled and run by
/// `cargo test --doc -p coscheduler` so that they stay correct as written.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

// Layers, bottom up (each only uses those below it): `stack`, `stackpool`,
// `core`, `aio`, `runtime`. `raw`, `pool`, `config` and `tokio_bridge` are
// public facades over them.
#[cfg(not(loom))]
mod aio;
#[cfg(all(feature = "config", not(loom)))]
pub mod config;
#[cfg(not(loom))]
mod core;
#[cfg(not(loom))]
pub mod raw;
#[cfg(not(loom))]
mod runtime;
#[cfg(not(loom))]
mod sanitizer;
#[cfg(not(loom))]
pub mod sim;
#[cfg(not(loom))]
pub mod stack;
#[cfg(not(loom))]
mod stackpool;
mod sync;
#[cfg(all(feature = "tokio", not(loom)))]
pub mod tokio_bridge;

/// The coroutine stack pool (layer 2): QEMU's batch pool of finished
/// coroutines' stacks, capped by `vm.max_map_count` (every guarded stack
/// costs two mappings). Re-exported by `coprimitives::pool`.
#[cfg(not(loom))]
pub mod pool {
    pub use crate::core::stacks::{dec_pool_size, inc_pool_size, stats, trim, trim_to_max};
    pub use crate::stackpool::{BATCH_SIZE, INITIAL_POOL_MAX, PoolStats};
}

#[cfg(not(loom))]
pub use aio::fd;

#[cfg(not(loom))]
pub use runtime::{blocking, deadlock};

// The model-checked protocols, compiled alone under `--cfg loom`, at the
// same paths as in the real build so that they can refer to each other.
#[cfg(loom)]
mod core {
    pub(crate) mod future {
        pub(crate) mod state;
    }
    pub(crate) mod home {
        pub(crate) mod mailbox;
    }
    pub(crate) mod join {
        pub(crate) mod slot;
    }
    pub(crate) mod lifecycle;
    pub(crate) mod refcount;
    pub(crate) mod transitions;
    pub(crate) mod wake_mark;
}
#[cfg(loom)]
mod runtime {
    pub(crate) mod idle;
    pub(crate) mod stall {
        pub(crate) mod handshake;
    }
}
#[cfg(loom)]
mod stackpool {
    pub(crate) mod batch;
}

#[cfg(not(loom))]
pub use aio::{AioContext, DEFAULT_POLL_MAX, TimerId};
#[cfg(all(feature = "config", not(loom)))]
pub use config::{Config, ConfigError, RuntimeConfig};
#[cfg(not(loom))]
pub use core::coroutine::{Coroutine, CoroutineBuilder, current, in_coroutine, suspend, yield_now};
#[cfg(not(loom))]
pub use core::future::wait;
#[cfg(not(loom))]
pub use core::home::{ContextMetrics, DEFAULT_SHUTDOWN_TIMEOUT};
#[cfg(not(loom))]
pub use core::join::{JoinError, JoinHandle};
#[cfg(not(loom))]
pub use runtime::deadlock::{Deadlock, DeadlockMember};
#[cfg(not(loom))]
pub use runtime::stall::{DEFAULT_STALL_THRESHOLD, StallMetrics, StallReport};
#[cfg(not(loom))]
pub use runtime::{
    Builder, Handle, Runtime, RuntimeMetrics, ShutdownError, reschedule_self, spawn,
};
