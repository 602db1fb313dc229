//! The Runtime: wakes across threads, stealing, oversubscription, panics,
//! shutdown, configuration, dumps and migration errors.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coscheduler::{AioContext, Config, Coroutine, JoinError, Runtime, suspend, yield_now};
use testkit::{panic_message, wait_until};

struct CountDrop(Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>);
impl Drop for CountDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
        self.1
            .lock()
            .unwrap()
            .push(std::thread::current().name().unwrap_or("?").to_owned());
    }
}

#[test]
fn plain_threads_wake_coroutines_on_workers() {
    const N: usize = 2000;
    let rt = Runtime::builder().threads(2).build().unwrap();
    let suspended = Arc::new(AtomicUsize::new(0));
    let s = suspended.clone();
    let h = rt.spawn(move || {
        for _ in 0..N {
            s.fetch_add(1, SeqCst);
            suspend();
        }
        std::thread::current().name().map(str::to_owned)
    });
    let co = h.coroutine().clone();
    for i in 1..=N {
        // One wake per suspension: wait until the coroutine announced it.
        wait_until("the coroutine to suspend", || suspended.load(SeqCst) >= i);
        std::thread::spawn({
            let co = co.clone();
            move || co.wake()
        })
        .join()
        .unwrap();
    }
    let name = h.join().unwrap().unwrap();
    assert!(name.starts_with("coscheduler-worker-"), "{name}");
    rt.shutdown();
}

#[test]
fn wake_across_contexts_and_back() {
    const N: usize = 20_000;
    let rt = Runtime::builder()
        .threads(2)
        .pin_threads(false)
        .build()
        .unwrap();
    let ctxs = rt.contexts().to_vec();
    let a_slot: Arc<Mutex<Option<Coroutine>>> = Arc::default();
    let slot = a_slot.clone();
    let b = Coroutine::new(move || {
        for _ in 0..N {
            suspend();
            slot.lock().unwrap().clone().unwrap().wake();
        }
    });
    ctxs[1].schedule(&b);
    wait_until("b to start", || b.context().is_some() && !b.entered());
    let b2 = b.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let a = Coroutine::new(move || {
        for _ in 0..N {
            b2.wake();
            suspend();
        }
        tx.send(()).unwrap();
    });
    // Publish A before it can wake B (B wakes A back through the slot).
    *a_slot.lock().unwrap() = Some(a.clone());
    ctxs[0].schedule(&a);
    rx.recv_timeout(Duration::from_secs(60))
        .expect("ping-pong finished");
    wait_until("b to finish", || b.is_finished());
    let m = rt.metrics();
    assert!(
        m.per_context[0].handoffs_received >= N as u64
            && m.per_context[1].handoffs_received >= N as u64,
        "{m:?}"
    );
    a_slot.lock().unwrap().take();
    rt.shutdown();
}

