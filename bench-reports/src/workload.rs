//! The time tier's table: every multi-threaded workload `run` times, in order.

mod reference;

use crate::probe::Sizes;
use crate::schema::Better;
use crate::timed::TimeBench;

/// Every time-tier benchmark, references first so that each ratio's denominator is measured
/// just before the rows that divide by it.
///
/// EXTENSION POINT: the coscheduler workloads go here, bodies in their own modules under
/// `src/workload/`, each naming its reference:
/// - `w3_cross_context_pingpong` (ns/round-trip, reference `raw_atomic_pingpong`; record each
///   round trip with [`crate::timed::Latencies`] as the reference does, so the clock read
///   each includes cancels in the ratio; fail the sample unless cross_fraction is 1.0);
/// - `w4_comutex_c1`, `w4_comutex_c4`, `w4_comutex_c32` (ops/s, higher is better, reference
///   `std_mutex_2threads`; fail the sample unless the counter is exact);
/// - `w5_spawn_storm` (s or ns/coroutine, reference to be chosen, e.g. a rayon-style
///   closure pool if one is added here);
/// - `w7_timers_10k` (total ms, with oversleep percentiles in µs) and `w7_timer_precision`;
/// - `w8_echo` (requests/s, with latency percentiles);
/// - `w1_switch_ns` and `w2_lifecycle_ns`, the time twins of the deterministic rows, with
///   references on bare corosensei if wanted.
///
/// W6 (RSS per suspended coroutine) is a memory figure, neither instructions nor time; it
/// fits here as a row with unit `bytes/coroutine` and a reference on bare corosensei stacks.
pub const TIME_BENCHES: &[TimeBench] = &[
    TimeBench {
        name: "raw_atomic_pingpong",
        what: "two pinned threads bounce an AtomicU64; one round trip is both hand-offs \
               (W3 floor)",
        unit: "ns/round-trip",
        latency_unit: Some("ns"),
        better: Better::Lower,
        reference: None,
        ops: Sizes {
            quick: 20_000,
            full: 200_000,
        },
        samples: Sizes { quick: 5, full: 15 },
        sample: reference::atomic_pingpong,
    },
    TimeBench {
        name: "std_mutex_2threads",
        what: "two pinned threads each loop { lock a std Mutex; counter += 1; unlock } \
               (W4 floor)",
        unit: "ops/s",
        latency_unit: None,
        better: Better::Higher,
        reference: None,
        ops: Sizes {
            quick: 400_000,
            full: 4_000_000,
        },
        samples: Sizes { quick: 5, full: 11 },
        sample: reference::std_mutex_2threads,
    },
];
