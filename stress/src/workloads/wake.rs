//! `wake`: ping-pong between pairs of coroutines (docs/BENCHMARKS.md W3), across contexts and
//! within one.
//!
//! A pair is an initiator and a responder. The initiator stamps the time, wakes the
//! responder with `Coroutine::wake` and suspends; the responder resumes, records how long
//! the wake took to reach it (from the waker's stamp to its own first instruction after
//! `suspend` returns), stamps, wakes the initiator and suspends; and so on. A *cross* pair
//! lives on contexts `i` and `i + 1`, so every wake crosses threads; a *local* pair lives on
//! one context. Each context starts `coroutines / 4` pairs of each kind (at least one), so
//! it hosts about `coroutines` coroutines; with one worker there are no cross pairs.
//!
//! The scheduler's rule is one wake per suspension, and the protocol keeps it: each side
//! wakes its partner exactly once per round and is woken exactly once per round (the
//! initiator's `yield_now` before each round is a suspension it wakes itself from, while
//! its partner waits for the ping). A wake
//! that reaches its target before it has suspended (possible across threads) is legal and
//! resumes it as soon as it suspends. At the stop flag the initiator raises `done` and
//! wakes the responder a last time; the responder sees it and returns. The check: wakes
//! sent == wakes received, pair by pair and in total.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use coscheduler::raw::{clear_wait_reason, set_wait_reason};
use coscheduler::{Coroutine, JoinHandle, current, suspend, yield_now};

use super::part::{self, Clock, Part, PartEnv, PartReport, Recorder, Stop, Tally};
use crate::outcome::{Check, HistogramKind};
use crate::workload::RunError;

/// The workload's name.
pub(super) const NAME: &str = "wake";

/// The `--list` paragraph.
pub(super) const DESCRIPTION: &str = "Pairs of coroutines wake each other in turn (ping-pong), some pairs on one context, \
     some across two. Checks that every wake sent was received, in total and per pair. \
     Measures wake latency: from the wake call to the woken coroutine running, on one \
     context and across contexts.";

/// Round trips between progress updates.
const TALLY_EVERY: u64 = 64;

/// The state two partners share.
#[derive(Debug, Default)]
struct Pair {
    /// The initiator's and the responder's handles, published by each as it starts.
    sides: [OnceLock<Coroutine>; 2],
    /// `Clock` time of the latest wake, written by the waker before it wakes.
    sent_at: AtomicU64,
    /// Raised by the initiator before its last wake.
    done: AtomicBool,
}

/// Wakes one side sent and wakes it received.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    sent: u64,
    received: u64,
}

/// What a side records into: its context's slot of the local or the cross histogram.
struct Side {
    pair: Arc<Pair>,
    recorder: Recorder,
    slot: usize,
    clock: Clock,
    counts: Counts,
}

impl Side {
    /// Stamps the time and wakes the partner `partner` (0 or 1).
    fn ping(&mut self, partner: usize) {
        let target = self.pair.sides[partner]
            .get()
            .expect("a side wakes its partner only after the partner published itself");
        // Release: the partner's Acquire load after it resumes reads this stamp. (The wake
        // itself also orders it; this does not rely on that.)
        self.pair.sent_at.store(self.clock.now(), Ordering::Release);
        self.counts.sent += 1;
        target.wake();
    }

    /// Suspends until the partner's wake, then records its latency.
    fn wait(&mut self) {
        set_wait_reason("ping-pong wake", None);
        suspend();
        let latency = self.clock.since(self.pair.sent_at.load(Ordering::Acquire));
        clear_wait_reason();
        self.counts.received += 1;
        self.recorder.record(self.slot, latency);
    }
}

struct Running {
    local: Recorder,
    cross: Recorder,
    pairs: Vec<(JoinHandle<Counts>, JoinHandle<Counts>)>,
}

/// Coroutines held at once, for the mapping-limit preflight. Every context starts `per_context / 4` (at least 1) local pairs and as many cross-context pairs.
pub(super) fn coroutines(per_context: usize, contexts: usize) -> usize {
    let pairs = if contexts > 1 { 2 } else { 1 };
    (per_context / 4).max(1) * contexts * pairs * 2
}

