//! Nothing lost: workers survive panics that reach their loops, shutdown
//! races with spawns and wakes from other threads, timer ids stay with
//! their context, and cancellation cannot be swallowed into a leak.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coscheduler::{AioContext, Coroutine, Handle, JoinError, Runtime, suspend};
use testkit::{CountDrop, wait_until};

/// A destructor that spawns onto the runtime (the reviewer's reproducer of
/// a dangling worker pointer).
struct SpawnOnDrop(Handle, Arc<AtomicUsize>);
impl Drop for SpawnOnDrop {
    fn drop(&mut self) {
        self.1.fetch_add(1, SeqCst);
        drop(self.0.spawn(|| ()));
    }
}

#[test]
fn a_panicking_bottom_half_does_not_kill_its_worker() {
    let rt = Runtime::builder().threads(1).build().unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let handle = rt.handle();
    let sleeper = rt.contexts()[0].spawn(move || {
        let _g = SpawnOnDrop(handle, d);
        suspend();
    });
    wait_until("the sleeper to start", || {
        sleeper.coroutine().context().is_some()
    });
    rt.contexts()[0].bh_oneshot(|| panic!("bottom half panics on purpose"));
    // The one worker is still there: a later spawn completes.
    assert_eq!(rt.spawn(|| 7).join().unwrap(), 7);
    assert_eq!(rt.metrics().total.panics_contained, 1);
    drop(rt);
    assert_eq!(drops.load(SeqCst), 1, "the sleeper was unwound at shutdown");
    assert!(matches!(sleeper.join(), Err(JoinError::Cancelled)));
}

#[test]
fn a_panicking_timer_callback_and_raw_coroutine_are_contained() {
    let rt = Runtime::builder().threads(1).build().unwrap();
    let ctx = rt.contexts()[0].clone();
    let c = ctx.clone();
    ctx.bh_oneshot(move || {
        c.add_timer(Instant::now(), || {
            panic!("timer callback panics on purpose")
        });
    });
    // A raw coroutine (no JoinHandle) that panics when the worker enters it.
    let raw = Coroutine::new(|| panic!("raw coroutine panics on purpose"));
    ctx.schedule(&raw);
    wait_until("both panics to be contained", || {
        rt.metrics().total.panics_contained == 2
    });
    assert!(raw.is_finished());
    assert_eq!(rt.spawn(|| "alive").join().unwrap(), "alive");
}

