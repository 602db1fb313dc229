//! A scenario that deadlocks on purpose, so that tests can see the watchdog fire.
//!
//! It is reachable only through the hidden `--test-deadlock` flag and is not in the
//! registry. Its body blocks the workload thread forever without adding progress.
//! TODO(follow-up): two coroutines taking two `CoMutex`es in opposite order, so that the
//! watchdog's dump shows coroutines suspended on each other's lock.

use crate::outcome::Outcome;
use crate::workload::{RunError, Workload, WorkloadEnv};

/// The deliberately deadlocking scenario.
#[derive(Debug, Clone, Copy, Default)]
pub struct Deadlock;

impl Workload for Deadlock {
    fn name(&self) -> &'static str {
        "deadlock"
    }

    fn description(&self) -> &'static str {
        "never makes progress, to trip the watchdog (test only)"
    }

    fn run(&self, _env: &WorkloadEnv<'_>) -> Result<Outcome, RunError> {
        // Spurious unparks are allowed, hence the loop; nothing ever unparks us on purpose.
        loop {
            std::thread::park();
        }
    }
}
