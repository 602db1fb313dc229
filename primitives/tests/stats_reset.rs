//! `stats::reset` (its own test binary: a reset clears every name in the
//! process, which would disturb tests running beside it).

use std::sync::Arc;

use coprimitives::CoMutex;
use coprimitives::stats;
use coscheduler::{Coroutine, suspend};

/// One holder, `waiters` coroutines queued behind it, then `extra`
/// uncontended acquisitions.
fn mutex_scenario(name: &str, waiters: usize, extra: usize) {
    let m = Arc::new(CoMutex::with_stats(0u64, name));
    assert_eq!(m.name(), Some(name));
    let m0 = m.clone();
    let holder = Coroutine::new(move || {
        let mut g = m0.lock();
        *g += 1;
        suspend();
    });
    holder.enter();
    let queued: Vec<_> = (0..waiters)
        .map(|_| {
            let m = m.clone();
            let co = Coroutine::new(move || *m.lock() += 1);
            co.enter();
            co
        })
        .collect();
    holder.enter(); // releases: the waiters run one after another
    assert!(queued.iter().all(Coroutine::is_finished));
    let m1 = m.clone();
    Coroutine::new(move || {
        for _ in 0..extra {
            *m1.lock() += 1;
        }
    })
    .enter();
    assert_eq!(*m.try_lock().unwrap(), (1 + waiters + extra) as u64);
}

/// `reset` forgets everything, including the fast counters of threads that
/// keep running (baselines) and of threads that have exited.
#[test]
fn reset_forgets_everything() {
    // Runs the scenario on a thread that exits (its record is retired) and
    // on this thread.
    let name = "stats-test/reset";
    std::thread::spawn(move || mutex_scenario(name, 1, 1))
        .join()
        .unwrap();
    mutex_scenario(name, 1, 1);
    assert_eq!(stats::snapshot_of(name).unwrap().counters.waited, 2);
    stats::reset();
    let s = stats::snapshot_of(name).unwrap();
    assert_eq!(s.counters.acquisitions(), 0, "{s}");
    assert!(s.wait.is_empty());
    mutex_scenario(name, 2, 0);
    let s = stats::snapshot_of(name).unwrap();
    assert_eq!(s.counters.waited, 2);
    assert_eq!(s.counters.fast, 2);
}
