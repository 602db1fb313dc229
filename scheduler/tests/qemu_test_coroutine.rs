//! QEMU's `tests/unit/test-coroutine.c` basic cases, rewritten in Rust
//! (the lock cases live in `coprimitives`), plus `test-aio.c`'s coroutine
//! cases.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use coscheduler::{AioContext, Coroutine, current, in_coroutine, suspend};

/// `/basic/no-dangling-access`: c1 enters c2, c2 suspends back into c1, c1
/// finishes (its stack goes back to the pool). Re-entering c2 must not touch
/// its former caller. Here: c1's pooled stack is reused by another coroutine
/// in between, which would expose any dangling reference.
#[test]
fn no_dangling_access() {
    let c2 = Coroutine::new(suspend);
    let c2b = c2.clone();
    let c1 = Coroutine::new(move || c2b.enter());
    c1.enter();
    assert!(c1.is_finished());
    assert!(!c2.is_finished());
    // Reuse c1's stack (the pool hands back the most recent one).
    let scribble = Coroutine::new(|| {
        let junk = [0xffu8; 4096];
        std::hint::black_box(&junk);
    });
    scribble.enter();
    c2.enter();
    assert!(c2.is_finished());
}

/// `/basic/lifecycle`: two create + enter rounds.
#[test]
fn lifecycle() {
    for _ in 0..2 {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let co = Coroutine::new(move || d.store(true, SeqCst));
        co.enter();
        assert!(done.load(SeqCst));
        assert!(co.is_finished());
    }
}

/// `/basic/yield`: a coroutine yields 5 times; 6 enters in total.
#[test]
fn yield_five_times() {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let co = Coroutine::new(move || {
        for _ in 0..5 {
            suspend();
        }
        d.store(true, SeqCst);
    });
    let mut i = -1;
    while !done.load(SeqCst) {
        co.enter();
        i += 1;
    }
    assert_eq!(i, 5);
}

struct Nest {
    n_enter: AtomicU32,
    n_return: AtomicU32,
    max: u32,
}

fn nest(data: Arc<Nest>) {
    if data.n_enter.fetch_add(1, SeqCst) + 1 < data.max {
        let d = data.clone();
        let child = Coroutine::new(move || nest(d));
        child.enter();
    }
    data.n_return.fetch_add(1, SeqCst);
}

/// `/basic/nesting`: a chain of 128 coroutines, each entering the next.
#[test]
fn nesting_128() {
    let data = Arc::new(Nest {
        n_enter: AtomicU32::new(0),
        n_return: AtomicU32::new(0),
        max: 128,
    });
    let d = data.clone();
    let root = Coroutine::new(move || nest(d));
    root.enter();
    assert_eq!(data.n_enter.load(SeqCst), 128);
    assert_eq!(data.n_return.load(SeqCst), 128);
}

/// `/basic/self`: `current()` inside is the coroutine itself.
#[test]
fn self_is_current() {
    let slot: Arc<Mutex<Option<Coroutine>>> = Arc::new(Mutex::new(None));
    let ok = Arc::new(AtomicBool::new(false));
    let (s, o) = (slot.clone(), ok.clone());
    let co = Coroutine::new(move || {
        let me = current().expect("inside a coroutine");
        o.store(Some(me) == *s.lock().unwrap(), SeqCst);
    });
    *slot.lock().unwrap() = Some(co.clone());
    co.enter();
    assert!(ok.load(SeqCst));
    assert!(current().is_none());
}

/// `/basic/entered`: an entered coroutine stays entered while it has entered
/// another, and stops being entered when it suspends.
#[test]
fn entered() {
    let checks = Arc::new(AtomicUsize::new(0));
    let k = checks.clone();
    let c1 = Coroutine::new(move || {
        let me = current().unwrap();
        assert!(me.entered());
        let parent = me.clone();
        let k2 = k.clone();
        let c2 = Coroutine::new(move || {
            assert!(parent.entered());
            assert!(current().unwrap().entered());
            k2.fetch_add(1, SeqCst);
            suspend();
            assert!(parent.entered());
            assert!(current().unwrap().entered());
            k2.fetch_add(1, SeqCst);
        });
        assert!(!c2.entered());
        c2.enter();
        assert!(!c2.entered());
        c2.enter();
        assert!(c2.is_finished());
        k.fetch_add(1, SeqCst);
    });
    assert!(!c1.entered());
    c1.enter();
    assert!(!c1.entered());
    assert_eq!(checks.load(SeqCst), 3);
}

/// `/basic/in_coroutine`.
#[test]
fn in_coroutine_is_true_only_inside() {
    assert!(!in_coroutine());
    let inside = Arc::new(AtomicBool::new(false));
    let i = inside.clone();
    Coroutine::new(move || i.store(in_coroutine(), SeqCst)).enter();
    assert!(inside.load(SeqCst));
    assert!(!in_coroutine());
}

