//! CoMutex: QEMU's `/locking/co-mutex` and `/locking/co-mutex/lockable`
//! (tests/unit/test-coroutine.c, docs/SEMANTICS.md §10.1) on one thread, plus the
//! Rust API's own guarantees.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};

use coprimitives::{CoMutex, Lockable, lock_guard, lock_guard_opt};
use coscheduler::{Coroutine, suspend};

/// QEMU's globals `locked` and `done`, per test.
#[derive(Default)]
struct Flags {
    locked: std::sync::atomic::AtomicBool,
    done: AtomicUsize,
}

/// Drives QEMU's choreography with `body(mutex, flags)` as each
/// coroutine's entry (`mutex_fn` / `lockable_fn`).
fn co_mutex_choreography(body: fn(&CoMutex<()>, &Flags)) {
    let m = Arc::new(CoMutex::new(()));
    let flags = Arc::new(Flags::default());
    let make = || {
        let (m, flags) = (m.clone(), flags.clone());
        Coroutine::new(move || body(&m, &flags))
    };
    let (c1, c2) = (make(), make());

    c1.enter(); // locks and yields
    assert!(flags.locked.load(SeqCst));
    c2.enter(); // blocks in lock and yields back
    c1.enter(); // unlocks (c2 goes on c1's wakeup list), finishes; c2 then locks and yields
    assert_eq!(flags.done.load(SeqCst), 1);
    assert!(
        flags.locked.load(SeqCst),
        "c2 ran in the same enter call and holds the lock"
    );
    c2.enter(); // unlocks and finishes
    assert_eq!(flags.done.load(SeqCst), 2);
    assert!(!flags.locked.load(SeqCst));
    assert!(c1.is_finished() && c2.is_finished());
    assert!(!m.is_locked());
}

/// `/locking/co-mutex`.
#[test]
fn qemu_locking_co_mutex() {
    co_mutex_choreography(|m, f| {
        let g = m.lock();
        assert!(!f.locked.load(SeqCst));
        f.locked.store(true, SeqCst);
        suspend();
        f.locked.store(false, SeqCst);
        drop(g);
        f.done.fetch_add(1, SeqCst);
    });
}

/// `/locking/co-mutex/lockable`: the same through `QemuLockable`.
#[test]
fn qemu_locking_co_mutex_lockable() {
    co_mutex_choreography(|m, f| {
        let lockable: &dyn Lockable = m;
        lockable.lock();
        assert!(!f.locked.load(SeqCst));
        f.locked.store(true, SeqCst);
        suspend();
        f.locked.store(false, SeqCst);
        // SAFETY: locked just above by this coroutine.
        unsafe { lockable.unlock() };
        f.done.fetch_add(1, SeqCst);
    });
    // QEMU_MAKE_LOCKABLE((CoMutex *)NULL) == NULL.
    let none: Option<&CoMutex<()>> = None;
    assert!(none.map(|m| m as &dyn Lockable).is_none());
    assert!(lock_guard_opt(none).is_none());
}

/// `QEMU_LOCK_GUARD` over a CoMutex: released at scope end.
#[test]
fn lockable_guard_releases() {
    let m = Arc::new(CoMutex::new(()));
    let m2 = m.clone();
    Coroutine::new(move || {
        {
            let _g = lock_guard(&*m2);
            assert!(m2.is_locked_by_current());
        }
        assert!(!m2.is_locked());
    })
    .enter();
    assert!(!m.is_locked());
}

#[test]
fn try_lock_never_waits() {
    let m = Arc::new(CoMutex::new(5));
    let m2 = m.clone();
    let holder = Coroutine::new(move || {
        let g = m2.lock();
        suspend();
        drop(g);
    });
    holder.enter();
    let m3 = m.clone();
    Coroutine::new(move || assert!(m3.try_lock().is_none(), "held by another coroutine")).enter();
    assert!(m.try_lock().is_none(), "from a thread too");
    holder.enter();
    // Free: a thread may take it without a coroutine.
    let g = m.try_lock().expect("free");
    assert_eq!(*g, 5);
    assert!(m.is_locked_by_current());
    drop(g);
    assert!(!m.is_locked());
    let m4 = m.clone();
    Coroutine::new(move || {
        let mut g = m4.try_lock().expect("free");
        *g += 1;
    })
    .enter();
    assert_eq!(*m.try_lock().unwrap(), 6);
}

#[test]
fn is_locked_by_current_tracks_the_holder() {
    let m = Arc::new(CoMutex::new(()));
    let m1 = m.clone();
    let holder = Coroutine::new(move || {
        assert!(!m1.is_locked_by_current());
        let g = m1.lock();
        assert!(m1.is_locked_by_current());
        m1.assert_locked();
        suspend();
        assert!(
            m1.is_locked_by_current(),
            "still the holder after a suspension"
        );
        drop(g);
        assert!(!m1.is_locked_by_current());
    });
    holder.enter();
    let m2 = m.clone();
    Coroutine::new(move || {
        assert!(m2.is_locked());
        assert!(!m2.is_locked_by_current(), "another coroutine holds it");
    })
    .enter();
    assert!(!m.is_locked_by_current(), "the thread does not hold it");
    holder.enter();
    assert!(holder.is_finished());
}

