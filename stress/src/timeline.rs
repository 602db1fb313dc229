//! Throughput over time: the progress counter, sampled at a fixed period while a workload
//! runs.
//!
//! The HTML report draws it; the JSON report carries it. Workloads publish progress in
//! batches (see `workloads::part::Tally`), so a sample lags the truth by at most a batch per
//! coroutine, which at the rates that matter is far below one period's worth.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use crate::outcome::Sample;
use crate::workload::Progress;

/// At most this many samples per workload, so a day-long run stays a small report.
const MAX_SAMPLES: u32 = 600;

/// The shortest sampling period.
const MIN_PERIOD: Duration = Duration::from_millis(20);

/// The period for a run of `duration`: about [`MAX_SAMPLES`] samples, at least
/// [`MIN_PERIOD`] apart.
pub fn period_for(duration: Duration) -> Duration {
    (duration / MAX_SAMPLES).max(MIN_PERIOD)
}

/// A sampler running in a scoped thread.
#[derive(Debug)]
pub struct Sampler<'scope> {
    stop: mpsc::Sender<()>,
    thread: ScopedJoinHandle<'scope, Vec<Sample>>,
}

impl Sampler<'_> {
    /// Stops sampling, takes a last sample and returns them all, oldest first.
    pub fn finish(self) -> Vec<Sample> {
        drop(self.stop);
        // The sampler only reads an atomic and pushes to a vector; should it have panicked,
        // an empty timeline is the honest answer.
        self.thread.join().unwrap_or_default()
    }
}

/// Starts sampling `progress` every `period`, from a first sample of zero now.
pub fn start<'scope, 'env>(
    scope: &'scope Scope<'scope, 'env>,
    progress: &'env Progress,
    period: Duration,
) -> Sampler<'scope> {
    let (stop, stopped) = mpsc::channel::<()>();
    let started = Instant::now();
    // The first sample is taken here, before the workload starts, not whenever the
    // sampler thread first runs.
    let first = Sample {
        elapsed_ns: 0,
        ops: progress.get(),
    };
    let thread = scope.spawn(move || {
        let sample = || Sample {
            elapsed_ns: u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            ops: progress.get(),
        };
        let mut samples = vec![first];
        let mut next = started + period;
        loop {
            let wait = next.saturating_duration_since(Instant::now());
            match stopped.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) => {
                    samples.push(sample());
                    // Periods are counted from the start, so a late wake-up does not shift
                    // every later sample.
                    next += period;
                }
                Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                    samples.push(sample());
                    return samples;
                }
            }
        }
    });
    Sampler { stop, thread }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_follow_the_counter() {
        let progress = Progress::default();
        let samples = std::thread::scope(|scope| {
            let sampler = start(scope, &progress, Duration::from_millis(5));
            for _ in 0..10 {
                progress.add(100);
                std::thread::sleep(Duration::from_millis(3));
            }
            sampler.finish()
        });
        assert!(samples.len() >= 3, "{samples:?}");
        assert_eq!(
            samples[0],
            Sample {
                elapsed_ns: 0,
                ops: 0
            }
        );
        assert_eq!(samples.last().unwrap().ops, 1_000);
        assert!(
            samples
                .windows(2)
                .all(|w| w[0].elapsed_ns <= w[1].elapsed_ns)
        );
        assert!(samples.windows(2).all(|w| w[0].ops <= w[1].ops));
    }

    #[test]
    fn periods_keep_long_runs_small() {
        assert_eq!(period_for(Duration::from_secs(1)), MIN_PERIOD);
        assert_eq!(period_for(Duration::from_secs(600)), Duration::from_secs(1));
    }
}
