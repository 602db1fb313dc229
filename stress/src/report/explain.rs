//! `costress --explain`: what every line and column of the report means, for someone who
//! has not read the source.

/// The text `costress --explain` prints.
pub fn text() -> &'static str {
    EXPLAIN
}

const EXPLAIN: &str = "\
How to read a costress report

Each workload runs on a runtime of its own for --duration, then stops its coroutines, joins
them and checks its counts. The report has one section per workload:

== NAME: ok ==   the verdict: ok when every check passed, FAILED otherwise; \"interrupted
                 after T\" when Ctrl-C or SIGTERM cut the run short (the checks then cover
                 what ran, and costress exits with status 130).

throughput       operations completed, over the time the workload ran. What one operation
                 is depends on the workload: an increment (mutex), a read or write (rwlock),
                 an item produced or consumed (queue), a round trip (wake), a coroutine
                 created or joined (lifecycle), a sleep (sleep), a request (echo). For
                 mixed, each part's line follows.

checks           conservation checks: something counted two ways that must agree, such as
                 the counter against the sum of the increments. \"expected\" is the count
                 that must hold, \"got\" what was found; a failure says by how much.

Histograms (one row each; times are latencies, in ns, µs, ms or s):
  count          how many values were recorded.
  min ... max    the smallest value, the 50th/90th/99th/99.9th percentiles, the largest.
                 Values are kept to 3 significant digits.
  lock wait      from asking for a lock to getting it, for contended acquisitions only
                 (an acquisition that gets the lock at once takes no timestamp, to stay
                 cheap). When a thread sees more than about 50,000 contended acquisitions
                 a second, one in N is timed and counted N times, so the count is an
                 estimate of the contended acquisitions. The locks table gives exact
                 counts beside it.
  lock hold      from getting a contended lock to releasing it.
  consumer wait, producer wait
                 queue: how long a consumer waited for an item, a producer for room.
  wake latency (local / cross-context / timer / I/O)
                 from the moment a coroutine was woken (by another coroutine on the same
                 context, on another context, by its timer, by its socket) to the moment
                 it ran again.
  spawn wake latency, injector wake latency
                 lifecycle: from spawning a coroutine (on the same context, or from a plain
                 thread through the runtime's shared injector queue) to its first
                 instruction.
  oversleep      how much later than asked co_sleep returned.
  request latency
                 echo: from sending a request to having read its whole echo.

Locks (one row per named lock):
  acquisitions   every acquisition (for a queue, every wait), exact.
  uncontended    acquisitions that got the lock at once.
  contended      acquisitions that spun, raced or queued: the ones the lock histograms
                 time.
  in histogram   the count the lock-wait histogram recorded: equal to contended, or an
                 estimate of it when sampled (see lock wait).

Contexts (one row per worker thread, each with its own event loop; then the total):
  started        coroutines that ran for the first time on this worker.
  switches       times the worker switched into a coroutine (a start or a resume).
  steals         coroutines this worker took from another worker's queue, or from the
                 injector, because it had nothing to run.
  hand-offs      coroutines another thread handed to this worker: cross-context wakes and
                 spawns placed on this context from elsewhere.
  parks          times the worker went to sleep in epoll for lack of work.

pool             the stack pool, which keeps finished coroutines' stacks for reuse:
  shared max     how many stacks the shared pool may hold (the built-in 128 plus each live
                 runtime's --pool-max).
  pooled         stacks held for reuse at the end: the shared pool and every thread's own
                 cache together. Each thread caches up to two batches (256 stacks) outside
                 the shared maximum, so pooled can exceed max.
  hits, misses   creations served from a pool, and those that had to map a new stack; the
                 percentage is the hit rate.
  allocated, freed
                 stacks mapped and unmapped during the workload.

Soak (costress --soak): one line per cycle, then a verdict:
  cycle, teardown   the cycle's number and how its runtime ended (shutdown() or drop,
                 alternating).
  ops, contended    the workload's operations and contended lock acquisitions.
  suspended      coroutines deliberately left suspended (in suspend(), co_sleep, join
                 and co_timeout, waiting on a held CoMutex, a held CoRwLock and a
                 CoQueue) for the teardown to unwind.
  threads, maps  the process's threads and memory mappings after the teardown, against
                 the baseline taken before the first cycle.
  stacks         coroutine stacks still held after the teardown (must be 0).
  rss, max rss   resident memory after the teardown, and the most so far.
  leaks          the checks that failed: a destructor that did not run, a reference or a
                 lock left behind, threads, mappings or stacks above the baseline.

Exit status: 0 ok, 1 a check failed, 2 bad input, 3 the watchdog fired, 4 the coroutines do
not fit under vm.max_map_count, 5 the soak found a leak, 130 interrupted.
JSON (--format json) has the same figures under the names given in stress/README.md.
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_of_the_report_is_explained() {
        let text = text();
        for column in [
            "throughput",
            "checks",
            "count",
            "lock wait",
            "lock hold",
            "oversleep",
            "started",
            "switches",
            "steals",
            "hand-offs",
            "parks",
            "pooled",
            "shared max",
            "hits, misses",
            "in histogram",
            "contended",
            "stacks",
            "max rss",
        ] {
            assert!(
                text.contains(column),
                "--explain does not explain {column:?}"
            );
        }
        assert!(text.lines().all(|line| line.chars().count() <= 92));
    }
}
