//! The time tier's table: every multi-threaded workload `run` times, in order.
//!
//! Every coscheduler workload runs on a two-worker runtime that its row builds in the
//! untimed warm-up sample and keeps for its timed samples (see `support::ROW_RUNTIME`);
//! [`finish_row`] shuts it down. The benchmark thread blocks on a latch or a channel while
//! the workers run, rather than spinning against them for the two cores.

mod echo;
mod mutex;
mod pingpong;
mod reference;
mod spawn;
mod support;
mod timers;

pub use self::support::finish_row;

use crate::probe::Sizes;
use crate::schema::Better;
use crate::timed::TimeBench;

/// W4 increments per sample: divisible by 2 workers × 32 coroutines.
const W4_OPS: Sizes = Sizes {
    quick: 786_432,
    full: 4_194_304,
};

/// W4 timed samples.
const W4_SAMPLES: Sizes = Sizes { quick: 5, full: 11 };

/// W7 timed samples: a sample is at least 10 ms of sleeping whatever its size.
const W7_SAMPLES: Sizes = Sizes { quick: 5, full: 11 };

/// Every time-tier benchmark, each reference just before the rows that divide by it, so
/// that the ratio's denominator is measured in the same run and as close in time as the
/// table allows.
///
/// Not here yet: W6 (RSS per suspended coroutine), a memory figure that would fit as a row
/// with unit `bytes/coroutine` and a reference on bare corosensei stacks; and `w1_switch_ns`
/// / `w2_lifecycle_ns`, time twins of the deterministic rows.
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
        name: "w3_cross_context_pingpong",
        what: "coroutine A on worker 0 wakes B on worker 1, which wakes A back; every \
               hand-off checked to cross threads (W3)",
        unit: "ns/round-trip",
        latency_unit: Some("ns"),
        better: Better::Lower,
        reference: Some("raw_atomic_pingpong"),
        ops: Sizes {
            quick: 20_000,
            full: 200_000,
        },
        samples: Sizes { quick: 5, full: 15 },
        sample: pingpong::cross_context_pingpong,
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
    TimeBench {
        name: "w4_comutex_c1",
        what: "2 workers x 1 coroutine loop { lock a CoMutex; counter += 1; unlock }, \
               counter checked exact (W4, C = 1)",
        unit: "ops/s",
        latency_unit: None,
        better: Better::Higher,
        reference: Some("std_mutex_2threads"),
        ops: W4_OPS,
        samples: W4_SAMPLES,
        sample: mutex::comutex_c1,
    },
    TimeBench {
        name: "w4_comutex_c4",
        what: "as w4_comutex_c1 with 4 coroutines per worker (W4, C = 4)",
        unit: "ops/s",
        latency_unit: None,
        better: Better::Higher,
        reference: Some("std_mutex_2threads"),
        ops: W4_OPS,
        samples: W4_SAMPLES,
        sample: mutex::comutex_c4,
    },
    TimeBench {
        name: "w4_comutex_c32",
        what: "as w4_comutex_c1 with 32 coroutines per worker (W4, C = 32)",
        unit: "ops/s",
        latency_unit: None,
        better: Better::Higher,
        reference: Some("std_mutex_2threads"),
        ops: W4_OPS,
        samples: W4_SAMPLES,
        sample: mutex::comutex_c32,
    },
    TimeBench {
        name: "std_spawn_2threads",
        what: "one of two pinned threads boxes N closures (each adds 1 to a counter) and \
               deals them to itself and, through an mpsc channel, to the other (W5 floor)",
        unit: "ns/coroutine",
        latency_unit: None,
        better: Better::Lower,
        reference: None,
        ops: Sizes {
            quick: 100_000,
            full: 1_000_000,
        },
        samples: Sizes { quick: 5, full: 11 },
        sample: reference::std_spawn_2threads,
    },
    TimeBench {
        name: "w5_spawn_storm",
        what: "a spawner coroutine spawns N detached coroutines (each adds 1 to a counter) \
               on 2 workers; time until all ran (W5)",
        unit: "ns/coroutine",
        latency_unit: None,
        better: Better::Lower,
        reference: Some("std_spawn_2threads"),
        ops: Sizes {
            quick: 100_000,
            full: 1_000_000,
        },
        samples: Sizes { quick: 5, full: 11 },
        sample: spawn::spawn_storm,
    },
    TimeBench {
        name: "std_sleep_threads",
        what: "100 threads x 10 x std::thread::sleep(1 ms): total wall time, oversleep \
               percentiles (W7 floor: the OS's own timer precision)",
        unit: "ms",
        latency_unit: Some("ns"),
        better: Better::Lower,
        reference: None,
        ops: Sizes {
            quick: 100,
            full: 100,
        },
        samples: W7_SAMPLES,
        sample: reference::std_sleep_threads,
    },
    TimeBench {
        name: "w7_timer_precision",
        what: "100 coroutines x 10 x co_sleep(1 ms) on 2 workers: total wall time, \
               oversleep percentiles (W7, the reference's workload on coroutines)",
        unit: "ms",
        latency_unit: Some("ns"),
        better: Better::Lower,
        reference: Some("std_sleep_threads"),
        ops: Sizes {
            quick: 100,
            full: 100,
        },
        samples: W7_SAMPLES,
        sample: timers::timer_precision,
    },
    TimeBench {
        name: "w7_timers",
        what: "10,000 coroutines x 10 x co_sleep(1 ms) on 2 workers: total wall time \
               (ideal 10 ms), oversleep percentiles (W7)",
        unit: "ms",
        latency_unit: Some("ns"),
        better: Better::Lower,
        reference: Some("std_sleep_threads"),
        ops: Sizes {
            quick: 10_000,
            full: 10_000,
        },
        samples: W7_SAMPLES,
        sample: timers::timers,
    },
    TimeBench {
        name: "std_echo_threads",
        what: "loopback echo, std blocking server with a thread per connection; 32 \
               connections x 64-byte requests from a one-thread mio client (W8 floor)",
        unit: "requests/s",
        latency_unit: Some("ns"),
        better: Better::Higher,
        reference: None,
        ops: Sizes {
            quick: 20_000,
            full: 400_000,
        },
        samples: Sizes { quick: 5, full: 11 },
        sample: echo::std_echo_threads,
    },
    TimeBench {
        name: "w8_echo",
        what: "loopback echo, a coroutine per connection on 2 unpinned workers \
               (coprimitives::io); the same client and load (W8)",
        unit: "requests/s",
        latency_unit: Some("ns"),
        better: Better::Higher,
        reference: Some("std_echo_threads"),
        ops: Sizes {
            quick: 20_000,
            full: 400_000,
        },
        samples: Sizes { quick: 5, full: 11 },
        sample: echo::coscheduler_echo,
    },
];
