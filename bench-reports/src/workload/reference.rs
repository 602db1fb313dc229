//! Reference workloads on plain threads: the floors the coscheduler rows are divided by.
//! Each does what its coscheduler row does, with std threads in place of coroutines.

use std::collections::VecDeque;
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use workloads::timers::{SLEEP, SLEEPS};

use super::support::{Countdown, nanos, pin, workload_error};
use crate::error::Error;
use crate::timed::{Latencies, Recorder};

/// W3 floor: `ops` round trips of a counter between two pinned threads
/// (`workloads::pingpong::atomic_pingpong`). Returns ns per round
/// trip and records each round trip's latency in ns.
///
/// Each round trip includes one clock read (about 20 ns through the vDSO): the value and the
/// percentiles come from the same timestamps, and a coscheduler row timed the same way
/// carries the same overhead, which the ratio cancels.
pub(super) fn atomic_pingpong(ops: u64, recorder: &mut Recorder) -> Result<f64, Error> {
    let elapsed = workloads::pingpong::atomic_pingpong(ops, pin, |lap| {
        recorder.record(nanos(lap));
    })
    .ok_or_else(|| workload_error("raw_atomic_pingpong", "the measuring thread panicked"))?;
    Ok(elapsed.as_nanos() as f64 / ops as f64)
}

/// W4 floor: two pinned threads share `ops` increments of a counter behind a `std` mutex.
/// Returns operations per second; fails if the counter is not exactly `ops`.
///
/// The threads time themselves, from leaving the start barrier to their last increment:
/// the benchmark thread may be descheduled right after the barrier (a loaded machine does
/// it often), and a clock it read late would shrink the figure to nothing.
pub(super) fn std_mutex_2threads(ops: u64, _recorder: &mut Recorder) -> Result<f64, Error> {
    let counter = Mutex::new(0u64);
    let start = Barrier::new(2);
    let per_thread = ops / 2;
    let spans = thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|core| {
                let (counter, start) = (&counter, &start);
                s.spawn(move || {
                    pin(core);
                    start.wait();
                    let begin = Instant::now();
                    for _ in 0..per_thread {
                        // A poisoned lock still counts: the count check below reports the
                        // loss.
                        *counter.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                    }
                    (begin, Instant::now())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect::<Vec<_>>()
    });
    let spans = spans
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| workload_error("std_mutex_2threads", "a thread panicked"))?;
    let total = counter.into_inner().unwrap_or_else(|e| e.into_inner());
    if total != 2 * per_thread {
        let detail = format!("counter = {total}, expected {}", 2 * per_thread);
        return Err(workload_error("std_mutex_2threads", &detail));
    }
    Ok(total as f64 / span(&spans).as_secs_f64())
}

/// From the earliest start to the latest end of a set of threads' `(start, end)` spans.
fn span(spans: &[(Instant, Instant)]) -> Duration {
    let begin = spans.iter().map(|s| s.0).min();
    let end = spans.iter().map(|s| s.1).max();
    match (begin, end) {
        (Some(begin), Some(end)) => end - begin,
        _ => Duration::ZERO,
    }
}

/// A job of [`std_spawn_2threads`]: what a thread pool without coroutines runs.
type Job = Box<dyn FnOnce() + Send>;

/// W5 floor: two pinned threads run `ops` boxed closures, each adding 1 to a counter, that
/// one of them creates. Returns ns per closure, from the start until the last one ran.
///
/// This is the W5 workload with the coroutine replaced by the cheapest thing that can carry
/// the same closure to a thread: one heap allocation (the box, as a coroutine's control
/// block is one) and one queue. Thread 0 is the spawner, as the spawner coroutine occupies
/// one worker: it deals the closures alternately to its own `VecDeque` and to thread 1's
/// `mpsc` channel, then runs its own share. A static half-and-half split is the best case
/// work stealing can reach, and the channel is std's (a lock-free list since Rust 1.67),
/// with no rayon or tokio in the binary.
///
/// The clock starts in the spawner thread as it leaves the start barrier (as the coroutine
/// rows start it just before spawning), not in the benchmark thread, which may be
/// descheduled after the barrier while the work runs.
pub(super) fn std_spawn_2threads(ops: u64, _recorder: &mut Recorder) -> Result<f64, Error> {
    let done = Arc::new(Countdown::new(ops));
    let start = Barrier::new(2);
    let (tx, rx) = mpsc::channel::<Job>();
    let elapsed = thread::scope(|s| {
        s.spawn(|| {
            pin(1);
            start.wait();
            for job in rx {
                job();
            }
        });
        let done = &done;
        let start = &start;
        let spawner = s.spawn(move || {
            pin(0);
            start.wait();
            let begin = Instant::now();
            let mut own: VecDeque<Job> = VecDeque::new();
            for i in 0..ops {
                let d = done.clone();
                let job: Job = Box::new(move || d.count_one());
                if i % 2 == 0 {
                    own.push_back(job);
                } else if let Err(mpsc::SendError(job)) = tx.send(job) {
                    // Thread 1 is gone (it panicked): run its share here so the count
                    // still completes and the failure shows as a slow sample, not a hang.
                    own.push_back(job);
                }
            }
            // Closing the channel lets thread 1 finish once it has drained it.
            drop(tx);
            while let Some(job) = own.pop_front() {
                job();
            }
            begin
        });
        done.wait("std_spawn_2threads")?;
        let end = Instant::now();
        let begin = spawner
            .join()
            .map_err(|_| workload_error("std_spawn_2threads", "the spawner panicked"))?;
        Ok::<_, Error>(end - begin)
    })?;
    Ok(elapsed.as_nanos() as f64 / ops as f64)
}

/// W7 floor: `ops` threads each sleep [`SLEEPS`] × [`SLEEP`] with `std::thread::sleep`.
/// Returns the wall time from the first thread's start until the last thread finished, in
/// ms (timed by the threads themselves, as [`std_mutex_2threads`] is), and records each
/// sleep's oversleep in ns.
///
/// The kernel's timer slack and wake-up latency decide how long a 1 ms sleep really takes
/// on a given machine (50 µs of default slack, more on a busy VM); this row measures them in
/// the same run, so the W7 rows' ratios say how far coroutine sleeps are from what the OS
/// gives a plain thread, not from an ideal 10 ms no machine reaches.
pub(super) fn std_sleep_threads(ops: u64, recorder: &mut Recorder) -> Result<f64, Error> {
    let threads = usize::try_from(ops).map_err(|_| {
        workload_error(
            "std_sleep_threads",
            &format!("{ops} threads do not fit a usize"),
        )
    })?;
    let start = Barrier::new(threads);
    let per_thread = thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let start = &start;
                s.spawn(move || {
                    let mut mine = Latencies::new();
                    start.wait();
                    let begin = Instant::now();
                    for _ in 0..SLEEPS {
                        let t = Instant::now();
                        thread::sleep(SLEEP);
                        mine.record(nanos(t.elapsed().saturating_sub(SLEEP)));
                    }
                    (begin, Instant::now(), mine)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect::<Vec<_>>()
    });
    let mut spans = Vec::with_capacity(threads);
    for result in per_thread {
        let (begin, end, mine) =
            result.map_err(|_| workload_error("std_sleep_threads", "a thread panicked"))?;
        recorder.merge(&mine);
        spans.push((begin, end));
    }
    Ok(span(&spans).as_secs_f64() * 1e3)
}
