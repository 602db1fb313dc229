//! `costress`: load tests for coscheduler, each with a check that nothing was lost.
//!
//! A run resolves its [`settings`] (built-in defaults < `config.toml` < `COSTRESS_*`
//! environment < flags), runs each named [workload](workload::Workload) for the configured
//! duration under a [`watchdog`], and renders the [outcomes](outcome::Outcome) as a human
//! table or one JSON document, optionally with HdrHistogram percentile files. The process
//! exit status says how it went: see [`exit::Exit`].
//!
//! The binary is a thin wrapper over [`main`]; the modules are public so that integration
//! tests can drive the renderers and the settings directly.
//!
//! # QEMU names
//!
//! | QEMU test | costress workload |
//! |---|---|
//! | `test-aio-multithread` `/aio/multi/mutex/contended`, `/handoff` | `mutex` (contended `CoMutex`, counter == increments) |
//! | `test-coroutine` `/locking/co-rwlock/*` | `rwlock` (readers, writers, upgrades, downgrades) |
//! | `test-coroutine` CoQueue cases | `queue` (producers and consumers, each item once) |
//! | `test-aio-multithread` `/aio/multi/schedule` | `wake` (cross-context ping-pong, wake latency) |
//! | `test-coroutine` `/perf/lifecycle` | `lifecycle` (create/run/finish churn, pool hit rate) |
//! | `qemu_co_sleep_ns` users | `sleep` (timer storm, oversleep) |
//! | `qemu_co_send`/`qemu_co_recv` users | `echo` (loopback sockets, request latency) |

pub mod cli;
pub mod exit;
pub mod interrupt;
pub mod limits;
pub mod outcome;
pub mod progress;
pub mod report;
pub mod runner;
pub mod settings;
pub mod soak;
pub mod timeline;
pub mod watchdog;
pub mod workload;
pub mod workloads;

mod app;

pub use app::main;
