//! `lifecycle`: coroutines created, run and finished as fast as possible, through the
//! stack pool (docs/BENCHMARKS.md W2 and W5).
//!
//! Three kinds of churn run at once:
//!
//! - **create/enter** (W2): churner coroutines on every context create a coroutine with
//!   `Coroutine::new`, enter it, and it finishes at once, giving its stack back to the pool;
//! - **local spawn**: the same churners spawn a batch on their own context with
//!   `AioContext::spawn` and join it;
//! - **injector spawn** (W5): a plain thread spawns batches with `Runtime::spawn`, which go
//!   through the injector and may be stolen by any worker, and joins them.
//!
//! Every coroutine gets a unique id, added to a ledger when it is created and again when its
//! body runs. The checks: as many bodies ran as were created, the two sums of `mix(id)`
//! agree (each coroutine ran exactly once, not one lost and another run twice), every
//! entered coroutine had finished when `enter` returned, and every spawn was joined. The
//! pool's hit rate is in the pool line of the report; the spawn histograms measure from
//! the spawn call to the body's first instruction, a coroutine's first wake.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use coscheduler::{AioContext, Coroutine, JoinHandle, Runtime};

use super::part::{self, Clock, Part, PartEnv, PartReport, Recorder, Stop, Tally, mix};
use crate::outcome::{Check, HistogramKind};
use crate::workload::RunError;

/// The workload's name.
pub(super) const NAME: &str = "lifecycle";

/// The `--list` paragraph.
pub(super) const DESCRIPTION: &str = "Coroutines are created, run to completion and freed as fast as possible: entered \
     directly, spawned on the current context, and spawned from a plain thread through \
     the runtime's shared queue (the injector), where any worker may take them. Checks \
     that every coroutine created ran exactly once and every spawn was joined. Measures \
     the time from spawn to first run; the report's pool line shows how often a stack was \
     reused.";

/// Coroutines per batch: created and entered, or spawned before joining them all.
const BATCH: usize = 64;

/// Bits of an id that hold the churner's sequence number.
const SEQUENCE_BITS: u32 = 40;

/// Creations and runs, each with the sum of `mix(id)`.
///
/// Every coroutine's body touches it once, so these are shared atomics; the churn it
/// measures costs far more than an uncontended `fetch_add`.
#[derive(Debug, Default)]
struct Ledger {
    created: AtomicU64,
    created_sum: AtomicU64,
    ran: AtomicU64,
    ran_sum: AtomicU64,
}

impl Ledger {
    fn create(&self, id: u64) {
        self.created.fetch_add(1, Ordering::Relaxed);
        self.created_sum.fetch_add(mix(id), Ordering::Relaxed);
    }

    fn run(&self, id: u64) {
        self.ran.fetch_add(1, Ordering::Relaxed);
        self.ran_sum.fetch_add(mix(id), Ordering::Relaxed);
    }
}

/// What one churner saw.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    entered: u64,
    finished_on_return: u64,
    spawned: u64,
    joined: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.entered += other.entered;
        self.finished_on_return += other.finished_on_return;
        self.spawned += other.spawned;
        self.joined += other.joined;
    }
}

/// One churner's ids and the shared things it records into.
struct Churn {
    ledger: Arc<Ledger>,
    clock: Clock,
    recorder: Recorder,
    slot: usize,
    next_id: u64,
    tally: Tally,
    counts: Counts,
}

impl Churn {
    fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.ledger.create(id);
        id
    }
}

struct Running {
    ledger: Arc<Ledger>,
    local: Recorder,
    injected: Recorder,
    churners: Vec<JoinHandle<Result<Counts, String>>>,
    injector: Option<thread::JoinHandle<Counts>>,
}

/// Coroutines held at once, for the mapping-limit preflight. Each churner holds a batch of `BATCH` spawned coroutines (and one entered) at a time, the injector thread one batch.
pub(super) fn coroutines(per_context: usize, contexts: usize) -> usize {
    let churners = (per_context / 8).max(1) * contexts;
    churners * (1 + BATCH) + BATCH
}

