//! Shutdown gives back every thread and every mapping: runtimes created and
//! dropped in a loop leave the process as they found it.
//!
//! These tests count the whole process's threads and mappings, so they live
//! in their own test binary and take turns (`SERIAL`): a test running in
//! parallel would move the counts.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use coscheduler::{AioContext, JoinError, Runtime, suspend};
use testkit::{CountDrop, mapping_count, settled, wait_until};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The tests of this binary: the harness runs each on a thread named after
/// it and may start one while another test is counting.
const TESTS: [&str; 3] = [
    "a_hundred_runtimes_leak_no_thread_and_no_mapping",
    "two_hundred_cycles_with_suspended_coroutines_unwind_everything",
    "dropping_a_runtime_inside_its_own_coroutine_leaks_no_thread",
];

/// The process's threads, less the harness's test threads (the kernel keeps
/// the first 15 bytes of a thread's name).
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| {
            let comm = comm.trim_end();
            comm.len() < 15 || !TESTS.iter().any(|t| t.starts_with(comm))
        })
        .count()
}

/// [`thread_count`] once it has settled at `expected` (see [`settled`]).
fn settled_thread_count(expected: usize) -> usize {
    settled(expected, thread_count)
}

#[test]
fn a_hundred_runtimes_leak_no_thread_and_no_mapping() {
    let _serial = serial();
    let cycle = || {
        let rt = Runtime::builder().threads(2).build().unwrap();
        let hs: Vec<_> = (0..50).map(|i| rt.spawn(move || i)).collect();
        let sleeper = rt.spawn(suspend);
        let sum: i32 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(sum, 1225);
        drop(sleeper);
        drop(rt);
    };
    // Warm up allocator arenas, the pool and lazy statics.
    for _ in 0..3 {
        cycle();
    }
    let (threads, maps) = (thread_count(), mapping_count());
    for _ in 0..100 {
        cycle();
    }
    // At most: a runtime thread of an earlier test (a detached shutdown
    // helper) may still have been on its way out when `threads` was read.
    let now = settled_thread_count(threads);
    assert!(
        now <= threads,
        "threads not joined: {threads} before, {now} after"
    );
    let after = mapping_count();
    // A sanitizer maps memory of its own: see below.
    assert!(
        cfg!(any(coscheduler_asan, coscheduler_tsan)) || after <= maps + 8,
        "mappings grew from {maps} to {after}"
    );
}

/// Issue scenario: 200 create/drop cycles of a runtime with 50 suspended
/// coroutines each — in `suspend()`, in a join on another suspended
/// coroutine, and chained on each other — every one unwound, threads and
/// mappings back where they started. Half the cycles use `shutdown()`,
/// half `Drop`.
#[test]
fn two_hundred_cycles_with_suspended_coroutines_unwind_everything() {
    let _serial = serial();
    let drops = Arc::new(AtomicUsize::new(0));
    let cycle = |i: usize| {
        let rt = Runtime::builder().threads(2).build().unwrap();
        let started = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for k in 0..25 {
            let (d, s) = (drops.clone(), started.clone());
            let ctx = &rt.contexts()[k % 2];
            let sleeper = ctx.spawn(move || {
                let _g = CountDrop(d);
                s.fetch_add(1, SeqCst);
                suspend();
            });
            let (d, s) = (drops.clone(), started.clone());
            let victim = sleeper.coroutine().clone();
            // A joiner on the other context waits for the sleeper.
            let joiner = rt.contexts()[(k + 1) % 2].spawn(move || {
                let _g = CountDrop(d);
                s.fetch_add(1, SeqCst);
                let _ = sleeper.join();
            });
            handles.push((victim, joiner));
        }
        wait_until("all 50 coroutines to start", || started.load(SeqCst) == 50);
        if i % 2 == 0 {
            rt.shutdown();
        } else {
            drop(rt);
        }
        for (victim, joiner) in handles {
            assert!(victim.is_finished());
            match joiner.join() {
                Err(JoinError::Cancelled) | Ok(()) => {}
                Err(e) => panic!("unexpected {e}"),
            }
        }
    };
    for i in 0..3 {
        cycle(i);
    }
    let (threads, maps) = (thread_count(), mapping_count());
    let pool_before = coscheduler::pool::stats();
    drops.store(0, SeqCst);
    for i in 0..200 {
        cycle(i);
    }
    let pool_after = coscheduler::pool::stats();
    assert_eq!(drops.load(SeqCst), 200 * 50, "every coroutine was unwound");
    assert_eq!(pool_after.leaked, pool_before.leaked, "nothing leaked");
    assert_eq!(
        pool_after.in_use(),
        pool_before.in_use(),
        "every stack went back to the pool or was unmapped"
    );
    // At most: a runtime thread of an earlier test (a detached shutdown
    // helper) may still have been on its way out when `threads` was read.
    let now = settled_thread_count(threads);
    assert!(
        now <= threads,
        "threads not joined: {threads} before, {now} after"
    );
    // Two mappings per stack the pool keeps; the pool may fill up to its
    // maximum over the cycles, which is not a leak.
    let pooled_growth = pool_after.pooled.saturating_sub(pool_before.pooled);
    testkit::assert_mappings_within_pool_growth(maps, pooled_growth);
}

/// Dropping a runtime inside one of its own coroutines cannot join the
/// worker it runs on: a helper thread finishes the shutdown, and no thread
/// is left behind.
#[test]
fn dropping_a_runtime_inside_its_own_coroutine_leaks_no_thread() {
    let _serial = serial();
    let before = thread_count();
    for _ in 0..20 {
        let rt = Arc::new(Mutex::new(Some(
            Runtime::builder().threads(2).build().unwrap(),
        )));
        let slot = rt.clone();
        let drops = Arc::new(AtomicUsize::new(0));
        let d = drops.clone();
        let handle = {
            let guard = rt.lock().unwrap();
            let rt_ref = guard.as_ref().unwrap();
            // A suspended bystander, unwound by the shutdown.
            let d2 = drops.clone();
            let bystander = rt_ref.contexts()[1].spawn(move || {
                let _g = CountDrop(d2);
                suspend();
            });
            wait_until("the bystander to start", || {
                bystander.coroutine().context().is_some()
            });
            rt_ref.contexts()[0].spawn(move || {
                let _g = CountDrop(d);
                let rt = slot.lock().unwrap().take();
                drop(rt); // inside the runtime's own coroutine
                "returned"
            })
        };
        assert_eq!(handle.join().unwrap(), "returned");
        wait_until("both coroutines to be unwound or finished", || {
            drops.load(SeqCst) == 2
        });
    }
    wait_until("the workers and helper threads to exit", || {
        thread_count() <= before
    });
    // The thread-local context of this test thread is untouched.
    let _ = AioContext::current();
}
