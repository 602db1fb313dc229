//! The simulation's generator and its event choosers.
//!
//! SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
//! generators", OOPSLA 2014): a 64-bit state, one addition and a mixing
//! function per number. Its output depends only on the seed, so a schedule
//! is a function of the seed in every process; its quality is ample for
//! picking among a handful of events.

use super::Strategy;
use super::schedule::StepKind;

/// A seeded generator.
pub(crate) struct SplitMix(u64);

impl SplitMix {
    pub(crate) fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`), without modulo bias worth speaking of
    /// for the small `n` used here (Lemire's multiply-shift).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Picks the next event according to a [`Strategy`].
pub(crate) enum Chooser {
    Random,
    /// PCT: per-context priorities (higher runs first) and the steps at
    /// which the running context's priority drops.
    Pct {
        priority: Vec<u64>,
        change_points: Vec<usize>,
    },
}

impl Chooser {
    pub(crate) fn new(strategy: Strategy, contexts: usize, rng: &mut SplitMix) -> Chooser {
        match strategy {
            Strategy::Random => Chooser::Random,
            Strategy::Pct { depth, steps } => {
                let depth = depth.max(1);
                // Initial priorities: a random permutation of
                // depth..depth + contexts, above every drop (1..depth).
                let mut priority: Vec<u64> =
                    (0..contexts as u64).map(|p| p + depth as u64).collect();
                for i in (1..priority.len()).rev() {
                    let j = rng.below(i as u64 + 1) as usize;
                    priority.swap(i, j);
                }
                let change_points = (1..depth)
                    .map(|_| rng.below(steps.max(1) as u64) as usize)
                    .collect();
                Chooser::Pct {
                    priority,
                    change_points,
                }
            }
        }
    }

    /// Chooses among `events` (non-empty) at scheduling step `step`.
    pub(crate) fn pick(
        &mut self,
        events: &[(usize, StepKind)],
        step: usize,
        rng: &mut SplitMix,
    ) -> (usize, StepKind) {
        match self {
            Chooser::Random => events[rng.below(events.len() as u64) as usize],
            Chooser::Pct {
                priority,
                change_points,
            } => {
                // The highest-priority context with an event; its events in
                // the order a real loop turn takes them (the list is built
                // in that order per context).
                let best = events
                    .iter()
                    .max_by_key(|(ctx, _)| priority[*ctx])
                    .map(|(ctx, _)| *ctx)
                    .expect("events is not empty");
                let chosen = *events
                    .iter()
                    .find(|(ctx, _)| *ctx == best)
                    .expect("best has an event");
                if let Some(k) = change_points.iter().position(|&c| c == step) {
                    // Drop below every initial priority, later drops lower.
                    priority[best] = (change_points.len() - k) as u64;
                }
                chosen
            }
        }
    }
}