#[test]
fn idle_workers_steal_unstarted_coroutines() {
    let rt = Runtime::builder()
        .threads(2)
        .pin_threads(false)
        .build()
        .unwrap();
    let handle = rt.handle();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let threads = Arc::new(Mutex::new(std::collections::HashSet::new()));
    let t = threads.clone();
    // One coroutine floods its own worker's deque; the other worker is idle
    // and must steal.
    rt.block_on(move || {
        let hs: Vec<_> = (0..20_000)
            .map(|_| {
                let (r, t) = (r.clone(), t.clone());
                handle.spawn(move || {
                    r.fetch_add(1, SeqCst);
                    t.lock().unwrap().insert(std::thread::current().id());
                    // A little work, so the spawner's worker cannot keep up.
                    std::hint::black_box((0..200).sum::<u64>());
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
    });
    assert_eq!(ran.load(SeqCst), 20_000);
    let m = rt.metrics();
    let steals: u64 = m.per_context.iter().map(|c| c.steal_successes).sum();
    assert!(steals > 0, "no steal happened: {m:?}");
    assert_eq!(
        threads.lock().unwrap().len(),
        2,
        "both workers ran spawned coroutines"
    );
    rt.shutdown();
}

#[test]
fn oversubscribed_runtime_completes_everything() {
    let rt = Runtime::builder().threads(8).build().unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..10_000)
        .map(|_| {
            let d = done.clone();
            rt.spawn(move || {
                for _ in 0..10 {
                    yield_now();
                }
                d.fetch_add(1, SeqCst);
            })
        })
        .collect();
    hs.into_iter().for_each(|h| h.join().unwrap());
    assert_eq!(done.load(SeqCst), 10_000);
    rt.shutdown();
}

#[test]
fn a_panicking_coroutine_reports_through_its_handle_and_the_worker_survives() {
    let rt = Runtime::builder().threads(1).build().unwrap();
    let err = rt
        .spawn(|| -> u32 { panic!("worker-side boom") })
        .join()
        .unwrap_err();
    assert!(err.is_panic());
    assert_eq!(err.panic_message(), Some("worker-side boom"));
    assert!(err.to_string().contains("worker-side boom"));
    // The single worker still runs coroutines.
    assert_eq!(rt.block_on(|| 5), 5);
    let p = catch_unwind(AssertUnwindSafe(|| rt.block_on(|| panic!("re-raised")))).unwrap_err();
    assert_eq!(panic_message(p), "re-raised");
    assert_eq!(rt.block_on(|| 6), 6);
    rt.shutdown();
}

#[test]
fn shutdown_unwinds_suspended_coroutines_on_their_workers_and_cancels_unstarted_ones() {
    let rt = Runtime::builder()
        .threads(2)
        .thread_name("shut")
        .build()
        .unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let where_ = Arc::new(Mutex::new(Vec::new()));
    let started = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..100 {
        let guard = CountDrop(drops.clone(), where_.clone());
        let s = started.clone();
        let me = Arc::new(Mutex::new(None::<Coroutine>));
        let me2 = me.clone();
        handles.push(rt.spawn(move || {
            let _g = guard;
            // Keep a handle to ourselves so that nothing else can drop us:
            // only shutdown can end this coroutine.
            *me2.lock().unwrap() = coscheduler::current();
            s.fetch_add(1, SeqCst);
            suspend();
            unreachable!();
        }));
    }
    wait_until("every coroutine to suspend", || started.load(SeqCst) == 100);
    let blocker = rt.spawn(|| std::thread::sleep(Duration::from_millis(300)));
    std::thread::sleep(Duration::from_millis(20));
    // Keep both workers busy so the next spawns cannot start before shutdown.
    let blocker2 = rt.spawn(|| std::thread::sleep(Duration::from_millis(300)));
    std::thread::sleep(Duration::from_millis(20));
    let unstarted: Vec<_> = (0..50)
        .map(|_| {
            let guard = CountDrop(drops.clone(), where_.clone());
            rt.spawn(move || drop(guard))
        })
        .collect();
    rt.shutdown();
    blocker.join().unwrap();
    blocker2.join().unwrap();
    assert_eq!(drops.load(SeqCst), 150, "every destructor ran");
    let names = where_.lock().unwrap();
    let on_workers = names.iter().filter(|n| n.starts_with("shut-")).count();
    assert!(
        on_workers >= 100,
        "suspended coroutines unwound on their workers: {names:?}"
    );
    for h in handles {
        assert!(matches!(h.join(), Err(JoinError::Cancelled)));
    }
    for h in unstarted {
        match h.join() {
            Err(JoinError::Cancelled) | Ok(()) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
}

#[test]
fn runtime_from_config() {
    let cfg = Config::from_toml_str(
        "[runtime]\nthreads = 3\npin_threads = false\nstack_size = \"128KiB\"\npoll_max = \"10us\"\nthread_name = \"cfg\"\n",
    )
    .unwrap();
    let rt = Runtime::from_config(&cfg).unwrap();
    assert_eq!(rt.contexts().len(), 3);
    assert!(rt.contexts()[2].name().starts_with("cfg-"));
    let name = rt.block_on(|| std::thread::current().name().unwrap().to_owned());
    assert!(name.starts_with("cfg-"));
    rt.shutdown();
}

#[test]
fn dump_lists_suspended_coroutines_and_what_they_wait_on() {
    let rt = Runtime::builder().threads(2).build().unwrap();
    let blocker = rt.spawn_named("never-finishes", suspend);
    let co = blocker.coroutine().clone();
    let waiter = rt.spawn_named("joiner", move || blocker.join().is_ok());
    wait_until("both to suspend", || {
        let d = rt.dump();
        d.contains("never-finishes") && d.contains("joiner")
    });
    let dump = rt.dump();
    assert!(
        dump.contains("joiner") && dump.contains("waiting on join"),
        "{dump}"
    );
    assert!(dump.contains("2 workers"), "{dump}");
    drop(co);
    drop(waiter);
    rt.shutdown();
}

#[test]
fn moving_a_started_coroutine_to_another_context_panics_unless_migratable() {
    let rt = Runtime::builder().threads(2).build().unwrap();
    let ctxs = rt.contexts().to_vec();
    let h = coscheduler::CoroutineBuilder::default()
        .name("pinned")
        .spawn_on(&ctxs[0], suspend)
        .unwrap();
    let co = h.coroutine().clone();
    wait_until("it to suspend", || co.context().is_some() && !co.entered());
    let err = catch_unwind(AssertUnwindSafe(|| ctxs[1].schedule(&co))).unwrap_err();
    let msg = panic_message(err);
    assert!(
        msg.contains("pinned") && msg.contains(ctxs[0].name()) && msg.contains(ctxs[1].name()),
        "{msg}"
    );
    let c1 = ctxs[1].clone();
    let err = rt
        .spawn(move || {
            let ctx = AioContext::current();
            let other = if ctx == c1 { AioContext::current() } else { c1 };
            coscheduler::reschedule_self(&other);
        })
        .join();
    // Either it was already on the target (no-op) or the move was refused.
    if let Err(e) = err {
        assert!(
            e.panic_message()
                .unwrap_or("")
                .contains("only coroutines created migratable"),
            "{e}"
        );
    }
    co.wake();
    h.join().unwrap();
    rt.shutdown();
}

#[test]
fn a_coroutine_that_can_get_no_stack_fails_through_its_handle() {
    // Stacks so large that the address space holds only a couple of them.
    let rt = Runtime::builder()
        .threads(1)
        .stack_size(1 << 45)
        .build()
        .unwrap();
    let holders: Vec<_> = (0..8).map(|_| rt.spawn(suspend)).collect();
    let victim = rt.spawn(|| 1);
    match victim.join() {
        Err(JoinError::NoStack(e)) => assert!(
            e.to_string().contains("memory")
                || e.raw_os_error().is_some()
                || !e.to_string().is_empty()
        ),
        Ok(_) => eprintln!("this machine mapped 9 stacks of 32 TiB; nothing to check"),
        Err(e) => panic!("unexpected {e}"),
    }
    drop(holders);
    rt.shutdown();
}

#[test]
fn spawn_storm_completes() {
    let rt = Runtime::builder().threads(2).build().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let h = rt.handle();
    rt.block_on(move || {
        for _ in 0..200_000 {
            let c = c.clone();
            drop(h.spawn(move || {
                c.fetch_add(1, SeqCst);
            }));
        }
    });
    wait_until("the storm to finish", || count.load(SeqCst) == 200_000);
    rt.shutdown();
}
