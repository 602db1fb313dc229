//! W3: cross-context ping-pong. Coroutine A on one worker wakes B on another, B runs and
//! wakes A back, A runs: one round trip. [`ping`] is A's round, [`pong`] B's loop, and
//! [`timed_rounds`] times A's rounds one clock read each; [`atomic_pingpong`] is the floor,
//! two pinned threads passing a counter back and forth, timed the same way.
//!
//! The set-up stays with the caller, as it must respect the one-wake-per-suspension rule:
//! B has to have started (and suspended) on its worker before A's first wake, and A has to
//! be known to B before B's first wake of it.

use std::hint::spin_loop;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use coscheduler::{Coroutine, suspend};

/// Spins before falling back to `yield_now`, so that an oversubscribed machine (or one with a
/// single core) still makes progress instead of burning a whole time slice per hand-off.
const SPINS_BEFORE_YIELD: u32 = 1 << 14;

/// One of A's rounds: wake `b`, suspend until B wakes A back.
#[inline]
pub fn ping(b: &Coroutine) {
    b.wake();
    suspend();
}

/// B's loop, after its first suspension (which A's first wake ends): wake `a` `rounds`
/// times, suspending in between until A's next wake.
#[inline]
pub fn pong(a: &Coroutine, rounds: u64) {
    for i in 0..rounds {
        if i > 0 {
            suspend();
        }
        a.wake();
    }
}

/// Runs `round` `rounds` times, reading the clock once after each and handing `lap` the time
/// since the previous reading. Returns the time from the start to the last reading.
#[inline]
pub fn timed_rounds(
    rounds: u64,
    mut round: impl FnMut(),
    mut lap: impl FnMut(Duration),
) -> Duration {
    let begin = Instant::now();
    let mut last = begin;
    for _ in 0..rounds {
        round();
        let now = Instant::now();
        lap(now - last);
        last = now;
    }
    last - begin
}

/// The W3 floor: `rounds` round trips of a counter between two threads, the measuring one
/// calling `pin(0)` first and the echoing one `pin(1)`, timed as [`timed_rounds`] times
/// them. Returns the time of the whole, or `None` if the measuring thread panicked.
///
/// Each round trip includes one clock read (about 20 ns through the vDSO), as a coroutine
/// row timed by [`timed_rounds`] does, so that a ratio to this floor cancels it.
pub fn atomic_pingpong(
    rounds: u64,
    pin: impl Fn(usize) + Sync,
    lap: impl FnMut(Duration) + Send,
) -> Option<Duration> {
    let turn = AtomicU64::new(0);
    let start = Barrier::new(2);
    thread::scope(|s| {
        s.spawn(|| {
            pin(1);
            start.wait();
            for i in 0..rounds {
                wait_for(&turn, 2 * i + 1);
                // Release pairs with the Acquire load in the measuring thread's `wait_for`:
                // a real hand-off publishes data with the wake, so the floor pays for that
                // ordering too (free on x86, not on weaker memory models).
                turn.store(2 * i + 2, Ordering::Release);
            }
        });
        let measuring = s.spawn(|| {
            pin(0);
            start.wait();
            let mut i = 0;
            timed_rounds(
                rounds,
                || {
                    // Release pairs with the Acquire load in the echoing thread's `wait_for`.
                    turn.store(2 * i + 1, Ordering::Release);
                    wait_for(&turn, 2 * i + 2);
                    i += 1;
                },
                lap,
            )
        });
        measuring.join().ok()
    })
}

/// Spins until `turn` holds `value`.
#[inline]
fn wait_for(turn: &AtomicU64, value: u64) {
    let mut spins = 0u32;
    // Acquire pairs with the Release store of the other thread in `atomic_pingpong`.
    while turn.load(Ordering::Acquire) != value {
        spins += 1;
        if spins < SPINS_BEFORE_YIELD {
            spin_loop();
        } else {
            spins = 0;
            thread::yield_now();
        }
    }
}
