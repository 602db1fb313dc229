//! `cobench`: the performance suite of coscheduler and its CI regression gate.
//!
//! Two tiers of figures (see `docs/BENCHMARKS.md` for the workloads):
//!
//! - the **deterministic tier** counts instructions per operation of single-threaded paths
//!   under callgrind ([`callgrind`], operations in [`probe`]); these repeat exactly, so CI
//!   gates on them;
//! - the **time tier** times multi-threaded workloads ([`timed`], workloads in
//!   [`workload`]) and reports each as a ratio to a reference measured in the same run
//!   (tokio's twin of the workload, or a std floor), with the median, minimum and maximum
//!   over samples and HDR latency percentiles; quiet, or beside competing busy processes
//!   ([`load`]) to show how it holds up on a shared machine.
//!
//! [`run`] writes a [`schema::Results`] file, [`table`] prints its time tier quiet beside
//! loaded, [`compare`] judges one file against a baseline ([`render`] prints the
//! verdicts), and [`report`] draws SVG charts over a history of files. The binary in
//! `main.rs` is a thin clap front end over these modules.
//!
//! # QEMU names
//!
//! | QEMU benchmark | cobench row |
//! |---|---|
//! | `test-coroutine` `/perf/yield` | `switch` (and `switch_via_scheduler`) |
//! | `test-coroutine` `/perf/lifecycle` | `lifecycle_pooled` |
//! | `test-coroutine` `/perf/nesting` | `nesting` |
//! | `test-coroutine` `/perf/cost` | `cost` |
//! | `test-aio-multithread` `/aio/multi/mutex/*` | `w4_comutex_c1`, `_c4`, `_c32` |
//! | `test-aio-multithread` `/aio/multi/schedule` | `w3_cross_context_pingpong` |

pub mod callgrind;
pub mod compare;
pub use workloads::cpu;
pub mod error;
pub mod load;
pub mod machine;
pub mod probe;
pub mod render;
pub mod report;
pub mod run;
pub mod schema;
pub mod stats;
pub mod table;
pub mod timed;
pub mod workload;

pub use error::Error;
