//! Instructions per uncontended lock + unlock, for callgrind: run it at two
//! iteration counts and divide the difference in instructions (`Ir`) by the
//! difference in iterations, so every fixed cost (runtime, coroutine
//! creation, process start) cancels out.
//!
//! ```text
//! cargo build -p coprimitives --release --example comutex_callgrind
//! for n in 100000 200000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$n \
//!     target/release/examples/comutex_callgrind comutex $n
//! done
//! # per-op = (Ir(200000) - Ir(100000)) / 100000
//! ```
//!
//! Kinds: `comutex`, `comutex_stats` (both `workloads::mutex::uncontended`, the loop of
//! cobench's deterministic `comutex_uncontended`), `parking_lot`, `std`, `tokio`.

use std::hint::black_box;
use std::sync::Arc;

use coprimitives::CoMutex;
use coscheduler::Coroutine;
use workloads::mutex::uncontended;

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "comutex".into());
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    match kind.as_str() {
        "comutex" | "comutex_stats" => {
            let m = Arc::new(if kind == "comutex" {
                CoMutex::new(0u64)
            } else {
                CoMutex::with_stats(0u64, "cg")
            });
            let m2 = m.clone();
            Coroutine::new(move || uncontended(&m2, n)).enter();
            assert_eq!(*m.try_lock().unwrap(), n);
        }
        "parking_lot" => {
            let m = parking_lot::Mutex::new(0u64);
            for _ in 0..n {
                *black_box(&m).lock() += 1;
            }
            assert_eq!(*m.lock(), n);
        }
        "std" => {
            let m = std::sync::Mutex::new(0u64);
            for _ in 0..n {
                *black_box(&m).lock().unwrap() += 1;
            }
            assert_eq!(*m.lock().unwrap(), n);
        }
        "tokio" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let m = tokio::sync::Mutex::new(0u64);
            rt.block_on(async {
                for _ in 0..n {
                    *black_box(&m).lock().await += 1;
                }
            });
            assert_eq!(*m.try_lock().unwrap(), n);
        }
        other => panic!("unknown kind {other}"),
    }
}
