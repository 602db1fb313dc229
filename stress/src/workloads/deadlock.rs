//! A scenario that deadlocks on purpose, so that tests can see the watchdog fire.
//!
//! It is reachable only through the hidden `--test-deadlock` flag and is not in the
//! registry. Two coroutines take two named `CoMutex`es in opposite order: `left` holds
//! `deadlock-a` and asks for `deadlock-b`, `right` holds `deadlock-b` and asks for
//! `deadlock-a`. Both suspend for good, the workers go to sleep in epoll, and nothing
//! spins: the watchdog sees the progress counter stand still, and `Runtime::dump` shows
//! each coroutine waiting on the other's lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use coprimitives::CoMutex;
use coscheduler::{Coroutine, JoinHandle, yield_now};

use crate::outcome::Outcome;
use crate::workload::{RunError, Workload, WorkloadEnv};

/// The deliberately deadlocking scenario.
#[derive(Debug, Clone, Copy, Default)]
pub struct Deadlock;

/// The statistics names of the two locks, which `Runtime::dump` shows as what each
/// coroutine waits on.
pub const LOCK_NAMES: [&str; 2] = ["deadlock-a", "deadlock-b"];

impl Workload for Deadlock {
    fn name(&self) -> &'static str {
        "deadlock"
    }

    fn description(&self) -> &'static str {
        "two coroutines take two CoMutexes in opposite order, to trip the watchdog (test only)"
    }

    fn coroutines(&self, _per_context: usize, _contexts: usize) -> usize {
        2
    }

    fn run(&self, env: &WorkloadEnv<'_>) -> Result<Outcome, RunError> {
        let locks = Arc::new(LOCK_NAMES.map(|name| CoMutex::with_stats((), name)));
        let holding = Arc::new(AtomicUsize::new(0));
        let contexts = env.runtime().contexts();
        let stack_size = env.settings().runtime.stack_size_bytes();
        let mut sides = Vec::with_capacity(2);
        for (index, name) in ["deadlock-left", "deadlock-right"].into_iter().enumerate() {
            let locks = Arc::clone(&locks);
            let holding = Arc::clone(&holding);
            // On two contexts when there are two, so the dump shows a cross-context cycle.
            let ctx = &contexts[index % contexts.len()];
            let side: JoinHandle<()> = Coroutine::builder()
                .name(name)
                .stack_size(stack_size)
                .spawn_on(ctx, move || {
                    let _first = locks[index].lock();
                    holding.fetch_add(1, Ordering::SeqCst);
                    // Wait until the other side holds its first lock too; without this, one
                    // side could take both locks before the other starts. It yields only
                    // for the moment both take to start.
                    while holding.load(Ordering::SeqCst) < 2 {
                        yield_now();
                    }
                    let _second = locks[1 - index].lock();
                    unreachable!("{name} took both locks: the deadlock did not happen");
                })
                .map_err(|err| RunError::failed(format!("cannot create {name}: {err}")))?;
            sides.push(side);
        }
        // Never returns: the join waits (asleep, driving this thread's own context) for a
        // coroutine that cannot finish, until the watchdog exits the process.
        for side in sides {
            side.join()
                .map_err(|err| RunError::failed(format!("deadlock: {err}")))?;
        }
        Err(RunError::failed(
            "deadlock: both coroutines finished; the deadlock did not happen",
        ))
    }
}
