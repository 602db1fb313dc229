//! Running one workload on one runtime, with everything that watches it: the watchdog, the
//! progress line, the throughput sampler and the interrupt flag.
//!
//! The normal run and the soak both come here; they differ in who builds the runtime and
//! how it is shut down afterwards.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use coscheduler::Runtime;
use coscheduler::pool::PoolStats;

use crate::interrupt::Interrupt;
use crate::limits::{self, Demand, Mappings};
use crate::outcome::{ContextSnapshot, Outcome, PoolSnapshot};
use crate::settings::Settings;
use crate::workload::{Progress, RunError, Workload, WorkloadEnv};
use crate::{progress, timeline, watchdog};

/// What one workload run is given besides the workload.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    /// The resolved settings.
    pub settings: &'a Settings,
    /// How long the workload runs (`stress.duration`, or a soak cycle's length).
    pub duration: Duration,
    /// Raised by Ctrl-C or SIGTERM; the workload stops early when it is.
    pub interrupt: &'a Interrupt,
}

/// The worker contexts a runtime built from `settings` has.
pub fn contexts(settings: &Settings) -> usize {
    settings
        .runtime
        .threads()
        .or_else(|| thread::available_parallelism().ok())
        .map_or(1, usize::from)
}

/// Calls `f` with what `workload` asks of the mapping limit under `settings`.
pub fn with_demand<R>(
    workload: &dyn Workload,
    settings: &Settings,
    f: impl FnOnce(&Demand<'_>) -> R,
) -> R {
    let contexts = contexts(settings);
    let coroutines = |per_context| workload.coroutines(per_context, contexts);
    f(&Demand {
        workload: workload.name(),
        per_context: settings.stress.coroutines(),
        contexts,
        stack_size: settings.runtime.stack_size_bytes(),
        coroutines: &coroutines,
    })
}

/// Checks before the run that `workload`'s coroutines fit under the mapping limit; passes
/// where `/proc` does not tell the limit.
///
/// # Errors
///
/// A [`RunError`] with exit status 4 and the limit, how many fit and the fix.
pub fn preflight(workload: &dyn Workload, settings: &Settings) -> Result<(), RunError> {
    let Some(mappings) = Mappings::read() else {
        return Ok(());
    };
    with_demand(workload, settings, |demand| {
        limits::preflight(demand, &mappings)
    })
    .map_err(RunError::resource_limit)
}

/// Builds the runtime for one workload from `[runtime]`.
///
/// # Errors
///
/// A [`RunError`] (exit status 1) if the runtime would not start.
pub fn build_runtime(settings: &Settings) -> Result<Arc<Runtime>, RunError> {
    Runtime::builder()
        .config(&settings.runtime)
        .build()
        .map(Arc::new)
        .map_err(|err| RunError::failed(format!("cannot start the runtime: {err}")))
}

/// Runs `workload` on a runtime of its own, shuts the runtime down, and adds its counters
/// to the outcome.
///
/// Each workload gets a fresh [`Runtime`] built from `[runtime]`, so its per-context counters
/// are its own; the pool is process-wide, so its counters are taken as a difference.
///
/// # Errors
///
/// The workload's [`RunError`]; one caused by a failed stack allocation is reworded as the
/// mapping-limit error (exit status 4).
pub fn run_one(workload: &dyn Workload, run: Run<'_>) -> Result<Outcome, RunError> {
    let mappings_before = Mappings::read();
    let pool_before = coscheduler::pool::stats();
    let runtime = build_runtime(run.settings)?;
    let outcome = run_on(workload, run, &runtime, &pool_before);
    shut_down(runtime);
    outcome.map_err(|err| {
        let failed_allocations = coscheduler::pool::stats()
            .alloc_failures
            .saturating_sub(pool_before.alloc_failures);
        match mappings_before {
            Some(at_start) if failed_allocations > 0 => with_demand(workload, run.settings, |d| {
                RunError::resource_limit(limits::diagnose_failure(d, &at_start, &err.to_string()))
            }),
            _ => err,
        }
    })
}

/// Shuts `runtime` down if this is the last handle, as it is once a workload has joined
/// every thread it handed the runtime to; were it not, the runtime would shut down when the
/// last handle goes.
pub fn shut_down(runtime: Arc<Runtime>) {
    match Arc::try_unwrap(runtime) {
        Ok(runtime) => runtime.shutdown(),
        Err(shared) => drop(shared),
    }
}

/// Runs `workload` on `runtime` under the watchdog, the progress line and the sampler, and
/// adds the runtime's counters (and the pool's since `pool_before`) to its outcome. The
/// runtime is left running.
///
/// # Errors
///
/// The workload's [`RunError`], or a panic that escaped it.
pub fn run_on(
    workload: &dyn Workload,
    run: Run<'_>,
    runtime: &Arc<Runtime>,
    pool_before: &PoolStats,
) -> Result<Outcome, RunError> {
    let settings = run.settings;
    // Lock statistics are process-wide and kept per name; each run's locks have names of
    // their own, so what earlier runs recorded is only memory (the statistics of exited
    // worker threads are kept until a reset): a soak of thousands of cycles would grow by
    // their histograms every cycle.
    coprimitives::stats::reset();
    let progress = Arc::new(Progress::default());
    let dump = || runtime.dump();
    let deadlocks = || {
        runtime
            .deadlocks()
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    let (result, samples) = thread::scope(|scope| {
        let watchdog = watchdog::arm(
            scope,
            workload.name(),
            &progress,
            settings.stress.stall_timeout(),
            &dump,
            &deadlocks,
            watchdog::exit_on_stall,
        );
        let line = progress::start(
            scope,
            progress::wanted(settings.quiet),
            workload.name(),
            run.duration,
            &progress,
        );
        let sampler = timeline::start(scope, &progress, timeline::period_for(run.duration));
        let env = WorkloadEnv::new(settings, runtime, Arc::clone(&progress))
            .with_duration(run.duration)
            .with_interrupt(run.interrupt.clone());
        let result = panic::catch_unwind(AssertUnwindSafe(|| workload.run(&env)));
        let samples = sampler.finish();
        line.finish();
        watchdog.disarm();
        let result = result.unwrap_or_else(|payload| Err(RunError::panicked(payload.as_ref())));
        (result, samples)
    });
    result.map(|mut outcome| {
        let metrics = runtime.metrics();
        outcome.contexts = metrics
            .per_context
            .iter()
            .enumerate()
            .map(|(index, context)| ContextSnapshot::from_metrics(index, context))
            .collect();
        outcome.pool = Some(PoolSnapshot::between(pool_before, &metrics.pool));
        outcome.timeline = samples;
        outcome
    })
}
