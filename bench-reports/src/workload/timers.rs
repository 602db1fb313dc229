//! W7: many coroutines sleeping 1 ms at a time with `co_sleep`, and as many tokio tasks
//! with `tokio::time::sleep`; the sleepers are `workloads::timers`'s, this module their
//! harness (placement, the latch, the clock, the early-sleep rule).

use std::sync::Arc;
use std::time::{Duration, Instant};

use workloads::timers::{SLEEP, SLEEPS, Sleepers};

use super::support::{Countdown, Placement, row_runtime, row_tokio, workload_error};
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

/// One W7 sample: the sleepers' slots (`workloads::timers`) and the completion latch.
struct Sample {
    sleepers: Sleepers,
    done: Countdown,
}

impl Sample {
    fn new(name: &str, ops: u64) -> Result<Arc<Sample>, Error> {
        let sleepers = usize::try_from(ops)
            .ok()
            .filter(|n| n.checked_mul(SLEEPS as usize).is_some())
            .ok_or_else(|| workload_error(name, &format!("{ops} sleepers are too many")))?;
        Ok(Arc::new(Sample {
            sleepers: Sleepers::new(sleepers),
            done: Countdown::new(ops),
        }))
    }

    /// Waits for every sleeper, then records the oversleeps; returns the wall time since
    /// `begin` in ms and the count of early sleeps.
    fn finish(
        &self,
        name: &str,
        begin: Instant,
        recorder: &mut Recorder,
    ) -> Result<(f64, u64), Error> {
        // The latch's Release/Acquire publishes the sleepers' slots.
        self.done.wait(name)?;
        let elapsed: Duration = begin.elapsed();
        for oversleep in self.sleepers.oversleeps() {
            recorder.record(oversleep);
        }
        Ok((elapsed.as_secs_f64() * 1e3, self.sleepers.early()))
    }
}

/// `ops` coroutines spawned with `Runtime::spawn` on the row's two-worker runtime (built
/// with the defaults), each sleeping [`SLEEPS`] × [`SLEEP`] with `co_sleep`. Returns the wall
/// time from the first spawn until the last coroutine finished, in ms, and records every
/// sleep's oversleep (time asleep beyond 1 ms) in ns. A sleep that ends before its 1 ms
/// fails the sample: `co_sleep` promises never to.
fn coroutine_sleepers(name: &'static str, ops: u64, recorder: &mut Recorder) -> Result<f64, Error> {
    let sample = Sample::new(name, ops)?;
    let rt = row_runtime(name, Placement::Defaults)?;
    let begin = Instant::now();
    for i in 0..sample.sleepers.sleepers() {
        let s = sample.clone();
        drop(rt.spawn(move || {
            s.sleepers.co_sleeper(i);
            s.done.count_one();
        }));
    }
    drop(rt);
    let (ms, early) = sample.finish(name, begin, recorder)?;
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
    let sample = Sample::new(name, ops)?;
    let rt = row_tokio(name)?;
    let begin = Instant::now();
    for i in 0..sample.sleepers.sleepers() {
        let s = sample.clone();
        drop(rt.spawn(async move {
            s.sleepers.tokio_sleeper(i).await;
            s.done.count_one();
        }));
    }
    drop(rt);
    let (ms, early) = sample.finish(name, begin, recorder)?;
    recorder.metric(EARLY, early as f64);
    Ok(ms)
}
