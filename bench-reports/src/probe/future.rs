//! Issue 15's ready-future cost: `coscheduler::wait` of a future that is ready on its first
//! poll, inside a coroutine, next to a plain out-of-line call made by the same loop. The
//! difference of the two rows is what `wait` adds over a call (a waker made from the
//! running coroutine, one poll, no suspension).

use std::future;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use coscheduler::{Coroutine, wait};

use crate::error::Error;

/// `iters` times, `wait(std::future::ready(i))` in one coroutine.
pub(super) fn wait_ready(iters: u64) -> Result<(), Error> {
    in_coroutine("wait_ready", iters, |i| wait(future::ready(black_box(i))))
}

/// The reference of [`wait_ready`]: the same loop calling [`plain_call`].
pub(super) fn plain_call_in_coroutine(iters: u64) -> Result<(), Error> {
    in_coroutine("plain_call_in_coroutine", iters, plain_call)
}

/// A call the optimiser must keep: returns its argument.
#[inline(never)]
fn plain_call(v: u64) -> u64 {
    black_box(v)
}

/// Runs `op(i)` for `i` in `0..iters` inside one coroutine entered from the probe thread,
/// summing the results, and checks the sum. One `op(0)` first warms the thread's coroutine
/// identity and whatever `op` reads cold.
fn in_coroutine(
    name: &str,
    iters: u64,
    op: impl Fn(u64) -> u64 + Send + 'static,
) -> Result<(), Error> {
    let sum = Arc::new(AtomicU64::new(0));
    let s = sum.clone();
    let co = Coroutine::new(move || {
        let mut acc = op(0);
        for i in 0..iters {
            acc = acc.wrapping_add(op(black_box(i)));
        }
        s.store(acc, Ordering::Relaxed);
    });
    co.enter();
    let expected = iters * iters.saturating_sub(1) / 2;
    let got = sum.load(Ordering::Relaxed);
    if co.is_finished() && got == expected {
        Ok(())
    } else {
        Err(Error::Workload {
            name: name.to_owned(),
            detail: format!("the coroutine did not finish with the sum {expected} (got {got})"),
        })
    }
}
