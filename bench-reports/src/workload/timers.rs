//! W7: many coroutines sleeping 1 ms at a time with `co_sleep`, and as many tokio tasks
//! with `tokio::time::sleep`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coprimitives::co_sleep;

use super::reference::{SLEEP, SLEEPS};
use super::support::{Countdown, Placement, nanos, row_runtime, row_tokio, workload_error};
use crate::error::Error;
use crate::timed::Recorder;

/// Metric of the tokio rows: sleeps that ended before their 1 ms (tokio promises not to, at
/// its millisecond granularity; the figure shows whether it keeps that here).
const EARLY: &str = "early_sleeps";

/// W7 at docs/BENCHMARKS.md's size: `ops` (10,000) coroutines.
pub(super) fn timers(ops: u64, recorder: &mut Recorder) -> Result<f64, Error> {
    coroutine_sleepers("w7_timers", ops, recorder)
}

/// W7's timer-precision companion: `ops` (100) coroutines, the same count as the std
/// reference's threads, so that the ratio compares the same workload on coroutines and on
/// threads.
pub(super) fn timer_precision(ops: u64, recorder: &mut Recorder) -> Result<f64, Error> {
    coroutine_sleepers("w7_timer_precision", ops, recorder)
}

/// W7 on tokio: `ops` (10,000) tasks.
pub(super) fn tokio_timers(ops: u64, recorder: &mut Recorder) -> Result<f64, Error> {
    tokio_sleepers("tokio_timers", ops, recorder)
}

/// W7's precision form on tokio: `ops` (100) tasks.
pub(super) fn tokio_timer_precision(ops: u64, recorder: &mut Recorder) -> Result<f64, Error> {
    tokio_sleepers("tokio_timer_precision", ops, recorder)
}

/// The bookkeeping of one W7 sample, shared by every sleeper: a preallocated oversleep slot
/// per sleep rather than a shared histogram, so that recording adds no lock and no
/// contention to the workload (the benchmark thread reads the slots after the run), a count
/// of early wake-ups, and the completion latch.
struct Sleepers {
    oversleeps: Box<[AtomicU64]>,
    early: AtomicU64,
    done: Countdown,
}

impl Sleepers {
    fn new(name: &str, ops: u64) -> Result<Arc<Sleepers>, Error> {
        let slots = usize::try_from(ops * u64::from(SLEEPS))
            .map_err(|_| workload_error(name, &format!("{ops} sleepers are too many")))?;
        Ok(Arc::new(Sleepers {
            oversleeps: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            early: AtomicU64::new(0),
            done: Countdown::new(ops),
        }))
    }

    /// The slots of sleeper `i`.
    fn slots(&self, i: usize) -> &[AtomicU64] {
        let per = SLEEPS as usize;
        &self.oversleeps[i * per..(i + 1) * per]
    }

    /// Records one sleep that began at `t` into `slot`.
    #[inline]
    fn record(&self, slot: &AtomicU64, t: Instant) {
        let slept = t.elapsed();
        if slept < SLEEP {
            self.early.fetch_add(1, Ordering::Relaxed);
        }
        // Relaxed, here and above: published by the Release decrement in `count_one`.
        slot.store(nanos(slept.saturating_sub(SLEEP)), Ordering::Relaxed);
    }

    fn sleepers(&self) -> usize {
        self.oversleeps.len() / SLEEPS as usize
    }

    /// Waits for every sleeper, then records the oversleeps; returns the wall time since
    /// `begin` in ms and the count of early sleeps.
    fn finish(
        &self,
        name: &str,
        begin: Instant,
        recorder: &mut Recorder,
    ) -> Result<(f64, u64), Error> {
        self.done.wait(name)?;
        let elapsed: Duration = begin.elapsed();
        for slot in self.oversleeps.iter() {
            recorder.record(slot.load(Ordering::Relaxed));
        }
        Ok((
            elapsed.as_secs_f64() * 1e3,
            self.early.load(Ordering::Relaxed),
        ))
    }
}

/// `ops` coroutines spawned with `Runtime::spawn` on the row's two-worker runtime (built
/// with the defaults), each sleeping [`SLEEPS`] × [`SLEEP`] with `co_sleep`. Returns the wall
/// time from the first spawn until the last coroutine finished, in ms, and records every
/// sleep's oversleep (time asleep beyond 1 ms) in ns. A sleep that ends before its 1 ms
/// fails the sample: `co_sleep` promises never to.
fn coroutine_sleepers(name: &'static str, ops: u64, recorder: &mut Recorder) -> Result<f64, Error> {
    let sleepers = Sleepers::new(name, ops)?;
    let rt = row_runtime(name, Placement::Defaults)?;
    let begin = Instant::now();
    for i in 0..sleepers.sleepers() {
        let s = sleepers.clone();
        drop(rt.spawn(move || {
            for slot in s.slots(i) {
                let t = Instant::now();
                co_sleep(SLEEP);
                s.record(slot, t);
            }
            s.done.count_one();
        }));
    }
    drop(rt);
    let (ms, early) = sleepers.finish(name, begin, recorder)?;
    if early > 0 {
        let detail = format!("{early} sleeps of {SLEEP:?} returned before their deadline");
        return Err(workload_error(name, &detail));
    }
    Ok(ms)
}

/// `ops` tasks spawned on the row's 2-worker tokio runtime, each sleeping [`SLEEPS`] ×
/// [`SLEEP`] with `tokio::time::sleep`, timed and recorded as [`coroutine_sleepers`] does.
/// Early sleeps are counted in the [`EARLY`] metric rather than failing the row: the row is
/// a reference, and its figure stays useful either way.
fn tokio_sleepers(name: &'static str, ops: u64, recorder: &mut Recorder) -> Result<f64, Error> {
    let sleepers = Sleepers::new(name, ops)?;
    let rt = row_tokio(name)?;
    let begin = Instant::now();
    for i in 0..sleepers.sleepers() {
        let s = sleepers.clone();
        drop(rt.spawn(async move {
            for slot in s.slots(i) {
                let t = Instant::now();
                tokio::time::sleep(SLEEP).await;
                s.record(slot, t);
            }
            s.done.count_one();
        }));
    }
    drop(rt);
    let (ms, early) = sleepers.finish(name, begin, recorder)?;
    recorder.metric(EARLY, early as f64);
    Ok(ms)
}
