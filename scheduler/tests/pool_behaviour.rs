//! The stack pool: reuse, counters, and `inc`/`dec_pool_size`. One test
//! function, because the pool and its counters are process-wide.

use coscheduler::Coroutine;
use coscheduler::pool::{self, BATCH_SIZE};

fn lifecycle_run(n: usize) {
    for _ in 0..n {
        Coroutine::new(|| {}).enter();
    }
}

#[test]
fn pool_reuse_counters_and_size_controls() {
    // A first lifecycle run maps stacks (or reuses earlier ones)…
    lifecycle_run(10);
    let before = pool::stats();
    // …and a second one takes every stack from the pool: hits, no misses.
    lifecycle_run(1000);
    let after = pool::stats();
    assert_eq!(after.misses, before.misses, "{before:?} -> {after:?}");
    assert_eq!(after.allocated, before.allocated);
    assert_eq!(after.hits - before.hits, 1000);

    // Many live coroutines at once: the pool cannot serve them all.
    let live: Vec<Coroutine> = (0..3 * BATCH_SIZE)
        .map(|_| Coroutine::new(coscheduler::suspend))
        .collect();
    live.iter().for_each(Coroutine::enter);
    let mapped = pool::stats();
    assert!(mapped.allocated > after.allocated);

    // Finish them: the thread cache keeps two batches, the shared pool at
    // most its maximum (plus one batch of overshoot, as QEMU). Trimming also
    // forgets the credit the misses above earned (see the elastic case
    // below).
    pool::dec_pool_size(pool::stats().max_size);
    pool::trim_to_max();
    assert_eq!(pool::stats().max_size, 0);
    live.iter().for_each(Coroutine::enter);
    drop(live);
    let capped = pool::stats();
    assert!(
        capped.pooled <= 2 * BATCH_SIZE,
        "shared pool refuses above max 0: {capped:?}"
    );
    assert!(
        capped.freed > mapped.freed,
        "stacks over the maximum were unmapped"
    );

    // Raising the maximum lets the shared pool keep them.
    pool::inc_pool_size(4 * BATCH_SIZE);
    assert_eq!(pool::stats().max_size, 4 * BATCH_SIZE);
    let live: Vec<Coroutine> = (0..4 * BATCH_SIZE)
        .map(|_| Coroutine::new(coscheduler::suspend))
        .collect();
    live.iter().for_each(Coroutine::enter);
    let freed = pool::stats().freed;
    live.iter().for_each(Coroutine::enter);
    drop(live);
    let kept = pool::stats();
    assert_eq!(
        kept.freed, freed,
        "nothing unmapped below the raised maximum"
    );
    assert!(kept.pooled >= 4 * BATCH_SIZE, "{kept:?}");
    assert!(
        kept.hard_max > 0 && kept.hard_max < usize::MAX,
        "derived from vm.max_map_count"
    );
    assert_eq!(kept.in_use(), 0, "no live coroutine holds a stack");

    // Trimming after lowering the maximum unmaps the excess.
    pool::dec_pool_size(4 * BATCH_SIZE);
    let trimmed = pool::trim_to_max();
    assert!(trimmed > 0);

    // Elastic: stacks that had to be mapped because the pool was empty are
    // kept above the maximum, so a burst that recurs (QEMU's nesting case,
    // where its pool overflows every time) is served from the pool.
    assert_eq!(pool::stats().max_size, 0);
    let burst = || {
        let live: Vec<Coroutine> = (0..5 * BATCH_SIZE)
            .map(|_| Coroutine::new(coscheduler::suspend))
            .collect();
        live.iter().for_each(Coroutine::enter);
        live.iter().for_each(Coroutine::enter);
    };
    burst();
    let first = pool::stats();
    burst();
    let second = pool::stats();
    assert_eq!(
        second.allocated, first.allocated,
        "the second burst mapped nothing: {first:?} -> {second:?}"
    );
    assert_eq!(second.freed, first.freed);
    pool::trim_to_max();
}
