//! W5: a spawn storm of tiny detached coroutines, and of tokio tasks: `workloads::spawn`'s
//! storms, timed here until a countdown says every one ran.

use std::sync::Arc;
use std::time::Instant;

use workloads::spawn::{storm, tokio_storm};

use super::support::{Countdown, Placement, row_runtime, row_tokio};
use crate::error::Error;
use crate::timed::Recorder;

/// W5: one spawner coroutine on the row's two-worker runtime (built with the defaults)
/// spawns `ops` coroutines with `Handle::spawn`, each adding one to a counter, and drops
/// their join handles (detached). Returns ns per coroutine, from spawning the spawner until
/// the last coroutine ran; a coroutine that never runs fails the sample after a minute.
///
/// The spawns land in the spawner's worker deque, where the other worker steals them; a
/// coroutine takes a stack only when it first runs, so a million queued ones hold none.
pub(super) fn spawn_storm(ops: u64, _recorder: &mut Recorder) -> Result<f64, Error> {
    const NAME: &str = "w5_spawn_storm";
    let rt = row_runtime(NAME, Placement::Defaults)?;
    let done = Arc::new(Countdown::new(ops));
    let handle = rt.handle();
    let d = done.clone();
    let begin = Instant::now();
    drop(rt.spawn(move || storm(&handle, ops, move || d.count_one())));
    done.wait(NAME)?;
    let elapsed = begin.elapsed();
    drop(rt);
    Ok(elapsed.as_nanos() as f64 / ops as f64)
}

/// W5 on tokio: one task on the row's 2-worker multi-thread runtime spawns `ops` tasks with
/// `tokio::spawn`, each adding one to the same counter, and drops their join handles.
/// Returns ns per task, timed as [`spawn_storm`] times coroutines.
pub(super) fn tokio_spawn_storm(ops: u64, _recorder: &mut Recorder) -> Result<f64, Error> {
    const NAME: &str = "tokio_spawn_storm";
    let rt = row_tokio(NAME)?;
    let done = Arc::new(Countdown::new(ops));
    let d = done.clone();
    let begin = Instant::now();
    drop(rt.spawn(tokio_storm(ops, move || d.count_one())));
    done.wait(NAME)?;
    let elapsed = begin.elapsed();
    drop(rt);
    Ok(elapsed.as_nanos() as f64 / ops as f64)
}
