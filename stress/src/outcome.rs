//! What one workload run produced: throughput, latency histograms, correctness checks, and
//! snapshots of the runtime's counters.
//!
//! These are plain data. The workloads fill them in, the renderers in [`crate::report`] read
//! them, and the runtime's own metrics types are mapped into [`ContextSnapshot`] and
//! [`PoolSnapshot`] so that the report format does not change when the runtime's does.

use std::fmt;
use std::time::Duration;

use coscheduler::ContextMetrics;
use coscheduler::pool::PoolStats;
use hdrhistogram::Histogram;
use serde::Serialize;

/// Significant decimal digits every costress histogram keeps: values are exact to 0.1%.
pub const SIGNIFICANT_FIGURES: u8 = 3;

/// A new, empty latency histogram. Values are nanoseconds; it grows to fit whatever is
/// recorded, so a stray multi-second outlier is kept rather than refused.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new(SIGNIFICANT_FIGURES)
        .expect("3 significant figures is within hdrhistogram's 0..=5")
}

/// What a histogram measures. Workloads tag each histogram so that tools can compare like
/// with like across workloads and runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HistogramKind {
    /// From asking for a lock to holding it.
    LockWait,
    /// From taking a lock to releasing it.
    LockHold,
    /// From a wake to the woken coroutine running, when both are on the same context.
    WakeLocal,
    /// The same, when the wake crossed from one context (thread) to another.
    WakeCross,
    /// From a timer's deadline to the sleeping coroutine running.
    WakeTimer,
    /// From a file descriptor becoming ready to its waiting coroutine running.
    WakeIo,
    /// How much later than asked a sleep returned.
    Oversleep,
    /// From sending a request to receiving its whole reply.
    RequestLatency,
}

impl HistogramKind {
    /// Every kind, in report order.
    pub const ALL: [HistogramKind; 8] = [
        HistogramKind::LockWait,
        HistogramKind::LockHold,
        HistogramKind::WakeLocal,
        HistogramKind::WakeCross,
        HistogramKind::WakeTimer,
        HistogramKind::WakeIo,
        HistogramKind::Oversleep,
        HistogramKind::RequestLatency,
    ];

    /// The tag used in JSON and in `.hgrm` file names (`lock_wait`).
    pub fn as_str(self) -> &'static str {
        match self {
            HistogramKind::LockWait => "lock_wait",
            HistogramKind::LockHold => "lock_hold",
            HistogramKind::WakeLocal => "wake_local",
            HistogramKind::WakeCross => "wake_cross",
            HistogramKind::WakeTimer => "wake_timer",
            HistogramKind::WakeIo => "wake_io",
            HistogramKind::Oversleep => "oversleep",
            HistogramKind::RequestLatency => "request_latency",
        }
    }
}

impl fmt::Display for HistogramKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HistogramKind::LockWait => "lock wait",
            HistogramKind::LockHold => "lock hold",
            HistogramKind::WakeLocal => "wake latency (local)",
            HistogramKind::WakeCross => "wake latency (cross-context)",
            HistogramKind::WakeTimer => "wake latency (timer)",
            HistogramKind::WakeIo => "wake latency (I/O)",
            HistogramKind::Oversleep => "oversleep",
            HistogramKind::RequestLatency => "request latency",
        })
    }
}

/// A histogram with a name that is unique within its [`Outcome`].
///
/// The name tells apart histograms of the same kind, such as the lock waits of the mutex
/// and of the rwlock parts of the mixed workload ("mutex: lock wait", "rwlock: lock wait").
#[derive(Debug, Clone)]
pub struct NamedHistogram {
    /// Unique within the outcome; used for the `.hgrm` file name.
    pub name: String,
    /// What it measures.
    pub kind: HistogramKind,
    /// The recorded values, in nanoseconds.
    pub histogram: Histogram<u64>,
}

/// How much work was done in how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Throughput {
    /// Operations completed; what one operation is depends on the workload.
    pub ops: u64,
    /// Wall-clock time from the first operation to the last.
    pub elapsed: Duration,
}

impl Throughput {
    /// Operations per second; zero when no time elapsed.
    pub fn per_second(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.ops as f64 / seconds
        } else {
            0.0
        }
    }
}

/// A conservation check: something counted two ways that must agree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Whether it held.
    pub passed: bool,
    /// What was compared, in words ("counter == increments").
    pub what: String,
    /// The value it should have had.
    pub expected: u64,
    /// The value it had.
    pub actual: u64,
}

impl Check {
    /// A check that passes when `actual == expected`.
    pub fn equal(what: impl Into<String>, expected: u64, actual: u64) -> Check {
        Check {
            passed: expected == actual,
            what: what.into(),
            expected,
            actual,
        }
    }

