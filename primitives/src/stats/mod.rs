//! Per-lock contention statistics: wait-time and hold-time HDR histograms and
//! acquisition counters for every [`CoMutex`], [`CoRwLock`] and [`CoQueue`]
//! created with a name (`with_stats`). QEMU has no equivalent; neither do
//! may, tokio or Go (Go's mutex profile is sampled and aggregated by stack,
//! not per lock).
//!
//! ```
//! use coprimitives::{CoMutex, stats};
//! use coscheduler::Coroutine;
//! use std::sync::Arc;
//!
//! let m = Arc::new(CoMutex::with_stats(0u64, "doc-example"));
//! let m2 = m.clone();
//! Coroutine::new(move || *m2.lock() += 1).enter();
//! let s = stats::snapshot_of("doc-example").unwrap();
//! assert_eq!(s.counters.fast, 1);
//! assert_eq!(s.wait.len(), 0); // nothing waited
//! ```
//!
//! # What is recorded
//!
//! | field | meaning |
//! |---|---|
//! | `wait` | nanoseconds from the request to the acquisition of a *contended* acquisition (one that did not win the first CAS): for a hand-over, until the unlocker granted the lock; for a queue, from `wait` to the wake-up |
//! | `hold` | nanoseconds from a contended acquisition (for a hand-over, the grant, so the waiter's wake-up latency counts: the lock is unavailable meanwhile) to its release |
//! | `counters.fast` | acquisitions on the uncontended fast path |
//! | `counters.spun` | acquisitions won while spinning on a holder of another context |
//! | `counters.raced` | acquisitions where the lock became free between the spin and queuing |
//! | `counters.waited` | acquisitions that queued (queue: waits) |
//! | `counters.handoffs` | lockers that picked up an unlocker's hand-off offer (QEMU's rare race, docs/SEMANTICS.md §3.5) |
//! | `counters.handovers` | queued acquisitions that were handed the lock directly (queue: coroutines woken; rwlock: tickets granted) |
//! | `counters.spin_iterations` | busy-wait iterations spent by lockers |
//! | `counters.local_handovers` | mutex: unlocks that handed the lock to a waiter of the unlocker's own context (resumed without a cross-thread wake) |
//! | `counters.remote_handovers` | mutex: unlocks that handed the lock to a waiter of another context |
//! | `counters.barged` | mutex: local hand-overs that overtook an older waiter of another context (eventual fairness) |
//! | `counters.fifo_forced` | mutex: hand-overs to the oldest waiter forced by the fairness bound although a local waiter was queued |
//! | `counters.claim_retries` | mutex: failed claims (a CAS on the lock word or on the waiter stack) that were retried |
//! | `counters.spin_then_park` | mutex: lockers that spun, then queued and suspended all the same |
//!
//! Counters are exact. Times are exact while a thread sees at most 50,000
//! contended acquisitions per second (every lock in a unit test, most real
//! locks); above that each thread times one in N of them (N a power of two
//! up to 1024, re-estimated every millisecond from its rate) and records
//! each sample with weight N, so histogram counts and percentiles estimate
//! all contended acquisitions. Timing costs two or three clock reads and a
//! histogram update (~50 ns), more than a whole contended lock + unlock on a
//! busy mutex: without sampling, statistics would slow such a mutex down by
//! a third or more.
//!
//! # Cost model
//!
//! A lock created without a name has no statistics and pays nothing: its
//! fast paths test an `Option` pointer they already have in cache. A named
//! lock pays, on its uncontended fast path, one thread-local counter
//! increment (a plain load and store on a `const` thread-local: no atomic
//! read-modify-write, no lock) and **no clock read**; hold times are
//! therefore recorded for contended acquisitions only. A contended
//! acquisition adds a sampling decision and a counter increment; a timed one
//! reads the clock at its request, at its acquisition (for a hand-over, the
//! granter reads it, at the waiter's request) and at its release, and takes
//! its thread's own recorder mutex once. The clock is the TSC on x86-64
//! (calibrated once, 2 ms, when the first name is registered). Measured on
//! W4 (`examples/comutex_w4.rs`, `benches/mutex.rs`): see the crate's
//! benchmark report.
//!
//! Recording is per thread (each thread owns its counters and histograms;
//! the only lock taken is that thread's own, uncontended except while a
//! snapshot is being taken) and merged on read. A thread's records are
//! folded into a global accumulator when it exits.
//!
//! Locks that share a name share one entry: naming every per-object lock of
//! a kind alike aggregates them.
//!
//! [`CoMutex`]: crate::CoMutex
//! [`CoRwLock`]: crate::CoRwLock
//! [`CoQueue`]: crate::CoQueue

