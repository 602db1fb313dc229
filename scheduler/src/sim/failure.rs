//! Why a simulated run failed, and the report that names its seed, the
//! way to replay it and, for a deadlock, who waits on what.

use std::fmt;

use super::{Schedule, Simulation, Strategy};

/// Why a simulated run failed, with what it takes to reproduce it.
pub struct Failure(Box<FailureInner>);

struct FailureInner {
    sim: Simulation,
    kind: FailureKind,
    schedule: Schedule,
    /// The suspended coroutines when the run stopped, one a line.
    dump: String,
}

/// What ended a failed run.
#[derive(Debug)]
pub(super) enum FailureKind {
    Panic { coroutine: String, message: String },
    Deadlock,
    StepLimit,
}

impl Failure {
    /// The failure of a run of `sim`, with the schedule it followed up to
    /// the failure and the suspended coroutines' dump.
    pub(super) fn new(
        sim: Simulation,
        kind: FailureKind,
        schedule: Schedule,
        dump: String,
    ) -> Failure {
        Failure(Box::new(FailureInner {
            sim,
            kind,
            schedule,
            dump,
        }))
    }

    /// The seed of the failing run.
    pub fn seed(&self) -> u64 {
        self.0.sim.seed
    }

    /// True if nothing could run, nothing waited on time, and the
    /// simulation's function had not returned.
    pub fn is_deadlock(&self) -> bool {
        matches!(self.0.kind, FailureKind::Deadlock)
    }

    /// True if a coroutine panicked (an assertion included).
    pub fn is_panic(&self) -> bool {
        matches!(self.0.kind, FailureKind::Panic { .. })
    }

    /// True if the run went past its step limit.
    pub fn is_step_limit(&self) -> bool {
        matches!(self.0.kind, FailureKind::StepLimit)
    }

    /// The panic message, for a panic.
    pub fn panic_message(&self) -> Option<&str> {
        match &self.0.kind {
            FailureKind::Panic { message, .. } => Some(message),
            _ => None,
        }
    }

    /// The schedule up to the failure, step by step.
    pub fn schedule(&self) -> &Schedule {
        &self.0.schedule
    }

    /// The suspended coroutines when the run stopped, one a line (for a
    /// deadlock, the wait-for picture).
    pub fn dump(&self) -> &str {
        &self.0.dump
    }

    /// A simulation that reproduces this failure step for step: the same
    /// seed, number of contexts, strategy and limits.
    pub fn replay(&self) -> Simulation {
        self.0.sim.clone()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "simulation with seed {} failed after {} steps: ",
            self.0.sim.seed,
            self.0.schedule.len()
        )?;
        match &self.0.kind {
            FailureKind::Panic { coroutine, message } => {
                write!(f, "{coroutine} panicked: {message}")?
            }
            FailureKind::Deadlock => write!(
                f,
                "deadlock: nothing can run, nothing waits on time, and the simulation's function has not returned"
            )?,
            FailureKind::StepLimit => {
                write!(f, "ran past {} steps (a livelock?)", self.0.sim.max_steps)?
            }
        }
        write!(
            f,
            "\nreplay it with Simulation::replay({}, {})",
            self.0.sim.seed, self.0.sim.contexts
        )?;
        if self.0.sim.strategy != Strategy::Random {
            write!(f, ".strategy({:?})", self.0.sim.strategy)?;
        }
        if !self.0.dump.is_empty() {
            write!(f, "\nsuspended coroutines:\n{}", self.0.dump)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Failure {}
