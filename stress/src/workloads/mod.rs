//! The registry of workloads, in `--list` order.
//!
//! Each workload is a module with one part (`part::Part`): `start` spawns its coroutines,
//! `finish` joins them and checks that nothing was lost. A registered workload runs its own
//! part; `mixed` runs every part at once on one runtime.

pub mod deadlock;
mod echo;
mod lifecycle;
mod mutex;
mod part;
mod queue;
mod rwlock;
mod sleep;
mod wake;

use crate::outcome::Outcome;
use crate::settings::DEFAULT_WORKLOAD;
use crate::workload::{RunError, Workload, WorkloadEnv};
use part::Start;

/// The workload run when none is named: all the others at once.
pub const DEFAULT: &str = DEFAULT_WORKLOAD;

/// Coroutines a part holds at once, given the per-context count and the contexts.
type Count = fn(usize, usize) -> usize;

/// Every part, in `--list` order: what `mixed` runs together.
const PARTS: [(&str, Start); 7] = [
    (mutex::NAME, mutex::start),
    (rwlock::NAME, rwlock::start),
    (queue::NAME, queue::start),
    (wake::NAME, wake::start),
    (lifecycle::NAME, lifecycle::start),
    (sleep::NAME, sleep::start),
    (echo::NAME, echo::start),
];

/// A workload that runs one part alone.
struct Single {
    name: &'static str,
    description: &'static str,
    start: Start,
    count: Count,
}

impl Workload for Single {
    fn name(&self) -> &'static str {
        self.name
    }

    fn description(&self) -> &'static str {
        self.description
    }

    fn coroutines(&self, per_context: usize, contexts: usize) -> usize {
        (self.count)(per_context, contexts)
    }

    fn run(&self, env: &WorkloadEnv<'_>) -> Result<Outcome, RunError> {
        part::run_parts(env, self.name, &[(self.name, self.start)])
    }
}

/// Every part at once, on one runtime.
struct Mixed;

impl Workload for Mixed {
    fn name(&self) -> &'static str {
        DEFAULT
    }

    fn description(&self) -> &'static str {
        "All of the above at once, on one runtime, so that every path of the scheduler is \
         busy at the same time; each part keeps its own checks and histograms, prefixed with \
         its name. The default."
    }

    fn coroutines(&self, per_context: usize, contexts: usize) -> usize {
        // Every other registered workload is one of the parts.
        WORKLOADS
            .iter()
            .filter(|workload| workload.name() != DEFAULT)
            .map(|workload| workload.coroutines(per_context, contexts))
            .sum()
    }

    fn run(&self, env: &WorkloadEnv<'_>) -> Result<Outcome, RunError> {
        part::run_parts(env, DEFAULT, &PARTS)
    }
}

/// Every workload, in the order `--list` shows them.
static WORKLOADS: [&dyn Workload; 8] = [
    &Single {
        name: mutex::NAME,
        description: mutex::DESCRIPTION,
        start: mutex::start,
        count: mutex::coroutines,
    },
    &Single {
        name: rwlock::NAME,
        description: rwlock::DESCRIPTION,
        start: rwlock::start,
        count: rwlock::coroutines,
    },
    &Single {
        name: queue::NAME,
        description: queue::DESCRIPTION,
        start: queue::start,
        count: queue::coroutines,
    },
    &Single {
        name: wake::NAME,
        description: wake::DESCRIPTION,
        start: wake::start,
        count: wake::coroutines,
    },
    &Single {
        name: lifecycle::NAME,
        description: lifecycle::DESCRIPTION,
        start: lifecycle::start,
        count: lifecycle::coroutines,
    },
    &Single {
        name: sleep::NAME,
        description: sleep::DESCRIPTION,
        start: sleep::start,
        count: sleep::coroutines,
    },
    &Single {
        name: echo::NAME,
        description: echo::DESCRIPTION,
        start: echo::start,
        count: echo::coroutines,
    },
    &Mixed,
];

/// Every workload, in `--list` order.
pub fn all() -> &'static [&'static dyn Workload] {
    &WORKLOADS
}

/// The workload called `name`.
pub fn find(name: &str) -> Option<&'static dyn Workload> {
    WORKLOADS
        .iter()
        .copied()
        .find(|workload| workload.name() == name)
}

/// The names of every workload, in `--list` order.
pub fn names() -> Vec<&'static str> {
    WORKLOADS.iter().map(|workload| workload.name()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eight_workloads_are_registered() {
        let expected = [
            "mutex",
            "rwlock",
            "queue",
            "wake",
            "lifecycle",
            "sleep",
            "echo",
            "mixed",
        ];
        assert_eq!(names(), expected);
        assert!(find(DEFAULT).is_some());
        assert!(
            find("deadlock").is_none(),
            "the deadlock scenario is not a workload"
        );
        let parts: Vec<&str> = PARTS.iter().map(|(name, _)| *name).collect();
        assert_eq!(parts, expected[..7], "mixed runs every other workload");
    }

    #[test]
    fn mixed_holds_the_coroutines_of_every_part() {
        let mixed = find(DEFAULT).unwrap().coroutines(32, 2);
        let parts: usize = names()
            .iter()
            .filter(|name| **name != DEFAULT)
            .map(|name| find(name).unwrap().coroutines(32, 2))
            .sum();
        assert_eq!(mixed, parts);
        assert_eq!(find("mutex").unwrap().coroutines(20_000, 2), 40_000);
        assert!(find("sleep").unwrap().coroutines(1, 1) >= 2);
    }
}
