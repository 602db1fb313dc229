//! W7: many sleepers, each sleeping [`SLEEPS`] × [`SLEEP`], on coprimitives' `co_sleep`
//! ([`Sleepers::co_sleeper`]) or on `tokio::time::sleep` ([`Sleepers::tokio_sleeper`],
//! feature `tokio`), every sleep's oversleep (time asleep beyond [`SLEEP`]) kept.
//!
//! The oversleeps go into a preallocated slot per sleep rather than a shared histogram, so
//! that recording adds no lock and no contention to the workload; the caller reads the
//! slots once every sleeper has finished.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coprimitives::co_sleep;

/// Sleeps per sleeper.
pub const SLEEPS: u32 = 10;

/// Each sleep.
pub const SLEEP: Duration = Duration::from_millis(1);

/// The oversleep slots of a sample's sleepers, and a count of the sleeps that ended early.
#[derive(Debug)]
pub struct Sleepers {
    oversleeps: Box<[AtomicU64]>,
    early: AtomicU64,
}

impl Sleepers {
    /// Slots for `sleepers` sleepers.
    pub fn new(sleepers: usize) -> Sleepers {
        Sleepers {
            oversleeps: (0..sleepers * SLEEPS as usize)
                .map(|_| AtomicU64::new(0))
                .collect(),
            early: AtomicU64::new(0),
        }
    }

    /// How many sleepers there are slots for.
    pub fn sleepers(&self) -> usize {
        self.oversleeps.len() / SLEEPS as usize
    }

    /// Sleeper `i`'s body, in a coroutine: [`SLEEPS`] × `co_sleep(SLEEP)`.
    ///
    /// # Panics
    /// If `i` is not below [`sleepers`](Sleepers::sleepers).
    pub fn co_sleeper(&self, i: usize) {
        for slot in self.slots(i) {
            let t = Instant::now();
            co_sleep(SLEEP);
            self.record(slot, t);
        }
    }

    /// Sleeper `i`'s body as a tokio task: [`SLEEPS`] × `tokio::time::sleep(SLEEP)`.
    ///
    /// # Panics
    /// If `i` is not below [`sleepers`](Sleepers::sleepers).
    #[cfg(feature = "tokio")]
    pub async fn tokio_sleeper(&self, i: usize) {
        for slot in self.slots(i) {
            let t = Instant::now();
            tokio::time::sleep(SLEEP).await;
            self.record(slot, t);
        }
    }

    /// Every sleep's oversleep in ns, sleeper by sleeper. The caller must have seen every
    /// sleeper finish (a join, or a latch with Release/Acquire), which publishes the slots.
    pub fn oversleeps(&self) -> impl Iterator<Item = u64> + '_ {
        // Relaxed: published by the caller's join or latch (see above).
        self.oversleeps
            .iter()
            .map(|slot| slot.load(Ordering::Relaxed))
    }

    /// How many sleeps ended before their [`SLEEP`], published as the oversleeps are.
    pub fn early(&self) -> u64 {
        self.early.load(Ordering::Relaxed)
    }

    /// The slots of sleeper `i`.
    fn slots(&self, i: usize) -> &[AtomicU64] {
        let per = SLEEPS as usize;
        &self.oversleeps[i * per..(i + 1) * per]
    }

    /// Records one sleep that began at `t` into `slot`.
    #[inline]
    fn record(&self, slot: &AtomicU64, t: Instant) {
        let slept = t.elapsed();
        if slept < SLEEP {
            self.early.fetch_add(1, Ordering::Relaxed);
        }
        // Relaxed, here and above: published by the caller's join or latch.
        let over = u64::try_from(slept.saturating_sub(SLEEP).as_nanos()).unwrap_or(u64::MAX);
        slot.store(over, Ordering::Relaxed);
    }
}
