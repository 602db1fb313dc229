//! W4 (WORKLOADS.md) with the implementations *interleaved*: each round
//! runs one batch of every implementation in turn (in an order rotated from
//! round to round), and the medians over the rounds are reported. On a shared, noisy machine this compares like with
//! like far better than running each configuration for seconds in a row
//! (as criterion does in `benches/mutex.rs`).
//!
//! ```text
//! CARGO_TARGET_DIR=/tmp/target-prims cargo run -p coprimitives --release --example comutex_w4 [rounds]
//! ```
//!
//! Each batch: 2 contexts (workers) × C coroutines (tasks), `TOTAL`
//! increments of a counter under the lock, checked exact.

use std::cell::UnsafeCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coprimitives::CoMutex;
use coscheduler::Runtime;

const TOTAL: u64 = 196_608;

struct Counter(UnsafeCell<u64>);
// SAFETY: only touched under the benchmarked lock, or after all workers
// joined.
unsafe impl Sync for Counter {}

fn comutex(rt: &Runtime, m: &Arc<(CoMutex<()>, Counter)>, c: u64) -> Duration {
    let per = TOTAL / (2 * c);
    // SAFETY: nothing runs between batches.
    let before = unsafe { *m.1.0.get() };
    let start = Instant::now();
    let hs: Vec<_> = rt
        .contexts()
        .iter()
        .flat_map(|ctx| {
            (0..c).map(move |_| {
                let m = m.clone();
                ctx.spawn(move || {
                    for _ in 0..per {
                        let g = m.0.lock();
                        // SAFETY: we hold the lock.
                        unsafe { *m.1.0.get() += 1 };
                        drop(g);
                    }
                })
            })
        })
        .collect();
    hs.into_iter().for_each(|h| h.join().unwrap());
    let d = start.elapsed();
    // SAFETY: all joined.
    assert_eq!(unsafe { *m.1.0.get() } - before, TOTAL);
    d
}

fn tokio_mutex(rt: &tokio::runtime::Runtime, m: &Arc<tokio::sync::Mutex<u64>>, c: u64) -> Duration {
    let per = TOTAL / (2 * c);
    rt.block_on(async {
        let before = *m.lock().await;
        let start = Instant::now();
        let ts: Vec<_> = (0..2 * c)
            .map(|_| {
                let m = m.clone();
                tokio::spawn(async move {
                    for _ in 0..per {
                        *m.lock().await += 1;
                    }
                })
            })
            .collect();
        for t in ts {
            t.await.unwrap();
        }
        let d = start.elapsed();
        assert_eq!(*m.lock().await - before, TOTAL);
        d
    })
}

fn may_mutex(m: &Arc<may::sync::Mutex<u64>>, c: u64) -> Duration {
    let per = TOTAL / (2 * c);
    let before = *m.lock().unwrap();
    let start = Instant::now();
    let hs: Vec<_> = (0..2 * c)
        .map(|_| {
            let m = m.clone();
            may::go!(move || {
                for _ in 0..per {
                    *m.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    hs.into_iter().for_each(|h| h.join().unwrap());
    let d = start.elapsed();
    assert_eq!(*m.lock().unwrap() - before, TOTAL);
    d
}

fn std_threads(m: &Arc<std::sync::Mutex<u64>>) -> Duration {
    let start = Instant::now();
    let ts: Vec<_> = (0..2)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || (0..TOTAL / 2).for_each(|_| *m.lock().unwrap() += 1))
        })
        .collect();
    ts.into_iter().for_each(|t| t.join().unwrap());
    start.elapsed()
}

fn mops(d: Duration) -> f64 {
    TOTAL as f64 / d.as_secs_f64() / 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(21);
    // Optional second argument: which implementations to run, e.g. "ct" for
    // comutex and tokio only (c = comutex, s = +stats, t = tokio, m = may,
    // p = std threads). Skipped ones print as 0.
    let only = std::env::args().nth(2).unwrap_or_else(|| "cstmp".into());
    let on = |k: char| only.contains(k);
    let rt = Runtime::builder().threads(2).build().unwrap();
    let plain = Arc::new((CoMutex::new(()), Counter(UnsafeCell::new(0))));
    // `W4_AA=1`: the "+stats" column uses a second unnamed mutex, which
    // shows the noise floor of the comparison.
    let named = match std::env::var_os("W4_AA") {
        Some(_) => CoMutex::new(()),
        None => CoMutex::with_stats((), "w4-ab"),
    };
    let named = Arc::new((named, Counter(UnsafeCell::new(0))));
    let trt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let tm = Arc::new(tokio::sync::Mutex::new(0u64));
    may::config().set_workers(2);
    let mm = Arc::new(may::sync::Mutex::new(0u64));
    let sm = Arc::new(std::sync::Mutex::new(0u64));

    println!("W4, {TOTAL} increments per batch, median of {rounds} interleaved rounds (M ops/s)");
    println!(
        "{:>3} {:>9} {:>9} {:>9} {:>9} {:>9} | {:>9} {:>9} {:>10}",
        "C", "comutex", "+stats", "tokio", "may", "std 2thr", "vs tokio", "vs may", "stats cost"
    );
    for c in [1u64, 4, 32] {
        let mut r: [Vec<f64>; 5] = Default::default();
        for round in 0..rounds {
            // Rotate the order each round: whichever runs right after
            // another runtime's batch pays for it (an A/A run with
            // `W4_AA=1` shows up to 30% for a fixed order).
            for k in (0..5).map(|i| (i + round) % 5) {
                let ops = match k {
                    0 if on('c') => mops(comutex(&rt, &plain, c)),
                    1 if on('s') => mops(comutex(&rt, &named, c)),
                    2 if on('t') => mops(tokio_mutex(&trt, &tm, c)),
                    3 if on('m') => mops(may_mutex(&mm, c)),
                    4 if on('p') => mops(std_threads(&sm)),
                    _ => 0.0,
                };
                r[k].push(ops);
            }
        }
        let m: Vec<f64> = r.into_iter().map(median).collect();
        println!(
            "{c:>3} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} | {:>8.2}x {:>8.2}x {:>9.1}%",
            m[0],
            m[1],
            m[2],
            m[3],
            m[4],
            m[0] / m[2],
            m[0] / m[3],
            (1.0 - m[1] / m[0]) * 100.0
        );
    }
    if let Some(s) = coprimitives::stats::snapshot_of("w4-ab") {
        println!("{s}");
    }
    rt.shutdown();
}
