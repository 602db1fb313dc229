//! The run itself: parse, resolve, run each workload under the watchdog, report, exit.

use std::ffi::OsString;
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;

use coscheduler::Runtime;

use crate::cli::{self, Format};
use crate::exit::Exit;
use crate::outcome::{ContextSnapshot, Outcome, PoolSnapshot};
use crate::report::{hgrm, human, json};
use crate::settings::Settings;
use crate::workload::{Progress, RunError, Workload, WorkloadEnv};
use crate::{progress, watchdog, workloads};

/// The entry point of the `costress` binary.
pub fn main() -> ExitCode {
    run(std::env::args_os()).into()
}

/// Runs `costress` with `args` (program name first) and returns its exit status.
fn run(args: impl IntoIterator<Item = OsString>) -> Exit {
    let invocation = match cli::parse_from(args) {
        Ok(invocation) => invocation,
        Err(err) => {
            // clap prints help and the version to stdout, errors to stderr, with usage.
            let _ = err.print();
            return Exit::from_clap(&err);
        }
    };
    if invocation.cli.list {
        print!("{}", list());
        return Exit::Success;
    }
    let settings = match Settings::resolve(&invocation) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("costress: {err}");
            return Exit::BadInput;
        }
    };
    if invocation.cli.print_config {
        print!("{}", settings.to_toml());
        return Exit::Success;
    }
    let selected: Vec<&dyn Workload> = if invocation.cli.test_deadlock {
        vec![&workloads::deadlock::Deadlock]
    } else {
        let names = settings.stress.workloads();
        names
            .iter()
            .map(|name| workloads::find(name).expect("Settings::resolve checked the names"))
            .collect()
    };
    let mut outcomes = Vec::with_capacity(selected.len());
    for workload in selected {
        match run_one(workload, &settings) {
            Ok(outcome) => outcomes.push(outcome),
            Err(err) => {
                eprintln!("costress: {}: {err}", workload.name());
                return err.exit();
            }
        }
    }
    report(&settings, &outcomes)
}

/// The `--list` text: each workload's name and description.
fn list() -> String {
    let all = workloads::all();
    let width = all.iter().map(|w| w.name().len()).max().unwrap_or(0);
    all.iter()
        .map(|w| {
            let default = if w.name() == workloads::DEFAULT {
                " [default]"
            } else {
                ""
            };
            format!("{:<width$}  {}{default}\n", w.name(), w.description())
        })
        .collect()
}

/// Runs one workload on a runtime of its own, with the watchdog and the progress line around
/// it, and adds the runtime's counters to its outcome.
///
/// Each workload gets a fresh [`Runtime`] built from `[runtime]`, so its per-context counters
/// are its own; the pool is process-wide, so its counters are taken as a difference.
fn run_one(workload: &dyn Workload, settings: &Settings) -> Result<Outcome, RunError> {
    let pool_before = coscheduler::pool::stats();
    let runtime = Runtime::builder()
        .config(&settings.runtime)
        .build()
        .map(Arc::new)
        .map_err(|err| RunError::failed(format!("cannot start the runtime: {err}")))?;
    let progress = Arc::new(Progress::default());
    let dump = || runtime.dump();
    let result = thread::scope(|scope| {
        let stall_timeout = settings.stress.stall_timeout();
        let watchdog = watchdog::arm(
            scope,
            workload.name(),
            &progress,
            stall_timeout,
            &dump,
            watchdog::exit_on_stall,
        );
        let line = progress::start(
            scope,
            progress::wanted(settings.quiet),
            workload.name(),
            settings.stress.duration(),
            &progress,
        );
        let env = WorkloadEnv::new(settings, &runtime, Arc::clone(&progress));
        let result = panic::catch_unwind(AssertUnwindSafe(|| workload.run(&env)));
        line.finish();
        watchdog.disarm();
        result.unwrap_or_else(|payload| Err(RunError::panicked(payload.as_ref())))
    });
    let outcome = result.map(|mut outcome| {
        let metrics = runtime.metrics();
        outcome.contexts = metrics
            .per_context
            .iter()
            .enumerate()
            .map(|(index, context)| ContextSnapshot::from_metrics(index, context))
            .collect();
        outcome.pool = Some(PoolSnapshot::between(&pool_before, &metrics.pool));
        outcome
    });
    // A workload joins every thread it handed the runtime to, so this is the last handle.
    // Were it not, the runtime would shut down when the last one goes.
    match Arc::try_unwrap(runtime) {
        Ok(runtime) => runtime.shutdown(),
        Err(shared) => drop(shared),
    }
    outcome
}

/// Prints the report, writes the `.hgrm` files, and picks the exit status.
fn report(settings: &Settings, outcomes: &[Outcome]) -> Exit {
    let text = match (settings.format, settings.quiet) {
        (Format::Json, _) => json::render(settings, outcomes),
        (Format::Human, false) => human::render(settings, outcomes),
        (Format::Human, true) => human::render_summary(outcomes),
    };
    print!("{text}");
    if let Some(dir) = &settings.hgrm_dir {
        if let Err(err) = hgrm::write_all(dir, outcomes) {
            eprintln!("costress: --hgrm: cannot write histograms: {err}");
            return Exit::BadInput;
        }
    }
    let mut exit = Exit::Success;
    for outcome in outcomes.iter().filter(|outcome| !outcome.passed()) {
        for failure in outcome.failures() {
            eprintln!("costress: {}: check failed: {failure}", outcome.workload);
        }
        if outcome.checks.is_empty() {
            eprintln!("costress: {}: no correctness check ran", outcome.workload);
        }
        exit = Exit::CheckFailed;
    }
    exit
}
