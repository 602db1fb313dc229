//! TEMPORARY: the stand-in for every workload until coscheduler's runtime API compiles.
//!
//! Delete this file when the last workload is written; nothing else refers to it except the
//! registry in `mod.rs`.

use crate::outcome::Outcome;
use crate::workload::{RunError, Workload, WorkloadEnv};

/// A registered workload whose body is not written yet.
pub(super) struct Pending {
    name: &'static str,
    description: &'static str,
}

impl Pending {
    pub(super) const fn new(name: &'static str, description: &'static str) -> Pending {
        Pending { name, description }
    }
}

impl Workload for Pending {
    fn name(&self) -> &'static str {
        self.name
    }

    fn description(&self) -> &'static str {
        self.description
    }

    fn run(&self, _env: &WorkloadEnv<'_>) -> Result<Outcome, RunError> {
        Err(RunError::bad_input(format!(
            "workload {} is not implemented yet (it waits for coscheduler's runtime API)",
            self.name
        )))
    }
}