    /// `actual - expected`: how far off a failed check was (negative means something was
    /// lost).
    pub fn discrepancy(&self) -> i128 {
        i128::from(self.actual) - i128::from(self.expected)
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: expected {}, got {}",
            self.what, self.expected, self.actual
        )?;
        if !self.passed && self.discrepancy() != 0 {
            write!(f, " (off by {:+})", self.discrepancy())?;
        }
        Ok(())
    }
}

/// One context's (worker's) scheduling counters over the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ContextSnapshot {
    /// The worker's index, in `Runtime::contexts()` order.
    pub context: usize,
    /// Coroutines that started on this worker (first entries).
    pub started: u64,
    /// Coroutine switches: entries into a coroutine.
    pub switches: u64,
    /// Coroutines this worker stole from another worker's queue or the injector.
    pub steals: u64,
    /// Coroutines handed to this worker by another thread (cross-context wakes and
    /// schedules).
    pub hand_offs: u64,
    /// Times the worker went to sleep for lack of work.
    pub parks: u64,
    /// Wakes issued on this worker for coroutines of the same context.
    pub local_wakes: u64,
    /// Wakes issued on this worker for coroutines of another context.
    pub remote_wakes: u64,
    /// Timer callbacks this worker ran.
    pub timer_fires: u64,
}

impl ContextSnapshot {
    /// The report's view of worker `context`'s counters.
    pub fn from_metrics(context: usize, metrics: &ContextMetrics) -> ContextSnapshot {
        ContextSnapshot {
            context,
            started: metrics.coroutines_started,
            switches: metrics.switches,
            steals: metrics.steal_successes,
            hand_offs: metrics.handoffs_received,
            parks: metrics.parks,
            local_wakes: metrics.local_wakes,
            remote_wakes: metrics.remote_wakes,
            timer_fires: metrics.timer_fires,
        }
    }

    /// Adds `other`'s counters into `self` (for totals; `context` is left alone).
    pub fn accumulate(&mut self, other: &ContextSnapshot) {
        self.started += other.started;
        self.switches += other.switches;
        self.steals += other.steals;
        self.hand_offs += other.hand_offs;
        self.parks += other.parks;
        self.local_wakes += other.local_wakes;
        self.remote_wakes += other.remote_wakes;
        self.timer_fires += other.timer_fires;
    }
}

/// The coroutine pool's counters over the run (mirrors `coscheduler::pool::PoolStats`).
///
/// The pool is process-wide: the counts are differences between the start and the end of
/// the workload, the levels (`max_size`, `pooled`) are taken at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct PoolSnapshot {
    /// The most stacks the pool would keep.
    pub max_size: usize,
    /// Stacks in the pool at the end.
    pub pooled: usize,
    /// Creations served from the pool.
    pub hits: u64,
    /// Creations that had to allocate a stack.
    pub misses: u64,
    /// Stacks allocated.
    pub allocated: u64,
    /// Stacks unmapped.
    pub freed: u64,
    /// Stack allocations that failed (at the mapping limit, for instance).
    pub alloc_failures: u64,
}

impl PoolSnapshot {
    /// The pool's activity between two snapshots of its counters.
    pub fn between(before: &PoolStats, after: &PoolStats) -> PoolSnapshot {
        PoolSnapshot {
            max_size: after.max_size,
            pooled: after.pooled,
            hits: after.hits.saturating_sub(before.hits),
            misses: after.misses.saturating_sub(before.misses),
            allocated: after.allocated.saturating_sub(before.allocated),
            freed: after.freed.saturating_sub(before.freed),
            alloc_failures: after.alloc_failures.saturating_sub(before.alloc_failures),
        }
    }

    /// The share of creations served from the pool, from 0 to 1; `None` before any creation.
    pub fn hit_rate(&self) -> Option<f64> {
        let total = self.hits + self.misses;
        (total > 0).then(|| self.hits as f64 / total as f64)
    }
}

/// What kind of primitive a [`LockSnapshot`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockKind {
    /// A `CoMutex`.
    Mutex,
    /// A `CoRwLock` (readers and writers together).
    #[serde(rename = "rwlock")]
    RwLock,
    /// A `CoQueue` (its "acquisitions" are waits).
    Queue,
}

impl LockKind {
    /// Whether its acquisitions are lock operations (a queue's waits are not).
    pub fn is_lock(self) -> bool {
        matches!(self, LockKind::Mutex | LockKind::RwLock)
    }
}

impl fmt::Display for LockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LockKind::Mutex => "mutex",
            LockKind::RwLock => "rwlock",
            LockKind::Queue => "queue",
        })
    }
}

