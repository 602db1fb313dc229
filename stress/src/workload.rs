//! The workload interface: what a workload is given and what it returns.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coscheduler::Runtime;

use crate::exit::Exit;
use crate::interrupt::Interrupt;
use crate::outcome::Outcome;
use crate::settings::Settings;

/// How often a workload waiting for its deadline looks at the interrupt flag: short enough
/// that Ctrl-C feels immediate, long enough to cost nothing.
const INTERRUPT_POLL: Duration = Duration::from_millis(10);

/// One stress scenario.
///
/// A workload runs on the [`Runtime`] it is given until [`WorkloadEnv::expired`], calling
/// [`Progress::add`] as it completes operations (the watchdog takes a progress counter that
/// stops moving for a deadlock), then stops its coroutines, joins them and proves by its
/// checks that nothing was lost. The caller fills in the runtime's per-context and pool
/// counters afterwards.
pub trait Workload: Sync {
    /// The name used on the command line and in reports (`mutex`).
    fn name(&self) -> &'static str;

    /// A paragraph for `--list`: what it does, what its checks prove, what it measures.
    fn description(&self) -> &'static str;

    /// About how many coroutines it holds at once with `per_context` coroutines per context
    /// (`stress.coroutines`) on `contexts` contexts: what the mapping-limit preflight
    /// compares with `vm.max_map_count`.
    fn coroutines(&self, per_context: usize, contexts: usize) -> usize;

    /// Runs the workload to its deadline.
    ///
    /// # Errors
    ///
    /// A [`RunError`] if the workload could not run at all; a run that finished with a
    /// failed check is an `Ok` outcome whose checks say so.
    fn run(&self, env: &WorkloadEnv<'_>) -> Result<Outcome, RunError>;
}

/// Operations completed so far in the current workload.
///
/// The workload adds to it; the watchdog and the progress line read it. Nothing is published
/// through it, so every access is `Relaxed`: readers only need to see it change eventually.
#[derive(Debug, Default)]
pub struct Progress(AtomicU64);

impl Progress {
    /// Records `ops` more completed operations.
    #[inline]
    pub fn add(&self, ops: u64) {
        self.0.fetch_add(ops, Ordering::Relaxed);
    }

    /// Operations completed so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What a running workload is given.
///
/// The runtime and the progress counter are shared (`Arc`) so that a workload can hand them
/// to threads and coroutines of its own. The runtime must never be moved into a coroutine:
/// whoever drops the last handle shuts it down, which a worker of that runtime cannot do.
#[derive(Debug)]
pub struct WorkloadEnv<'a> {
    settings: &'a Settings,
    runtime: &'a Arc<Runtime>,
    progress: Arc<Progress>,
    interrupt: Interrupt,
    started: Instant,
    deadline: Instant,
}

impl<'a> WorkloadEnv<'a> {
    /// An environment whose deadline is `stress.duration` from now, and that is never
    /// interrupted.
    pub fn new(
        settings: &'a Settings,
        runtime: &'a Arc<Runtime>,
        progress: Arc<Progress>,
    ) -> WorkloadEnv<'a> {
        let started = Instant::now();
        let deadline = started + settings.stress.duration();
        WorkloadEnv {
            settings,
            runtime,
            progress,
            interrupt: Interrupt::manual(),
            started,
            deadline,
        }
    }

    /// The same environment with its deadline `duration` after its start (a soak cycle's
    /// length rather than `stress.duration`).
    pub fn with_duration(mut self, duration: Duration) -> WorkloadEnv<'a> {
        self.deadline = self.started + duration;
        self
    }

    /// The same environment, stopped early when `interrupt` is raised.
    pub fn with_interrupt(mut self, interrupt: Interrupt) -> WorkloadEnv<'a> {
        self.interrupt = interrupt;
        self
    }

    /// The resolved settings of this run.
    pub fn settings(&self) -> &'a Settings {
        self.settings
    }

    /// The runtime to run on, built from `settings().runtime` for this workload alone.
    pub fn runtime(&self) -> &'a Arc<Runtime> {
        self.runtime
    }

    /// The counter to add completed operations to.
    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// When the workload should stop issuing new operations.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has passed or the run was interrupted.
    pub fn expired(&self) -> bool {
        self.interrupted() || Instant::now() >= self.deadline
    }

    /// Whether the run was interrupted (SIGINT, SIGTERM).
    pub fn interrupted(&self) -> bool {
        self.interrupt.is_raised()
    }

    /// Sleeps until the deadline, or until the run is interrupted.
    pub fn wait_for_deadline(&self) {
        while !self.expired() {
            let left = self.deadline.saturating_duration_since(Instant::now());
            std::thread::sleep(left.min(INTERRUPT_POLL));
        }
    }

    /// Time since the environment was made.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The seed for every random choice, so that a failing run can be repeated.
    pub fn seed(&self) -> u64 {
        self.settings.stress.seed()
    }
}

/// Why a workload could not run to completion.
#[derive(Debug)]
pub struct RunError {
    exit: Exit,
    message: String,
}

impl RunError {
    /// The workload cannot run with these settings (exit status 2).
    pub fn bad_input(message: impl Into<String>) -> RunError {
        RunError {
            exit: Exit::BadInput,
            message: message.into(),
        }
    }

    /// The runtime or the workload failed: the runtime would not start, an I/O call failed,
    /// a coroutine panicked (exit status 1).
    pub fn failed(message: impl Into<String>) -> RunError {
        RunError {
            exit: Exit::CheckFailed,
            message: message.into(),
        }
    }

    /// The run hit a resource limit of the OS, such as the mapping limit (exit status 4).
    pub fn resource_limit(message: impl Into<String>) -> RunError {
        RunError {
            exit: Exit::ResourceLimit,
            message: message.into(),
        }
    }

    /// A panic that escaped the workload, with its message when it had one.
    pub fn panicked(payload: &(dyn std::any::Any + Send)) -> RunError {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(a non-string panic payload)".to_owned());
        RunError::failed(format!("panicked: {message}"))
    }

    /// The exit status this error calls for.
    pub fn exit(&self) -> Exit {
        self.exit
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RunError {}
