//! The deterministic simulation finds real concurrency bugs in ordinary
//! coroutine code, replays them step for step, and runs virtual time fast.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use coprimitives::{CoMutex, CoQueue, CoRwLock, co_sleep, co_timeout};
use coscheduler::sim::{self, Schedule, Simulation, Strategy};
use coscheduler::{AioContext, JoinHandle};

/// Replays `failure` (its seed, strategy and limits) with `program`, which
/// must fail again along the same schedule, step for step.
fn assert_replays_step_for_step(failure: &sim::Failure, program: fn(&[AioContext])) {
    let again = failure
        .replay()
        .run(program)
        .expect_err("a replay fails the same way");
    assert_eq!(again.seed(), failure.seed());
    assert_eq!(
        again.schedule(),
        failure.schedule(),
        "the same interleaving, step for step"
    );
    assert_eq!(again.schedule().to_string(), failure.schedule().to_string());
}

// ----------------------------------------------------------------------
// The pre-2021 QEMU CoRwlock, as util/qemu-coroutine-lock.c had it before
// the ticket rewrite: readers and writers wait on one plain CoQueue, a
// writer's critical section runs with the internal mutex held, `downgrade`
// wakes none of the queued readers, and a reader's unlock wakes a single
// coroutine, assuming it is a writer. (coprimitives' CoRwLock is the
// rewrite.)

use coprimitives::Lockable;
use std::sync::atomic::AtomicIsize;

struct OldRwLock {
    mutex: CoMutex<()>,
    queue: CoQueue,
    /// Protected by `mutex` (atomics only to be `Sync` without `unsafe`).
    reader: AtomicIsize,
    pending_writer: AtomicIsize,
}

impl OldRwLock {
    fn new() -> OldRwLock {
        OldRwLock {
            mutex: CoMutex::new(()),
            queue: CoQueue::new(),
            reader: AtomicIsize::new(0),
            pending_writer: AtomicIsize::new(0),
        }
    }

    fn rdlock(&self) {
        self.mutex.lock_raw();
        // For fairness, wait if a writer is in line.
        while self.pending_writer.load(SeqCst) > 0 {
            self.queue.wait_with(&self.mutex);
        }
        self.reader.fetch_add(1, SeqCst);
        self.mutex.unlock_raw();
    }

    fn wrlock(&self) {
        self.mutex.lock_raw();
        self.pending_writer.fetch_add(1, SeqCst);
        while self.reader.load(SeqCst) > 0 {
            self.queue.wait_with(&self.mutex);
        }
        self.pending_writer.fetch_sub(1, SeqCst);
        // The write section runs with the mutex held.
    }

    fn unlock(&self) {
        if self.reader.load(SeqCst) == 0 {
            // The critical section started in wrlock.
            self.queue.restart_all();
        } else {
            self.mutex.lock_raw();
            self.reader.fetch_sub(1, SeqCst);
            // Wake only one waiting writer.
            if self.reader.load(SeqCst) == 0 {
                self.queue.next();
            }
        }
        self.mutex.unlock_raw();
    }

    fn downgrade(&self) {
        // The mutex is held since wrlock.
        self.reader.fetch_add(1, SeqCst);
        self.mutex.unlock_raw();
    }
}

/// `Lockable` spelled out for the old lock's raw use of its mutex.
trait RawLock {
    fn lock_raw(&self);
    fn unlock_raw(&self);
}
impl RawLock for CoMutex<()> {
    fn lock_raw(&self) {
        Lockable::lock(self);
    }
    fn unlock_raw(&self) {
        // SAFETY: called only by the coroutine that took it with `lock_raw`
        // (or that inherited it from `wrlock` through a downgrade).
        unsafe { Lockable::unlock(self) };
    }
}

