//! The deterministic tier's operations: single-threaded code that `cobench probe NAME
//! --iters N` runs N times, for callgrind to count.
//!
//! A probe may do any setup it likes before its loop and any teardown after it: the
//! [`callgrind`](crate::callgrind) harness differences two runs, so only the cost that grows
//! with N reaches the figure. What a probe must not do is vary its per-iteration work with
//! anything but N (no clocks, no randomness, no threads), or the count stops being
//! repeatable.

mod corosensei;

use crate::error::Error;

/// Iteration counts for `--quick` and for a full run.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Used by `run --quick`.
    pub quick: u64,
    /// Used by a full `run`.
    pub full: u64,
}

impl Sizes {
    /// The count for the chosen mode.
    pub fn pick(self, quick: bool) -> u64 {
        if quick { self.quick } else { self.full }
    }
}

/// One operation of the deterministic tier.
#[derive(Debug)]
pub struct Probe {
    /// Benchmark name in the results file.
    pub name: &'static str,
    /// One line saying what one iteration does.
    pub what: &'static str,
    /// Unit of the figure: instructions per what one iteration counts as.
    pub unit: &'static str,
    /// The base iteration count N; callgrind runs the probe at N, 2N and 3N.
    pub iters: Sizes,
    /// Runs the operation `iters` times.
    pub run: fn(iters: u64) -> Result<(), Error>,
}

/// Every probe, in the order `run` measures them.
///
/// EXTENSION POINT: the coscheduler rows go here, one entry each, with their bodies in a
/// module of their own under `src/probe/` (like `corosensei.rs`):
/// `switch` (W1), `switch_via_scheduler` (W1, `yield_now` through the ready queue),
/// `lifecycle_pooled` (W2), `nesting` (W2, per coroutine of a depth-1000 chain),
/// `cost` (W2: create + enter + yield + re-enter + finish), `comutex_uncontended`
/// (lock + unlock), `coqueue_wait_next` (one wait/next pair) and `co_sleep_zero` (one
/// `co_sleep(0)` round trip). Their unit should name the operation
/// (`instructions/round-trip`, `instructions/coroutine`, ...), and each should sit next to
/// the raw row it is judged against.
pub const PROBES: &[Probe] = &[
    Probe {
        name: "raw_corosensei_switch",
        what: "resume a corosensei coroutine that suspends straight back (W1 floor)",
        unit: "instructions/round-trip",
        iters: Sizes {
            quick: 10_000,
            full: 100_000,
        },
        run: corosensei::switch,
    },
    Probe {
        name: "raw_corosensei_lifecycle_reused_stack",
        what: "create an empty corosensei coroutine on a reused stack, run it to the end, \
               take the stack back (W2 floor)",
        unit: "instructions/coroutine",
        iters: Sizes {
            quick: 10_000,
            full: 100_000,
        },
        run: corosensei::lifecycle_reused_stack,
    },
];

/// The probe called `name`.
pub fn find(name: &str) -> Result<&'static Probe, Error> {
    PROBES
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| Error::UnknownProbe(name.to_owned()))
}
