//! W1 and W2 on bare [`Coroutine`]s: the switch, the pooled lifecycle, nesting and QEMU's
//! `/perf/cost`, each entered straight from the probe thread (no event loop involved).
//!
//! Every body warms up first: the first coroutine of a thread maps its stack and registers
//! the thread's pool, and the first nesting chain maps a thousand stacks whose misses raise
//! the pool's elastic maximum (`scheduler/src/pool/batch.rs`, "credit") so that later
//! chains are served from the pool. The N/2N/3N differencing would cancel that one-off cost
//! anyway; warming up keeps it out of the `[N, 2N]` slope too, so `spread` stays 0.

use std::hint::black_box;

use coscheduler::{Coroutine, suspend};

use crate::error::Error;

/// Coroutines per nesting chain (QEMU's `/perf/nesting` depth).
pub(super) const NESTING_DEPTH: u64 = 1000;

/// W1: `iters` round trips into a coroutine that suspends straight back (QEMU
/// `/perf/yield`).
pub(super) fn switch(iters: u64) -> Result<(), Error> {
    let co = Coroutine::new(|| {
        loop {
            suspend();
        }
    });
    // The first entry takes the stack and fixes the home context.
    co.enter();
    for _ in 0..iters {
        black_box(&co).enter();
    }
    // Dropping the suspended coroutine unwinds it here: teardown, cancelled by the harness.
    Ok(())
}

/// W2: `iters` times, create a coroutine with an empty body, enter it, let it return and
/// give its stack back to the pool (QEMU `/perf/lifecycle`).
pub(super) fn lifecycle_pooled(iters: u64) -> Result<(), Error> {
    // Warm: the thread's pool cache holds a stack of the default size from here on.
    Coroutine::new(|| {}).enter();
    for _ in 0..iters {
        Coroutine::new(|| {}).enter();
    }
    Ok(())
}

/// Nesting: `iters / 1000` chains of depth 1000, each coroutine creating and entering the
/// next (QEMU `/perf/nesting`). `iters` counts coroutines, so the figure is per coroutine.
pub(super) fn nesting(iters: u64) -> Result<(), Error> {
    if iters % NESTING_DEPTH != 0 {
        return Err(Error::Workload {
            name: "nesting".to_owned(),
            detail: format!("iters = {iters} is not a multiple of the depth {NESTING_DEPTH}"),
        });
    }
    // Warm: one chain maps the thousand stacks; their misses let the pool keep them all.
    chain();
    for _ in 0..iters / NESTING_DEPTH {
        chain();
    }
    Ok(())
}

fn chain() {
    Coroutine::new(|| nest(NESTING_DEPTH)).enter();
}

/// The body of the `depth`-th coroutine from the bottom of a chain.
fn nest(depth: u64) {
    if depth > 1 {
        Coroutine::new(move || nest(depth - 1)).enter();
    }
}

/// QEMU `/perf/cost`: `iters` times, create a coroutine, enter it, it suspends, enter it
/// again, it finishes.
pub(super) fn cost(iters: u64) -> Result<(), Error> {
    once_and_again();
    for _ in 0..iters {
        once_and_again();
    }
    Ok(())
}

fn once_and_again() {
    let co = Coroutine::new(suspend_once);
    co.enter();
    co.enter();
    debug_assert!(co.is_finished());
}

/// Kept out of line so the body is one call, as QEMU's `perf_cost_coroutine`.
#[inline(never)]
fn suspend_once() {
    suspend();
}
