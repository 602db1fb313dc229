//! What every workload is made of: parts that run on the runtime until told to stop.
//!
//! A *part* is one scenario (the mutex counter, the echo server, ...). Its `start` spawns
//! coroutines and returns at once; the driver sleeps until the deadline, raises the shared
//! [`Stop`] flag, and then [`Part::finish`] joins the coroutines and returns the part's
//! counts, checks and histograms. A single workload runs one part; `mixed` runs all of them on one runtime at
//! once, which is why the parts share a stop flag and a progress counter rather than owning
//! the run.
//!
//! The helpers here keep the hot loops cheap: [`Tally`] batches progress updates so that
//! coroutines on different workers do not fight over one counter's cache line, and
//! [`Recorder`] keeps one histogram per context, locked only by that context's coroutines
//! (which never run at the same time) and by the final merge.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use coscheduler::{AioContext, Coroutine, JoinError, JoinHandle, Runtime};
use hdrhistogram::Histogram;

use coprimitives::stats::LockStats;

use crate::outcome::{
    Check, HistogramKind, LockSnapshot, NamedHistogram, Outcome, PartThroughput, Throughput,
    new_histogram,
};
use crate::settings::Settings;
use crate::workload::{Progress, RunError, WorkloadEnv};

/// Starts a part: spawns its coroutines and returns without waiting for them.
pub(super) type Start = fn(&PartEnv<'_>) -> Result<Box<dyn Part>, RunError>;

/// A running part of a workload.
///
/// Its coroutines watch the shared [`Stop`] flag; whatever the flag cannot reach (the echo
/// acceptor, blocked in `accept`) is nudged by `finish` itself.
pub(super) trait Part {
    /// Waits for every coroutine of the part and reports what they did.
    ///
    /// # Errors
    ///
    /// A [`RunError`] if a coroutine panicked or the part could not be wound down.
    fn finish(self: Box<Self>) -> Result<PartReport, RunError>;
}

/// What a finished part reports.
#[derive(Debug, Default)]
pub(super) struct PartReport {
    /// Operations completed (what one is depends on the part).
    pub(super) ops: u64,
    /// Conservation checks.
    pub(super) checks: Vec<Check>,
    /// Latency histograms, with names unique within the part.
    pub(super) histograms: Vec<NamedHistogram>,
    /// Counters of the part's named locks, with names unique within the part.
    pub(super) locks: Vec<LockSnapshot>,
}

impl PartReport {
    /// A report of `ops` operations, with no checks or histograms yet.
    pub(super) fn new(ops: u64) -> PartReport {
        PartReport {
            ops,
            ..PartReport::default()
        }
    }

    /// Adds a check.
    pub(super) fn check(mut self, check: Check) -> PartReport {
        self.checks.push(check);
        self
    }

    /// Adds the counters of the lock called `name` in the report.
    pub(super) fn lock(mut self, name: &str, stats: &LockStats) -> PartReport {
        self.locks.push(LockSnapshot::new(name, stats));
        self
    }

    /// Adds a histogram.
    pub(super) fn histogram(
        mut self,
        name: &str,
        kind: HistogramKind,
        histogram: Histogram<u64>,
    ) -> PartReport {
        self.histograms.push(NamedHistogram {
            name: name.to_owned(),
            kind,
            histogram,
        });
        self
    }
}

/// What a part is given when it starts.
#[derive(Debug)]
pub(super) struct PartEnv<'a> {
    runtime: &'a Arc<Runtime>,
    settings: &'a Settings,
    progress: &'a Arc<Progress>,
    stop: Stop,
    clock: Clock,
}

