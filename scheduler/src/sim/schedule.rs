//! A run's schedule: the sequence of scheduling decisions, for replay and
//! comparison.

use std::fmt;
use std::time::Duration;

/// What one scheduling step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepKind {
    /// Entered the ready coroutine of the context that the strategy chose
    /// (and whatever it woke on the same context, in QEMU's order).
    Run,
    /// Delivered the context's oldest hand-off from another context (a
    /// cross-context wake) to its ready list.
    Deliver,
    /// Ran the context's oldest bottom half.
    BottomHalf,
    /// Fired the context's due timers.
    Timers,
    /// Nothing could run: the virtual clock jumped to the next deadline
    /// (the time since the start of the run).
    Advance(Duration),
}

/// One scheduling step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// The context (its index among the simulation's contexts).
    pub context: usize,
    /// What happened.
    pub kind: StepKind,
    /// The coroutine concerned, numbered in order of first appearance in
    /// the run (process-wide ids differ between runs).
    pub coroutine: Option<u64>,
}

/// A run's steps, in order. Two runs with the same seed (and settings) of
/// the same program have equal schedules; [`Display`](fmt::Display) writes
/// one step a line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    steps: Vec<Step>,
}

impl Schedule {
    pub(crate) fn push(&mut self, step: Step) {
        self.steps.push(step);
    }

    /// The number of steps.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// True if no step was taken.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The steps.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, s) in self.steps.iter().enumerate() {
            match (s.kind, s.coroutine) {
                (StepKind::Advance(t), _) => writeln!(f, "{n} clock {}ns", t.as_nanos())?,
                (kind, Some(co)) => writeln!(f, "{n} ctx{} {kind:?} co{co}", s.context)?,
                (kind, None) => writeln!(f, "{n} ctx{} {kind:?}", s.context)?,
            }
        }
        Ok(())
    }
}
