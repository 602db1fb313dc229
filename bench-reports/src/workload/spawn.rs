//! W5: a spawn storm of tiny detached coroutines.

use std::sync::Arc;
use std::time::Instant;

use super::support::{Countdown, row_runtime};
use crate::error::Error;
use crate::timed::Latencies;

const NAME: &str = "w5_spawn_storm";

/// W5: one spawner coroutine on the row's pinned two-worker runtime spawns `ops` coroutines
/// with `Handle::spawn`, each adding one to a counter, and drops their join handles
/// (detached). Returns ns per coroutine, from spawning the spawner until the last
/// coroutine ran; a coroutine that never runs fails the sample after a minute.
///
/// The spawns land in the spawner's worker deque, where the other worker steals them; a
/// coroutine takes a stack only when it first runs, so a million queued ones hold none.
pub(super) fn spawn_storm(ops: u64, _latencies: &mut Latencies) -> Result<f64, Error> {
    let rt = row_runtime(NAME, true)?;
    let done = Arc::new(Countdown::new(ops));
    let handle = rt.handle();
    let d = done.clone();
    let begin = Instant::now();
    drop(rt.spawn(move || {
        for _ in 0..ops {
            let d = d.clone();
            drop(handle.spawn(move || d.count_one()));
        }
    }));
    done.wait(NAME)?;
    let elapsed = begin.elapsed();
    drop(rt);
    Ok(elapsed.as_nanos() as f64 / ops as f64)
}
