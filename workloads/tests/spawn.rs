//! W5's storms run every coroutine (or task) they spawn.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use workloads::spawn::{storm, tokio_storm};

const N: u64 = 10_000;

#[test]
fn the_coroutine_storm_runs_every_coroutine() {
    let rt = coscheduler::Runtime::builder().threads(2).build().unwrap();
    let ran = Arc::new(AtomicU64::new(0));
    let (r, handle) = (ran.clone(), rt.handle());
    rt.block_on(move || {
        storm(&handle, N, move || {
            r.fetch_add(1, SeqCst);
        })
    });
    testkit::wait_until("every coroutine of the storm to run", || {
        ran.load(SeqCst) == N
    });
    rt.shutdown();
}

#[test]
fn the_task_storm_runs_every_task() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let ran = Arc::new(AtomicU64::new(0));
    let r = ran.clone();
    rt.block_on(tokio_storm(N, move || {
        r.fetch_add(1, SeqCst);
    }));
    testkit::wait_until("every task of the storm to run", || ran.load(SeqCst) == N);
}
