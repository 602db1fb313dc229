//! CoMutex benchmarks (docs/BENCHMARKS.md W4 and the uncontended fast path).
//!
//! ```text
//! CARGO_TARGET_DIR=/tmp/target-prims cargo bench -p coprimitives --bench mutex -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! - `uncontended/*`: one lock + unlock, no contention, in one coroutine
//!   (CoMutex, with and without statistics) or on one thread
//!   (`parking_lot::Mutex`, `std::sync::Mutex`), or in one tokio task
//!   (`tokio::sync::Mutex`). Target: CoMutex within 1.5× parking_lot.
//! - `contended_1ctx/*`: the contended path on one thread (every
//!   acquisition queues and is handed over), with and without statistics:
//!   the cost of statistics without cross-thread noise (target ≤ 10 %).
//! - `w4/<impl>/C`: 2 contexts (workers, threads) × C coroutines (tasks)
//!   each incrementing a counter under the lock, `TOTAL` increments per
//!   iteration; the counter is checked exact. Reported as elements/s =
//!   ops/s. Targets: CoMutex ≥ 1.5× tokio and ≥ may at every C. For C ≥ 2
//!   CoMutex iterations are bimodal (see `examples/comutex_w4.rs`, which
//!   also runs W4 interleaved and with a stop flag).

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use coprimitives::CoMutex;
use coscheduler::{Coroutine, Runtime};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use workloads::mutex::{self, Counter, TokioCounter, Until, spawn_incrementers};

/// Increments per W4 iteration (divisible by 2 × 32).
const TOTAL: u64 = 196_608;
/// Coroutines per context.
const CS: [u64; 3] = [1, 4, 32];

fn uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("uncontended");
    g.throughput(Throughput::Elements(1));

    for (label, m) in [
        ("comutex", CoMutex::new(0u64)),
        (
            "comutex_stats",
            CoMutex::with_stats(0u64, "bench/uncontended"),
        ),
    ] {
        let m = Arc::new(m);
        g.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let m = m.clone();
                let elapsed = Arc::new(AtomicU64::new(0));
                let e = elapsed.clone();
                Coroutine::new(move || {
                    let start = Instant::now();
                    mutex::uncontended(&m, iters);
                    e.store(start.elapsed().as_nanos() as u64, Relaxed);
                })
                .enter();
                Duration::from_nanos(elapsed.load(Relaxed))
            });
        });
    }

    let pl = parking_lot::Mutex::new(0u64);
    g.bench_function("parking_lot", |b| b.iter(|| *black_box(&pl).lock() += 1));
    let sm = std::sync::Mutex::new(0u64);
    g.bench_function("std", |b| b.iter(|| *black_box(&sm).lock().unwrap() += 1));

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let tm = tokio::sync::Mutex::new(0u64);
    g.bench_function("tokio", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    *black_box(&tm).lock().await += 1;
                }
                start.elapsed()
            })
        });
    });
    g.finish();
}

/// W4 on coscheduler (`workloads::mutex`'s loop): 2 contexts × `c`
/// coroutines.
fn w4_comutex(rt: &Runtime, m: &Arc<Counter>, c: u64) -> Duration {
    let until = Until::Count(TOTAL / (2 * c));
    let before = m
        .try_count()
        .expect("no coroutine of a previous iteration runs");
    let start = Instant::now();
    for h in spawn_incrementers(rt, c, m, &until) {
        h.join().unwrap();
    }
    let elapsed = start.elapsed();
    let after = m.try_count().expect("all joined");
    assert_eq!(after - before, TOTAL, "lost increments");
    elapsed
}

