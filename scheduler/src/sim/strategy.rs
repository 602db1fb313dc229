//! The strategies a simulation chooses events with, and their choosers.

use std::collections::HashMap;

use super::rng::SplitMix;
use super::schedule::StepKind;

/// How a [`Simulation`](super::Simulation) chooses among enabled events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Uniformly at random.
    Random,
    /// Probabilistic concurrency testing with `depth − 1` priority changes
    /// over an expected `steps` steps, for contexts and for the ready
    /// coroutines within each (see the [`sim`](super) module docs).
    Pct {
        /// The bug depth to aim for (at least 1).
        depth: usize,
        /// The expected length of a run, over which the priority change
        /// points are spread.
        steps: usize,
    },
}

/// Picks the next event, and the ready coroutine a context runs,
/// according to a [`Strategy`].
pub(crate) enum Chooser {
    Random,
    /// PCT: per-context priorities (higher runs first), per-coroutine ones
    /// for the order within a context's ready list, and the steps at which
    /// the running context's and coroutine's priorities drop.
    Pct {
        priority: Vec<u64>,
        change_points: Vec<usize>,
        /// By process-wide coroutine id, drawn when the coroutine is first
        /// among others ready: at least 2^63, above every drop.
        coroutine_priority: HashMap<u64, u64>,
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
                // Distinct steps: two drops at one step would explore one
                // depth less. Fewer steps than drops leaves every step one.
                let steps = steps.max(1);
                let wanted = (depth - 1).min(steps);
                let mut change_points: Vec<usize> = Vec::with_capacity(wanted);
                while change_points.len() < wanted {
                    let c = rng.below(steps as u64) as usize;
                    if !change_points.contains(&c) {
                        change_points.push(c);
                    }
                }
                Chooser::Pct {
                    priority,
                    change_points,
                    coroutine_priority: HashMap::new(),
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
                ..
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

    /// Chooses which of a context's ready coroutines runs at scheduling
    /// step `step` (the one [`pick`](Self::pick) chose a run of that
    /// context at): an index into `ready`, their process-wide ids in ready
    /// order (at least two).
    pub(crate) fn pick_ready(&mut self, ready: &[u64], step: usize, rng: &mut SplitMix) -> usize {
        match self {
            Chooser::Random => rng.below(ready.len() as u64) as usize,
            Chooser::Pct {
                change_points,
                coroutine_priority,
                ..
            } => {
                // The highest-priority coroutine, priorities drawn in ready
                // order for the ones not seen among others before.
                let mut best = 0;
                let mut best_priority = 0;
                for (n, id) in ready.iter().enumerate() {
                    let p = *coroutine_priority
                        .entry(*id)
                        .or_insert_with(|| rng.next_u64() | 1 << 63);
                    if p > best_priority {
                        (best, best_priority) = (n, p);
                    }
                }
                if let Some(k) = change_points.iter().position(|&c| c == step) {
                    // As for contexts: below every drawn priority.
                    coroutine_priority.insert(ready[best], (change_points.len() - k) as u64);
                }
                best
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pct(depth: usize, steps: usize, contexts: usize, seed: u64) -> (Vec<u64>, Vec<usize>) {
        let mut rng = SplitMix::new(seed);
        match Chooser::new(Strategy::Pct { depth, steps }, contexts, &mut rng) {
            Chooser::Pct {
                priority,
                change_points,
                ..
            } => (priority, change_points),
            Chooser::Random => unreachable!("a PCT strategy makes a PCT chooser"),
        }
    }

    /// Initial priorities are a permutation of `depth..depth + contexts`,
    /// above every drop (`1..depth`); `depth − 1` change points fall
    /// within the expected run length.
    #[test]
    fn pct_priorities_and_change_points() {
        for seed in 0..50 {
            let (mut priority, change_points) = pct(3, 40, 4, seed);
            assert_eq!(change_points.len(), 2);
            assert!(change_points.iter().all(|&c| c < 40), "{change_points:?}");
            priority.sort_unstable();
            assert_eq!(priority, vec![3, 4, 5, 6]);
        }
        // Distinct change points, even when there are barely enough steps.
        for seed in 0..50 {
            let (_, mut points) = pct(5, 4, 2, seed);
            points.sort_unstable();
            assert_eq!(points, vec![0, 1, 2, 3], "seed {seed}");
        }
        let (_, capped) = pct(6, 3, 2, 0);
        assert_eq!(capped.len(), 3, "no more drops than steps");
        let (_, none) = pct(1, 40, 2, 0);
        assert!(none.is_empty(), "depth 1: no priority change");
        let (_, zero) = pct(0, 40, 2, 0);
        assert!(zero.is_empty(), "depth 0 counts as 1");
        let orders: std::collections::HashSet<_> = (0..50).map(|s| pct(2, 10, 3, s).0).collect();
        assert!(orders.len() > 1, "seeds shuffle the priorities");
    }

    /// The highest-priority context with an event always runs, its first
    /// event (the loop turn's order) first; at a change point it drops
    /// below every other context, later drops lower still.
    #[test]
    fn pct_runs_the_highest_priority_context_until_a_change_point() {
        let mut rng = SplitMix::new(0);
        let mut chooser = Chooser::Pct {
            priority: vec![3, 5, 4],
            change_points: vec![2, 4],
            coroutine_priority: HashMap::new(),
        };
        let all = [
            (0, StepKind::Run),
            (1, StepKind::Deliver),
            (1, StepKind::Run),
            (2, StepKind::Timers),
        ];
        assert_eq!(chooser.pick(&all, 0, &mut rng), (1, StepKind::Deliver));
        assert_eq!(chooser.pick(&all, 1, &mut rng), (1, StepKind::Deliver));
        // Without an event of its own, the next context runs.
        assert_eq!(chooser.pick(&all[..1], 1, &mut rng), (0, StepKind::Run));
        // Step 2 is a change point: context 1 runs once more, then drops
        // to 2 (the first of two drops), below contexts 2 and 0.
        assert_eq!(chooser.pick(&all, 2, &mut rng), (1, StepKind::Deliver));
        assert_eq!(chooser.pick(&all, 3, &mut rng), (2, StepKind::Timers));
        // Step 4, the last change point: context 2 drops to 1.
        assert_eq!(chooser.pick(&all, 4, &mut rng), (2, StepKind::Timers));
        assert_eq!(chooser.pick(&all, 5, &mut rng), (0, StepKind::Run));
        let Chooser::Pct { priority, .. } = &chooser else {
            unreachable!()
        };
        assert_eq!(priority, &vec![3, 2, 1]);
        assert_eq!(chooser.pick(&all[1..], 6, &mut rng), (1, StepKind::Deliver));
    }

    /// Random picks every enabled event, the same sequence for a seed.
    #[test]
    fn random_picks_among_all_events_reproducibly() {
        let events = [
            (0, StepKind::Run),
            (1, StepKind::Run),
            (1, StepKind::BottomHalf),
        ];
        let picks = |seed| {
            let mut rng = SplitMix::new(seed);
            let mut c = Chooser::new(Strategy::Random, 2, &mut rng);
            (0..300)
                .map(|step| c.pick(&events, step, &mut rng))
                .collect::<Vec<_>>()
        };
        let a = picks(9);
        assert_eq!(a, picks(9));
        for e in &events {
            assert!(a.contains(e), "{e:?} never picked");
        }
    }

    /// Random picks every ready coroutine, the same sequence for a seed.
    #[test]
    fn random_picks_among_ready_coroutines_reproducibly() {
        let ready = [10, 11, 12];
        let picks = |seed| {
            let mut rng = SplitMix::new(seed);
            let mut c = Chooser::Random;
            (0..300)
                .map(|step| c.pick_ready(&ready, step, &mut rng))
                .collect::<Vec<_>>()
        };
        let a = picks(4);
        assert_eq!(a, picks(4));
        for n in 0..ready.len() {
            assert!(a.contains(&n), "ready coroutine {n} never picked");
        }
    }

    /// PCT runs the highest-priority ready coroutine, drawing a priority
    /// for one it has not ranked yet, until a change point drops it below
    /// the others.
    #[test]
    fn pct_runs_the_highest_priority_ready_coroutine() {
        let high = 1u64 << 63;
        let mut rng = SplitMix::new(0);
        let mut chooser = Chooser::Pct {
            priority: vec![3],
            change_points: vec![2],
            coroutine_priority: HashMap::from([(10, high | 5), (11, high | 9), (12, high | 7)]),
        };
        let ready = [10, 11, 12];
        assert_eq!(chooser.pick_ready(&ready, 0, &mut rng), 1);
        assert_eq!(chooser.pick_ready(&ready, 1, &mut rng), 1);
        // Step 2 is the change point: coroutine 11 runs once more, then
        // drops below the others.
        assert_eq!(chooser.pick_ready(&ready, 2, &mut rng), 1);
        assert_eq!(chooser.pick_ready(&ready, 3, &mut rng), 2);
        assert_eq!(chooser.pick_ready(&[11, 10], 4, &mut rng), 1);
        // A coroutine not ranked yet gets a drawn priority, above drops.
        chooser.pick_ready(&[11, 13], 5, &mut rng);
        let Chooser::Pct {
            coroutine_priority, ..
        } = &chooser
        else {
            unreachable!()
        };
        assert_eq!(coroutine_priority[&11], 1);
        assert!(coroutine_priority[&13] >= high);

        // Seeds rank two coroutines both ways.
        let firsts: std::collections::HashSet<usize> = (0..50)
            .map(|seed| {
                let mut rng = SplitMix::new(seed);
                let mut c = Chooser::new(
                    Strategy::Pct {
                        depth: 1,
                        steps: 10,
                    },
                    1,
                    &mut rng,
                );
                c.pick_ready(&[20, 21], 0, &mut rng)
            })
            .collect();
        assert_eq!(firsts.len(), 2, "both orders: {firsts:?}");
    }
}
