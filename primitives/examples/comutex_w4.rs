//! W4 (docs/BENCHMARKS.md) as defined there — 2 contexts (workers) × C coroutines
//! (tasks) incrementing a counter under the lock until a stop flag — with
//! the implementations *interleaved*: each repetition runs every
//! implementation once, in an order rotated from one repetition to the next,
//! and every run is printed. On a shared, noisy machine this compares like
//! with like far better than running each configuration for seconds in a
//! row.
//!
//! ```text
//! CARGO_TARGET_DIR=/tmp/target-prims cargo run -p coprimitives --release --example comutex_w4 [secs] [reps] [impls]
//! ```
//!
//! `secs` per run (default 1), `reps` repetitions (default 3), `impls` a
//! subset of `cstmpl` (c = CoMutex, s = CoMutex with statistics, t = tokio,
//! m = may, p = std::sync::Mutex with 2 threads, l = CoMutex with
//! strict FIFO hand-over, `CoMutex::new_fifo`; c and s use the default
//! eventual fairness). The counter is checked
//! exact after every run. `W4_AA=1` makes `s` a second unnamed mutex (an A/A
//! run: the noise floor).
//!
//! For C ≥ 2 FIFO CoMutex runs (`l`) are bimodal. FIFO hand-over with immediate
//! re-locking has two stable queue orders: runs of waiters from one context
//! (one cross-thread hand-over per C operations) or strict alternation
//! between the contexts (every hand-over crosses threads: remote wakes ≈
//! operations / 2, printed per run). Which one forms depends on how the two
//! contexts start; QEMU's CoMutex has the same dynamics.

use std::sync::Arc;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::{Duration, Instant};

use coprimitives::CoMutex;
use coscheduler::Runtime;
use workloads::mutex::{Counter, TokioCounter, Until, spawn_incrementers};

/// Runs `dur`, then raises `stop`; returns the elapsed time.
fn timed(stop: &AtomicBool, dur: Duration) -> Instant {
    let start = Instant::now();
    std::thread::sleep(dur);
    stop.store(true, SeqCst);
    start
}

/// W4 on coscheduler (`workloads::mutex`'s loop).
fn comutex(rt: &Runtime, m: &Arc<Counter>, c: u64, dur: Duration) -> (f64, u64) {
    let before = m.try_count().expect("nothing runs between runs");
    let wakes = rt.metrics().total.remote_wakes;
    let stop = Arc::new(AtomicBool::new(false));
    let until = Until::Stop(stop.clone());
    let hs = spawn_incrementers(rt, c, m, &until);
    let start = timed(&stop, dur);
    let ops: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    let secs = start.elapsed().as_secs_f64();
    let after = m.try_count().expect("all joined");
    assert_eq!(after - before, ops, "lost increments");
    (
        ops as f64 / secs / 1e6,
        rt.metrics().total.remote_wakes - wakes,
    )
}

fn tokio_mutex(rt: &tokio::runtime::Runtime, m: &Arc<TokioCounter>, c: u64, dur: Duration) -> f64 {
    let before = m.try_count().expect("nothing runs between runs");
    let stop = Arc::new(AtomicBool::new(false));
    let until = Until::Stop(stop.clone());
    let ts: Vec<_> = (0..2 * c)
        .map(|_| {
            let (m, until) = (m.clone(), until.clone());
            rt.spawn(async move { m.increment(&until).await })
        })
        .collect();
    let start = timed(&stop, dur);
    let ops: u64 = rt.block_on(async {
        let mut sum = 0;
        for t in ts {
            sum += t.await.unwrap();
        }
        sum
    });
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(m.try_count().expect("all joined") - before, ops);
    ops as f64 / secs / 1e6
}

