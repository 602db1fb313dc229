//! `mutex`: a contended `CoMutex` (docs/BENCHMARKS.md W4, QEMU's `test_multi_co_mutex`).
//!
//! `coroutines` coroutines on every context loop { lock; counter += 1; unlock } until the
//! stop flag: cobench's W4 loop (`workloads::mutex`). Each counts its own increments; at the end the counter must equal their sum,
//! which a lost hand-over, two holders at once or a torn update would break. The lock's
//! statistics (`CoMutex::with_stats`) give the wait and hold histograms of its contended
//! acquisitions, and their acquisition count must equal the increments too.
//!
//! Unlike W4, each coroutine yields every [`YIELD_EVERY`] increments. A coroutine that wins
//! the lock without contention never suspends, and the ones it wakes on its own context
//! run in a chain that never returns to the event loop; without the yield, a context could
//! spend the whole run in one such chain, starving its timers, its hand-offs from other
//! threads and, in `mixed`, every other part on that context.

use std::sync::Arc;

use coprimitives::{CoMutex, stats};
use coscheduler::{JoinHandle, yield_now};
use workloads::mutex::{Counter, Until};

use super::part::{self, Part, PartEnv, PartReport, Tally};
use crate::outcome::{Check, HistogramKind};
use crate::workload::RunError;

/// The workload's name.
pub(super) const NAME: &str = "mutex";

/// The `--list` paragraph.
pub(super) const DESCRIPTION: &str = "Many coroutines on every context take turns incrementing one shared counter under a \
     CoMutex, so the lock is handed between threads all the time. Checks that the counter \
     equals the sum of every coroutine's increments and that the lock counted as many \
     acquisitions. Measures lock wait and lock hold.";

/// Increments between progress updates.
const TALLY_EVERY: u64 = 256;

/// Increments between turns given back to the context (see the module docs).
const YIELD_EVERY: u64 = 64;

struct Running {
    counter: Arc<Counter>,
    stats_name: String,
    workers: Vec<JoinHandle<u64>>,
}

/// Coroutines held at once, for the mapping-limit preflight. Every context runs `per_context` incrementing coroutines.
pub(super) fn coroutines(per_context: usize, contexts: usize) -> usize {
    per_context * contexts
}

/// Spawns the incrementing coroutines.
pub(super) fn start(env: &PartEnv<'_>) -> Result<Box<dyn Part>, RunError> {
    let stats_name = part::stats_name(NAME, "counter");
    let counter = Arc::new(Counter::with_lock(CoMutex::with_stats((), &stats_name)));
    let mut workers = Vec::new();
    for context in 0..env.contexts().len() {
        for index in 0..env.coroutines() {
            let counter = Arc::clone(&counter);
            let until = Until::Stop(env.stop().flag());
            let mut tally = Tally::new(env.progress(), TALLY_EVERY);
            let name = format!("mutex-{context}.{index}");
            workers.push(env.spawn(context, name, move || {
                counter.increment_observed(&until, |made| {
                    tally.add();
                    if made % YIELD_EVERY == 0 {
                        yield_now();
                    }
                })
            })?);
        }
    }
    Ok(Box::new(Running {
        counter,
        stats_name,
        workers,
    }))
}

impl Part for Running {
    fn finish(self: Box<Self>) -> Result<PartReport, RunError> {
        let increments: u64 = part::join_all(NAME, self.workers)?.into_iter().sum();
        let counter = Arc::try_unwrap(self.counter)
            .map_err(|_| RunError::failed("mutex: the counter is still shared after the join"))?
            .into_count();
        let mut report = PartReport::new(increments).check(Check::equal(
            "counter == increments",
            increments,
            counter,
        ));
        if let Some(lock) = stats::snapshot_of(&self.stats_name) {
            report = report
                .check(Check::equal(
                    "lock acquisitions (lock stats) == increments",
                    increments,
                    lock.counters.acquisitions(),
                ))
                .lock("counter", &lock)
                .histogram("lock wait", HistogramKind::LockWait, lock.wait)
                .histogram("lock hold", HistogramKind::LockHold, lock.hold);
        }
        Ok(report)
    }
}
