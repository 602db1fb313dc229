//! W3: cross-context ping-pong between two coroutines homed on different workers, woken
//! with `Coroutine::wake` (`workloads::pingpong`'s rounds), and its twins carrying flags
//! and woken through futures' wakers.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use coscheduler::{Coroutine, Runtime, suspend, wait};
use workloads::pingpong;

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
        pingpong::pong(&a, ops);
    });
    contexts[1].schedule(&b);
    recv(&started_rx, "B did not start on worker 1")?;

    let (report_tx, report_rx) = mpsc::channel::<Report>();
    let b_handle = b.clone();
    let a = Coroutine::new(move || {
        let _ = report_tx.send(timed_rounds(ops, || pingpong::ping(&b_handle)));
    });
    if a_slot.set(a.clone()).is_err() {
        return Err(workload_error(NAME, "coroutine A was published twice"));
    }
    contexts[0].schedule(&a);
    let (elapsed, mine) = recv(&report_rx, "A did not finish its round trips")?;

    let after = handoffs(&rt);
    let homed = homed_as_w3(NAME, &a, &b, contexts);
    drop((a, b, a_slot));
    drop(rt);

    homed?;
    // Each context also received its coroutine's first schedule from this thread.
    crossed(NAME, ops, &before, &after, 1.0)?;
    recorder.merge(&mine);
    Ok(elapsed.as_nanos() as f64 / ops as f64)
}

/// W3 carrying [`Flag`]s: the same two coroutines, homed and woken exactly as W3's
/// (`Coroutine::wake`, one wake per suspension), but each wake also raises the woken
/// side's flag, which it lowers when it runs, so that a round trip moves the same flag
/// cache lines between the workers as [`waker_cross_context_pingpong`]'s. The ratio of
/// that row to this one is what the waker path costs over `Coroutine::wake` with the
/// flag traffic between the threads taken out (issue 15); what stays in it besides the
/// waker itself is the waiting side's own work on its flag (the pending poll's second
/// swap and its lock of the waker slot, all on a line it already holds). Fails if a
/// coroutine runs without finding its flag up, if A and B are not homed on workers 0
/// and 1, or unless every hand-off crossed threads.
pub(super) fn flag_cross_context_pingpong(ops: u64, recorder: &mut Recorder) -> Result<f64, Error> {
    const NAME: &str = "flag_cross_context_pingpong";
    let rt = row_runtime(NAME, Placement::Pinned)?;
    let contexts = rt.contexts();
    let before: Vec<u64> = handoffs(&rt);

    let (to_a, to_b) = (Arc::new(Flag::default()), Arc::new(Flag::default()));
    let a_slot: Arc<OnceLock<Coroutine>> = Arc::default();
    let (started_tx, started_rx) = mpsc::channel();
    let (b_tx, b_rx) = mpsc::channel::<bool>();
    let (slot, a_flag, b_flag) = (a_slot.clone(), to_a.clone(), to_b.clone());
    let b = Coroutine::new(move || {
        let _ = started_tx.send(());
        suspend();
        let Some(a) = slot.get().cloned() else {
            return;
        };
        let mut all_up = true;
        for i in 0..ops {
            if i > 0 {
                suspend();
            }
            all_up &= b_flag.lower();
            a_flag.raise();
            a.wake();
        }
        let _ = b_tx.send(all_up);
    });
    contexts[1].schedule(&b);
    recv(&started_rx, "B did not start on worker 1")?;

    let (report_tx, report_rx) = mpsc::channel::<(Report, bool)>();
    let b_handle = b.clone();
    let a = Coroutine::new(move || {
        let mut all_up = true;
        let report = timed_rounds(ops, || {
            to_b.raise();
            b_handle.wake();
            suspend();
            all_up &= to_a.lower();
        });
        let _ = report_tx.send((report, all_up));
    });
    if a_slot.set(a.clone()).is_err() {
        return Err(workload_error(NAME, "coroutine A was published twice"));
    }
    contexts[0].schedule(&a);
    let ((elapsed, mine), a_up) = report_rx
        .recv_timeout(STUCK_AFTER)
        .map_err(|e| workload_error(NAME, &format!("A did not finish its round trips ({e})")))?;
    let b_up = b_rx
        .recv_timeout(STUCK_AFTER)
        .map_err(|e| workload_error(NAME, &format!("B did not finish its round trips ({e})")))?;
    let after = handoffs(&rt);
    let homed = homed_as_w3(NAME, &a, &b, contexts);
    drop((a, b, a_slot));
    drop(rt);

    homed?;
    if !(a_up && b_up) {
        return Err(workload_error(
            NAME,
            "a coroutine was woken with its flag down",
        ));
    }
    crossed(NAME, ops, &before, &after, 1.0)?;
    recorder.merge(&mine);
    Ok(elapsed.as_nanos() as f64 / ops as f64)
}

