//! Paths through a context's event loop, driven by [`AioContext::poll`] on the probe
//! thread: `yield_now` through the ready queue and a `co_sleep(0)` round trip through the
//! timers, alone and beside 10,000 others.
//!
//! `poll(false)` never blocks and, with no file descriptor registered, makes no system call
//! of its own (`dispatch` only runs `epoll_wait` when the context has I/O sources), so both
//! loops are pure user-space work apart from the clock reads `co_sleep` itself makes.

use std::time::{Duration, Instant};

use coprimitives::co_sleep;
use coscheduler::{AioContext, yield_now};

use crate::error::Error;

/// W1 through the scheduler: a coroutine spawned on this thread's context calls
/// `yield_now` `iters` times; each one puts it at the back of the ready queue, and the next
/// `poll(false)` re-enters it. One iteration = one yield + one poll turn.
pub(super) fn switch_via_scheduler(iters: u64) -> Result<(), Error> {
    drive("switch_via_scheduler", iters, move || {
        for _ in 0..iters {
            yield_now();
        }
    })
}

/// `co_sleep(Duration::ZERO)` round trips, `iters` of them, in a coroutine driven by
/// `poll(false)`.
///
/// coprimitives does not short-cut a zero sleep: `co_sleep(0)` arms a timer on the current
/// context with deadline "now", suspends, and returns when the timer fires. The next poll
/// turn finds that deadline due (`run_timers` compares with a later `Instant::now()`, and a
/// deadline equal to now is due), runs the callback, which wakes the coroutine from plain
/// code on its home thread, i.e. enters it on the spot; the coroutine cancels its (already
/// fired) timer and sleeps again. So one iteration is: two clock reads, one timer armed and
/// fired (a boxed callback and the sleeper's `Arc`), a suspension and a re-entry, and one
/// poll turn.
pub(super) fn co_sleep_zero(iters: u64) -> Result<(), Error> {
    drive("co_sleep_zero", iters, move || {
        for _ in 0..iters {
            co_sleep(Duration::ZERO);
        }
    })
}

/// Timers armed beside the sleeper in [`co_sleep_zero_10k_armed`], as many as W7 has
/// sleepers.
const ARMED_BESIDE: usize = 10_000;

/// [`co_sleep_zero`] while [`ARMED_BESIDE`] other timers (W7's count) are armed on the
/// context, an hour away, at deadlines spread over a minute, held still so that the count
/// is deterministic. It shows what a large set costs the near timer's arming and firing:
/// a heap pays log n for it, a timing wheel nothing. It does not exercise the far timers'
/// own cascading, which W7 in the time tier does. They are cancelled afterwards, unfired.
pub(super) fn co_sleep_zero_10k_armed(iters: u64) -> Result<(), Error> {
    let ctx = AioContext::current();
    let base = Instant::now() + Duration::from_secs(3600);
    let armed: Vec<_> = (0..ARMED_BESIDE)
        .map(|i| ctx.add_timer(base + Duration::from_millis(i as u64 * 6), || {}))
        .collect();
    let result = co_sleep_zero(iters);
    let cancelled = armed.into_iter().filter(|&id| ctx.cancel_timer(id)).count();
    result?;
    if cancelled != ARMED_BESIDE {
        return Err(Error::Workload {
            name: "co_sleep_zero_10k_armed".to_owned(),
            detail: format!(
                "{} of the {ARMED_BESIDE} far timers fired",
                ARMED_BESIDE - cancelled
            ),
        });
    }
    Ok(())
}

/// Spawns `body` on this thread's context and polls until it has finished, checking that
/// it took at least `iters` turns (each iteration of the bodies above needs one).
fn drive(name: &str, iters: u64, body: impl FnOnce() + Send + 'static) -> Result<(), Error> {
    let ctx = AioContext::current();
    let handle = ctx.spawn(body);
    let mut turns = 0u64;
    while !handle.is_finished() {
        ctx.poll(false);
        turns += 1;
    }
    handle.join().map_err(|e| Error::Workload {
        name: name.to_owned(),
        detail: format!("the coroutine failed: {e}"),
    })?;
    if turns < iters {
        return Err(Error::Workload {
            name: name.to_owned(),
            detail: format!(
                "{iters} iterations took only {turns} poll turns: the operation no longer \
                 goes through the event loop, so this probe measures something else"
            ),
        });
    }
    Ok(())
}
