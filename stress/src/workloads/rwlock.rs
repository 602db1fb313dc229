//! `rwlock`: readers and writers of one `CoRwLock`, with upgrades and downgrades.
//!
//! The protected value is a version and two words derived from it. A writer bumps the
//! version and rewrites both words, yielding between them now and then, so that a reader
//! let in while a writer holds the lock would see the words disagree (a torn read). Readers
//! sometimes yield while holding their share, so writers queue behind readers and readers
//! behind writers. Each coroutine picks, per operation:
//!
//! | share | operation | checks |
//! |---|---|---|
//! | 70% | read | words match the version |
//! | 15% | write | |
//! | 10% | read, upgrade, write | words match before and after the upgrade |
//! | 5% | write, downgrade, read | the version is still the one written (a downgrade never lets a writer in) |
//!
//! At the end the version must equal the number of writes.

use std::sync::Arc;

use coprimitives::{CoRwLock, stats};
use coscheduler::{JoinHandle, yield_now};

use super::part::{self, Part, PartEnv, PartReport, Rng, Stop, Tally};
use crate::outcome::{Check, HistogramKind};
use crate::workload::RunError;

/// The workload's name.
pub(super) const NAME: &str = "rwlock";

/// The `--list` paragraph.
pub(super) const DESCRIPTION: &str = "Readers and writers share a CoRwLock; writers sometimes yield while holding it, \
     readers upgrade to writers and writers downgrade to readers. Checks that no reader \
     saw a half-written value, that the final version equals the writes, and that no \
     writer got in during a downgrade. Measures lock wait and lock hold.";

/// Operations between progress updates.
const TALLY_EVERY: u64 = 128;

/// Operations between turns given back to the context (see `mutex`).
const YIELD_EVERY: u64 = 64;

/// One in this many lock holds yields while holding the lock.
const YIELD_ONE_IN: u64 = 8;

/// The protected value: `a` and `b` are functions of `version`, written one after the other.
#[derive(Debug, Default)]
struct Versioned {
    version: u64,
    a: u64,
    b: u64,
}

impl Versioned {
    fn consistent(&self) -> bool {
        self.a == self.version && self.b == !self.version
    }
}

/// What one coroutine counted.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    reads: u64,
    writes: u64,
    torn: u64,
    lost_downgrades: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.reads += other.reads;
        self.writes += other.writes;
        self.torn += other.torn;
        self.lost_downgrades += other.lost_downgrades;
    }
}

struct Running {
    lock: Arc<CoRwLock<Versioned>>,
    stats_name: String,
    workers: Vec<JoinHandle<Counts>>,
}

/// Coroutines held at once, for the mapping-limit preflight. Every context runs `per_context` reader/writer coroutines.
pub(super) fn coroutines(per_context: usize, contexts: usize) -> usize {
    per_context * contexts
}

/// Spawns the readers and writers.
pub(super) fn start(env: &PartEnv<'_>) -> Result<Box<dyn Part>, RunError> {
    let stats_name = part::stats_name(NAME, "value");
    let lock = Arc::new(CoRwLock::with_stats(
        Versioned {
            version: 0,
            a: 0,
            b: !0,
        },
        &stats_name,
    ));
    let mut workers = Vec::new();
    for context in 0..env.contexts().len() {
        for index in 0..env.coroutines() {
            let lock = Arc::clone(&lock);
            let stop = env.stop().clone();
            let tally = Tally::new(env.progress(), TALLY_EVERY);
            let stream = (context * env.coroutines() + index) as u64;
            let rng = Rng::new(env.seed(), stream);
            let name = format!("rwlock-{context}.{index}");
            workers.push(env.spawn(context, name, move || run_one(&lock, &stop, tally, rng))?);
        }
    }
    Ok(Box::new(Running {
        lock,
        stats_name,
        workers,
    }))
}

/// One coroutine's loop.
fn run_one(lock: &CoRwLock<Versioned>, stop: &Stop, mut tally: Tally, mut rng: Rng) -> Counts {
    let mut counts = Counts::default();
    while !stop.is_set() {
        let roll = rng.below(100);
        let linger = rng.below(YIELD_ONE_IN) == 0;
        match roll {
            0..70 => {
                let read = lock.read();
                counts.reads += 1;
                counts.torn += u64::from(!read.consistent());
                if linger {
                    yield_now();
                }
            }
            70..85 => {
                let mut write = lock.write();
                bump(&mut write, linger);
                counts.writes += 1;
            }
            85..95 => {
                let read = lock.read();
                counts.reads += 1;
                counts.torn += u64::from(!read.consistent());
                // Another writer may go first: the value is re-checked, not assumed.
                let mut write = read.upgrade();
                counts.torn += u64::from(!write.consistent());
                bump(&mut write, linger);
                counts.writes += 1;
            }
            _ => {
                let mut write = lock.write();
                let written = bump(&mut write, linger);
                counts.writes += 1;
                let read = write.downgrade();
                counts.reads += 1;
                counts.torn += u64::from(!read.consistent());
                counts.lost_downgrades += u64::from(read.version != written);
            }
        }
        tally.add();
        // As in `mutex`: a turn for the rest of the context now and then.
        if tally.total() % YIELD_EVERY == 0 {
            yield_now();
        }
    }
    counts
}

/// Writes the next version, word by word, optionally yielding in the middle; returns it.
fn bump(value: &mut Versioned, linger: bool) -> u64 {
    value.version += 1;
    value.a = value.version;
    if linger {
        yield_now();
    }
    value.b = !value.version;
    value.version
}

impl Part for Running {
    fn finish(self: Box<Self>) -> Result<PartReport, RunError> {
        let mut counts = Counts::default();
        for worker in part::join_all(NAME, self.workers)? {
            counts.add(worker);
        }
        let value = Arc::try_unwrap(self.lock)
            .map_err(|_| RunError::failed("rwlock: the value is still shared after the join"))?
            .into_inner();
        let mut report = PartReport::new(counts.reads + counts.writes)
            .check(Check::equal(
                "final version == writes",
                counts.writes,
                value.version,
            ))
            .check(Check::equal("torn reads", 0, counts.torn))
            .check(Check::equal(
                "downgrades that let a writer in",
                0,
                counts.lost_downgrades,
            ));
        if let Some(lock) = stats::snapshot_of(&self.stats_name) {
            report = report
                .lock("lock", &lock)
                .histogram("lock wait", HistogramKind::LockWait, lock.wait)
                .histogram("lock hold", HistogramKind::LockHold, lock.hold);
        }
        Ok(report)
    }
}