/// Starts the pairs.
pub(super) fn start(env: &PartEnv<'_>) -> Result<Box<dyn Part>, RunError> {
    let contexts = env.contexts().len();
    let per_kind = (env.coroutines() / 4).max(1);
    let local = Recorder::new(contexts);
    let cross = Recorder::new(contexts);
    let mut pairs = Vec::new();
    for context in 0..contexts {
        for index in 0..per_kind {
            pairs.push(start_pair(env, &local, context, context, index)?);
            if contexts > 1 {
                pairs.push(start_pair(env, &cross, context, context + 1, index)?);
            }
        }
    }
    Ok(Box::new(Running {
        local,
        cross,
        pairs,
    }))
}

/// Starts a pair with the initiator on `home` and the responder on `away` (modulo the
/// number of contexts).
fn start_pair(
    env: &PartEnv<'_>,
    recorder: &Recorder,
    home: usize,
    away: usize,
    index: usize,
) -> Result<(JoinHandle<Counts>, JoinHandle<Counts>), RunError> {
    let contexts = env.contexts().len();
    let away = away % contexts;
    let kind = if home == away { "local" } else { "cross" };
    let pair = Arc::new(Pair::default());
    let side = |slot| Side {
        pair: Arc::clone(&pair),
        recorder: recorder.clone(),
        slot,
        clock: env.clock(),
        counts: Counts::default(),
    };
    let responder = {
        let side = side(away);
        env.spawn(
            away,
            format!("wake-{kind}-{home}.{index}-responder"),
            move || respond(side),
        )?
    };
    let initiator = {
        let side = side(home);
        let stop = env.stop().clone();
        let tally = Tally::new(env.progress(), TALLY_EVERY);
        env.spawn(
            home,
            format!("wake-{kind}-{home}.{index}-initiator"),
            move || initiate(side, &stop, tally),
        )?
    };
    Ok((initiator, responder))
}

/// The initiator: waits for its partner to start, then pings until the stop flag.
fn initiate(mut side: Side, stop: &Stop, mut tally: Tally) -> Counts {
    publish(&side.pair, 0);
    // The responder must be running or suspended before the first wake: a coroutine that
    // was scheduled but has not started yet must not be woken again. Seeing its handle
    // proves it started. This spins (politely) only until the responder's first turn.
    while side.pair.sides[1].get().is_none() {
        yield_now();
    }
    loop {
        if stop.is_set() {
            side.pair.done.store(true, Ordering::Relaxed);
            side.ping(1);
            return side.counts;
        }
        // Give the context a turn before each round. A wake between coroutines of one
        // context resumes the target right after the waker suspends, without going back
        // to the event loop (QEMU's aio_co_wake does the same), so a local pair pinging
        // each other would keep its context to itself: other pairs, hand-offs from other
        // threads and timers would starve.
        yield_now();
        side.ping(1);
        side.wait();
        tally.add();
    }
}

/// The responder: answers every ping until the initiator says it is done.
fn respond(mut side: Side) -> Counts {
    publish(&side.pair, 1);
    loop {
        side.wait();
        // The initiator raised `done` before the stamp of the wake that resumed us, and
        // `wait` read that stamp with Acquire: `done` is visible.
        if side.pair.done.load(Ordering::Relaxed) {
            return side.counts;
        }
        side.ping(0);
    }
}

/// Publishes the running coroutine as side `which` of `pair`.
fn publish(pair: &Pair, which: usize) {
    let me = current().expect("wake's sides run as coroutines");
    assert!(
        pair.sides[which].set(me).is_ok(),
        "side {which} of a pair published twice"
    );
}

impl Part for Running {
    fn finish(self: Box<Self>) -> Result<PartReport, RunError> {
        let mut total = Counts::default();
        let mut unbalanced = 0;
        for (initiator, responder) in self.pairs {
            let initiator = part::join(NAME, initiator)?;
            let responder = part::join(NAME, responder)?;
            let balanced =
                initiator.sent == responder.received && responder.sent == initiator.received;
            unbalanced += u64::from(!balanced);
            total.sent += initiator.sent + responder.sent;
            total.received += initiator.received + responder.received;
        }
        Ok(PartReport::new(total.received)
            .check(Check::equal(
                "wakes received == wakes sent",
                total.sent,
                total.received,
            ))
            .check(Check::equal(
                "pairs whose sides disagree on their wakes",
                0,
                unbalanced,
            ))
            .histogram(
                "wake latency (local)",
                HistogramKind::WakeLocal,
                self.local.merged(),
            )
            .histogram(
                "wake latency (cross-context)",
                HistogramKind::WakeCross,
                self.cross.merged(),
            ))
    }
}