#[test]
fn finishing_with_a_lock_held_is_the_coroutines_own_panic() {
    let rt = Runtime::builder().threads(1).build().unwrap();
    let leaked = rt.spawn(coscheduler::raw::lock_acquired).join();
    match leaked {
        Err(e @ JoinError::Panicked(_)) => {
            let msg = e.panic_message().unwrap();
            assert!(msg.contains("finished while holding 1 lock(s)"), "{msg}");
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    assert_eq!(rt.spawn(|| 1).join().unwrap(), 1, "the worker lives");
    assert_eq!(rt.metrics().total.panics_contained, 0);
}

#[test]
fn a_raw_coroutine_finishing_with_a_lock_held_panics_in_its_enterer() {
    let co = Coroutine::new(coscheduler::raw::lock_acquired);
    let p = catch_unwind(AssertUnwindSafe(|| co.enter())).unwrap_err();
    let msg = p.downcast_ref::<String>().unwrap();
    assert!(msg.contains("finished while holding 1 lock(s)"), "{msg}");
    assert!(co.is_finished());
}

#[test]
fn spawning_from_another_thread_during_shutdown_loses_no_handle() {
    for _ in 0..200 {
        let rt = Runtime::builder().threads(2).build().unwrap();
        let handle = rt.handle();
        let go = Arc::new(AtomicBool::new(false));
        let g = go.clone();
        let spawner = std::thread::spawn(move || {
            while !g.load(SeqCst) {
                std::hint::spin_loop();
            }
            (0..50).map(|i| handle.spawn(move || i)).collect::<Vec<_>>()
        });
        go.store(true, SeqCst);
        drop(rt);
        for h in spawner.join().unwrap() {
            // Every handle completes: it ran, or it was dropped unstarted.
            match h.join() {
                Ok(_) | Err(JoinError::Cancelled) => {}
                Err(e) => panic!("unexpected {e}"),
            }
        }
    }
}

#[test]
fn waking_from_another_thread_during_shutdown_loses_nothing() {
    for _ in 0..100 {
        let rt = Runtime::builder().threads(2).build().unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..20)
            .map(|i| {
                let d = drops.clone();
                rt.contexts()[i % 2].spawn(move || {
                    let _g = CountDrop(d);
                    loop {
                        suspend();
                    }
                })
            })
            .collect();
        let cos: Vec<Coroutine> = hs.iter().map(|h| h.coroutine().clone()).collect();
        wait_until("all to start", || {
            cos.iter().all(|c| c.context().is_some() && !c.entered())
        });
        let waker = std::thread::spawn(move || {
            for co in &cos {
                co.wake();
            }
            cos
        });
        drop(rt);
        drop(waker.join().unwrap());
        assert_eq!(drops.load(SeqCst), 20);
        for h in hs {
            assert!(matches!(h.join(), Err(JoinError::Cancelled)));
        }
    }
}

#[test]
fn a_foreign_timer_id_is_refused() {
    let rt = Runtime::builder().threads(2).build().unwrap();
    let (a, b) = (rt.contexts()[0].clone(), rt.contexts()[1].clone());
    let fired = Arc::new(AtomicBool::new(false));
    let f = fired.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let a2 = a.clone();
    a.bh_oneshot(move || {
        let id = a2.add_timer(Instant::now() + Duration::from_millis(20), move || {
            f.store(true, SeqCst)
        });
        tx.send(id).unwrap();
    });
    let id = rx.recv().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let b2 = b.clone();
    b.bh_oneshot(move || tx.send(b2.cancel_timer(id)).unwrap());
    assert!(!rx.recv().unwrap(), "context b refuses a's timer id");
    wait_until("a's timer to fire anyway", || fired.load(SeqCst));
}

#[test]
fn waking_a_finished_coroutine_panics_from_any_thread() {
    let co = Coroutine::new(|| {});
    co.enter();
    let local = catch_unwind(AssertUnwindSafe(|| co.wake())).unwrap_err();
    let msg = local.downcast_ref::<String>().unwrap().clone();
    assert!(msg.contains("woken after it finished"), "{msg}");
    let remote = std::thread::spawn(move || co.wake()).join().unwrap_err();
    let msg = remote.downcast_ref::<String>().unwrap();
    assert!(msg.contains("woken after it finished"), "{msg}");
}

/// `catch_unwind` around a suspension catches the cancellation, but the
/// coroutine cannot suspend normally again: its next suspension raises it
/// anew, so it is still unwound and its stack comes back.
#[test]
fn a_swallowed_cancellation_is_raised_again() {
    let drops = Arc::new(AtomicUsize::new(0));
    let caught = Arc::new(AtomicUsize::new(0));
    let (d, c) = (drops.clone(), caught.clone());
    let rt = Runtime::builder().threads(1).build().unwrap();
    let h = rt.spawn(move || {
        let _g = CountDrop(d);
        for _ in 0..3 {
            if catch_unwind(suspend).is_err() {
                c.fetch_add(1, SeqCst);
            }
        }
        suspend();
        unreachable!("a cancelled coroutine does not get past suspend()");
    });
    wait_until("it to start", || h.coroutine().context().is_some());
    let leaked_before = coscheduler::pool::stats().leaked;
    rt.shutdown_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(caught.load(SeqCst), 3, "each catch saw the cancellation");
    assert_eq!(drops.load(SeqCst), 1, "and it was unwound in the end");
    assert_eq!(coscheduler::pool::stats().leaked, leaked_before);
    assert!(matches!(h.join(), Err(JoinError::Cancelled)));
}

/// A destructor that waits for something that never comes: the shutdown
/// gives up after its timeout and names the coroutine in its error.
#[test]
fn a_coroutine_stuck_in_its_destructor_is_reported_and_counted() {
    struct WaitsForever(Arc<Mutex<Option<Coroutine>>>);
    impl Drop for WaitsForever {
        fn drop(&mut self) {
            // Keeps a handle, so it is not an orphan, but nobody wakes it.
            *self.0.lock().unwrap() = coscheduler::current();
            suspend();
        }
    }
    let keep = Arc::new(Mutex::new(None));
    let k = keep.clone();
    let rt = Runtime::builder().threads(1).build().unwrap();
    let h = coscheduler::CoroutineBuilder::default()
        .name("stuck-one")
        .spawn_on(&rt.contexts()[0], move || {
            let _w = WaitsForever(k);
            suspend();
        })
        .unwrap();
    wait_until("it to start", || h.coroutine().context().is_some());
    let leaked_before = coscheduler::pool::stats().leaked;
    let started = Instant::now();
    let err = rt
        .shutdown_timeout(Duration::from_millis(200))
        .expect_err("one coroutine cannot be unwound");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(err.leaked(), 1);
    assert!(err.to_string().contains("stuck-one"), "{err}");
    assert_eq!(coscheduler::pool::stats().leaked, leaked_before + 1);
    assert!(!h.is_finished());
}

/// A coroutine that never suspends cannot be interrupted: dropping its
/// runtime waits for it and says so on stderr after the timeout, naming the
/// worker. Run in a child process to read its stderr.
#[test]
fn dropping_a_runtime_with_a_spinning_coroutine_says_what_it_waits_for() {
    if std::env::var_os("SPIN_CHILD").is_some() {
        let rt = Runtime::builder()
            .threads(1)
            .thread_name("spinner")
            .shutdown_timeout(Duration::from_millis(100))
            .build()
            .unwrap();
        let stop = Instant::now() + Duration::from_millis(1500);
        let h = rt.spawn(move || while Instant::now() < stop {});
        std::thread::sleep(Duration::from_millis(50));
        drop(h);
        drop(rt);
        return;
    }
    let out = testkit::run_test_in_child(
        "dropping_a_runtime_with_a_spinning_coroutine_says_what_it_waits_for",
        "SPIN_CHILD",
        "1",
    );
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("shutdown is waiting for worker 0 (spinner-0)")
            && stderr.contains("without suspending"),
        "{stderr}"
    );
}