fn w4_tokio(rt: &tokio::runtime::Runtime, m: &Arc<TokioCounter>, c: u64) -> Duration {
    let until = Until::Count(TOTAL / (2 * c));
    rt.block_on(async {
        let before = m.try_count().expect("no task of a previous iteration runs");
        let start = Instant::now();
        let tasks: Vec<_> = (0..2 * c)
            .map(|_| {
                let (m, until) = (m.clone(), until.clone());
                tokio::spawn(async move { m.increment(&until).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let elapsed = start.elapsed();
        assert_eq!(m.try_count().expect("all joined") - before, TOTAL);
        elapsed
    })
}

fn w4_may(m: &Arc<may::sync::Mutex<u64>>, c: u64) -> Duration {
    let per = TOTAL / (2 * c);
    let before = *m.lock().unwrap();
    let start = Instant::now();
    let handles: Vec<_> = (0..2 * c)
        .map(|_| {
            let m = m.clone();
            may::go!(move || {
                for _ in 0..per {
                    *m.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let elapsed = start.elapsed();
    assert_eq!(*m.lock().unwrap() - before, TOTAL);
    elapsed
}

/// The thread baselines: 2 threads, `TOTAL / 2` increments each.
fn w4_threads(lock: impl Fn() + Send + Sync + 'static) -> impl FnMut(u64) -> Duration {
    let lock = Arc::new(lock);
    move |iters| {
        let start = Instant::now();
        for _ in 0..iters {
            let ts: Vec<_> = (0..2)
                .map(|_| {
                    let lock = lock.clone();
                    std::thread::spawn(move || (0..TOTAL / 2).for_each(|_| lock()))
                })
                .collect();
            ts.into_iter().for_each(|t| t.join().unwrap());
        }
        start.elapsed()
    }
}

fn w4(c: &mut Criterion) {
    let mut g = c.benchmark_group("w4");
    g.throughput(Throughput::Elements(TOTAL));
    g.sample_size(10);

    let rt = Runtime::builder().threads(2).build().unwrap();
    let plain = Arc::new(Counter::new());
    let named = Arc::new(Counter::with_lock(CoMutex::with_stats((), "bench/w4")));
    let trt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let tm = Arc::new(TokioCounter::new());
    may::config().set_workers(2);
    let mm = Arc::new(may::sync::Mutex::new(0u64));

    for cnt in CS {
        g.bench_with_input(BenchmarkId::new("comutex", cnt), &cnt, |b, &cnt| {
            b.iter_custom(|iters| (0..iters).map(|_| w4_comutex(&rt, &plain, cnt)).sum())
        });
        g.bench_with_input(BenchmarkId::new("comutex_stats", cnt), &cnt, |b, &cnt| {
            b.iter_custom(|iters| (0..iters).map(|_| w4_comutex(&rt, &named, cnt)).sum())
        });
        g.bench_with_input(BenchmarkId::new("tokio", cnt), &cnt, |b, &cnt| {
            b.iter_custom(|iters| (0..iters).map(|_| w4_tokio(&trt, &tm, cnt)).sum())
        });
        g.bench_with_input(BenchmarkId::new("may", cnt), &cnt, |b, &cnt| {
            b.iter_custom(|iters| (0..iters).map(|_| w4_may(&mm, cnt)).sum())
        });
    }

    let sm = Arc::new(std::sync::Mutex::new(0u64));
    g.bench_function("std_2threads", |b| {
        let sm = sm.clone();
        b.iter_custom(w4_threads(move || *sm.lock().unwrap() += 1))
    });
    let pm = Arc::new(parking_lot::Mutex::new(0u64));
    g.bench_function("parking_lot_2threads", |b| {
        let pm = pm.clone();
        b.iter_custom(w4_threads(move || *pm.lock() += 1))
    });
    g.finish();

    if let Some(s) = coprimitives::stats::snapshot_of("bench/w4") {
        eprintln!("{s}");
    }
    rt.shutdown();
}

/// The contended path without cross-thread noise: one context, 8
/// coroutines, each holding the lock across a `yield_now`, so every
/// acquisition queues and is handed over on the same thread (lock slow
/// path, suspend, grant, wake, plus the yield). The statistics variant
/// shows what recording costs on this path.
fn contended_local(c: &mut Criterion) {
    const COROUTINES: u64 = 8;
    let mut g = c.benchmark_group("contended_1ctx");
    g.throughput(Throughput::Elements(1));
    let rt = Runtime::builder().threads(1).build().unwrap();
    let ctx = rt.contexts()[0].clone();
    for (label, m) in [
        ("comutex", CoMutex::new(0u64)),
        (
            "comutex_stats",
            CoMutex::with_stats(0u64, "bench/contended_1ctx"),
        ),
    ] {
        let m = Arc::new(m);
        g.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let per = iters.div_ceil(COROUTINES);
                let start = Instant::now();
                let hs: Vec<_> = (0..COROUTINES)
                    .map(|_| {
                        let m = m.clone();
                        ctx.spawn(move || {
                            for _ in 0..per {
                                let mut g = m.lock();
                                *g += 1;
                                coscheduler::yield_now();
                                drop(g);
                            }
                        })
                    })
                    .collect();
                hs.into_iter().for_each(|h| h.join().unwrap());
                start
                    .elapsed()
                    .mul_f64(iters as f64 / (per * COROUTINES) as f64)
            });
        });
    }
    g.finish();
    if let Some(s) = coprimitives::stats::snapshot_of("bench/contended_1ctx") {
        eprintln!("{s}");
    }
    rt.shutdown();
}

criterion_group!(benches, uncontended, contended_local, w4);
criterion_main!(benches);