/// Starts the churners and the injector thread.
pub(super) fn start(env: &PartEnv<'_>) -> Result<Box<dyn Part>, RunError> {
    let contexts = env.contexts().len();
    let per_context = (env.coroutines() / 8).max(1);
    let ledger = Arc::new(Ledger::default());
    let local = Recorder::new(contexts);
    let injected = Recorder::new(1);
    let churn = |recorder: &Recorder, slot: usize, stream: u64| Churn {
        ledger: Arc::clone(&ledger),
        clock: env.clock(),
        recorder: recorder.clone(),
        slot,
        next_id: stream << SEQUENCE_BITS,
        tally: Tally::new(env.progress(), BATCH as u64),
        counts: Counts::default(),
    };
    let mut churners = Vec::with_capacity(contexts * per_context);
    for context in 0..contexts {
        for index in 0..per_context {
            // Stream 0 is the injector thread's.
            let churn = churn(&local, context, 1 + (context * per_context + index) as u64);
            let stop = env.stop().clone();
            let name = format!("lifecycle-churner-{context}.{index}");
            churners.push(env.spawn(context, name, move || churn_locally(churn, &stop))?);
        }
    }
    let injector = {
        let churn = churn(&injected, 0, 0);
        let stop = env.stop().clone();
        let runtime = Arc::clone(env.runtime());
        thread::Builder::new()
            .name("costress-injector".to_owned())
            .spawn(move || inject(&runtime, churn, &stop))
            .map_err(|err| RunError::failed(format!("lifecycle: cannot start a thread: {err}")))?
    };
    Ok(Box::new(Running {
        ledger,
        local,
        injected,
        churners,
        injector: Some(injector),
    }))
}

/// A churner: batches of create/enter, then batches of local spawns, until the stop flag.
///
/// A failed stack allocation ends it with the error, which fails the run.
fn churn_locally(mut churn: Churn, stop: &Stop) -> Result<Counts, String> {
    let ctx = AioContext::current();
    let mut batch = Vec::with_capacity(BATCH);
    while !stop.is_set() {
        for _ in 0..BATCH {
            let id = churn.new_id();
            let ledger = Arc::clone(&churn.ledger);
            let co = Coroutine::builder()
                .create(move || ledger.run(id))
                .map_err(|err| format!("cannot create a coroutine: {err}"))?;
            co.enter();
            churn.counts.entered += 1;
            churn.counts.finished_on_return += u64::from(co.is_finished());
            churn.tally.add();
        }
        for _ in 0..BATCH {
            let id = churn.new_id();
            let ledger = Arc::clone(&churn.ledger);
            let clock = churn.clock;
            let spawned_at = clock.now();
            batch.push(ctx.spawn(move || {
                ledger.run(id);
                clock.since(spawned_at)
            }));
            churn.counts.spawned += 1;
        }
        for handle in batch.drain(..) {
            if let Ok(latency) = handle.join() {
                churn.counts.joined += 1;
                churn.recorder.record(churn.slot, latency);
            }
            churn.tally.add();
        }
    }
    Ok(churn.counts)
}

/// The injector thread: batches of `Runtime::spawn`, joined from outside, until the stop
/// flag.
fn inject(runtime: &Runtime, mut churn: Churn, stop: &Stop) -> Counts {
    let mut batch = Vec::with_capacity(BATCH);
    while !stop.is_set() {
        for _ in 0..BATCH {
            let id = churn.new_id();
            let ledger = Arc::clone(&churn.ledger);
            let clock = churn.clock;
            let spawned_at = clock.now();
            batch.push(runtime.spawn(move || {
                ledger.run(id);
                clock.since(spawned_at)
            }));
            churn.counts.spawned += 1;
        }
        for handle in batch.drain(..) {
            if let Ok(latency) = part::join_from_thread(handle) {
                churn.counts.joined += 1;
                churn.recorder.record(churn.slot, latency);
            }
            churn.tally.add();
        }
    }
    churn.counts
}

impl Part for Running {
    fn finish(mut self: Box<Self>) -> Result<PartReport, RunError> {
        let mut counts = Counts::default();
        // The thread first: it holds a handle on the runtime, which must not outlive us.
        if let Some(injector) = self.injector.take() {
            let injected = injector.join().map_err(|payload| {
                let err = RunError::panicked(payload.as_ref());
                RunError::failed(format!("{NAME}: the injector thread {err}"))
            })?;
            counts.add(injected);
        }
        for churner in part::join_all(NAME, std::mem::take(&mut self.churners))? {
            counts.add(churner.map_err(|err| RunError::failed(format!("{NAME}: {err}")))?);
        }
        let ledger = &self.ledger;
        let created = ledger.created.load(Ordering::Relaxed);
        Ok(PartReport::new(created)
            .check(Check::equal(
                "coroutines run == coroutines created",
                created,
                ledger.ran.load(Ordering::Relaxed),
            ))
            .check(Check::equal(
                "hash sum of ids run == of ids created (each exactly once)",
                ledger.created_sum.load(Ordering::Relaxed),
                ledger.ran_sum.load(Ordering::Relaxed),
            ))
            .check(Check::equal(
                "entered coroutines finished when enter returned",
                counts.entered,
                counts.finished_on_return,
            ))
            .check(Check::equal(
                "spawned coroutines joined",
                counts.spawned,
                counts.joined,
            ))
            .histogram(
                "spawn wake latency (local)",
                HistogramKind::WakeLocal,
                self.local.merged(),
            )
            .histogram(
                "injector wake latency (cross-context)",
                HistogramKind::WakeCross,
                self.injected.merged(),
            ))
    }
}
