//! CoRwLock: QEMU's `/locking/co-rwlock/upgrade` and
//! `/locking/co-rwlock/downgrade` (tests/unit/test-coroutine.c,
//! docs/SEMANTICS.md §10.1) on one thread, plus fairness checks.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};

use coprimitives::CoRwLock;
use coscheduler::{Coroutine, suspend};

fn flags<const N: usize>() -> Arc<[AtomicBool; N]> {
    Arc::new(std::array::from_fn(|_| AtomicBool::new(false)))
}

/// `/locking/co-rwlock/upgrade`: a sole reader that upgrades while a writer
/// is queued goes to the back of the queue.
#[test]
fn qemu_locking_co_rwlock_upgrade() {
    let lock = Arc::new(CoRwLock::new(0));
    let done = flags::<2>();
    let (l, d) = (lock.clone(), done.clone());
    let c1 = Coroutine::new(move || {
        let r = l.read();
        suspend();
        let mut w = r.upgrade();
        *w += 1;
        drop(w);
        d[0].store(true, SeqCst);
    });
    let (l, d) = (lock.clone(), done.clone());
    let c2 = Coroutine::new(move || {
        let mut w = l.write();
        *w += 10;
        suspend();
        drop(w);
        d[1].store(true, SeqCst);
    });

    c1.enter(); // read-locked, yields
    c2.enter(); // write ticket queued, yields
    c1.enter(); // upgrade: drops its share, queues behind c2, wakes c2; c2 runs and yields holding W
    assert!(!done[0].load(SeqCst), "c1 waits behind c2");
    assert!(!done[1].load(SeqCst));
    c2.enter(); // c2 unlocks, waking c1; c2 finishes; c1 completes its upgrade and finishes
    assert!(done[0].load(SeqCst) && done[1].load(SeqCst));
    let lock = Arc::try_unwrap(lock).unwrap_or_else(|_| panic!("still shared"));
    assert_eq!(
        lock.into_inner(),
        11,
        "c2 wrote before c1's upgrade completed"
    );
}

/// `/locking/co-rwlock/downgrade`: with readers and writers queued, a
/// downgrade admits the reader behind it and nothing hangs; c2–c4 all
/// complete within the single enter of c1 (the bug QEMU's ticket rewrite
/// fixed hung here).
#[test]
fn qemu_locking_co_rwlock_downgrade() {
    let lock = Arc::new(CoRwLock::new(()));
    let done = flags::<4>();
    let (l, d) = (lock.clone(), done.clone());
    let c1 = Coroutine::new(move || {
        let r = l.read();
        suspend();
        drop(r);
        suspend();
        d[0].store(true, SeqCst);
    });
    let (l, d) = (lock.clone(), done.clone());
    let c2 = Coroutine::new(move || {
        let w = l.write();
        let r = w.downgrade();
        drop(r);
        d[1].store(true, SeqCst);
    });
    let (l, d) = (lock.clone(), done.clone());
    let c3 = Coroutine::new(move || {
        drop(l.read());
        d[2].store(true, SeqCst);
    });
    let (l, d) = (lock.clone(), done.clone());
    let c4 = Coroutine::new(move || {
        drop(l.write());
        d[3].store(true, SeqCst);
    });

    c1.enter(); // holds a read lock
    c2.enter(); // W queued
    c3.enter(); // R queued (a ticket is waiting)
    c4.enter(); // W queued
    assert!(!done[1].load(SeqCst) && !done[2].load(SeqCst) && !done[3].load(SeqCst));
    c1.enter(); // unlock wakes c2 → downgrade admits c3 → c3's unlock admits c4
    assert!(done[1].load(SeqCst), "c2 done");
    assert!(done[2].load(SeqCst), "c3 done");
    assert!(done[3].load(SeqCst), "c4 done");
    c1.enter();
    assert!(done[0].load(SeqCst), "c1 done");
}

/// Readers share; a queued writer blocks later readers (no writer
/// starvation); consecutive queued readers are admitted together after the
/// writer, in ticket order.
#[test]
fn tickets_are_served_in_order() {
    let lock = Arc::new(CoRwLock::new(()));
    let log = Arc::new(Mutex::new(Vec::new()));
    let spawn = |name: &'static str, write: bool| {
        let (l, log) = (lock.clone(), log.clone());
        let co = Coroutine::new(move || {
            if write {
                let _w = l.write();
                log.lock().unwrap().push(name);
                suspend();
            } else {
                let _r = l.read();
                log.lock().unwrap().push(name);
                suspend();
            }
        });
        co.enter();
        co
    };
    let r1 = spawn("r1", false);
    let r2 = spawn("r2", false); // shares with r1
    let w1 = spawn("w1", true); // queued
    let r3 = spawn("r3", false); // queued behind w1
    let r4 = spawn("r4", false); // queued behind r3
    assert_eq!(*log.lock().unwrap(), ["r1", "r2"]);
    r1.enter();
    r2.enter(); // last reader out: w1 admitted and runs
    assert_eq!(*log.lock().unwrap(), ["r1", "r2", "w1"]);
    w1.enter(); // w1 out: r3 admitted, which admits r4
    assert_eq!(*log.lock().unwrap(), ["r1", "r2", "w1", "r3", "r4"]);
    r3.enter();
    r4.enter();
    assert!([r1, r2, w1, r3, r4].iter().all(Coroutine::is_finished));
}

/// A sole reader with nobody queued upgrades at once; downgrade never
/// waits.
#[test]
fn immediate_upgrade_and_downgrade() {
    let lock = Arc::new(CoRwLock::new(1));
    let l = lock.clone();
    let co = Coroutine::new(move || {
        let r = l.read();
        let mut w = r.upgrade();
        *w = 2;
        let r = w.downgrade();
        assert_eq!(*r, 2);
        let r2 = l.read(); // shares with ourselves
        assert_eq!(*r2, 2);
    });
    co.enter();
    assert!(co.is_finished());
}

#[test]
#[should_panic(expected = "CoRwLock::read() called outside a coroutine")]
fn read_outside_a_coroutine_panics() {
    let l = CoRwLock::new(());
    let _r = l.read();
}