fn may_mutex(m: &Arc<may::sync::Mutex<u64>>, c: u64, dur: Duration) -> f64 {
    let before = *m.lock().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let hs: Vec<_> = (0..2 * c)
        .map(|_| {
            let (m, stop) = (m.clone(), stop.clone());
            may::go!(move || {
                let mut n = 0u64;
                while !stop.load(Relaxed) {
                    *m.lock().unwrap() += 1;
                    n += 1;
                }
                n
            })
        })
        .collect();
    let start = timed(&stop, dur);
    let ops: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(*m.lock().unwrap() - before, ops);
    ops as f64 / secs / 1e6
}

fn std_threads(m: &Arc<std::sync::Mutex<u64>>, dur: Duration) -> f64 {
    let before = *m.lock().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let ts: Vec<_> = (0..2)
        .map(|_| {
            let (m, stop, done) = (m.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Relaxed) {
                    *m.lock().unwrap() += 1;
                    n += 1;
                }
                done.fetch_add(n, SeqCst);
            })
        })
        .collect();
    let start = timed(&stop, dur);
    ts.into_iter().for_each(|t| t.join().unwrap());
    let secs = start.elapsed().as_secs_f64();
    let ops = done.load(SeqCst);
    assert_eq!(*m.lock().unwrap() - before, ops);
    ops as f64 / secs / 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1.0);
    let reps: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let only = args.next().unwrap_or_else(|| "cstmpl".into());
    let dur = Duration::from_secs_f64(secs);
    let rt = Runtime::builder().threads(2).build().unwrap();
    let plain = Arc::new(Counter::new());
    let named = match std::env::var_os("W4_AA") {
        Some(_) => CoMutex::new(()),
        None => CoMutex::with_stats((), "w4"),
    };
    let named = Arc::new(Counter::with_lock(named));
    let fifo = Arc::new(Counter::with_lock(CoMutex::new_fifo(())));
    let trt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let tm = Arc::new(TokioCounter::new());
    may::config().set_workers(2);
    let mm = Arc::new(may::sync::Mutex::new(0u64));
    let sm = Arc::new(std::sync::Mutex::new(0u64));
    const NAMES: [&str; 6] = ["comutex", "+stats", "tokio", "may", "std 2thr", "fifo"];

    println!("W4, 2 contexts x C, {secs} s per run, {reps} interleaved repetitions (M ops/s)");
    for c in [1u64, 4, 32] {
        let mut r: [Vec<f64>; 6] = Default::default();
        for rep in 0..reps {
            for k in (0..6).map(|i| (i + rep) % 6) {
                let key = ['c', 's', 't', 'm', 'p', 'l'][k];
                if !only.contains(key) {
                    continue;
                }
                let (ops, note) = match k {
                    0 => comutex(&rt, &plain, c, dur),
                    1 => comutex(&rt, &named, c, dur),
                    2 => (tokio_mutex(&trt, &tm, c, dur), 0),
                    3 => (may_mutex(&mm, c, dur), 0),
                    4 => (std_threads(&sm, dur), 0),
                    _ => comutex(&rt, &fifo, c, dur),
                };
                let note = if k < 2 || k == 5 {
                    format!(" (remote wakes {note})")
                } else {
                    String::new()
                };
                println!("  C={c:<2} {:<8} {ops:7.2}{note}", NAMES[k]);
                r[k].push(ops);
            }
        }
        let m: Vec<f64> = r.into_iter().map(median).collect();
        println!(
            "C={c:<2} median: comutex {:.2}, +stats {:.2}, fifo {:.2}, tokio {:.2}, may {:.2}, std {:.2}; \
             comutex/tokio {:.2}x, comutex/may {:.2}x, fifo/tokio {:.2}x",
            m[0],
            m[1],
            m[5],
            m[2],
            m[3],
            m[4],
            m[0] / m[2],
            m[0] / m[3],
            m[5] / m[2]
        );
    }
    if let Some(s) = coprimitives::stats::snapshot_of("w4") {
        println!("{s}");
    }
    rt.shutdown();
}
