//! The deterministic tier's operations: single-threaded code that `cobench probe NAME
//! --iters N` runs N times, for callgrind to count.
//!
//! A probe may do any setup it likes before its loop and any teardown after it: the
//! [`callgrind`](crate::callgrind) harness differences two runs, so only the cost that grows
//! with N reaches the figure. What a probe must not do is vary its per-iteration work with
//! anything but N (no clocks, no randomness, no threads), or the count stops being
//! repeatable.

mod corosensei;
mod coroutine;
mod event_loop;
mod future;
mod locks;

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

/// Every probe, in the order `run` measures them: each coscheduler row next to the raw
/// corosensei row it is judged against (the "raw floor" of docs/BENCHMARKS.md), then the paths through
/// the event loop and coprimitives, then `wait` of a ready future beside a plain call.
///
/// Unit names say what one iteration is. `nesting` counts coroutines, not chains, so its
/// N must be a multiple of the chain depth (1000).
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
        name: "switch",
        what: "enter a Coroutine that suspends straight back (W1, QEMU /perf/yield)",
        unit: "instructions/round-trip",
        iters: Sizes {
            quick: 10_000,
            full: 100_000,
        },
        run: coroutine::switch,
    },
    Probe {
        name: "switch_via_scheduler",
        what: "yield_now in a spawned coroutine, re-entered by AioContext::poll(false) \
               through the ready queue (W1 through the scheduler)",
        unit: "instructions/round-trip",
        iters: Sizes {
            quick: 10_000,
            full: 100_000,
        },
        run: event_loop::switch_via_scheduler,
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
    Probe {
        name: "lifecycle_pooled",
        what: "Coroutine::new(|| {}).enter() with a warm stack pool (W2, QEMU \
               /perf/lifecycle)",
        unit: "instructions/coroutine",
        iters: Sizes {
            quick: 10_000,
            full: 100_000,
        },
        run: coroutine::lifecycle_pooled,
    },
    Probe {
        name: "nesting",
        what: "chains of depth 1000, each coroutine creating and entering the next; per \
               coroutine (QEMU /perf/nesting)",
        unit: "instructions/coroutine",
        iters: Sizes {
            quick: 10 * coroutine::NESTING_DEPTH,
            full: 100 * coroutine::NESTING_DEPTH,
        },
        run: coroutine::nesting,
    },
    Probe {
        name: "cost",
        what: "create + enter + suspend + enter + finish (QEMU /perf/cost)",
        unit: "instructions/coroutine",
        iters: Sizes {
            quick: 10_000,
            full: 100_000,
        },
        run: coroutine::cost,
    },
    Probe {
        name: "comutex_uncontended",
        what: "lock + unlock of a free CoMutex in one coroutine",
        unit: "instructions/lock-unlock",
        iters: Sizes {
            quick: 10_000,
            full: 100_000,
        },
        run: locks::comutex_uncontended,
    },
    Probe {
        name: "coqueue_wait_next",
        what: "a waker coroutine locks, CoQueue::next, unlocks, suspends; the waiter \
               re-locks and waits again (one wait/next pair under a CoMutex)",
        unit: "instructions/wait-next",
        iters: Sizes {
            quick: 10_000,
            full: 100_000,
        },
        run: locks::coqueue_wait_next,
    },
    Probe {
        name: "co_sleep_zero",
        what: "co_sleep(Duration::ZERO) in a coroutine driven by AioContext::poll(false): \
               arms a due timer, suspends, the next poll fires it and re-enters",
        unit: "instructions/round-trip",
        iters: Sizes {
            quick: 10_000,
            full: 100_000,
        },
        run: event_loop::co_sleep_zero,
    },
    Probe {
        name: "co_sleep_zero_10k_armed",
        what: "co_sleep_zero while 10,000 other timers (W7's count) are armed on the \
               context, an hour away: what a large set costs a near timer's arming and firing",
        unit: "instructions/round-trip",
        iters: Sizes {
            quick: 10_000,
            full: 100_000,
        },
        run: event_loop::co_sleep_zero_10k_armed,
    },
    Probe {
        name: "plain_call_in_coroutine",
        what: "an #[inline(never)] call returning its argument, in a loop inside one \
               coroutine (the reference of wait_ready)",
        unit: "instructions/call",
        iters: Sizes {
            quick: 10_000,
            full: 100_000,
        },
        run: future::plain_call_in_coroutine,
    },
    Probe {
        name: "wait_ready",
        what: "coscheduler::wait(std::future::ready(i)) in the same loop: one poll of a \
               ready future, no suspension (issue 15)",
        unit: "instructions/call",
        iters: Sizes {
            quick: 10_000,
            full: 100_000,
        },
        run: future::wait_ready,
    },
];

/// The probe called `name`.
pub fn find(name: &str) -> Result<&'static Probe, Error> {
    PROBES
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| Error::UnknownProbe(name.to_owned()))
}