impl PartEnv<'_> {
    /// The runtime. Threads of a part may hold a clone; coroutines must not (see
    /// [`WorkloadEnv`]).
    pub(super) fn runtime(&self) -> &Arc<Runtime> {
        self.runtime
    }

    /// The workers' contexts, in worker order.
    pub(super) fn contexts(&self) -> &[AioContext] {
        self.runtime.contexts()
    }

    /// Coroutines per context for the parts that scale with it (`stress.coroutines`).
    pub(super) fn coroutines(&self) -> usize {
        self.settings.stress.coroutines()
    }

    /// The seed of every random choice.
    pub(super) fn seed(&self) -> u64 {
        self.settings.stress.seed()
    }

    /// The configured coroutine stack size, for coroutines that coroutines create.
    pub(super) fn stack_size(&self) -> usize {
        self.settings.runtime.stack_size_bytes()
    }

    /// The progress counter, for a [`Tally`].
    pub(super) fn progress(&self) -> &Arc<Progress> {
        self.progress
    }

    /// The flag raised at the deadline.
    pub(super) fn stop(&self) -> &Stop {
        &self.stop
    }

    /// The clock shared by every part of the workload.
    pub(super) fn clock(&self) -> Clock {
        self.clock
    }

    /// Creates a coroutine called `name` and schedules it on context `context` (modulo the
    /// number of contexts), where it stays: explicit placement is never stolen.
    ///
    /// The stack is taken here, on the driver thread, whose default size is not the
    /// runtime's, so the configured `stack_size` is passed explicitly.
    pub(super) fn spawn<F, T>(
        &self,
        context: usize,
        name: String,
        f: F,
    ) -> Result<JoinHandle<T>, RunError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let contexts = self.contexts();
        let ctx = &contexts[context % contexts.len()];
        Coroutine::builder()
            .name(name.clone())
            .stack_size(self.stack_size())
            .spawn_on(ctx, f)
            .map_err(|err| RunError::failed(format!("cannot create coroutine {name}: {err}")))
    }
}

/// The flag that tells every coroutine of a workload to wind down.
///
/// Nothing is published through it (each part joins its coroutines before reading their
/// results), so `Relaxed` is enough: a coroutine only has to see it eventually.
#[derive(Debug, Clone, Default)]
pub(super) struct Stop(Arc<AtomicBool>);

impl Stop {
    /// Whether the deadline has passed.
    #[inline]
    pub(super) fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Raises the flag.
    pub(super) fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// The flag itself, for a shared workload body that polls it (W4's `Until::Stop`).
    pub(super) fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.0)
    }
}

/// Nanosecond timestamps from one origin, comparable across threads (`CLOCK_MONOTONIC`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock(Instant);

impl Clock {
    fn new() -> Clock {
        Clock(Instant::now())
    }

