//! W7 timers (docs/BENCHMARKS.md): 10,000 coroutines × 10 × sleep
//! 1 ms on 2 workers, total wall time and oversleep percentiles, against
//! tokio (10,000 tasks × 10 × `tokio::time::sleep(1 ms)` on a 2-worker
//! multi-thread runtime) in the same run; and 100 × 10 × 1 ms for timer
//! precision (target: p50 oversleep ≤ 200 µs).
//!
//! The sleepers are cobench's (`workloads::timers`).
//!
//! `cargo bench -p coprimitives --bench timers [-- --runs N]`. Each figure
//! is the median of N runs (default 5) after one warm-up run per side.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use workloads::cpu::{Who, cpu_time};
use workloads::timers::{SLEEP, SLEEPS, Sleepers};

struct Run {
    total: Duration,
    /// CPU time of the whole process during the run (user + system). Only
    /// one side runs at a time, so this is that side's cost; unlike wall
    /// time it does not depend on how much of the (shared) machine we got.
    cpu: Duration,
    oversleep: Histogram<u64>,
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("bounds")
}

/// The oversleeps of a run whose sleepers have all been joined.
fn oversleeps(sleepers: &Sleepers) -> Histogram<u64> {
    let mut h = new_hist();
    for s in sleepers.oversleeps() {
        h.record(s.max(1)).expect("in range");
    }
    h
}

fn ours(rt: &coscheduler::Runtime, n: usize) -> Run {
    let sleepers = Arc::new(Sleepers::new(n));
    let c = cpu_time(Who::Process);
    let t = Instant::now();
    let hs: Vec<_> = (0..n)
        .map(|i| {
            let s = sleepers.clone();
            rt.spawn(move || s.co_sleeper(i))
        })
        .collect();
    for h in hs {
        h.join().expect("no panic");
    }
    Run {
        total: t.elapsed(),
        cpu: cpu_time(Who::Process) - c,
        oversleep: oversleeps(&sleepers),
    }
}

fn tokio_run(rt: &tokio::runtime::Runtime, n: usize) -> Run {
    let sleepers = Arc::new(Sleepers::new(n));
    rt.block_on(async {
        let c = cpu_time(Who::Process);
        let t = Instant::now();
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let s = sleepers.clone();
                tokio::spawn(async move { s.tokio_sleeper(i).await })
            })
            .collect();
        for h in hs {
            h.await.expect("no panic");
        }
        Run {
            total: t.elapsed(),
            cpu: cpu_time(Who::Process) - c,
            oversleep: oversleeps(&sleepers),
        }
    })
}

struct Summary {
    total: Duration,
    cpu: Duration,
    p50: Duration,
    p99: Duration,
}

fn summarize(mut runs: Vec<Run>) -> Summary {
    let mut cpus: Vec<Duration> = runs.iter().map(|r| r.cpu).collect();
    cpus.sort();
    runs.sort_by_key(|r| r.total);
    let mid = &runs[runs.len() / 2];
    let mut all = new_hist();
    for r in &runs {
        all.add(&r.oversleep).expect("same bounds");
    }
    Summary {
        total: mid.total,
        cpu: cpus[cpus.len() / 2],
        p50: Duration::from_nanos(all.value_at_quantile(0.5)),
        p99: Duration::from_nanos(all.value_at_quantile(0.99)),
    }
}

/// `pool`: extra stacks the coroutine pool may keep (QEMU's
/// `qemu_coroutine_inc_pool_size`, which QEMU's block layer calls with its
/// queue depth); with 0, the default pool.
fn measure(n: usize, runs: usize, pool: usize) -> (Summary, Summary) {
    coscheduler::pool::inc_pool_size(pool);
    let ours_rt = coscheduler::Runtime::builder()
        .threads(2)
        .build()
        .expect("runtime");
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("tokio runtime");
    // Warm-up: maps the coroutine stacks, grows tokio's timer wheel.
    let _ = ours(&ours_rt, n);
    let _ = tokio_run(&tokio_rt, n);
    let mut a = Vec::new();
    let mut b = Vec::new();
    // Alternate, so that drift on a shared machine hits both sides alike.
    for _ in 0..runs {
        a.push(ours(&ours_rt, n));
        b.push(tokio_run(&tokio_rt, n));
    }
    if std::env::var_os("W7_METRICS").is_some() {
        let all = ours_rt.metrics();
        let m = all.total;
        eprintln!(
            "  per-context timer fires: {:?}",
            all.per_context
                .iter()
                .map(|c| c.timer_fires)
                .collect::<Vec<_>>()
        );
        let per = |x: u64| x as f64 / (runs + 1) as f64;
        eprintln!(
            "  [{n} coroutines, per run] parks {:.0}, epoll waits {:.0}, poll hits {:.0}, timer fires {:.0}, switches {:.0}, steals {:.0}",
            per(m.parks),
            per(m.epoll_waits),
            per(m.poll_hits),
            per(m.timer_fires),
            per(m.switches),
            per(m.steal_successes)
        );
    }
    ours_rt.shutdown();
    coscheduler::pool::dec_pool_size(pool);
    (summarize(a), summarize(b))
}

fn print(name: &str, n: usize, ours: &Summary, tokio: &Summary) {
    println!("{name}: {n} × {SLEEPS} × {SLEEP:?} on 2 workers (medians; oversleep over all runs)");
    println!(
        "  {:<12} {:>10} {:>10} {:>14} {:>14}",
        "", "total", "CPU", "oversleep p50", "oversleep p99"
    );
    for (label, s) in [("coscheduler", ours), ("tokio", tokio)] {
        println!(
            "  {label:<12} {:>10.2?} {:>10.2?} {:>14.1?} {:>14.1?}",
            s.total, s.cpu, s.p50, s.p99
        );
    }
    println!(
        "  ratio coscheduler/tokio: total {:.2}, CPU {:.2}, p50 {:.2}",
        ours.total.as_secs_f64() / tokio.total.as_secs_f64(),
        ours.cpu.as_secs_f64() / tokio.cpu.as_secs_f64().max(1e-9),
        ours.p50.as_secs_f64() / tokio.p50.as_secs_f64().max(1e-9)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    if args.iter().any(|a| a == "--list") {
        println!("w7_timers: bench");
        return;
    }
    let (a, b) = measure(10_000, runs, 0);
    print("W7 timers, default pool", 10_000, &a, &b);
    let (a, b) = measure(10_000, runs, 10_000);
    print(
        "W7 timers, pool sized with inc_pool_size(10_000)",
        10_000,
        &a,
        &b,
    );
    let (a, b) = measure(100, runs, 0);
    print("W7 precision", 100, &a, &b);
    println!(
        "  target p50 oversleep <= 200us: {}",
        if a.p50 <= Duration::from_micros(200) {
            "met"
        } else {
            "MISSED"
        }
    );
}
