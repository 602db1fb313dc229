//! Wait-for cycles (issue 14): `coprimitives::deadlocks` finds each cycle
//! of coroutines waiting on each other through CoMutex, CoRwLock and joins,
//! exactly, and nothing where there is none.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use coprimitives::{CoMutex, CoRwLock, Deadlock, deadlocks};
use coscheduler::Runtime;

fn runtime() -> Runtime {
    Runtime::builder()
        .threads(2)
        .pin_threads(false)
        .shutdown_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

/// Until every party has arrived, yields (so the other coroutines of the
/// worker run).
fn rendezvous(arrived: &AtomicUsize, parties: usize) {
    arrived.fetch_add(1, SeqCst);
    while arrived.load(SeqCst) < parties {
        coscheduler::yield_now();
    }
}

/// The cycles, once there are some (the coroutines take a moment to get
/// stuck).
fn wait_for_deadlocks(rt: &Runtime) -> Vec<Deadlock> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = deadlocks(rt);
        if !found.is_empty() || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_two_lock_cycle_is_found_exactly() {
    let rt = runtime();
    let m1 = Arc::new(CoMutex::with_stats((), "deadlock-m1"));
    let m2 = Arc::new(CoMutex::with_stats((), "deadlock-m2"));
    let arrived = Arc::new(AtomicUsize::new(0));
    let (a1, a2, ar) = (m1.clone(), m2.clone(), arrived.clone());
    let a = rt.spawn_named("a", move || {
        let _g1 = a1.lock();
        rendezvous(&ar, 2);
        let _g2 = a2.lock();
    });
    let (b1, b2, ar) = (m1.clone(), m2.clone(), arrived.clone());
    let b = rt.spawn_named("b", move || {
        let _g2 = b2.lock();
        rendezvous(&ar, 2);
        let _g1 = b1.lock();
    });
    let found = wait_for_deadlocks(&rt);
    assert_eq!(found.len(), 1, "{found:?}");
    let d = &found[0];
    assert_eq!(d.names(), ["a", "b"]);
    let ids: Vec<u64> = d.members().iter().map(|m| m.id).collect();
    assert_eq!(ids, [a.coroutine().id(), b.coroutine().id()]);
    assert_eq!(d.members()[0].waits_on, "CoMutex 'deadlock-m2'");
    assert_eq!(d.members()[1].waits_on, "CoMutex 'deadlock-m1'");
    let line = d.to_string();
    assert!(line.starts_with("deadlock: coroutine "), "{line}");
    // The dump marks both members and describes the cycle.
    let dump = rt.dump();
    assert_eq!(dump.matches("[deadlock 1]").count(), 3, "{dump}");
    // Shutdown unwinds both members: each queued waiter abandons its record
    // and leaves without the lock, and its held guard then unlocks on the
    // way out, so nothing leaks and both mutexes end free.
    rt.shutdown_timeout(Duration::from_secs(5))
        .expect("a lock cycle unwinds at shutdown");
    assert!(a.is_finished() && b.is_finished());
    for m in [&m1, &m2] {
        assert_eq!(Arc::strong_count(m), 1, "a member's clone was not dropped");
        assert!(m.try_lock().is_some(), "the mutex was left held");
    }
}

#[test]
fn a_three_coroutine_cycle_through_a_join_is_found_exactly() {
    let rt = runtime();
    let m1 = Arc::new(CoMutex::with_stats((), "join-m1"));
    let m2 = Arc::new(CoMutex::with_stats((), "join-m2"));
    let arrived = Arc::new(AtomicUsize::new(0));
    let (handle_tx, handle_rx) = mpsc::channel::<coscheduler::JoinHandle<()>>();
    // a holds m1 and joins c; c waits for m2, held by b; b waits for m1.
    let (a1, ar) = (m1.clone(), arrived.clone());
    let _a = rt.spawn_named("a", move || {
        let _g1 = a1.lock();
        rendezvous(&ar, 3);
        let c = loop {
            match handle_rx.try_recv() {
                Ok(c) => break c,
                Err(_) => coscheduler::yield_now(),
            }
        };
        let _ = c.join();
    });
    let (b1, b2, ar) = (m1.clone(), m2.clone(), arrived.clone());
    let _b = rt.spawn_named("b", move || {
        let _g2 = b2.lock();
        rendezvous(&ar, 3);
        let _g1 = b1.lock();
    });
    let (c2, ar) = (m2.clone(), arrived.clone());
    let c = rt.spawn_named("c", move || {
        rendezvous(&ar, 3);
        let _g2 = c2.lock();
    });
    handle_tx.send(c).unwrap();
    let found = wait_for_deadlocks(&rt);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].names(), ["a", "c", "b"]);
    let waits: Vec<&str> = found[0]
        .members()
        .iter()
        .map(|m| m.waits_on.as_str())
        .collect();
    assert!(waits[0].starts_with("join of coroutine "), "{waits:?}");
    assert_eq!(waits[1..], ["CoMutex 'join-m2'", "CoMutex 'join-m1'"]);
    rt.shutdown();
}