    /// Nanoseconds since the workload started.
    #[inline]
    pub(super) fn now(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Nanoseconds from `stamp` (a value of [`now`](Clock::now)) to now; 0 if `stamp` is
    /// later, as it can be by a few nanoseconds when it was taken on another CPU.
    #[inline]
    pub(super) fn since(&self, stamp: u64) -> u64 {
        self.now().saturating_sub(stamp)
    }

    /// The timestamp of `instant`.
    pub(super) fn stamp(&self, instant: Instant) -> u64 {
        u64::try_from(instant.saturating_duration_since(self.0).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Progress counted locally and published in batches.
///
/// Publishing every operation would make every coroutine on every worker write one cache
/// line; a batch of `every` keeps the watchdog informed (it only needs to see movement
/// within `stall_timeout`) at a fraction of the cost. The remainder is published on drop.
#[derive(Debug)]
pub(super) struct Tally {
    progress: Arc<Progress>,
    every: u64,
    pending: u64,
    total: u64,
}

impl Tally {
    /// A tally that publishes every `every` operations (at least 1).
    pub(super) fn new(progress: &Arc<Progress>, every: u64) -> Tally {
        Tally {
            progress: Arc::clone(progress),
            every: every.max(1),
            pending: 0,
            total: 0,
        }
    }

    /// Counts one operation.
    #[inline]
    pub(super) fn add(&mut self) {
        self.total += 1;
        self.pending += 1;
        if self.pending >= self.every {
            self.progress.add(self.pending);
            self.pending = 0;
        }
    }

    /// Operations counted so far.
    pub(super) fn total(&self) -> u64 {
        self.total
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.progress.add(self.pending);
    }
}

/// One histogram per context, merged at the end.
///
/// Coroutines record into the slot of the context they run on. Coroutines of one context
/// never run at the same time, so each mutex is uncontended except during the final merge;
/// none is held across a suspension.
#[derive(Debug, Clone)]
pub(super) struct Recorder(Arc<[Mutex<Histogram<u64>>]>);

impl Recorder {
    /// A recorder with `slots` histograms (one per context).
    pub(super) fn new(slots: usize) -> Recorder {
        Recorder(
            (0..slots.max(1))
                .map(|_| Mutex::new(new_histogram()))
                .collect(),
        )
    }

    /// Records `nanos` in slot `slot` (modulo the number of slots).
    #[inline]
    pub(super) fn record(&self, slot: usize, nanos: u64) {
        let mut histogram = self.0[slot % self.0.len()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // `record` grows the histogram to fit (`saturating_record` would clamp to its
        // current range instead); it fails only past `u64` range arithmetic, never here.
        if histogram.record(nanos).is_err() {
            histogram.saturating_record(nanos);
        }
    }

    /// Every slot's values in one histogram.
    pub(super) fn merged(&self) -> Histogram<u64> {
        let mut out = new_histogram();
        for slot in self.0.iter() {
            let histogram = slot.lock().unwrap_or_else(PoisonError::into_inner);
            out.add(&*histogram)
                .expect("auto-resizing histograms accept any value");
        }
        out
    }
}

/// A small, fast pseudo-random generator (SplitMix64), seeded per coroutine so that a run
/// repeats with the same `--seed`.
#[derive(Debug, Clone)]
pub(super) struct Rng(u64);

impl Rng {
    /// The generator of stream `stream` (a coroutine's index) under `seed`.
    pub(super) fn new(seed: u64, stream: u64) -> Rng {
        Rng(mix(seed ^ mix(stream.wrapping_add(0x5851_f42d_4c95_7f2d))))
    }

    /// The next 64 random bits.
    #[inline]
    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// A value in `0..n` (0 when `n` is 0), by multiply-shift (Lemire).
    #[inline]
    pub(super) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// SplitMix64's finalizer: a bijection on `u64` that spreads every input bit. Workloads sum
/// `mix(item)` on both sides of a hand-over, which detects a lost item replaced by a
/// duplicate, as plain sums would not.
#[inline]
pub(super) fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A name unique in the process for a part's lock statistics, so that two runs of one
/// workload, or the parts of `mixed`, never share an entry.
pub(super) fn stats_name(part: &str, lock: &str) -> String {
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    format!("costress.{part}.{lock}#{run}")
}

/// Joins one coroutine of part `part` from a plain thread (the driver, or a thread of a
/// part).
///
/// # Errors
///
/// A [`RunError`] naming the part and the coroutine if it panicked or never finished.
pub(super) fn join<T>(part: &str, handle: JoinHandle<T>) -> Result<T, RunError> {
    let name = handle.coroutine().name().unwrap_or("(unnamed)").to_owned();
    join_from_thread(handle).map_err(|err| RunError::failed(format!("{part}: {name}: {err}")))
}

/// Joins a coroutine from a plain thread (blocks, driving this thread's own
/// context meanwhile).
pub(super) fn join_from_thread<T>(handle: JoinHandle<T>) -> Result<T, JoinError> {
    handle.join()
}

/// Joins every coroutine in `handles`, in order.
///
/// # Errors
///
/// The first coroutine's error, as [`join`] words it. The others keep running; the stop
/// flag is already up, and shutting the runtime down unwinds whatever still waits.
pub(super) fn join_all<T>(part: &str, handles: Vec<JoinHandle<T>>) -> Result<Vec<T>, RunError> {
    handles
        .into_iter()
        .map(|handle| join(part, handle))
        .collect()
}

/// Runs `parts` together until the deadline, winds them down and builds the outcome of
/// `workload`.
///
/// With one part the outcome carries its checks and histograms as they are; with several,
/// each check and histogram is prefixed with its part's name (`mutex: lock wait`) and the
/// outcome lists each part's throughput.
///
/// # Errors
///
/// The first part that failed to start or to finish. Every part that started is still
/// stopped and finished first, so that no thread of ours outlives the call.
pub(super) fn run_parts(
    env: &WorkloadEnv<'_>,
    workload: &str,
    parts: &[(&'static str, Start)],
) -> Result<Outcome, RunError> {
    let part_env = PartEnv {
        runtime: env.runtime(),
        settings: env.settings(),
        progress: env.progress(),
        stop: Stop::default(),
        clock: Clock::new(),
    };
    let started = Instant::now();
    let mut running = Vec::with_capacity(parts.len());
    let mut error = None;
    for &(name, start) in parts {
        match start(&part_env) {
            Ok(part) => running.push((name, part)),
            Err(err) => {
                error = Some(err);
                break;
            }
        }
    }
    if error.is_none() {
        env.wait_for_deadline();
    }
    // Taken as the wait ends, so that a signal during the wind-down does not mark a run
    // that reached its deadline as cut short.
    let interrupted = env.interrupted();
    part_env.stop.set();
    let mut reports = Vec::with_capacity(running.len());
    for (name, part) in running {
        match part.finish() {
            Ok(report) => reports.push((name, report)),
            Err(err) => {
                error.get_or_insert(err);
            }
        }
    }
    let elapsed = started.elapsed();
    if let Some(err) = error {
        return Err(err);
    }
    let mut outcome = outcome(workload, elapsed, reports);
    outcome.interrupted = interrupted;
    Ok(outcome)
}

/// Merges the parts' reports into one outcome (see [`run_parts`]).
fn outcome(workload: &str, elapsed: Duration, reports: Vec<(&'static str, PartReport)>) -> Outcome {
    let several = reports.len() > 1;
    let ops = reports.iter().map(|(_, report)| report.ops).sum();
    let mut outcome = Outcome::new(workload, Throughput { ops, elapsed });
    for (name, report) in reports {
        if several {
            outcome.parts.push(PartThroughput {
                name: name.to_owned(),
                throughput: Throughput {
                    ops: report.ops,
                    elapsed,
                },
            });
        }
        for mut check in report.checks {
            if several {
                check.what = format!("{name}: {}", check.what);
            }
            outcome = outcome.with_check(check);
        }
        for histogram in report.histograms {
            let label = if several {
                format!("{name}: {}", histogram.name)
            } else {
                histogram.name
            };
            outcome = outcome.with_histogram(label, histogram.kind, histogram.histogram);
        }
        for mut lock in report.locks {
            if several {
                lock.name = format!("{name}: {}", lock.name);
            }
            outcome.locks.push(lock);
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_repeatable_and_bounded() {
        let mut a = Rng::new(1, 7);
        let mut b = Rng::new(1, 7);
        let mut c = Rng::new(1, 8);
        let xs: Vec<u64> = (0..100).map(|_| a.below(10)).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.below(10)).collect();
        let zs: Vec<u64> = (0..100).map(|_| c.below(10)).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        assert!(xs.iter().all(|&x| x < 10));
        assert!((0..10).all(|v| xs.contains(&v)), "{xs:?}");
    }

    #[test]
    fn tally_publishes_in_batches_and_on_drop() {
        let progress = Arc::new(Progress::default());
        let mut tally = Tally::new(&progress, 4);
        for _ in 0..6 {
            tally.add();
        }
        assert_eq!(progress.get(), 4);
        assert_eq!(tally.total(), 6);
        drop(tally);
        assert_eq!(progress.get(), 6);
    }

    #[test]
    fn recorder_merges_its_slots() {
        let recorder = Recorder::new(3);
        recorder.record(0, 10);
        recorder.record(1, 20);
        recorder.record(5, 3_000_000_000);
        let merged = recorder.merged();
        assert_eq!(merged.len(), 3);
        assert!(
            merged.equivalent(merged.max(), 3_000_000_000),
            "{}",
            merged.max()
        );
    }

    #[test]
    fn several_parts_are_prefixed() {
        let report = |ops| {
            PartReport::new(ops)
                .check(Check::equal("x == y", 1, 1))
                .histogram("wait", HistogramKind::LockWait, new_histogram())
        };
        let outcome = outcome(
            "mixed",
            Duration::from_secs(1),
            vec![("mutex", report(3)), ("queue", report(4))],
        );
        assert_eq!(outcome.throughput.ops, 7);
        assert_eq!(outcome.parts.len(), 2);
        assert_eq!(outcome.checks[1].what, "queue: x == y");
        assert_eq!(outcome.histograms[0].name, "mutex: wait");
        let single = super::outcome("mutex", Duration::from_secs(1), vec![("mutex", report(3))]);
        assert!(single.parts.is_empty());
        assert_eq!(single.checks[0].what, "x == y");
    }
}