mod clock;
mod recorder;

use std::collections::BTreeMap;
use std::fmt;

pub use hdrhistogram::Histogram;

pub(crate) use self::clock::now;
pub(crate) use self::recorder::{
    Counter, StatsHandle, count, record_hold, record_times, register, sample,
};

/// Which primitive a statistics entry belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LockKind {
    /// A [`CoMutex`](crate::CoMutex).
    Mutex,
    /// A [`CoRwLock`](crate::CoRwLock) (readers and writers together).
    RwLock,
    /// A [`CoQueue`](crate::CoQueue).
    Queue,
}

/// Acquisition counters of one lock name (see the module docs for each).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Uncontended fast-path acquisitions.
    pub fast: u64,
    /// Acquisitions won by spinning.
    pub spun: u64,
    /// Acquisitions where the lock was freed just before queuing.
    pub raced: u64,
    /// Acquisitions that queued (queue: waits).
    pub waited: u64,
    /// Hand-off offers picked up by a locker.
    pub handoffs: u64,
    /// Queued acquisitions handed the lock directly (queue: coroutines
    /// woken; rwlock: tickets granted).
    pub handovers: u64,
    /// Busy-wait iterations.
    pub spin_iterations: u64,
    /// Mutex hand-overs to a waiter of the unlocker's context.
    pub local_handovers: u64,
    /// Mutex hand-overs to a waiter of another context.
    pub remote_handovers: u64,
    /// Local mutex hand-overs that overtook an older waiter.
    pub barged: u64,
    /// Mutex hand-overs to the oldest waiter forced by the fairness bound.
    pub fifo_forced: u64,
    /// Failed mutex claims that were retried.
    pub claim_retries: u64,
    /// Mutex lockers that spun and then suspended.
    pub spin_then_park: u64,
}

impl Counters {
    /// Acquisitions of every kind.
    pub fn acquisitions(&self) -> u64 {
        self.fast + self.contended()
    }

    /// Acquisitions that did not win the first CAS (those the `wait`
    /// histogram records).
    pub fn contended(&self) -> u64 {
        self.spun + self.raced + self.waited
    }
}

/// The merged statistics of one lock name.
#[derive(Clone, Debug)]
pub struct LockStats {
    /// The name given to `with_stats`.
    pub name: String,
    /// The primitive.
    pub kind: LockKind,
    /// Wait times in nanoseconds of contended acquisitions (weighted
    /// samples above the sampling threshold; see the module docs).
    pub wait: Histogram<u64>,
    /// Hold times in nanoseconds of contended acquisitions (likewise).
    pub hold: Histogram<u64>,
    /// Acquisition counters.
    pub counters: Counters,
}

impl fmt::Display for LockStats {
    /// One line: counters, then wait and hold percentiles in microseconds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counters;
        write!(
            f,
            "{} ({:?}): {} acquisitions, {} fast, {} spun, {} raced, {} waited, {} hand-offs, {} hand-overs",
            self.name,
            self.kind,
            c.acquisitions(),
            c.fast,
            c.spun,
            c.raced,
            c.waited,
            c.handoffs,
            c.handovers
        )?;
        if self.kind == LockKind::Mutex {
            write!(
                f,
                " ({} local, {} remote, {} barged, {} FIFO forced), {} claim retries, {} spin-then-park",
                c.local_handovers,
                c.remote_handovers,
                c.barged,
                c.fifo_forced,
                c.claim_retries,
                c.spin_then_park
            )?;
        }
        for (label, h) in [("wait", &self.wait), ("hold", &self.hold)] {
            if !h.is_empty() {
                let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
                write!(
                    f,
                    "; {label} µs p50 {:.1} p99 {:.1} max {:.1}",
                    us(0.5),
                    us(0.99),
                    h.max() as f64 / 1000.0
                )?;
            }
        }
        Ok(())
    }
}

/// Statistics of every named lock, merged over all threads, by name.
pub fn snapshot() -> BTreeMap<String, LockStats> {
    recorder::snapshot(None)
}

/// Statistics of the locks named `name`, if any was created.
pub fn snapshot_of(name: &str) -> Option<LockStats> {
    recorder::snapshot(Some(name)).remove(name)
}

/// Forgets everything recorded so far (names stay registered).
pub fn reset() {
    recorder::reset();
}
