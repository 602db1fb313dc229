//! Multi-threaded workloads of docs/BENCHMARKS.md, each next to its reference in
//! the same run: W3 cross-context ping-pong (floor: two threads bouncing an
//! atomic; tokio across two runtimes), W5 spawn storm (tokio, 2 workers) and
//! its 1-vs-2-worker scaling, and `yield_now` through the ready queue.
//!
//! `cargo bench -p coscheduler --bench runtime`

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

use coscheduler::{AioContext, Coroutine, Runtime, suspend, yield_now};
use workloads::pingpong;

/// The floor (`workloads::pingpong::atomic_pingpong`, cobench's): two pinned
/// threads passing a token through one atomic. Both run on spawned threads,
/// so the benchmark thread itself is never pinned.
fn raw_pingpong(rounds: u64) -> Duration {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let pin = |i: usize| {
        if let Some(c) = cores.get(i) {
            core_affinity::set_for_current(*c);
        }
    };
    pingpong::atomic_pingpong(rounds, pin, |_| {}).expect("the measuring thread panicked")
}

/// W3 on coscheduler (`workloads::pingpong`'s rounds): A homed on worker 0,
/// B on worker 1; every wake crosses threads (checked through the hand-off
/// counters).
fn co_pingpong(rt: &Runtime, rounds: u64) -> Duration {
    let ctxs = rt.contexts();
    let a_slot: Arc<Mutex<Option<Coroutine>>> = Arc::default();
    let slot = a_slot.clone();
    let b = Coroutine::new(move || {
        suspend();
        // A is published before it first wakes us.
        let a = slot.lock().unwrap().clone().expect("A published");
        pingpong::pong(&a, rounds);
    });
    ctxs[1].schedule(&b);
    while b.context().is_none() || b.entered() {
        std::hint::spin_loop();
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let b2 = b.clone();
    let before: u64 = rt.metrics().total.handoffs_received;
    let start = Arc::new(Mutex::new(None));
    let s = start.clone();
    let a = Coroutine::new(move || {
        *s.lock().unwrap() = Some(Instant::now());
        for _ in 0..rounds {
            pingpong::ping(&b2);
        }
        tx.send(()).unwrap();
    });
    *a_slot.lock().unwrap() = Some(a.clone());
    ctxs[0].schedule(&a);
    // Block, not spin: the benchmark thread must not compete with the
    // workers for the two cores.
    rx.recv().unwrap();
    let elapsed = start.lock().unwrap().unwrap().elapsed();
    let crossed = rt.metrics().total.handoffs_received - before;
    assert!(
        crossed >= 2 * rounds,
        "every hand-off crossed threads: {crossed} of {}",
        2 * rounds
    );
    a_slot.lock().unwrap().take();
    elapsed
}

/// W3 on tokio: two single-threaded runtimes on two threads, a task on each,
/// woken through `Notify`.
fn tokio_pingpong(rounds: u64) -> Duration {
    let ping = Arc::new(tokio::sync::Notify::new());
    let pong = Arc::new(tokio::sync::Notify::new());
    let (p1, q1) = (ping.clone(), pong.clone());
    let t = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            for _ in 0..rounds {
                p1.notified().await;
                q1.notify_one();
            }
        });
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = Instant::now();
    rt.block_on(async move {
        for _ in 0..rounds {
            ping.notify_one();
            pong.notified().await;
        }
    });
    let d = start.elapsed();
    t.join().unwrap();
    d
}

fn w3(c: &mut Criterion) {
    let mut g = c.benchmark_group("w3_cross_context_pingpong");
    g.sample_size(10);
    g.bench_function("raw_atomic_floor", |b| b.iter_custom(raw_pingpong));
    let rt = Runtime::builder().threads(2).build().unwrap();
    g.bench_function("coscheduler", |b| b.iter_custom(|n| co_pingpong(&rt, n)));
    g.bench_function("tokio_two_runtimes", |b| b.iter_custom(tokio_pingpong));
    g.finish();
    rt.shutdown();
}

/// W5 (`workloads::spawn`'s storm): one spawner coroutine spawns `n` tiny
/// coroutines, detached; time until all ran.
fn co_spawn_storm(rt: &Runtime, n: u64) -> Duration {
    let count = Arc::new(AtomicU64::new(0));
    let (c, h) = (count.clone(), rt.handle());
    let start = Instant::now();
    rt.block_on(move || {
        workloads::spawn::storm(&h, n, move || {
            c.fetch_add(1, SeqCst);
        })
    });
    while count.load(SeqCst) < n {
        std::thread::sleep(Duration::from_micros(50));
    }
    start.elapsed()
}

fn tokio_spawn_storm(rt: &tokio::runtime::Runtime, n: u64) -> Duration {
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let start = Instant::now();
    rt.block_on(async move {
        let storm = workloads::spawn::tokio_storm(n, move || {
            c.fetch_add(1, SeqCst);
        });
        tokio::spawn(storm).await.unwrap();
    });
    while count.load(SeqCst) < n {
        std::thread::sleep(Duration::from_micros(50));
    }
    start.elapsed()
}

fn w5(c: &mut Criterion) {
    const N: u64 = 1_000_000;
    let mut g = c.benchmark_group("w5_spawn_storm_1M");
    g.sample_size(10);
    let rt2 = Runtime::builder().threads(2).build().unwrap();
    g.bench_function("coscheduler_2_workers", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| co_spawn_storm(&rt2, N)).sum())
    });
    rt2.shutdown();
    let rt1 = Runtime::builder().threads(1).build().unwrap();
    g.bench_function("coscheduler_1_worker", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| co_spawn_storm(&rt1, N)).sum())
    });
    rt1.shutdown();
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    g.bench_function("tokio_2_workers", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| tokio_spawn_storm(&tokio_rt, N)).sum())
    });
    g.finish();
}

/// A coroutine rescheduling itself through the ready queue, driven by
/// `poll(false)` on this thread: no system call on that path.
fn yield_through_scheduler(c: &mut Criterion) {
    let mut g = c.benchmark_group("yield_now_round_trip");
    let ctx = AioContext::current();
    let rounds = Arc::new(AtomicUsize::new(0));
    let r = rounds.clone();
    let _h = ctx.spawn(move || {
        loop {
            r.fetch_add(1, SeqCst);
            yield_now();
        }
    });
    g.bench_function("coscheduler_poll_ready_queue", |b| {
        b.iter(|| ctx.poll(false))
    });
    let co = Coroutine::new(|| {
        loop {
            suspend();
        }
    });
    g.bench_function("bare_switch", |b| b.iter(|| co.enter()));
    g.finish();
}

criterion_group!(benches, yield_through_scheduler, w3, w5);
criterion_main!(benches);
