//! `queue`: producers and consumers of a bounded FIFO over `CoMutex` + two `CoQueue`s.
//!
//! The classic monitor: a `CoMutex` guards a `VecDeque`; consumers wait on `not_empty`,
//! producers on `not_full` (the buffer holds [`CAPACITY`] items). Half of the coroutines on
//! every context produce, the other half consume. Each item is `producer << 40 | sequence`.
//!
//! Winding down: at the stop flag each producer leaves; the last one closes the queue and
//! restarts every waiting consumer, which drain what is left and leave. Checks: as many
//! items consumed as produced, the same sum of `mix(item)` on both sides (so a lost item
//! cannot hide behind a duplicate), each consumer sees each producer's items in order
//! (FIFO), and the queue ends empty.

use std::collections::VecDeque;
use std::sync::Arc;

use coprimitives::{CoMutex, CoQueue, stats};
use coscheduler::JoinHandle;

use super::part::{self, Part, PartEnv, PartReport, Stop, Tally, mix};
use crate::outcome::{Check, HistogramKind};
use crate::workload::RunError;

/// The workload's name.
pub(super) const NAME: &str = "queue";

/// The `--list` paragraph.
pub(super) const DESCRIPTION: &str = "Producers push numbered items into a bounded buffer guarded by a CoMutex, waiting on \
     a CoQueue while it is full; consumers pop them, waiting while it is empty. Checks \
     that every item was consumed exactly once and in its producer's order, and that the \
     buffer ends empty. Measures lock wait and hold, and how long consumers and producers \
     waited on the queues.";

/// Items the buffer holds before producers wait.
const CAPACITY: usize = 256;

/// Items between progress updates.
const TALLY_EVERY: u64 = 128;

/// Bits of an item that hold the producer's sequence number.
const SEQUENCE_BITS: u32 = 40;

/// The monitor's state, under the mutex.
#[derive(Debug)]
struct Buffer {
    items: VecDeque<u64>,
    /// Producers still producing; the last to leave closes the queue.
    producers_left: usize,
    closed: bool,
}

#[derive(Debug)]
struct Shared {
    buffer: CoMutex<Buffer>,
    not_empty: CoQueue,
    not_full: CoQueue,
}

/// One side's tally of the items it handled.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    items: u64,
    hash_sum: u64,
    out_of_order: u64,
}

impl Counts {
    fn take(&mut self, item: u64) {
        self.items += 1;
        self.hash_sum = self.hash_sum.wrapping_add(mix(item));
    }

    fn add(&mut self, other: Counts) {
        self.items += other.items;
        self.hash_sum = self.hash_sum.wrapping_add(other.hash_sum);
        self.out_of_order += other.out_of_order;
    }
}

struct Running {
    shared: Arc<Shared>,
    names: [String; 3],
    producers: Vec<JoinHandle<Counts>>,
    consumers: Vec<JoinHandle<Counts>>,
}

/// Coroutines held at once, for the mapping-limit preflight. Every context runs `per_context` (at least 2) producers and consumers.
pub(super) fn coroutines(per_context: usize, contexts: usize) -> usize {
    per_context.max(2) * contexts
}

/// Spawns the producers and the consumers.
pub(super) fn start(env: &PartEnv<'_>) -> Result<Box<dyn Part>, RunError> {
    let contexts = env.contexts().len();
    let per_context = env.coroutines().max(2);
    let producers_per_context = per_context / 2;
    let producer_count = producers_per_context * contexts;
    let names = [
        part::stats_name(NAME, "mutex"),
        part::stats_name(NAME, "not_empty"),
        part::stats_name(NAME, "not_full"),
    ];
    let shared = Arc::new(Shared {
        buffer: CoMutex::with_stats(
            Buffer {
                items: VecDeque::with_capacity(CAPACITY),
                producers_left: producer_count,
                closed: false,
            },
            &names[0],
        ),
        not_empty: CoQueue::with_stats(&names[1]),
        not_full: CoQueue::with_stats(&names[2]),
    });
    let mut producers = Vec::with_capacity(producer_count);
    let mut consumers = Vec::new();
    for context in 0..contexts {
        for index in 0..per_context {
            let shared = Arc::clone(&shared);
            let tally = Tally::new(env.progress(), TALLY_EVERY);
            if index < producers_per_context {
                let id = (producers.len() as u64) << SEQUENCE_BITS;
                let stop = env.stop().clone();
                let name = format!("queue-producer-{context}.{index}");
                producers
                    .push(env.spawn(context, name, move || produce(&shared, id, &stop, tally))?);
            } else {
                let name = format!("queue-consumer-{context}.{index}");
                consumers.push(env.spawn(context, name, move || {
                    consume(&shared, producer_count, tally)
                })?);
            }
        }
    }
    Ok(Box::new(Running {
        shared,
        names,
        producers,
        consumers,
    }))
}

