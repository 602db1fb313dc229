//! The workload interface: what a workload is given and what it returns.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coscheduler::Runtime;

use crate::exit::Exit;
use crate::outcome::Outcome;
use crate::settings::Settings;

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

    /// One line for `--list`: what it exercises and what its check proves.
    fn description(&self) -> &'static str;

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
    started: Instant,
    deadline: Instant,
}

impl<'a> WorkloadEnv<'a> {
    /// An environment whose deadline is `stress.duration` from now.
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
            started,
            deadline,
        }
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

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.deadline
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