#[test]
#[should_panic(expected = "CoMutex::lock() called outside a coroutine")]
fn lock_outside_a_coroutine_panics() {
    let m = CoMutex::new(0);
    let _g = m.lock();
}

/// A holder that panics releases the lock while unwinding, and the waiter
/// queued behind it gets it.
#[test]
fn panicking_holder_releases_the_lock() {
    let m = Arc::new(CoMutex::new(0));
    let m1 = m.clone();
    let holder = Coroutine::new(move || {
        let mut g = m1.lock();
        *g = 1;
        suspend();
        panic!("boom while holding the lock");
    });
    holder.enter();
    let m2 = m.clone();
    let waiter = Coroutine::new(move || {
        let mut g = m2.lock();
        assert_eq!(*g, 1);
        *g = 2;
    });
    waiter.enter(); // queues behind the holder
    assert!(!waiter.is_finished());
    let err = catch_unwind(AssertUnwindSafe(|| holder.enter())).expect_err("the holder panics");
    assert_eq!(
        err.downcast_ref::<&str>(),
        Some(&"boom while holding the lock")
    );
    assert!(
        waiter.is_finished(),
        "the unwind released the lock to the waiter in the same enter"
    );
    assert_eq!(*m.try_lock().expect("free again"), 2);
}

/// QEMU's `locks_held`: a coroutine that finishes while holding a lock (its
/// guard forgotten) makes its enterer panic.
#[test]
fn finishing_with_a_lock_held_is_reported() {
    let m: &'static CoMutex<()> = Box::leak(Box::new(CoMutex::new(())));
    let co = Coroutine::new(move || std::mem::forget(m.lock()));
    let err =
        catch_unwind(AssertUnwindSafe(|| co.enter())).expect_err("locks_held != 0 at termination");
    let msg = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .unwrap_or("");
    assert!(msg.contains("holding 1 lock"), "{msg}");
}

/// Waiters of a FIFO mutex get the lock in arrival order, each directly
/// from the unlocker.
#[test]
fn waiters_are_served_fifo() {
    fifo_on_one_context(CoMutex::new_fifo(Vec::new()));
}

/// Eventual fairness (the default) is plain FIFO within one context, and
/// passes the QEMU choreography unchanged.
#[test]
fn eventual_is_fifo_within_a_context() {
    fifo_on_one_context(CoMutex::new(Vec::new()));
    let m = Arc::new(CoMutex::new(()));
    let m1 = m.clone();
    let c1 = Coroutine::new(move || {
        let g = m1.lock();
        suspend();
        drop(g);
    });
    let m2 = m.clone();
    let c2 = Coroutine::new(move || drop(m2.lock()));
    c1.enter();
    c2.enter();
    c1.enter();
    assert!(
        c1.is_finished() && c2.is_finished(),
        "c2 ran in c1's enter, as with FIFO"
    );
}

fn fifo_on_one_context(m: CoMutex<Vec<i32>>) {
    let m = Arc::new(m);
    let m0 = m.clone();
    let holder = Coroutine::new(move || {
        let g = m0.lock();
        suspend();
        drop(g);
    });
    holder.enter();
    let waiters: Vec<_> = (1..=4)
        .map(|i| {
            let m = m.clone();
            let co = Coroutine::new(move || m.lock().push(i));
            co.enter();
            co
        })
        .collect();
    holder.enter();
    assert!(waiters.iter().all(Coroutine::is_finished));
    assert_eq!(*m.try_lock().unwrap(), [1, 2, 3, 4]);
}

#[test]
#[should_panic(expected = "not locked by the current coroutine")]
fn lockable_unlock_by_a_non_holder_panics() {
    let m = CoMutex::new(());
    // SAFETY: deliberately violated; the implementation must refuse.
    unsafe { Lockable::unlock(&m) };
}

/// `const fn new`: a static mutex.
#[test]
fn static_mutex() {
    static M: CoMutex<u32> = CoMutex::new(0);
    static LOG: Mutex<Vec<u32>> = Mutex::new(Vec::new());
    Coroutine::new(|| {
        *M.lock() += 1;
        LOG.lock().unwrap().push(*M.lock());
    })
    .enter();
    assert_eq!(*LOG.lock().unwrap(), [1]);
}

#[test]
fn into_inner_and_get_mut() {
    let mut m = CoMutex::new(String::from("a"));
    m.get_mut().push('b');
    assert_eq!(m.into_inner(), "ab");
    // Unsized contents through a box.
    let b: Box<CoMutex<[u8]>> = Box::new(CoMutex::new([1u8, 2, 3]));
    Coroutine::new(move || {
        b.lock()[0] = 9;
        assert_eq!(&*b.lock(), &[9, 2, 3]);
    })
    .enter();
}
