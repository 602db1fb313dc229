//! Reference probes on bare corosensei: the floor each coscheduler row is compared with
//! (the "raw floor" of docs/BENCHMARKS.md's targets).

use std::hint::black_box;

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, Yielder};

use crate::error::Error;

/// Large enough for an empty body, small enough that mapping it is cheap; the size does not
/// change the per-iteration count because the stack is mapped once.
const STACK_SIZE: usize = 64 * 1024;

/// W1 floor: `iters` round trips into a coroutine that suspends straight back.
pub(super) fn switch(iters: u64) -> Result<(), Error> {
    let stack = new_stack("raw_corosensei_switch")?;
    // Unit input and output, as in QEMU's /perf/yield: the figure is the switch alone, not
    // moving values through it.
    let mut co = Coroutine::with_stack(stack, |yielder: &Yielder<(), ()>, ()| {
        loop {
            yielder.suspend(());
        }
    });
    for _ in 0..iters {
        black_box(co.resume(()));
    }
    // Dropping a suspended corosensei coroutine force-unwinds it, which panics (and aborts,
    // the panic being in a destructor) when corosensei is built without its "unwind"
    // feature, as coscheduler builds it; Cargo unifies features, so that is this binary's
    // corosensei too. The process ends right after the probe: leaking the coroutine and its
    // stack is the teardown.
    std::mem::forget(co);
    Ok(())
}

/// W2 floor with an ideal pool: `iters` times, build a coroutine with an empty body on the
/// same stack, run it to completion and take the stack back.
pub(super) fn lifecycle_reused_stack(iters: u64) -> Result<(), Error> {
    let mut stack = new_stack("raw_corosensei_lifecycle_reused_stack")?;
    for _ in 0..iters {
        let mut co = Coroutine::with_stack(stack, |_: &Yielder<(), ()>, ()| {});
        black_box(co.resume(()));
        stack = co.into_stack();
    }
    Ok(())
}

fn new_stack(probe: &str) -> Result<DefaultStack, Error> {
    DefaultStack::new(STACK_SIZE).map_err(|e| Error::Workload {
        name: probe.to_owned(),
        detail: format!("allocating a {STACK_SIZE}-byte stack failed: {e}"),
    })
}