/// The waker twin of W3: the same two coroutines, homed as W3's on the row's own pinned
/// runtime, but each suspended in `coscheduler::wait` on a [`Flag`] that the other side
/// raises and wakes through the waker the waiting poll left (`Waker::wake_by_ref`, called
/// on the other worker's thread). One round trip = A raises B's flag and waits on its own,
/// B wakes, raises A's and waits again; timed exactly as W3 is, so that the ratio to W3 in
/// the same run is what a future's waker costs over `Coroutine::wake` (issue 15).
///
/// The flags latch, so the set-up needs no ordering: B may start before or after A's first
/// raise. Every wake is made on the other worker's thread, but not every one reaches its
/// coroutine through the hand-off queue as W3's do: a wake that lands while the waiter is
/// still inside its pending poll only makes `wait` poll again (a few in ten thousand rounds).
/// So the row records the smaller worker's hand-offs per round trip as
/// `metrics.handoff_fraction` and fails below one half, which means the two coroutines
/// were not on two workers.
pub(super) fn waker_cross_context_pingpong(
    ops: u64,
    recorder: &mut Recorder,
) -> Result<f64, Error> {
    const NAME: &str = "waker_cross_context_pingpong";
    const HANDOFF_FRACTION: &str = "handoff_fraction";
    let rt = row_runtime(NAME, Placement::Pinned)?;
    let contexts = rt.contexts();
    let before: Vec<u64> = handoffs(&rt);

    let (to_a, to_b) = (Arc::new(Flag::default()), Arc::new(Flag::default()));
    let (a_flag, b_flag) = (to_a.clone(), to_b.clone());
    let b = contexts[1].spawn(move || {
        for _ in 0..ops {
            wait(b_flag.raised());
            a_flag.raise();
        }
    });
    let (report_tx, report_rx) = mpsc::channel::<Report>();
    let a = contexts[0].spawn(move || {
        let _ = report_tx.send(timed_rounds(ops, || {
            to_b.raise();
            wait(to_a.raised());
        }));
    });
    let (elapsed, mine) = report_rx
        .recv_timeout(STUCK_AFTER)
        .map_err(|e| workload_error(NAME, &format!("A did not finish its round trips ({e})")))?;
    for (side, handle) in [("A", a), ("B", b)] {
        handle
            .join()
            .map_err(|e| workload_error(NAME, &format!("coroutine {side} failed: {e}")))?;
    }
    let after = handoffs(&rt);
    drop(rt);

    let fraction = crossed(NAME, ops, &before, &after, 0.5)?;
    recorder.metric(HANDOFF_FRACTION, fraction);
    recorder.merge(&mine);
    Ok(elapsed.as_nanos() as f64 / ops as f64)
}

/// Fails `name` unless A is homed on worker 0 and B on worker 1, as W3 prescribes.
fn homed_as_w3(
    name: &str,
    a: &Coroutine,
    b: &Coroutine,
    contexts: &[coscheduler::AioContext],
) -> Result<(), Error> {
    if a.context().as_ref() == Some(&contexts[0]) && b.context().as_ref() == Some(&contexts[1]) {
        Ok(())
    } else {
        Err(workload_error(
            name,
            "A is not homed on worker 0, or B on worker 1",
        ))
    }
}

/// A's side of a ping-pong: `ops` calls of `round`, each a round trip, with one clock read
/// per round trip (as `raw_atomic_pingpong` times its own). Returns the time from the first
/// round's start to the last one's end and each round trip's latency in ns.
fn timed_rounds(ops: u64, round: impl FnMut()) -> Report {
    let mut mine = Latencies::new();
    let elapsed = pingpong::timed_rounds(ops, round, |lap| mine.record(nanos(lap)));
    (elapsed, mine)
}

/// The hand-offs each of the two workers received between the `before` and `after`
/// readings of their counters, as a fraction of `ops` (the smaller of the two); fails
/// `name` if that is below `at_least`.
fn crossed(
    name: &str,
    ops: u64,
    before: &[u64],
    after: &[u64],
    at_least: f64,
) -> Result<f64, Error> {
    let received = [after[0] - before[0], after[1] - before[1]];
    let fraction = received.iter().min().copied().unwrap_or(0) as f64 / ops as f64;
    if fraction < at_least {
        let detail = format!(
            "not enough hand-offs crossed threads: worker 0 received {} and worker 1 {} \
             through their hand-off queues, expected at least {} each",
            received[0],
            received[1],
            (at_least * ops as f64).ceil()
        );
        return Err(workload_error(name, &detail));
    }
    Ok(fraction)
}

/// A one-bit mailbox awaited as a future: [`Flag::raised`] is pending until another thread
/// calls [`Flag::raise`], which wakes the waker the last pending poll left.
#[derive(Default)]
struct Flag {
    up: AtomicBool,
    /// The waiter's waker, replaced only when a poll brings one that `will_wake` says is
    /// not the same.
    waker: Mutex<Option<Waker>>,
}

impl Flag {
    fn raise(&self) {
        self.up.store(true, Ordering::Release);
        // A poll that stored its waker before this lock is woken; one that stores it
        // after re-checks `up` after its unlock and sees the store above.
        if let Some(w) = self
            .waker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            w.wake_by_ref();
        }
    }

    fn raised(&self) -> Raised<'_> {
        Raised(self)
    }

    /// Takes the flag down; true if it was up.
    fn lower(&self) -> bool {
        self.up.swap(false, Ordering::Acquire)
    }

    /// Leaves `waker` for the next raise, unless the stored one wakes the same task.
    fn register(&self, waker: &Waker) {
        let mut slot = self.waker.lock().unwrap_or_else(|e| e.into_inner());
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }
}

struct Raised<'a>(&'a Flag);

impl Future for Raised<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let flag = self.0;
        // Checked again once the waker is stored: a raise in between found no waker.
        if !flag.lower() {
            flag.register(cx.waker());
            if !flag.lower() {
                return Poll::Pending;
            }
        }
        Poll::Ready(())
    }
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