/// The counters of one named lock over a workload, from its contention statistics.
///
/// They explain the lock histograms' counts: those record *contended* acquisitions only
/// (an uncontended one reads no clock), and, above about 50,000 contended acquisitions per
/// second on a thread, one in N of them with weight N. So a histogram's count estimates
/// `contended`, and both are smaller than `acquisitions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockSnapshot {
    /// Unique within the outcome ("counter", or "mutex: counter" in `mixed`).
    pub name: String,
    /// The primitive.
    pub kind: LockKind,
    /// Every acquisition (for a queue, every wait), exact.
    pub acquisitions: u64,
    /// Acquisitions that did not get the lock at once (spun, raced or queued), exact.
    pub contended: u64,
    /// Acquisitions that got the lock at once, exact.
    pub uncontended: u64,
    /// What the wait histogram counted: `contended`, or an estimate of it when sampled.
    pub timed: u64,
}

impl LockSnapshot {
    /// The snapshot of `stats`, under `name`.
    pub fn new(name: impl Into<String>, stats: &coprimitives::stats::LockStats) -> LockSnapshot {
        let kind = match stats.kind {
            coprimitives::stats::LockKind::RwLock => LockKind::RwLock,
            coprimitives::stats::LockKind::Queue => LockKind::Queue,
            _ => LockKind::Mutex,
        };
        LockSnapshot {
            name: name.into(),
            kind,
            acquisitions: stats.counters.acquisitions(),
            contended: stats.counters.contended(),
            uncontended: stats.counters.fast,
            timed: stats.wait.len(),
        }
    }
}

/// The progress counter at one moment of a workload, for throughput over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// Nanoseconds since the workload started.
    pub elapsed_ns: u64,
    /// Operations completed by then (as published in batches by the workload).
    pub ops: u64,
}

/// How a soak cycle ended its runtime: both must unwind every coroutine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Teardown {
    /// `Runtime::shutdown()`.
    Shutdown,
    /// Dropping the runtime.
    Drop,
}

impl fmt::Display for Teardown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Teardown::Shutdown => "shutdown",
            Teardown::Drop => "drop",
        })
    }
}

/// One create/run/drop cycle of a soak, and what was checked after it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SoakCycle {
    /// 1 for the first cycle.
    pub cycle: u64,
    /// How the runtime was ended.
    pub teardown: Teardown,
    /// How long the workload ran, in nanoseconds.
    pub elapsed_ns: u64,
    /// How long the teardown took, in nanoseconds.
    pub teardown_ns: u64,
    /// The workload's operations.
    pub ops: u64,
    /// Contended acquisitions of its mutexes and rwlocks.
    pub contended_lock_ops: u64,
    /// Coroutines left suspended when the runtime was ended, for it to unwind.
    pub left_suspended: u64,
    /// Whether the workload's own checks passed.
    pub workload_passed: bool,
    /// The leak checks made after the teardown.
    pub checks: Vec<Check>,
    /// Threads of the process after the teardown (`/proc/self/task`).
    pub threads: usize,
    /// Mappings of the process after the teardown (`/proc/self/maps`).
    pub mappings: usize,
    /// Coroutine stacks neither pooled nor unmapped after the teardown: held by coroutines
    /// that were never unwound.
    pub stacks_in_use: u64,
    /// Resident memory after the teardown, in KiB (`VmRSS`).
    pub rss_kib: u64,
    /// The most resident memory so far, in KiB (`VmHWM`).
    pub max_rss_kib: u64,
}

impl SoakCycle {
    /// Whether the workload and every leak check passed.
    pub fn passed(&self) -> bool {
        self.workload_passed && self.checks.iter().all(|check| check.passed)
    }
}

/// A whole soak: the baseline it measured against and every cycle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SoakSummary {
    /// What ends the soak, in words ("1000000000 contended lock operations", "10s").
    pub limit: String,
    /// Threads before the first cycle.
    pub baseline_threads: usize,
    /// Mappings before the first cycle, less those of pooled stacks.
    pub baseline_mappings: usize,
    /// Mappings a cycle may leave above the baseline (allocator arenas and the like).
    pub mapping_margin: usize,
    /// Every cycle, in order.
    pub cycles: Vec<SoakCycle>,
    /// Whether a signal stopped the soak.
    pub interrupted: bool,
}

impl SoakSummary {
    /// Whether every cycle passed.
    pub fn passed(&self) -> bool {
        !self.cycles.is_empty() && self.cycles.iter().all(SoakCycle::passed)
    }

    /// The first cycle that failed.
    pub fn first_failure(&self) -> Option<&SoakCycle> {
        self.cycles.iter().find(|cycle| !cycle.passed())
    }