/// Bottom halves and spawns aimed at a context after it closed are dropped
/// by whoever posts them, with nothing left queued.
#[test]
fn posting_to_a_closed_context_drops_the_work_unrun() {
    let rt = Runtime::builder().threads(1).build().unwrap();
    let ctx: AioContext = rt.contexts()[0].clone();
    rt.shutdown();
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    ctx.bh_oneshot(move || r.store(true, SeqCst));
    let h = ctx.spawn(|| 1);
    assert!(matches!(h.join(), Err(JoinError::Cancelled)));
    assert!(!ran.load(SeqCst));
}

/// std counts panics per thread: while coroutine A is suspended in the
/// middle of its cancellation unwind, coroutine B on the same thread runs
/// with `std::thread::panicking()` true. B's suspensions must still be
/// cancellation points, or B (here: the one that would let A finish) could
/// never be unwound and both would be leaked.
#[test]
fn a_coroutine_suspending_while_another_unwinds_stays_cancellable() {
    /// A's destructor: wakes B once, then waits (leaving its own handle in
    /// the slot) for B's destructor.
    struct WakeThenWait {
        b: Arc<Mutex<Option<Coroutine>>>,
        b_dropped: Arc<AtomicBool>,
        done: Arc<AtomicUsize>,
    }
    impl Drop for WakeThenWait {
        fn drop(&mut self) {
            assert!(std::thread::panicking(), "A unwinds its cancellation");
            let b = self.b.lock().unwrap().take().expect("B's handle");
            b.wake();
            drop(b);
            *self.b.lock().unwrap() = coscheduler::current();
            while !self.b_dropped.load(SeqCst) {
                suspend();
            }
            self.done.fetch_add(1, SeqCst);
        }
    }
    /// B's destructor: lets A finish.
    struct SetOnDrop(
        Arc<AtomicBool>,
        Arc<AtomicUsize>,
        Arc<Mutex<Option<Coroutine>>>,
    );
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, SeqCst);
            self.1.fetch_add(1, SeqCst);
            if let Some(a) = self.2.lock().unwrap().take() {
                a.wake();
            }
        }
    }
    let rt = Runtime::builder().threads(1).build().unwrap();
    let b_dropped = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let b_wakes = Arc::new(AtomicUsize::new(0));
    // B's handle for A's destructor, then A's for B's.
    let slot = Arc::new(Mutex::new(None));
    let (flag, d, wakes, a_slot) = (
        b_dropped.clone(),
        done.clone(),
        b_wakes.clone(),
        slot.clone(),
    );
    let hb = rt.contexts()[0].spawn(move || {
        let _s = SetOnDrop(flag, d, a_slot);
        loop {
            suspend();
            wakes.fetch_add(1, SeqCst);
        }
    });
    wait_until("B to suspend", || hb.coroutine().context().is_some());
    *slot.lock().unwrap() = Some(hb.coroutine().clone());
    let started = Arc::new(AtomicBool::new(false));
    let (flag, d, s) = (b_dropped.clone(), done.clone(), started.clone());
    let ha = rt.contexts()[0].spawn(move || {
        let _w = WakeThenWait {
            b: slot,
            b_dropped: flag,
            done: d,
        };
        s.store(true, SeqCst);
        suspend();
    });
    wait_until("A to suspend", || started.load(SeqCst));
    std::thread::sleep(Duration::from_millis(5));
    // A is cancelled; its destructor wakes B, which suspends again while
    // A's unwind is in flight on the same thread.
    drop(ha);
    wait_until("B to be woken and suspend again", || {
        b_wakes.load(SeqCst) == 1
    });
    std::thread::sleep(Duration::from_millis(5));
    // B's last handle: B must be cancelled now, which lets A finish.
    drop(hb);
    let deadline = Instant::now() + Duration::from_secs(10);
    while done.load(SeqCst) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let shutdown = rt.shutdown_timeout(Duration::from_secs(2));
    assert_eq!(
        done.load(SeqCst),
        2,
        "B was not cancelled, so A never finished"
    );
    shutdown.expect("nothing left to leak");
}
