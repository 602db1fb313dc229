//! The time tier's table: every multi-threaded workload `run` times, in order, in groups
//! whose samples interleave.
//!
//! Every coscheduler workload runs on a two-worker runtime built with the defaults a user
//! gets (`Runtime::builder().threads(2)`; W3 pins its workers as docs/BENCHMARKS.md prescribes),
//! and its tokio twin on `new_multi_thread().worker_threads(2)`. A row builds its runtime in
//! the untimed warm-up sample and keeps it for its timed samples (see
//! `support::ROW_RUNTIMES`); [`finish_group`] shuts the group's runtimes down. The
//! benchmark thread blocks on a latch or a channel while the workers run, rather than
//! spinning against them for the two cores.

mod echo;
mod mutex;
mod pingpong;
mod reference;
mod spawn;
mod support;
mod timers;

pub use self::support::{finish_group, override_pinning};

use self::mutex::Form;
use crate::probe::Sizes;
use crate::schema::Better;
use crate::timed::TimeBench;

/// W4 increments per sample: divisible by 2 workers × 32 coroutines.
const W4_OPS: Sizes = Sizes {
    quick: 393_216,
    full: 4_194_304,
};

/// W4 timed samples.
const W4_SAMPLES: Sizes = Sizes { quick: 5, full: 11 };

/// W4's set-time form: milliseconds per sample (docs/BENCHMARKS.md's 2 s in a full run).
const W4_MILLIS: Sizes = Sizes {
    quick: 50,
    full: 2_000,
};

/// Samples of W4's set-time form, whose length is fixed by the clock, not by the work.
const W4_STOP_SAMPLES: Sizes = Sizes { quick: 3, full: 5 };

/// W5 coroutines (or closures, or tasks) per sample.
const W5_OPS: Sizes = Sizes {
    quick: 100_000,
    full: 1_000_000,
};

/// W7 timed samples: a sample is at least 10 ms of sleeping whatever its size.
const W7_SAMPLES: Sizes = Sizes { quick: 5, full: 11 };

/// W8 requests per sample at pipeline depth 1.
const W8_OPS: Sizes = Sizes {
    quick: 10_000,
    full: 400_000,
};

/// W8 requests per sample at pipeline depth 16, where each costs the server less.
const W8_DEPTH16_OPS: Sizes = Sizes {
    quick: 32_000,
    full: 800_000,
};

/// W8 timed samples.
const W8_SAMPLES: Sizes = Sizes { quick: 5, full: 11 };

