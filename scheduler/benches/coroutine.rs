//! Single-thread coroutine costs (docs/BENCHMARKS.md W1, W2, nesting, cost), each
//! next to raw `corosensei` measured in the same run.
//!
//! `cargo bench -p coscheduler --bench coroutine`

use std::hint::black_box;

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine as RawCoroutine, CoroutineResult};
use criterion::{Criterion, criterion_group, criterion_main};

use coscheduler::{AioContext, Coroutine, suspend, yield_now};

/// W1: enter + suspend round trip of one coroutine (QEMU `/perf/yield`).
fn switch(c: &mut Criterion) {
    let mut g = c.benchmark_group("switch");
    g.bench_function("corosensei", |b| {
        // Input `true` keeps it looping; `false` lets it return, so it can be
        // dropped (the workspace builds corosensei without its unwinder).
        let mut co = RawCoroutine::new(|y, mut more: bool| {
            while more {
                more = y.suspend(());
            }
        });
        b.iter(|| {
            let _ = black_box(co.resume(true));
        });
        let _ = co.resume(false);
    });
    g.bench_function("coscheduler", |b| {
        let co = Coroutine::new(|| {
            loop {
                suspend();
            }
        });
        b.iter(|| co.enter());
    });
    // Spawned once: criterion calls the routine several times.
    let ctx = AioContext::current();
    let _co = ctx.spawn(|| {
        loop {
            yield_now();
        }
    });
    g.bench_function("coscheduler_yield_now_via_ready_queue", |b| {
        b.iter(|| ctx.poll(false));
    });
    g.finish();
}

/// W2: create + enter + finish + release, pool warm (QEMU `/perf/lifecycle`).
fn lifecycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("lifecycle");
    g.bench_function("corosensei_reused_stack", |b| {
        let mut stack = Some(DefaultStack::new(1 << 20).unwrap());
        b.iter(|| {
            let mut co = RawCoroutine::with_stack(
                stack.take().unwrap(),
                |_: &corosensei::Yielder<(), ()>, ()| {},
            );
            let r = co.resume(());
            debug_assert!(matches!(r, CoroutineResult::Return(())));
            stack = Some(co.into_stack());
        });
    });
    g.bench_function("coscheduler_pooled", |b| {
        b.iter(|| Coroutine::new(|| {}).enter());
    });
    g.finish();
}

fn nest(depth: u32) {
    if depth > 1 {
        Coroutine::new(move || nest(depth - 1)).enter();
    }
}

/// Nesting: chains of depth 1000, each coroutine creating and entering the
/// next (QEMU `/perf/nesting`). Reported per chain; divide by 1000.
fn nesting(c: &mut Criterion) {
    let mut g = c.benchmark_group("nesting");
    g.bench_function("coscheduler_depth_1000", |b| {
        b.iter(|| Coroutine::new(|| nest(1000)).enter());
    });
    g.finish();
}

#[inline(never)]
fn yield_once() {
    suspend();
}

/// Cost: create + enter + suspend + enter + finish (QEMU `/perf/cost`).
fn cost(c: &mut Criterion) {
    let mut g = c.benchmark_group("cost");
    g.bench_function("corosensei_reused_stack", |b| {
        let mut stack = Some(DefaultStack::new(1 << 20).unwrap());
        b.iter(|| {
            let mut co = RawCoroutine::with_stack(stack.take().unwrap(), |y, ()| y.suspend(()));
            let _ = co.resume(());
            let _ = co.resume(());
            stack = Some(co.into_stack());
        });
    });
    g.bench_function("coscheduler", |b| {
        b.iter(|| {
            let co = Coroutine::new(yield_once);
            co.enter();
            co.enter();
        });
    });
    g.finish();
}

criterion_group!(benches, switch, lifecycle, nesting, cost);
criterion_main!(benches);