/// A producer: pushes `first`, `first + 1`, ... until the stop flag, then leaves.
fn produce(shared: &Shared, first: u64, stop: &Stop, mut tally: Tally) -> Counts {
    let mut counts = Counts::default();
    let mut item = first;
    while !stop.is_set() {
        let mut buffer = shared.buffer.lock();
        while buffer.items.len() >= CAPACITY {
            buffer = shared.not_full.wait(buffer);
        }
        buffer.items.push_back(item);
        drop(buffer);
        shared.not_empty.next();
        counts.take(item);
        item += 1;
        tally.add();
    }
    let mut buffer = shared.buffer.lock();
    buffer.producers_left -= 1;
    if buffer.producers_left == 0 {
        buffer.closed = true;
        drop(buffer);
        shared.not_empty.restart_all();
    }
    counts
}

/// A consumer: pops until the queue is closed and empty.
fn consume(shared: &Shared, producers: usize, mut tally: Tally) -> Counts {
    let mut counts = Counts::default();
    // The next sequence number expected from each producer, to check FIFO order.
    let mut next = vec![0u64; producers];
    loop {
        let mut buffer = shared.buffer.lock();
        let item = loop {
            if let Some(item) = buffer.items.pop_front() {
                break Some(item);
            }
            if buffer.closed {
                break None;
            }
            buffer = shared.not_empty.wait(buffer);
        };
        drop(buffer);
        let Some(item) = item else {
            return counts;
        };
        shared.not_full.next();
        counts.take(item);
        let producer = (item >> SEQUENCE_BITS) as usize;
        let sequence = item & ((1 << SEQUENCE_BITS) - 1);
        match next.get_mut(producer) {
            Some(expected) if sequence >= *expected => *expected = sequence + 1,
            _ => counts.out_of_order += 1,
        }
        tally.add();
    }
}

impl Part for Running {
    fn finish(self: Box<Self>) -> Result<PartReport, RunError> {
        let mut produced = Counts::default();
        for counts in part::join_all(NAME, self.producers)? {
            produced.add(counts);
        }
        let mut consumed = Counts::default();
        for counts in part::join_all(NAME, self.consumers)? {
            consumed.add(counts);
        }
        let shared = Arc::try_unwrap(self.shared)
            .map_err(|_| RunError::failed("queue: the buffer is still shared after the join"))?;
        let left = shared.buffer.into_inner().items.len() as u64;
        let mut report = PartReport::new(consumed.items)
            .check(Check::equal(
                "items consumed == items produced",
                produced.items,
                consumed.items,
            ))
            .check(Check::equal(
                "hash sum consumed == hash sum produced (each item exactly once)",
                produced.hash_sum,
                consumed.hash_sum,
            ))
            .check(Check::equal(
                "items consumed out of their producer's order",
                0,
                consumed.out_of_order,
            ))
            .check(Check::equal("items left in the queue", 0, left));
        let [mutex, not_empty, not_full] = &self.names;
        if let Some(lock) = stats::snapshot_of(mutex) {
            report = report
                .lock("buffer mutex", &lock)
                .histogram("lock wait", HistogramKind::LockWait, lock.wait)
                .histogram("lock hold", HistogramKind::LockHold, lock.hold);
        }
        if let Some(queue) = stats::snapshot_of(not_empty) {
            report = report.lock("not_empty queue", &queue).histogram(
                "consumer wait (queue empty)",
                HistogramKind::LockWait,
                queue.wait,
            );
        }
        if let Some(queue) = stats::snapshot_of(not_full) {
            report = report.lock("not_full queue", &queue).histogram(
                "producer wait (queue full)",
                HistogramKind::LockWait,
                queue.wait,
            );
        }
        Ok(report)
    }
}