/// `a` upgrades its read lock, which waits for `b`'s read share; `b`
/// waits for a mutex `a` holds.
#[test]
fn a_rwlock_upgrade_deadlock_is_found_exactly() {
    let rt = runtime();
    let rw = Arc::new(CoRwLock::with_stats(0u32, "upgrade-rw"));
    let m = Arc::new(CoMutex::with_stats((), "upgrade-m"));
    let arrived = Arc::new(AtomicUsize::new(0));
    let (arw, am, ar) = (rw.clone(), m.clone(), arrived.clone());
    let _a = rt.spawn_named("a", move || {
        let _m = am.lock();
        let r = arw.read();
        rendezvous(&ar, 2);
        let mut w = r.upgrade();
        *w += 1;
    });
    let (brw, bm, ar) = (rw.clone(), m.clone(), arrived.clone());
    let _b = rt.spawn_named("b", move || {
        let _r = brw.read();
        rendezvous(&ar, 2);
        // Let `a` queue its upgrade first.
        for _ in 0..100 {
            coscheduler::yield_now();
        }
        let _m = bm.lock();
    });
    let found = wait_for_deadlocks(&rt);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].names(), ["a", "b"]);
    let waits: Vec<&str> = found[0]
        .members()
        .iter()
        .map(|m| m.waits_on.as_str())
        .collect();
    assert_eq!(waits, ["CoRwLock 'upgrade-rw'", "CoMutex 'upgrade-m'"]);
    rt.shutdown();
}

/// Holding a read lock and asking for the write lock waits for oneself.
#[test]
fn a_read_then_write_of_one_coroutine_is_a_cycle_of_one() {
    let rt = runtime();
    let rw = Arc::new(CoRwLock::new(()));
    let r2 = rw.clone();
    let _h = rt.spawn(move || {
        let _r = r2.read();
        let _w = r2.write();
    });
    let found = wait_for_deadlocks(&rt);
    assert_eq!(found.len(), 1, "{found:?}");
    let names = found[0].names();
    assert_eq!(names.len(), 1);
    assert!(names[0].starts_with('#'), "{names:?}");
    assert!(found[0].members()[0].waits_on.starts_with("CoRwLock at 0x"));
    rt.shutdown();
}

/// A chain of waits that ends in a coroutine that is not waiting is no
/// deadlock.
#[test]
fn a_graph_without_a_cycle_reports_none() {
    let rt = runtime();
    let m = Arc::new(CoMutex::with_stats((), "chain-m"));
    let held = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(AtomicUsize::new(0));
    let (hm, h, rel) = (m.clone(), held.clone(), release.clone());
    let holder = rt.spawn_named("holder", move || {
        let _g = hm.lock();
        h.store(1, SeqCst);
        while rel.load(SeqCst) == 0 {
            coprimitives::co_sleep(Duration::from_millis(1));
        }
    });
    while held.load(SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let wm = m.clone();
    let waiter = rt.spawn_named("waiter", move || drop(wm.lock()));
    let joiner = rt.spawn_named("joiner", move || waiter.join().unwrap());
    // Both are suspended (one on the mutex, one on the join) before we look.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let dump = rt.dump();
        if dump.contains("(waiter) on context") && dump.contains("(joiner) on context") {
            break;
        }
        assert!(Instant::now() < deadline, "{dump}");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(deadlocks(&rt).is_empty());
    release.store(1, SeqCst);
    holder.join().unwrap();
    joiner.join().unwrap();
    assert!(deadlocks(&rt).is_empty());
    rt.shutdown();
}
