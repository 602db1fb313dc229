//! Contention statistics: deterministic single-context scenarios in which
//! the histograms must count exactly the contended acquisitions (far below
//! the sampling threshold), and a multi-threaded one where counters are
//! exact and the sampled histograms estimate them.

mod support_stats;

use std::sync::Arc;

use coprimitives::stats::{self, LockKind};
use coprimitives::{CoMutex, CoQueue, CoRwLock, NoLock};
use coscheduler::{Coroutine, Runtime, suspend};
use support_stats::mutex_scenario;

#[test]
fn mutex_histograms_count_exactly_the_contended_acquisitions() {
    let name = "stats-test/mutex";
    mutex_scenario(name, 3, 5);
    let s = stats::snapshot_of(name).expect("registered");
    assert_eq!(s.kind, LockKind::Mutex);
    let c = s.counters;
    // holder + 5 extra + the final try_lock are uncontended.
    assert_eq!(c.fast, 1 + 5 + 1, "{s}");
    assert_eq!(c.waited, 3, "{s}");
    assert_eq!(c.spun, 0, "same context: never spins");
    assert_eq!(c.raced, 0);
    assert_eq!(c.contended(), 3);
    assert_eq!(
        c.handovers, 3,
        "each unlock with a waiter hands over directly"
    );
    assert_eq!(c.handoffs, 0, "no cross-thread race on one thread");
    assert_eq!(s.wait.len(), 3, "one wait sample per contended acquisition");
    assert_eq!(s.hold.len(), 3, "hold times of contended acquisitions only");
    assert!(s.wait.max() > 0);
    assert!(stats::snapshot().contains_key(name));
    println!("{s}");
}

#[test]
fn uncontended_named_mutex_records_no_times() {
    let name = "stats-test/uncontended";
    mutex_scenario(name, 0, 10);
    let s = stats::snapshot_of(name).unwrap();
    assert_eq!(s.counters.fast, 12);
    assert_eq!(s.counters.contended(), 0);
    assert!(s.wait.is_empty() && s.hold.is_empty());
}

#[test]
fn names_are_shared_and_reset_clears() {
    let name = "stats-test/shared";
    mutex_scenario(name, 1, 0);
    mutex_scenario(name, 2, 0);
    let s = stats::snapshot_of(name).unwrap();
    assert_eq!(s.counters.waited, 3);
    assert_eq!(s.wait.len(), 3);
    assert!(stats::snapshot_of("stats-test/never-created").is_none());
}

#[test]
fn queue_records_waits_and_wakes() {
    let name = "stats-test/queue";
    let q = Arc::new(CoQueue::with_stats(name));
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let q = q.clone();
            let co = Coroutine::new(move || q.wait_with(&NoLock));
            co.enter();
            co
        })
        .collect();
    assert!(q.next());
    q.restart_all();
    assert!(waiters.iter().all(Coroutine::is_finished));
    let s = stats::snapshot_of(name).unwrap();
    assert_eq!(s.kind, LockKind::Queue);
    assert_eq!(s.counters.waited, 4);
    assert_eq!(s.counters.handovers, 4);
    assert_eq!(s.wait.len(), 4);
}

#[test]
fn rwlock_records_queued_acquisitions() {
    let name = "stats-test/rwlock";
    let l = Arc::new(CoRwLock::with_stats((), name));
    let l0 = l.clone();
    let writer = Coroutine::new(move || {
        let _w = l0.write();
        suspend();
    });
    writer.enter();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let l = l.clone();
            let co = Coroutine::new(move || drop(l.read()));
            co.enter();
            co
        })
        .collect();
    writer.enter();
    assert!(readers.iter().all(Coroutine::is_finished));
    let s = stats::snapshot_of(name).unwrap();
    assert_eq!(s.kind, LockKind::RwLock);
    assert_eq!(s.counters.fast, 1);
    assert_eq!(s.counters.waited, 2);
    assert_eq!(s.counters.handovers, 2);
    assert_eq!(s.wait.len(), 2);
    assert_eq!(s.hold.len(), 2);
}

/// Cross-thread contention: every acquisition is counted exactly once, on
/// whichever thread recorded it.
#[test]
fn multithread_counts_add_up() {
    let name = "stats-test/multithread";
    let rt = Runtime::builder()
        .threads(2)
        .pin_threads(false)
        .build()
        .unwrap();
    let m = Arc::new(CoMutex::with_stats(0u64, name));
    const PER: u64 = 2_000;
    let handles: Vec<_> = rt
        .contexts()
        .iter()
        .flat_map(|ctx| {
            let m = m.clone();
            (0..4).map(move |_| {
                let m = m.clone();
                ctx.spawn(move || {
                    for _ in 0..PER {
                        *m.lock() += 1;
                    }
                })
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    rt.shutdown();
    let total = 8 * PER;
    assert_eq!(*m.try_lock().unwrap(), total);
    let s = stats::snapshot_of(name).unwrap();
    assert_eq!(s.counters.acquisitions(), total + 1, "{s}");
    // Counters are exact. Times are sampled above 50,000 contended
    // acquisitions per second and thread, with weights: the histogram counts
    // estimate the contended acquisitions.
    let contended = s.counters.contended() as f64;
    for h in [&s.wait, &s.hold] {
        let ratio = h.len() as f64 / contended.max(1.0);
        assert!(
            contended == 0.0 || (0.5..1.5).contains(&ratio),
            "{} samples for {contended}: {s}",
            h.len()
        );
    }
    println!("{s}");
}