    /// Operations over every cycle.
    pub fn ops(&self) -> u64 {
        self.cycles.iter().map(|cycle| cycle.ops).sum()
    }

    /// Contended lock operations over every cycle.
    pub fn contended_lock_ops(&self) -> u64 {
        self.cycles
            .iter()
            .map(|cycle| cycle.contended_lock_ops)
            .sum()
    }

    /// The highest resident memory seen, in KiB.
    pub fn max_rss_kib(&self) -> u64 {
        self.cycles.iter().map(|c| c.max_rss_kib).max().unwrap_or(0)
    }
}

/// The throughput of one part of a workload that runs several at once (`mixed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartThroughput {
    /// The part's workload name (`mutex`).
    pub name: String,
    /// Its operations, over the whole workload's elapsed time.
    pub throughput: Throughput,
}

/// Everything one workload run produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The workload's registry name.
    pub workload: String,
    /// Operations and elapsed time.
    pub throughput: Throughput,
    /// For a workload made of several running at once, each one's throughput; else empty.
    pub parts: Vec<PartThroughput>,
    /// The conservation checks; the run passed if all of them did.
    pub checks: Vec<Check>,
    /// Latency histograms, in nanoseconds.
    pub histograms: Vec<NamedHistogram>,
    /// The counters of the workload's named locks, which the lock histograms sample.
    pub locks: Vec<LockSnapshot>,
    /// Per-context counters, in context order; empty when the workload did not collect them.
    pub contexts: Vec<ContextSnapshot>,
    /// The pool's counters, when collected.
    pub pool: Option<PoolSnapshot>,
    /// The progress counter sampled over the run; empty when not collected.
    pub timeline: Vec<Sample>,
    /// Whether the run was cut short by SIGINT or SIGTERM (then it ran for less than the
    /// configured duration, and its checks cover what did run).
    pub interrupted: bool,
}

impl Outcome {
    /// An outcome with only a throughput; add checks and histograms with the `with_*`
    /// methods or through the public fields.
    pub fn new(workload: impl Into<String>, throughput: Throughput) -> Outcome {
        Outcome {
            workload: workload.into(),
            throughput,
            parts: Vec::new(),
            checks: Vec::new(),
            histograms: Vec::new(),
            locks: Vec::new(),
            contexts: Vec::new(),
            pool: None,
            timeline: Vec::new(),
            interrupted: false,
        }
    }

    /// Contended acquisitions of the workload's locks (mutexes and rwlocks, not queues).
    pub fn contended_lock_ops(&self) -> u64 {
        self.locks
            .iter()
            .filter(|lock| lock.kind.is_lock())
            .map(|lock| lock.contended)
            .sum()
    }

    /// Adds a check.
    pub fn with_check(mut self, check: Check) -> Outcome {
        self.checks.push(check);
        self
    }

    /// Adds a histogram.
    ///
    /// # Panics
    ///
    /// If the outcome already has a histogram called `name`: names become file names and
    /// JSON keys, so a duplicate is a bug in the workload.
    #[track_caller]
    pub fn with_histogram(
        mut self,
        name: impl Into<String>,
        kind: HistogramKind,
        histogram: Histogram<u64>,
    ) -> Outcome {
        let name = name.into();
        assert!(
            self.histograms.iter().all(|h| h.name != name),
            "duplicate histogram name {name:?} in workload {}",
            self.workload
        );
        self.histograms.push(NamedHistogram {
            name,
            kind,
            histogram,
        });
        self
    }

    /// Whether every check passed. A run without checks has proved nothing and fails.
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|check| check.passed)
    }

    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|check| !check.passed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_reports_the_discrepancy() {
        let check = Check::equal("items consumed", 10, 9);
        assert!(!check.passed);
        assert_eq!(
            check.to_string(),
            "items consumed: expected 10, got 9 (off by -1)"
        );
        assert_eq!(Check::equal("x", 3, 3).to_string(), "x: expected 3, got 3");
    }

    #[test]
    fn an_outcome_without_checks_fails() {
        let outcome = Outcome::new("mutex", Throughput::default());
        assert!(!outcome.passed());
        assert!(outcome.with_check(Check::equal("x", 1, 1)).passed());
    }

    #[test]
    #[should_panic(expected = "duplicate histogram name")]
    fn duplicate_histogram_names_panic() {
        let _ = Outcome::new("mutex", Throughput::default())
            .with_histogram("wait", HistogramKind::LockWait, new_histogram())
            .with_histogram("wait", HistogramKind::LockHold, new_histogram());
    }

    #[test]
    fn kinds_have_distinct_tags() {
        let mut tags: Vec<_> = HistogramKind::ALL.iter().map(|k| k.as_str()).collect();
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), HistogramKind::ALL.len());
    }
}