/// `/basic/order`: the exact interleaving of caller and coroutine.
#[test]
fn order() {
    let records = Arc::new(Mutex::new(Vec::new()));
    let r = records.clone();
    let co = Coroutine::new(move || {
        r.lock().unwrap().push((2, 1));
        assert!(in_coroutine());
        suspend();
        r.lock().unwrap().push((2, 2));
        assert!(in_coroutine());
    });
    records.lock().unwrap().push((1, 1));
    co.enter();
    records.lock().unwrap().push((1, 2));
    assert!(!in_coroutine());
    co.enter();
    records.lock().unwrap().push((1, 3));
    assert!(!in_coroutine());
    assert_eq!(
        *records.lock().unwrap(),
        vec![(1, 1), (2, 1), (1, 2), (2, 2), (1, 3)]
    );
}

struct Chain {
    other: Mutex<Option<Coroutine>>,
    i: AtomicU32,
    max: u32,
}

fn chain(data: Arc<Chain>) {
    let ctx = AioContext::current();
    data.i.store(0, SeqCst);
    while data.i.load(SeqCst) < data.max {
        let other = data.other.lock().unwrap().clone().unwrap();
        ctx.enter(&other);
        suspend();
        data.i.fetch_add(1, SeqCst);
    }
}

/// `test-aio.c` `/aio/coroutine/queue-chaining`: 25,000 mutual wakeups chain
/// iteratively without growing the stack.
#[test]
fn queue_chaining() {
    let a = Arc::new(Chain {
        other: Mutex::new(None),
        i: AtomicU32::new(0),
        max: 25_000,
    });
    let b = Arc::new(Chain {
        other: Mutex::new(None),
        i: AtomicU32::new(0),
        max: 25_000,
    });
    let (a2, b2) = (a.clone(), b.clone());
    let b_other = Coroutine::new(move || chain(a2));
    let a_other = Coroutine::new(move || chain(b2));
    *b.other.lock().unwrap() = Some(b_other.clone());
    *a.other.lock().unwrap() = Some(a_other.clone());
    b_other.enter();
    assert_eq!(a.i.load(SeqCst), 25_000);
    assert_eq!(b.i.load(SeqCst), 24_999);
    a_other.enter();
    assert_eq!(b.i.load(SeqCst), 25_000);
    // Break the cycles (each chain holds the other's handle).
    a.other.lock().unwrap().take();
    b.other.lock().unwrap().take();
}

/// `test-aio.c` `/aio/coroutine/worker-thread-co-enter`: a thread without
/// this context enters a coroutine homed here; it is scheduled, and runs on
/// the owning thread's next poll.
#[test]
fn worker_thread_co_enter() {
    let ctx = AioContext::current();
    let main = std::thread::current().id();
    let ran_on_main = Arc::new(AtomicBool::new(false));
    let r = ran_on_main.clone();
    let co = Coroutine::new(move || r.store(std::thread::current().id() == main, SeqCst));
    let (c, co2) = (ctx.clone(), co.clone());
    std::thread::spawn(move || c.enter(&co2)).join().unwrap();
    assert!(ctx.poll(true));
    assert!(ran_on_main.load(SeqCst));
    assert!(!ctx.poll(false));
}

/// QEMU's wake order (docs/SEMANTICS.md §1.4): coroutines woken by a coroutine of
/// the same context run right after it suspends, before `enter` returns,
/// FIFO within one waker, depth-first across wakers.
#[test]
fn wake_order_is_fifo_then_depth_first() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mk = |name: &'static str, wakes: Vec<Coroutine>| {
        let log = log.clone();
        Coroutine::new(move || {
            suspend();
            log.lock().unwrap().push(name);
            for w in &wakes {
                w.wake();
            }
        })
    };
    let d = mk("d", vec![]);
    let c = mk("c", vec![]);
    let b = mk("b", vec![d.clone()]);
    for co in [&b, &c, &d] {
        co.enter(); // park each at its first suspension
    }
    let (b2, c2, l) = (b.clone(), c.clone(), log.clone());
    let a = Coroutine::new(move || {
        b2.wake();
        c2.wake();
        l.lock().unwrap().push("a suspends");
        suspend();
        l.lock().unwrap().push("a resumed");
    });
    a.enter();
    log.lock().unwrap().push("enter returned");
    assert_eq!(
        *log.lock().unwrap(),
        vec!["a suspends", "b", "d", "c", "enter returned"]
    );
    a.enter();
    assert!(a.is_finished() && b.is_finished() && c.is_finished() && d.is_finished());
}