/// Every time-tier benchmark. Consecutive rows of one `group` are measured together with
/// their samples interleaved, a coscheduler row first and its tokio twin second; a
/// reference is in its row's group or an earlier one, so that every ratio's denominator is
/// measured in the same run, under the same load, as close in time as the table allows.
///
/// Not here yet: W6 (RSS per suspended coroutine), a memory figure that would fit as a row
/// with unit `bytes/coroutine` and a reference on bare corosensei stacks; and `w1_switch_ns`
/// / `w2_lifecycle_ns`, time twins of the deterministic rows.
pub const TIME_BENCHES: &[TimeBench] = &[
    // W3: no tokio row (a tokio task has no home worker to cross to).
    TimeBench {
        name: "raw_atomic_pingpong",
        what: "two pinned threads bounce an AtomicU64; one round trip is both hand-offs \
               (W3 floor)",
        unit: "ns/round-trip",
        latency_unit: Some("ns"),
        better: Better::Lower,
        group: "w3",
        reference: None,
        others: &[],
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
        group: "w3",
        reference: Some("raw_atomic_pingpong"),
        others: &[],
        ops: Sizes {
            quick: 20_000,
            full: 200_000,
        },
        samples: Sizes { quick: 5, full: 15 },
        sample: pingpong::cross_context_pingpong,
    },
    TimeBench {
        name: "flag_cross_context_pingpong",
        what: "W3 carrying the waker row's flags: each Coroutine::wake also raises a flag \
               the woken side lowers, so that it moves the same cache lines as the waker \
               row; every hand-off checked to cross threads (issue 15)",
        unit: "ns/round-trip",
        latency_unit: Some("ns"),
        better: Better::Lower,
        group: "w3",
        reference: Some("w3_cross_context_pingpong"),
        others: &[],
        ops: Sizes {
            quick: 20_000,
            full: 200_000,
        },
        samples: Sizes { quick: 5, full: 15 },
        sample: pingpong::flag_cross_context_pingpong,
    },
    TimeBench {
        name: "waker_cross_context_pingpong",
        what: "W3 with futures: A on worker 0 and B on worker 1 each wait() on a flag the \
               other raises and wakes through the waiter's Waker (wake_by_ref); every \
               hand-off checked to cross threads (issue 15)",
        unit: "ns/round-trip",
        latency_unit: Some("ns"),
        better: Better::Lower,
        group: "w3",
        reference: Some("w3_cross_context_pingpong"),
        others: &["flag_cross_context_pingpong", "raw_atomic_pingpong"],
        ops: Sizes {
            quick: 20_000,
            full: 200_000,
        },
        samples: Sizes { quick: 5, full: 15 },
        sample: pingpong::waker_cross_context_pingpong,
    },
    // W4, fixed total.
    TimeBench {
        name: "std_mutex_2threads",
        what: "two pinned threads each loop { lock a std Mutex; counter += 1; unlock } \
               (W4 floor)",
        unit: "ops/s",
        latency_unit: None,
        better: Better::Higher,
        group: "w4_floor",
        reference: None,
        others: &[],
        ops: Sizes {
            quick: 400_000,
            full: 4_000_000,
        },
        samples: Sizes { quick: 5, full: 11 },
        sample: reference::std_mutex_2threads,
    },
    TimeBench {
        name: "w4_comutex_c1",
        what: "2 workers x 1 coroutine loop { lock a CoMutex; counter += 1; unlock } for a \
               fixed total, counter checked exact (W4, C = 1)",
        unit: "ops/s",
        latency_unit: None,
        better: Better::Higher,
        group: "w4_c1",
        reference: Some("tokio_mutex_c1"),
        others: &["std_mutex_2threads"],
        ops: W4_OPS,
        samples: W4_SAMPLES,
        sample: |ops, _| mutex::comutex("w4_comutex_c1", 1, Form::Total(ops)),
    },
    TimeBench {
        name: "tokio_mutex_c1",
        what: "2 tokio tasks (2 workers) loop { tokio::sync::Mutex lock().await; counter += \
               1 } for a fixed total (W4 on tokio, C = 1)",
        unit: "ops/s",
        latency_unit: None,
        better: Better::Higher,
        group: "w4_c1",
        reference: None,
        others: &["std_mutex_2threads"],
        ops: W4_OPS,
        samples: W4_SAMPLES,
        sample: |ops, _| mutex::tokio_mutex("tokio_mutex_c1", 1, Form::Total(ops)),
    },
    TimeBench {
        name: "w4_comutex_c4",
        what: "as w4_comutex_c1 with 4 coroutines per worker (W4, C = 4)",
        unit: "ops/s",
        latency_unit: None,
        better: Better::Higher,
        group: "w4_c4",
        reference: Some("tokio_mutex_c4"),
        others: &["std_mutex_2threads"],
        ops: W4_OPS,
        samples: W4_SAMPLES,
        sample: |ops, _| mutex::comutex("w4_comutex_c4", 4, Form::Total(ops)),
    },
    TimeBench {
        name: "tokio_mutex_c4",
        what: "as tokio_mutex_c1 with 8 tasks (W4 on tokio, C = 4)",
        unit: "ops/s",
        latency_unit: None,
        better: Better::Higher,
        group: "w4_c4",
        reference: None,
        others: &["std_mutex_2threads"],
        ops: W4_OPS,
        samples: W4_SAMPLES,
        sample: |ops, _| mutex::tokio_mutex("tokio_mutex_c4", 4, Form::Total(ops)),
    },
    TimeBench {
        name: "w4_comutex_c32",
        what: "as w4_comutex_c1 with 32 coroutines per worker (W4, C = 32)",
        unit: "ops/s",
        latency_unit: None,
        better: Better::Higher,
        group: "w4_c32",
        reference: Some("tokio_mutex_c32"),
        others: &["std_mutex_2threads"],
        ops: W4_OPS,
        samples: W4_SAMPLES,
        sample: |ops, _| mutex::comutex("w4_comutex_c32", 32, Form::Total(ops)),
    },
    TimeBench {
        name: "tokio_mutex_c32",
        what: "as tokio_mutex_c1 with 64 tasks (W4 on tokio, C = 32)",
        unit: "ops/s",
        latency_unit: None,
        better: Better::Higher,
        group: "w4_c32",
        reference: None,
        others: &["std_mutex_2threads"],
        ops: W4_OPS,
        samples: W4_SAMPLES,
        sample: |ops, _| mutex::tokio_mutex("tokio_mutex_c32", 32, Form::Total(ops)),
    },
    // W4, set time ended by a stop flag (QEMU's own form).
    TimeBench {
        name: "w4_comutex_c1_stop",
        what: "as w4_comutex_c1 for a set time (2 s; 50 ms quick) ended by a stop flag, \
               counter checked against the increments made (W4, C = 1)",
        unit: "ops/s",
        latency_unit: None,
        better: Better::Higher,
        group: "w4_c1_stop",
        reference: Some("tokio_mutex_c1_stop"),
        others: &["std_mutex_2threads"],
        ops: W4_MILLIS,
        samples: W4_STOP_SAMPLES,
        sample: |ops, _| mutex::comutex("w4_comutex_c1_stop", 1, Form::millis(ops)),
    },
    TimeBench {
        name: "tokio_mutex_c1_stop",
        what: "as tokio_mutex_c1 for a set time ended by a stop flag (W4 on tokio, C = 1)",
        unit: "ops/s",
        latency_unit: None,
        better: Better::Higher,
        group: "w4_c1_stop",
        reference: None,
        others: &["std_mutex_2threads"],
        ops: W4_MILLIS,
        samples: W4_STOP_SAMPLES,
        sample: |ops, _| mutex::tokio_mutex("tokio_mutex_c1_stop", 1, Form::millis(ops)),
    },
    TimeBench {
        name: "w4_comutex_c4_stop",
        what: "as w4_comutex_c1_stop with 4 coroutines per worker (W4, C = 4)",
        unit: "ops/s",
        latency_unit: None,
        better: Better::Higher,
        group: "w4_c4_stop",
        reference: Some("tokio_mutex_c4_stop"),
        others: &["std_mutex_2threads"],
        ops: W4_MILLIS,
        samples: W4_STOP_SAMPLES,
        sample: |ops, _| mutex::comutex("w4_comutex_c4_stop", 4, Form::millis(ops)),
    },
    TimeBench {
        name: "tokio_mutex_c4_stop",
        what: "as tokio_mutex_c1_stop with 8 tasks (W4 on tokio, C = 4)",
        unit: "ops/s",
        latency_unit: None,
        better: Better::Higher,
        group: "w4_c4_stop",
        reference: None,
        others: &["std_mutex_2threads"],
        ops: W4_MILLIS,
        samples: W4_STOP_SAMPLES,
        sample: |ops, _| mutex::tokio_mutex("tokio_mutex_c4_stop", 4, Form::millis(ops)),
    },
    TimeBench {
        name: "w4_comutex_c32_stop",
        what: "as w4_comutex_c1_stop with 32 coroutines per worker (W4, C = 32)",
        unit: "ops/s",
        latency_unit: None,
        better: Better::Higher,
        group: "w4_c32_stop",
        reference: Some("tokio_mutex_c32_stop"),
        others: &["std_mutex_2threads"],
        ops: W4_MILLIS,
        samples: W4_STOP_SAMPLES,
        sample: |ops, _| mutex::comutex("w4_comutex_c32_stop", 32, Form::millis(ops)),
    },
    TimeBench {
        name: "tokio_mutex_c32_stop",
        what: "as tokio_mutex_c1_stop with 64 tasks (W4 on tokio, C = 32)",
        unit: "ops/s",
        latency_unit: None,
        better: Better::Higher,
        group: "w4_c32_stop",
        reference: None,
        others: &["std_mutex_2threads"],
        ops: W4_MILLIS,
        samples: W4_STOP_SAMPLES,
        sample: |ops, _| mutex::tokio_mutex("tokio_mutex_c32_stop", 32, Form::millis(ops)),
    },
    // W5.
    TimeBench {
        name: "std_spawn_2threads",
        what: "one of two pinned threads boxes N closures (each adds 1 to a counter) and \
               deals them to itself and, through an mpsc channel, to the other (W5 floor)",
        unit: "ns/coroutine",
        latency_unit: None,
        better: Better::Lower,
        group: "w5",
        reference: None,
        others: &[],
        ops: W5_OPS,
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
        group: "w5",
        reference: Some("tokio_spawn_storm"),
        others: &["std_spawn_2threads"],
        ops: W5_OPS,
        samples: Sizes { quick: 5, full: 11 },
        sample: spawn::spawn_storm,
    },
    TimeBench {
        name: "tokio_spawn_storm",
        what: "a tokio task spawns N detached tasks (each adds 1 to a counter) on 2 \
               workers; time until all ran (W5 on tokio)",
        unit: "ns/coroutine",
        latency_unit: None,
        better: Better::Lower,
        group: "w5",
        reference: None,
        others: &["std_spawn_2threads"],
        ops: W5_OPS,
        samples: Sizes { quick: 5, full: 11 },
        sample: spawn::tokio_spawn_storm,
    },
    // W7.
    TimeBench {
        name: "std_sleep_threads",
        what: "100 threads x 10 x std::thread::sleep(1 ms): total wall time, oversleep \
               percentiles (W7 floor: the OS's own timer precision)",
        unit: "ms",
        latency_unit: Some("ns"),
        better: Better::Lower,
        group: "w7_floor",
        reference: None,
        others: &[],
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
               oversleep percentiles (W7 precision)",
        unit: "ms",
        latency_unit: Some("ns"),
        better: Better::Lower,
        group: "w7_precision",
        reference: Some("tokio_timer_precision"),
        others: &["std_sleep_threads"],
        ops: Sizes {
            quick: 100,
            full: 100,
        },
        samples: W7_SAMPLES,
        sample: timers::timer_precision,
    },
    TimeBench {
        name: "tokio_timer_precision",
        what: "100 tokio tasks x 10 x tokio::time::sleep(1 ms) on 2 workers (W7 precision \
               on tokio)",
        unit: "ms",
        latency_unit: Some("ns"),
        better: Better::Lower,
        group: "w7_precision",
        reference: None,
        others: &["std_sleep_threads"],
        ops: Sizes {
            quick: 100,
            full: 100,
        },
        samples: W7_SAMPLES,
        sample: timers::tokio_timer_precision,
    },
    TimeBench {
        name: "w7_timers",
        what: "10,000 coroutines x 10 x co_sleep(1 ms) on 2 workers: total wall time \
               (ideal 10 ms), oversleep percentiles (W7)",
        unit: "ms",
        latency_unit: Some("ns"),
        better: Better::Lower,
        group: "w7_timers",
        reference: Some("tokio_timers"),
        others: &["std_sleep_threads"],
        ops: Sizes {
            quick: 10_000,
            full: 10_000,
        },
        samples: W7_SAMPLES,
        sample: timers::timers,
    },
    TimeBench {
        name: "tokio_timers",
        what: "10,000 tokio tasks x 10 x tokio::time::sleep(1 ms) on 2 workers (W7 on \
               tokio)",
        unit: "ms",
        latency_unit: Some("ns"),
        better: Better::Lower,
        group: "w7_timers",
        reference: None,
        others: &["std_sleep_threads"],
        ops: Sizes {
            quick: 10_000,
            full: 10_000,
        },
        samples: W7_SAMPLES,
        sample: timers::tokio_timers,
    },
    // W8.
    TimeBench {
        name: "std_echo_threads",
        what: "loopback echo, std blocking server with a thread per connection; 32 \
               connections x 64-byte requests, 1 in flight each, from 2 mio client \
               threads (W8 floor)",
        unit: "requests/s",
        latency_unit: Some("ns"),
        better: Better::Higher,
        group: "w8",
        reference: None,
        others: &[],
        ops: W8_OPS,
        samples: W8_SAMPLES,
        sample: |ops, rec| echo::std_echo_threads("std_echo_threads", ops, 1, rec),
    },
    TimeBench {
        name: "w8_echo",
        what: "loopback echo, a coroutine per connection on 2 workers (coprimitives::io); \
               the same client and load (W8, depth 1)",
        unit: "requests/s",
        latency_unit: Some("ns"),
        better: Better::Higher,
        group: "w8",
        reference: Some("tokio_echo"),
        others: &["std_echo_threads"],
        ops: W8_OPS,
        samples: W8_SAMPLES,
        sample: |ops, rec| echo::coscheduler_echo("w8_echo", ops, 1, rec),
    },
    TimeBench {
        name: "tokio_echo",
        what: "loopback echo, a tokio task per connection on 2 workers (tokio::net); the \
               same client and load (W8 on tokio, depth 1)",
        unit: "requests/s",
        latency_unit: Some("ns"),
        better: Better::Higher,
        group: "w8",
        reference: None,
        others: &["std_echo_threads"],
        ops: W8_OPS,
        samples: W8_SAMPLES,
        sample: |ops, rec| echo::tokio_echo("tokio_echo", ops, 1, rec),
    },
    TimeBench {
        name: "w8_echo_depth16",
        what: "as w8_echo with 16 requests in flight per connection (W8, pipelined)",
        unit: "requests/s",
        latency_unit: Some("ns"),
        better: Better::Higher,
        group: "w8_depth16",
        reference: Some("tokio_echo_depth16"),
        others: &[],
        ops: W8_DEPTH16_OPS,
        samples: W8_SAMPLES,
        sample: |ops, rec| echo::coscheduler_echo("w8_echo_depth16", ops, 16, rec),
    },
    TimeBench {
        name: "tokio_echo_depth16",
        what: "as tokio_echo with 16 requests in flight per connection (W8 on tokio, \
               pipelined)",
        unit: "requests/s",
        latency_unit: Some("ns"),
        better: Better::Higher,
        group: "w8_depth16",
        reference: None,
        others: &[],
        ops: W8_DEPTH16_OPS,
        samples: W8_SAMPLES,
        sample: |ops, rec| echo::tokio_echo("tokio_echo_depth16", ops, 16, rec),
    },
];
