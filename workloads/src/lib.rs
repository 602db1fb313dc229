//! The workloads of docs/BENCHMARKS.md, each written once: the code that cobench measures,
//! that costress checks under load, and that the criterion benches and the examples run.
//!
//! A workload here is its *body*: the server loop, the client, the critical section. The
//! tools keep their harnesses (cobench its repetitions, references and results schema;
//! costress its duration, checks and report; a bench its iteration) and reach into a body
//! through parameters and small hooks, so that what costress checks is what cobench
//! measures. Where two versions of a body differed, the one here is the one cobench
//! measures: a change to it moves cobench's figures, and shows in `cobench compare`.
//!
//! | module | workload |
//! |---|---|
//! | [`pingpong`] | W3: two coroutines on two workers waking each other, and its floor on two threads |
//! | [`mutex`] | W4: a counter under a contended `CoMutex` (or tokio's mutex); the uncontended lock loop |
//! | [`spawn`] | W5: a storm of tiny detached coroutines (or tokio tasks) |
//! | [`timers`] | W7: sleepers of 10 × 1 ms on `co_sleep` (or tokio's sleep), their oversleeps |
//! | [`echo`] | W8: the loopback TCP echo server (coscheduler, tokio) and its `mio` client |
//! | [`cpu`] | the CPU-time accounts that W8's server figures are made from |
//!
//! The crate is not published: it sits between coprimitives and the tools of this
//! workspace (cobench, costress, coprimitives' benches and examples, coscheduler's runtime
//! bench), and its API is whatever they need.
//!
//! ```no_run
//! use workloads::echo::{self, client};
//!
//! let listener = coprimitives::io::TcpListener::bind("127.0.0.1:0")?;
//! let addr = listener.local_addr()?;
//! let rt = coscheduler::Runtime::builder().threads(2).build()?;
//! let handle = rt.handle();
//! drop(rt.spawn(move || {
//!     let _ = echo::accept(&listener, Some(4), |_, stream| {
//!         drop(handle.spawn(move || echo::serve(stream)));
//!     });
//! }));
//! let load = client::Load { connections: 4, threads: 2, requests: 1_000, depth: 1 };
//! let outcome = client::run(addr, &load)?;
//! println!("{:.0} requests/s", outcome.requests_per_second());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod cpu;
pub mod echo;
pub mod mutex;
pub mod pingpong;
pub mod spawn;
pub mod timers;
