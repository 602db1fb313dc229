//! Runs one single-threaded operation N times, for instruction counting:
//! `valgrind --tool=callgrind target/release/examples/probe lifecycle 100000`.
//! (cobench's deterministic tier measures the same operations.)

use coscheduler::{AioContext, Coroutine, suspend, yield_now};

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "lifecycle".into());
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    match what.as_str() {
        "switch" => {
            let co = Coroutine::new(|| {
                loop {
                    suspend();
                }
            });
            for _ in 0..n {
                co.enter();
            }
        }
        "lifecycle" => {
            for _ in 0..n {
                Coroutine::new(|| {}).enter();
            }
        }
        "cost" => {
            #[inline(never)]
            fn once() {
                suspend();
            }
            for _ in 0..n {
                let co = Coroutine::new(once);
                co.enter();
                co.enter();
            }
        }
        "yield" => {
            let ctx = AioContext::current();
            let _h = ctx.spawn(|| {
                loop {
                    yield_now();
                }
            });
            for _ in 0..n {
                ctx.poll(false);
            }
        }
        "spawn" => {
            let threads = std::env::var("THREADS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(1);
            let rt = coscheduler::Runtime::builder()
                .threads(threads)
                .build()
                .unwrap();
            let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            let (c, h) = (count.clone(), rt.handle());
            let t0 = std::time::Instant::now();
            rt.block_on(move || {
                for _ in 0..n {
                    let c = c.clone();
                    drop(h.spawn(move || {
                        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }));
                }
            });
            let t1 = t0.elapsed();
            while count.load(std::sync::atomic::Ordering::Relaxed) < n {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            if std::env::var_os("VERBOSE").is_some() {
                eprintln!("spawned in {t1:?}, all ran in {:?}", t0.elapsed());
            }
        }
        other => panic!("unknown probe {other}"),
    }
}
