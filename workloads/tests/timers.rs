//! W7's sleepers fill every slot, on coscheduler and on tokio, and `co_sleep` never ends
//! early.

use std::sync::Arc;

use workloads::timers::{SLEEPS, Sleepers};

const SLEEPERS: usize = 8;

#[test]
fn coroutine_sleepers_fill_every_slot() {
    let rt = coscheduler::Runtime::builder().threads(2).build().unwrap();
    let sleepers = Arc::new(Sleepers::new(SLEEPERS));
    assert_eq!(sleepers.sleepers(), SLEEPERS);
    let handles: Vec<_> = (0..SLEEPERS)
        .map(|i| {
            let s = sleepers.clone();
            rt.spawn(move || s.co_sleeper(i))
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    assert_eq!(sleepers.oversleeps().count(), SLEEPERS * SLEEPS as usize);
    assert_eq!(
        sleepers.early(),
        0,
        "co_sleep never returns before its deadline"
    );
    rt.shutdown();
}

#[test]
fn tokio_sleepers_fill_every_slot() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let sleepers = Arc::new(Sleepers::new(SLEEPERS));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..SLEEPERS {
        let s = sleepers.clone();
        tasks.spawn_on(async move { s.tokio_sleeper(i).await }, rt.handle());
    }
    rt.block_on(async {
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    });
    assert_eq!(sleepers.oversleeps().count(), SLEEPERS * SLEEPS as usize);
}
