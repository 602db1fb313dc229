//! Per-context counters.
//!
//! Each counter has one writer, the context's own thread, which bumps it with
//! a relaxed load and store (no locked instruction on the hot path); readers
//! on any thread get a relaxed snapshot, which is all a metric needs.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

/// A snapshot of one context's counters ([`AioContext::metrics`](crate::AioContext::metrics)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ContextMetrics {
    /// Coroutines started here (first entries).
    pub coroutines_started: u64,
    /// Switches into a coroutine (every enter, first or not).
    pub switches: u64,
    /// Wakes issued here for coroutines of this same context.
    pub local_wakes: u64,
    /// Wakes issued here for coroutines of another context.
    pub remote_wakes: u64,
    /// Coroutines received through the cross-thread hand-off queue.
    pub handoffs_received: u64,
    /// Attempts to steal unstarted coroutines from other workers.
    pub steal_attempts: u64,
    /// Steal attempts that brought work back.
    pub steal_successes: u64,
    /// Times the context's thread went to sleep in epoll.
    pub parks: u64,
    /// `epoll_wait` calls (blocking or not).
    pub epoll_waits: u64,
    /// Timer callbacks run.
    pub timer_fires: u64,
    /// Bottom halves run.
    pub bottom_halves: u64,
    /// Busy-poll rounds that found work before sleeping.
    pub poll_hits: u64,
    /// Panics that reached this context's loop and were contained there (a
    /// bottom half's, a timer callback's, a raw coroutine's entered by the
    /// loop): reported on stderr, and the loop went on.
    pub panics_contained: u64,
    /// Coroutines homed here that shutdown could not unwind and leaked.
    pub coroutines_leaked: u64,
}

impl ContextMetrics {
    /// Adds `other` into `self` (for runtime totals).
    pub fn accumulate(&mut self, other: &ContextMetrics) {
        self.coroutines_started += other.coroutines_started;
        self.switches += other.switches;
        self.local_wakes += other.local_wakes;
        self.remote_wakes += other.remote_wakes;
        self.handoffs_received += other.handoffs_received;
        self.steal_attempts += other.steal_attempts;
        self.steal_successes += other.steal_successes;
        self.parks += other.parks;
        self.epoll_waits += other.epoll_waits;
        self.timer_fires += other.timer_fires;
        self.bottom_halves += other.bottom_halves;
        self.poll_hits += other.poll_hits;
        self.panics_contained += other.panics_contained;
        self.coroutines_leaked += other.coroutines_leaked;
    }
}

/// The live counters.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) coroutines_started: AtomicU64,
    pub(crate) switches: AtomicU64,
    pub(crate) local_wakes: AtomicU64,
    pub(crate) remote_wakes: AtomicU64,
    pub(crate) handoffs_received: AtomicU64,
    pub(crate) steal_attempts: AtomicU64,
    pub(crate) steal_successes: AtomicU64,
    pub(crate) parks: AtomicU64,
    pub(crate) epoll_waits: AtomicU64,
    pub(crate) timer_fires: AtomicU64,
    pub(crate) bottom_halves: AtomicU64,
    pub(crate) poll_hits: AtomicU64,
    pub(crate) panics_contained: AtomicU64,
    pub(crate) coroutines_leaked: AtomicU64,
}

/// Owner-only increment.
#[inline]
pub(crate) fn bump(c: &AtomicU64, by: u64) {
    c.store(c.load(Relaxed).wrapping_add(by), Relaxed);
}

impl Counters {
    /// A relaxed snapshot.
    pub(crate) fn snapshot(&self) -> ContextMetrics {
        ContextMetrics {
            coroutines_started: self.coroutines_started.load(Relaxed),
            switches: self.switches.load(Relaxed),
            local_wakes: self.local_wakes.load(Relaxed),
            remote_wakes: self.remote_wakes.load(Relaxed),
            handoffs_received: self.handoffs_received.load(Relaxed),
            steal_attempts: self.steal_attempts.load(Relaxed),
            steal_successes: self.steal_successes.load(Relaxed),
            parks: self.parks.load(Relaxed),
            epoll_waits: self.epoll_waits.load(Relaxed),
            timer_fires: self.timer_fires.load(Relaxed),
            bottom_halves: self.bottom_halves.load(Relaxed),
            poll_hits: self.poll_hits.load(Relaxed),
            panics_contained: self.panics_contained.load(Relaxed),
            coroutines_leaked: self.coroutines_leaked.load(Relaxed),
        }
    }
}
