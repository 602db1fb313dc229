//! The knobs of a runtime that a configuration file can set, in one struct.
//!
//! [`Builder`](super::Builder) keeps its settings here and
//! [`RuntimeConfig`](crate::RuntimeConfig) (cargo feature `config`) parses a
//! `[runtime]` table into the same struct, so applying a configuration is one
//! assignment and a new knob is added in one place: a field here (with its
//! serde form), its default below, a setter on the builder and an accessor on
//! the configuration.

use std::num::NonZeroUsize;
use std::time::Duration;

use crate::aio::DEFAULT_POLL_MAX;
use crate::core::home::DEFAULT_SHUTDOWN_TIMEOUT;
use crate::runtime::blocking::{DEFAULT_BLOCKING_QUEUE, DEFAULT_BLOCKING_THREADS};
use crate::runtime::stall::DEFAULT_STALL_THRESHOLD;
use crate::stack::DEFAULT_STACK_SIZE;
use crate::stackpool::INITIAL_POOL_MAX;

/// The worker-name prefix when none is given.
pub(crate) const DEFAULT_THREAD_NAME: &str = "coscheduler-worker";

/// A runtime's configurable settings. Field names are the `[runtime]` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Deserialize, serde::Serialize),
    serde(deny_unknown_fields, default)
)]
pub(crate) struct Settings {
    /// Worker threads; `None`: one per available core.
    #[cfg_attr(feature = "config", serde(with = "crate::config::forms::threads"))]
    pub(crate) threads: Option<NonZeroUsize>,
    /// Pin worker `i` to core `i mod cores`.
    pub(crate) pin_threads: bool,
    /// Usable bytes of each coroutine stack.
    #[cfg_attr(feature = "config", serde(with = "crate::config::forms::size"))]
    pub(crate) stack_size: usize,
    /// Stacks added to the shared pool's maximum while the runtime runs.
    pub(crate) pool_max: usize,
    /// Each worker's adaptive busy-polling maximum.
    #[cfg_attr(feature = "config", serde(with = "humantime_serde"))]
    pub(crate) poll_max: Duration,
    /// Worker thread name prefix.
    pub(crate) thread_name: String,
    /// How long a coroutine may run without suspending before it is reported.
    #[cfg_attr(feature = "config", serde(with = "humantime_serde"))]
    pub(crate) stall_threshold: Duration,
    /// The blocking pool's most threads.
    pub(crate) blocking_threads: usize,
    /// Blocking closures that may wait for a pool thread.
    pub(crate) blocking_queue: usize,
    /// How long a shutdown waits for coroutines to unwind.
    #[cfg_attr(feature = "config", serde(with = "humantime_serde"))]
    pub(crate) shutdown_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            threads: None,
            pin_threads: true,
            stack_size: DEFAULT_STACK_SIZE,
            pool_max: INITIAL_POOL_MAX,
            poll_max: DEFAULT_POLL_MAX,
            thread_name: DEFAULT_THREAD_NAME.to_owned(),
            stall_threshold: DEFAULT_STALL_THRESHOLD,
            blocking_threads: DEFAULT_BLOCKING_THREADS,
            blocking_queue: DEFAULT_BLOCKING_QUEUE,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}
