//! [`maybe_yield`]: a cheap cooperation point for loops that must not hold
//! their worker.
//!
//! A coroutine that computes for long without suspending holds up every
//! other coroutine of its context (the stall detector reports it). Calling
//! [`maybe_yield`] in such a loop costs a thread-local decrement on almost
//! every call; every [`CLOCK_EVERY`] calls it reads the clock, and it
//! yields ([`coscheduler::yield_now`]) once the coroutine has run for
//! [`MAYBE_YIELD_AFTER`] or made [`MAYBE_YIELD_CALLS`] calls since it was
//! last resumed.
//!
//! "Since it was last resumed" needs no hook on the switch path: the budget
//! remembers the context's switch count
//! ([`coscheduler::raw::switch_count`]) when it started, and a different
//! count means the coroutine suspended meanwhile, so a fresh budget starts.
//!
//! Under a deterministic simulation ([`coscheduler::sim`]) running time is
//! virtual time, which does not pass while a coroutine runs (the clock
//! moves only when nothing can run), so only the call count decides; and
//! as all the simulation's contexts share the thread, and so its budget,
//! a slice is told apart by its context as well as its switch count. Every
//! call then takes the slow path, so that a slice's count starts at its
//! first call rather than up to [`CLOCK_EVERY`] calls later, and each run
//! starts from a fresh budget ([`coscheduler::sim::on_run_start`]): a seed
//! yields at the same calls in every run and every replay.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Calls to [`maybe_yield`] after which it yields, however short they were.
pub const MAYBE_YIELD_CALLS: u32 = 1024;

/// Running time after which [`maybe_yield`] yields (checked every
/// [`CLOCK_EVERY`] calls).
pub const MAYBE_YIELD_AFTER: Duration = Duration::from_micros(500);

/// How many calls [`maybe_yield`] makes between two clock reads.
pub const CLOCK_EVERY: u32 = 32;

/// This thread's budget: calls left until the next check, the switch count
/// it was started at, and when; `every_call` under a simulation.
#[derive(Clone, Copy)]
struct Budget {
    calls: u32,
    epoch: u64,
    started: Option<Instant>,
    every_call: bool,
}

/// A budget whose next call takes the slow path and starts a slice.
const FRESH: Budget = Budget {
    calls: 1,
    epoch: 0,
    started: None,
    every_call: false,
};

thread_local! {
    static BUDGET: Cell<Budget> = const { Cell::new(FRESH) };
}

/// Each simulated run starts from a fresh budget: registered with the
/// simulation once per process, at the first slow-path call on any thread
/// (a fresh thread's first call takes it), so that a thread that used the
/// budget before its first run is reset too.
fn reset_at_each_run() {
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| coscheduler::sim::on_run_start(|| BUDGET.with(|b| b.set(FRESH))));
}

/// Yields if the current coroutine has used up its budget (see the
/// [module docs](self)); otherwise returns at once. Outside a coroutine it
/// does nothing.
///
/// ```
/// let rt = coscheduler::Runtime::builder().threads(1).build().unwrap();
/// let sum = rt.block_on(|| {
///     let mut sum = 0u64;
///     for i in 0..1_000_000u64 {
///         sum = sum.wrapping_add(i * i);
///         coprimitives::maybe_yield(); // lets the worker's other coroutines run
///     }
///     sum
/// });
/// assert_ne!(sum, 0);
/// ```
#[inline]
pub fn maybe_yield() {
    let (left, every_call) = BUDGET.with(|b| {
        let mut budget = b.get();
        budget.calls = budget.calls.wrapping_sub(1);
        b.set(budget);
        (budget.calls, budget.every_call)
    });
    if left % CLOCK_EVERY != 0 && !every_call {
        return;
    }
    maybe_yield_slow();
}

#[cold]
#[inline(never)]
fn maybe_yield_slow() {
    reset_at_each_run();
    if !coscheduler::in_coroutine() {
        return;
    }
    let epoch = slice_epoch();
    let budget = BUDGET.with(Cell::get);
    let spent = match budget.started {
        // Resumed since this budget began (or never started one): the slice
        // starts now.
        Some(started) if budget.epoch == epoch => {
            budget.calls == 0
                // Under a simulation no time passes within a slice.
                || (!coscheduler::sim::is_active() && started.elapsed() >= MAYBE_YIELD_AFTER)
        }
        _ => {
            restart_budget();
            return;
        }
    };
    if spent {
        coscheduler::yield_now();
        restart_budget();
    }
}

/// Starts a fresh budget for the slice that begins now. Not inlined into
/// the caller: a migratable coroutine may resume on another thread after
/// `yield_now`, and the thread-local must be looked up again there.
#[inline(never)]
fn restart_budget() {
    let every_call = coscheduler::sim::is_active();
    let budget = Budget {
        calls: MAYBE_YIELD_CALLS,
        epoch: slice_epoch(),
        started: Some(Instant::now()),
        every_call,
    };
    BUDGET.with(|b| b.set(budget));
}

/// What identifies the running slice: the context's switch count; under a
/// simulation, whose contexts all share this thread's budget, combined
/// with the context's process-unique id (contexts of different runs
/// differ too), the count in the low 40 bits (a simulation stops after a
/// million steps by default, far below 2^40 switches).
fn slice_epoch() -> u64 {
    let switches = coscheduler::raw::switch_count();
    if !coscheduler::sim::is_active() {
        return switches;
    }
    (coscheduler::AioContext::current().id() << 40) ^ switches
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

    /// A loop calling `maybe_yield` lets another coroutine of its context
    /// run while it is still looping (on one worker, nothing else could run
    /// it), and it yields after the call budget even when every call is fast.
    #[test]
    fn a_cooperative_loop_lets_others_run() {
        let rt = coscheduler::Runtime::builder()
            .threads(1)
            .stall_threshold(Duration::ZERO)
            .build()
            .unwrap();
        let other_ran = Arc::new(AtomicBool::new(false));
        let o = other_ran.clone();
        let ctx = rt.contexts()[0].clone();
        let looper = ctx.spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            let (mut calls, mut yields) = (0u64, 0u64);
            let mut epoch = coscheduler::raw::switch_count();
            while !o.load(SeqCst) && Instant::now() < deadline {
                maybe_yield();
                calls += 1;
                let now = coscheduler::raw::switch_count();
                if now != epoch {
                    yields += 1;
                    epoch = now;
                }
            }
            (o.load(SeqCst), calls, yields)
        });
        let o = other_ran.clone();
        let other = ctx.spawn(move || o.store(true, SeqCst));
        let (seen, calls, yields) = looper.join().unwrap();
        other.join().unwrap();
        assert!(seen, "the other coroutine never ran during the loop");
        // Fast calls: the call budget, not the clock, bounds each slice.
        assert!(
            calls <= (yields + 1) * u64::from(MAYBE_YIELD_CALLS) + u64::from(CLOCK_EVERY),
            "{calls} calls, {yields} yields"
        );
        rt.shutdown();
    }

    #[test]
    fn outside_a_coroutine_it_does_nothing() {
        for _ in 0..10 * MAYBE_YIELD_CALLS {
            maybe_yield();
        }
    }
}
