//! W3: cross-context ping-pong between two coroutines homed on different workers.

use std::sync::{Arc, OnceLock, mpsc};
use std::time::{Duration, Instant};

use coscheduler::{Coroutine, Runtime, suspend};

use super::support::{Placement, STUCK_AFTER, nanos, row_runtime, workload_error};
use crate::error::Error;
use crate::timed::{Latencies, Recorder};

const NAME: &str = "w3_cross_context_pingpong";

/// What coroutine A reports at the end: the time from its first wake of B to its last
/// resumption, and the latency of each round trip.
type Report = (Duration, Latencies);

/// W3: coroutine A homed on worker 0 and B on worker 1 of the row's runtime, pinned as
/// docs/BENCHMARKS.md prescribes whatever the builder's default; A wakes B, B runs and wakes A,
/// A runs = one round trip, `ops` of them. Returns ns per round trip and records each round
/// trip's latency in ns, timed exactly as
/// `raw_atomic_pingpong` times its own (one clock read per round trip, on the measuring
/// side), so that the ratio compares like with like.
///
/// Fails unless every hand-off crossed threads: each wake of A must arrive on worker 0
/// through its hand-off queue and each wake of B on worker 1 (the contexts'
/// `handoffs_received` counters), i.e. docs/BENCHMARKS.md's cross_fraction = 1.0.
///
/// The set-up respects the one-wake-per-suspension rule: B must have started on worker 1
/// (so that it is homed there and its first suspension is the one A's first wake ends)
/// before A runs, and A must be published before B can wake it. The benchmark thread waits
/// for both on channels, blocking rather than spinning against the workers.
pub(super) fn cross_context_pingpong(ops: u64, recorder: &mut Recorder) -> Result<f64, Error> {
    let rt = row_runtime(NAME, Placement::Pinned)?;
    let contexts = rt.contexts();
    let before: Vec<u64> = handoffs(&rt);

    let a_slot: Arc<OnceLock<Coroutine>> = Arc::default();
    let (started_tx, started_rx) = mpsc::channel();
    let slot = a_slot.clone();
    let b = Coroutine::new(move || {
        let _ = started_tx.send(());
        // A's first wake ends this suspension (or, if it comes first, makes it return at
        // once: a wake of a running coroutine takes effect when it suspends).
        suspend();
        let Some(a) = slot.get().cloned() else {
            return;
        };
        for i in 0..ops {
            if i > 0 {
                suspend();
            }
            a.wake();
        }
    });
    contexts[1].schedule(&b);
    recv(&started_rx, "B did not start on worker 1")?;

    let (report_tx, report_rx) = mpsc::channel::<Report>();
    let b_handle = b.clone();
    let a = Coroutine::new(move || {
        let mut mine = Latencies::new();
        let begin = Instant::now();
        let mut last = begin;
        for _ in 0..ops {
            b_handle.wake();
            suspend();
            let now = Instant::now();
            mine.record(nanos(now - last));
            last = now;
        }
        let _ = report_tx.send((last - begin, mine));
    });
    if a_slot.set(a.clone()).is_err() {
        return Err(workload_error(NAME, "coroutine A was published twice"));
    }
    contexts[0].schedule(&a);
    let (elapsed, mine) = recv(&report_rx, "A did not finish its round trips")?;

    let after = handoffs(&rt);
    let homed =
        a.context().as_ref() == Some(&contexts[0]) && b.context().as_ref() == Some(&contexts[1]);
    drop((a, b, a_slot));
    drop(rt);

    if !homed {
        return Err(workload_error(
            NAME,
            "A is not homed on worker 0, or B on worker 1",
        ));
    }
    // Each context also received its coroutine's first schedule from this thread.
    let received = [after[0] - before[0], after[1] - before[1]];
    if received.iter().any(|&r| r < ops) {
        let detail = format!(
            "not every hand-off crossed threads: worker 0 received {} and worker 1 {} \
             through their hand-off queues, expected at least {ops} each",
            received[0], received[1]
        );
        return Err(workload_error(NAME, &detail));
    }
    recorder.merge(&mine);
    Ok(elapsed.as_nanos() as f64 / ops as f64)
}

fn handoffs(rt: &Runtime) -> Vec<u64> {
    rt.metrics()
        .per_context
        .iter()
        .map(|m| m.handoffs_received)
        .collect()
}

fn recv<T>(rx: &mpsc::Receiver<T>, what: &str) -> Result<T, Error> {
    rx.recv_timeout(STUCK_AFTER)
        .map_err(|e| workload_error(NAME, &format!("{what} ({e})")))
}