/// Mixed readers, writers and downgraders on two contexts; every one
/// finishes when the lock is correct.
fn rwlock_scenario<L: Send + Sync + 'static>(
    ctxs: &[AioContext],
    lock: Arc<L>,
    read: fn(&L),
    unlock_read: fn(&L),
    write_downgrade_unlock: fn(&L),
) {
    let hs: Vec<JoinHandle<()>> = (0..6)
        .map(|i| {
            let l = lock.clone();
            ctxs[i % 2].spawn(move || match i % 3 {
                0 => {
                    read(&l);
                    coscheduler::yield_now();
                    unlock_read(&l);
                }
                _ => write_downgrade_unlock(&l),
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
}

// `OldRwLock` has no guards: plain functions stand for lock and unlock.
fn old_read(l: &OldRwLock) {
    l.rdlock();
}
fn old_unlock_read(l: &OldRwLock) {
    l.unlock();
}
fn old_write_downgrade_unlock(l: &OldRwLock) {
    l.wrlock();
    coscheduler::yield_now();
    l.downgrade();
    coscheduler::yield_now();
    l.unlock();
}

fn new_write_downgrade_unlock(l: &CoRwLock<u32>) {
    let mut w = l.write();
    *w += 1;
    coscheduler::yield_now();
    let r = w.downgrade();
    coscheduler::yield_now();
    drop(r);
}

#[test]
fn the_pre_2021_rwlock_hangs_within_a_thousand_seeds() {
    let failure = sim::check(0..1000, 2, |ctxs| {
        rwlock_scenario(
            ctxs,
            Arc::new(OldRwLock::new()),
            old_read,
            old_unlock_read,
            old_write_downgrade_unlock,
        )
    })
    .expect_err("the old CoRwlock loses readers on downgrade");
    assert!(failure.is_deadlock(), "{failure}");
    let text = failure.to_string();
    assert!(text.contains(&format!("seed {}", failure.seed())), "{text}");
    assert!(
        text.contains("CoQueue"),
        "the dump says who waits on what: {text}"
    );
}

#[test]
fn the_real_rwlock_survives_ten_thousand_seeds() {
    let r = sim::check(0..10_000, 2, |ctxs| {
        let lock = Arc::new(CoRwLock::new(0u32));
        let hs: Vec<JoinHandle<()>> = (0..6)
            .map(|i| {
                let l = lock.clone();
                ctxs[i % 2].spawn(move || match i % 3 {
                    0 => {
                        let g = l.read();
                        coscheduler::yield_now();
                        drop(g);
                    }
                    _ => new_write_downgrade_unlock(&l),
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*lock.read(), 4, "every writer got in");
    });
    if let Err(f) = r {
        panic!("{f}");
    }
}

// ----------------------------------------------------------------------
// The real CoMutex with its unlock's hand-off skipped, a bug planted with
// `coprimitives::__mutation`: a contended unlock leaves without passing the
// lock to the oldest waiter and waking it.

/// Plants the bug on the calling thread, where a simulation runs all its
/// contexts, until dropped.
struct SkippedHandOff;

impl SkippedHandOff {
    fn plant() -> SkippedHandOff {
        coprimitives::__mutation::skip_unlock_handoff(true);
        SkippedHandOff
    }
}

impl Drop for SkippedHandOff {
    fn drop(&mut self) {
        coprimitives::__mutation::skip_unlock_handoff(false);
    }
}

/// The seeds within which the simulation must catch the skipped hand-off.
const HAND_OFF_SEEDS: u64 = 20;

/// [`counter_scenario`] on the real CoMutex, locked and unlocked through
/// `Lockable` so that the two halves can run in different coroutines.
fn real_mutex_counter_scenario(ctxs: &[AioContext]) {
    let m = Arc::new(CoMutex::new(()));
    let (a, b) = (m.clone(), m);
    counter_scenario(
        ctxs,
        move || std::mem::forget(a.lock()),
        // SAFETY: each unlock follows the same coroutine's lock, whose guard
        // was forgotten.
        move || unsafe { coprimitives::Lockable::unlock(&*b) },
    );
}

fn counter_scenario(
    ctxs: &[AioContext],
    lock: impl Fn() + Clone + Send + 'static,
    unlock: impl Fn() + Clone + Send + 'static,
) {
    let count = Rc::new(RefCell::new(0));
    let hs: Vec<JoinHandle<()>> = (0..4)
        .map(|i| {
            let (lock, unlock) = (lock.clone(), unlock.clone());
            let count = SendRc(count.clone());
            ctxs[i % 2].spawn(move || {
                let count = count;
                for _ in 0..3 {
                    lock();
                    *count.0.borrow_mut() += 1;
                    coscheduler::yield_now();
                    unlock();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(*count.borrow(), 12);
}

/// A simulation runs all its contexts on one thread, so sharing an `Rc`
/// between its coroutines is sound there.
struct SendRc(Rc<RefCell<u32>>);
// SAFETY: only used inside simulations, whose coroutines all run on the
// thread that runs the simulation.
unsafe impl Send for SendRc {}

#[test]
fn a_comutex_whose_unlock_skips_the_hand_off_is_caught_and_the_real_one_survives() {
    let failure = {
        let _bug = SkippedHandOff::plant();
        sim::check(0..HAND_OFF_SEEDS, 2, real_mutex_counter_scenario)
    }
    .expect_err("the skipped hand-off strands a waiter");
    assert!(failure.is_deadlock(), "{failure}");
    assert!(
        failure.dump().contains("CoMutex"),
        "the dump shows the stranded waiters: {failure}"
    );
    {
        let _bug = SkippedHandOff::plant();
        assert_replays_step_for_step(&failure, real_mutex_counter_scenario);
    }

    let r = sim::check(0..1000, 2, real_mutex_counter_scenario);
    if let Err(f) = r {
        panic!("{f}");
    }
}

// ----------------------------------------------------------------------
// A lost wake-up in user code: check-then-wait without holding the lock
// around the CoQueue wait.

fn lost_wakeup(ctxs: &[AioContext]) {
    let ready = Arc::new(AtomicBool::new(false));
    let lock = Arc::new(CoMutex::new(()));
    let queue = Arc::new(CoQueue::new());
    let (r, l, q) = (ready.clone(), lock.clone(), queue.clone());
    let waiter = ctxs[0].spawn(move || {
        if !r.load(SeqCst) {
            // The bug: the flag is checked without the lock, so the setter
            // can run between the check and the wait.
            coscheduler::yield_now();
            let g = l.lock();
            let _g = q.wait(g);
        }
    });
    let setter = ctxs[1].spawn(move || {
        let _g = lock.lock();
        ready.store(true, SeqCst);
        queue.next();
    });
    setter.join().unwrap();
    waiter.join().unwrap();
}

#[test]
fn a_lost_wakeup_is_found_and_replayed_step_for_step() {
    let failure = sim::check(0..1000, 2, lost_wakeup).expect_err("the lost wake-up");
    assert!(failure.is_deadlock(), "{failure}");
    assert_replays_step_for_step(&failure, lost_wakeup);
}

#[test]
fn pct_finds_the_lost_wakeup_too() {
    let pct = Strategy::Pct {
        depth: 2,
        steps: 50,
    };
    let failure = sim::check_with(pct, 0..1000, 2, lost_wakeup).expect_err("the lost wake-up");
    assert!(failure.is_deadlock(), "{failure}");
    assert!(
        failure.to_string().contains(".strategy(Pct"),
        "the message says how to replay it: {failure}"
    );
    assert_replays_step_for_step(&failure, lost_wakeup);

    // The real CoMutex survives PCT as it survives uniform choices.
    let r = sim::check_with(pct, 0..300, 2, |ctxs| {
        real_mutex_counter_scenario(ctxs);
    });
    if let Err(f) = r {
        panic!("{f}");
    }
}

// ----------------------------------------------------------------------
// An order-of-start assumption: two coroutines spawned one after the other
// on one context, the second assuming the first has run. A lone context
// starts them in that order (its ready list is FIFO), so nothing but the
// order within a ready list shows the bug; a runtime's workers steal
// unstarted coroutines, and there the second does start first.

fn second_assumes_first_started(ctxs: &[AioContext]) {
    let started = Arc::new(AtomicBool::new(false));
    let s = started.clone();
    let first = ctxs[1].spawn(move || s.store(true, SeqCst));
    let second = ctxs[1].spawn(move || {
        assert!(
            started.load(SeqCst),
            "the second coroutine started before the first"
        )
    });
    first.join().unwrap();
    second.join().unwrap();
}

/// The seeds within which the simulation must find the start-order bug.
const START_ORDER_SEEDS: u64 = 50;

#[test]
fn the_order_within_a_ready_list_is_explored_and_replayed() {
    let pct = Strategy::Pct {
        depth: 1,
        steps: 20,
    };
    for strategy in [Strategy::Random, pct] {
        let failure = sim::check_with(
            strategy,
            0..START_ORDER_SEEDS,
            2,
            second_assumes_first_started,
        )
        .expect_err("the second coroutine runs first under some seed");
        assert!(
            failure
                .panic_message()
                .is_some_and(|m| m.contains("started before the first")),
            "{failure}"
        );
        assert_replays_step_for_step(&failure, second_assumes_first_started);
    }
}

/// With the ready order kept FIFO, as a lone context runs it, the same
/// program passes every seed: the order is the only thing that shows it.
#[test]
fn a_fifo_ready_order_keeps_a_lone_contexts_start_order() {
    for seed in 0..START_ORDER_SEEDS {
        Simulation::new(seed, 2)
            .explore_ready_order(false)
            .run(second_assumes_first_started)
            .unwrap_or_else(|f| panic!("{f}"));
    }
}

// ----------------------------------------------------------------------
// Determinism and virtual time.

fn busy_program(ctxs: &[AioContext]) -> u32 {
    let m = Arc::new(CoMutex::new(0u32));
    let hs: Vec<_> = (0..8)
        .map(|i| {
            let m = m.clone();
            ctxs[i % 3].spawn(move || {
                for _ in 0..5 {
                    *m.lock() += 1;
                    co_sleep(Duration::from_millis(1 + i as u64));
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    *m.lock()
}

/// Runs `program` twice under `seed` with `contexts` contexts; both runs
/// must succeed and follow the same schedule, byte for byte. Returns the
/// result and the schedule.
fn run_twice<T: PartialEq + std::fmt::Debug + 'static>(
    seed: u64,
    contexts: usize,
    program: impl Fn(&[AioContext]) -> T + Clone + 'static,
) -> (T, Schedule) {
    let again = program.clone();
    let (r1, s1) = Simulation::new(seed, contexts).run_traced(program);
    let (r2, s2) = Simulation::new(seed, contexts).run_traced(again);
    let (r1, r2) = (r1.unwrap(), r2.unwrap());
    assert_eq!(r1, r2, "seed {seed}: the same result");
    assert_eq!(s1.to_string(), s2.to_string(), "seed {seed}: byte for byte");
    (r1, s1)
}

/// Coroutines on two contexts that compute in loops with `maybe_yield`,
/// logging which one ran each step: where they yield is the schedule.
fn yielding_program(ctxs: &[AioContext]) -> Vec<u8> {
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let hs: Vec<JoinHandle<()>> = (0..4u8)
        .map(|i| {
            let log = log.clone();
            ctxs[usize::from(i) % 2].spawn(move || {
                for _ in 0..1_500 {
                    log.lock().unwrap().push(i);
                    coprimitives::maybe_yield();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    log.lock().unwrap().clone()
}

/// `maybe_yield` keeps a per-thread call count; each run starts from a fresh
/// one, so a seed yields at the same calls however the thread used it
/// before (here: a few calls outside any coroutine, and a first run).
#[test]
fn maybe_yield_replays_exactly() {
    for _ in 0..7 {
        coprimitives::maybe_yield();
    }
    let (log, _) = run_twice(5, 2, yielding_program);
    assert_eq!(log.len(), 6_000);
    let switches = log.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(switches > 4, "the loops yielded ({switches} switches)");
}

#[test]
fn the_same_seed_gives_the_same_schedule_across_runs_and_processes() {
    let (r1, s1) = run_twice(42, 3, busy_program);
    assert_eq!(r1, 40);
    let (_, other) = Simulation::new(43, 3).run_traced(busy_program);
    assert_ne!(s1, other, "another seed, another schedule");

    // Another process running the same binary.
    if let Some(path) = std::env::var_os("SIM_SCHEDULE_OUT") {
        std::fs::write(path, s1.to_string()).unwrap();
        return;
    }
    let out = std::env::temp_dir().join(format!("sim-schedule-{}", std::process::id()));
    let child = testkit::run_test_in_child(
        "the_same_seed_gives_the_same_schedule_across_runs_and_processes",
        "SIM_SCHEDULE_OUT",
        out.to_str().expect("a UTF-8 temporary path"),
    );
    assert!(
        child.status.success(),
        "{}",
        String::from_utf8_lossy(&child.stderr)
    );
    let theirs = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    assert_eq!(
        theirs,
        s1.to_string(),
        "the child process followed the same schedule"
    );
}

/// A default (eventually fair) CoMutex contended by two coroutines on each
/// of three contexts, each critical section taking `hold` of *real* time
/// (a thread sleep, which the simulation does not see) and yielding, so
/// that local and remote waiters queue behind every holder.
fn contended_default_mutex(hold: Duration) -> impl Fn(&[AioContext]) -> u32 + Clone {
    move |ctxs| {
        let m = Arc::new(CoMutex::new(0u32));
        let hs: Vec<_> = (0..6)
            .map(|i| {
                let m = m.clone();
                ctxs[i % 3].spawn(move || {
                    for _ in 0..3 {
                        let mut g = m.lock();
                        coscheduler::yield_now();
                        std::thread::sleep(hold);
                        *g += 1;
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        *m.lock()
    }
}

/// The eventual-fairness bound (1 ms) is measured in virtual time under a
/// simulation: critical sections that take longer than the bound in real
/// time change nothing, and a seed gives the same schedule on every run.
#[test]
fn the_default_mutex_schedule_does_not_depend_on_real_time() {
    assert_eq!(
        coprimitives::DEFAULT_FAIRNESS_BOUND,
        Duration::from_millis(1)
    );
    let mut schedules = std::collections::HashSet::new();
    for seed in 0..6 {
        let (n, instant) = run_twice(seed, 3, contended_default_mutex(Duration::ZERO));
        assert_eq!(n, 18);
        let (n, slow) = run_twice(seed, 3, contended_default_mutex(Duration::from_millis(3)));
        assert_eq!(n, 18);
        assert_eq!(
            instant.to_string(),
            slow.to_string(),
            "seed {seed}: real time in the critical section changed the schedule"
        );
        schedules.insert(instant.to_string());
    }
    assert!(schedules.len() > 1, "the seeds explore different schedules");
}

#[test]
fn a_thousand_long_sleeps_finish_fast_in_deadline_order() {
    let started = Instant::now();
    let order = Simulation::new(1, 2)
        .run(|ctxs| {
            let finished = Arc::new(std::sync::Mutex::new(Vec::new()));
            let hs: Vec<_> = (0..1000u64)
                .map(|i| {
                    let f = finished.clone();
                    // 1–600 s, spread over the range.
                    let secs = 1 + (i * 7919) % 600;
                    ctxs[i as usize % 2].spawn(move || {
                        co_sleep(Duration::from_secs(secs));
                        f.lock().unwrap().push((sim::now(), secs));
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            finished.lock().unwrap().clone()
        })
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(order.len(), 1000);
    for w in order.windows(2) {
        assert!(w[0].1 <= w[1].1, "woken in deadline order");
    }
    for (at, secs) in &order {
        assert!(*at >= Duration::from_secs(*secs), "never early");
    }
}

#[test]
fn a_ten_minute_timeout_takes_no_real_time() {
    let started = Instant::now();
    let r = Simulation::new(3, 1)
        .run(|_| {
            co_timeout(Duration::from_secs(600), || {
                co_sleep(Duration::from_secs(3600))
            })
        })
        .unwrap();
    assert!(r.is_err(), "timed out");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn a_panic_names_the_seed_and_leaves_nothing_behind() {
    let drops = Arc::new(AtomicUsize::new(0));
    struct CountDrop(Arc<AtomicUsize>);
    impl Drop for CountDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }
    let d = drops.clone();
    let failure = Simulation::new(9, 2)
        .run(move |ctxs| {
            let d2 = d.clone();
            let sleeper = ctxs[1].spawn(move || {
                let _g = CountDrop(d2);
                co_sleep(Duration::from_secs(3600));
            });
            ctxs[1].spawn(|| panic!("an assertion in a spawned coroutine"));
            sleeper.join().unwrap();
        })
        .expect_err("the panic fails the run");
    assert!(failure.is_panic());
    assert!(failure.to_string().contains("seed 9"));
    assert!(failure.panic_message().unwrap().contains("an assertion"));
    assert_eq!(drops.load(SeqCst), 1, "the sleeper was unwound at the end");
}
