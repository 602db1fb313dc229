//! The soak (`costress --soak`): the workload in create/run/teardown cycles, with a leak check
//! after every teardown.
//!
//! A runtime that leaks at shutdown cannot be created and dropped in a long-lived process,
//! and one leak per thousand teardowns only shows after thousands. So each cycle:
//!
//! 1. builds a runtime from `[runtime]`;
//! 2. runs the workload (`mixed` unless others are named; several take turns) for
//!    `--cycle`, with its own conservation checks;
//! 3. parks coroutines in every kind of wait ([`leftovers`]) for the teardown to unwind;
//! 4. ends the runtime, with `shutdown()` on odd cycles and by dropping it on even ones,
//!    under a timer: a teardown that takes longer than `stall_timeout` fails the soak;
//! 5. checks that every leftover's destructor ran, that their shared `Arc` is back to one
//!    reference and their mutex free, that no coroutine stack is still held, that the
//!    thread count is back to the baseline taken before the first cycle, and that the
//!    mappings (less those of pooled stacks) are back to the baseline taken after the first
//!    cycle, within [`MAPPING_MARGIN`].
//!
//! The first failure stops the soak with exit status 5 and a report naming the cycle and
//! what leaked; the soak otherwise ends when its limit is reached (`--ops` contended lock
//! operations, or `duration`) or on Ctrl-C, checked between cycles. It runs at least
//! [`MIN_CYCLES`] cycles (one of each teardown) before a limit can end it, however short.

mod leftovers;
mod process;

use std::io::Write as _;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::exit::Exit;
use crate::interrupt::Interrupt;
use crate::limits::{self, MAPPINGS_PER_STACK};
use crate::outcome::{Check, Outcome, SoakCycle, SoakSummary, Teardown};
use crate::report::{self, format_count, json};
use crate::runner::{self, Run};
use crate::settings::{Format, Settings, Soak, SoakLimit};
use crate::workload::Workload;
use crate::workloads;
use coscheduler::config::format_duration;
use leftovers::Leftovers;

/// Mappings a cycle may leave above the baseline: the allocator's per-thread arenas and the
/// C library's cache of thread stacks grow in steps that have nothing to do with coroutines.
/// Leaked coroutines are caught exactly by the stack count instead.
pub const MAPPING_MARGIN: usize = 64;

/// How long the thread count may take to come back after a teardown: a joined thread is
/// removed from `/proc/self/task` a moment after `join` returns.
const THREAD_SETTLE: Duration = Duration::from_secs(2);

/// What `costress --soak` was asked for.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// When to stop and how long each cycle runs.
    pub limits: Soak,
    /// Plant a leak in the first cycle (`--test-leak`), to show the checks catch it.
    pub leak_on_purpose: bool,
}

/// The baseline every cycle is compared with.
#[derive(Debug, Clone, Copy)]
struct Baseline {
    threads: usize,
    /// Mappings less those of existing stacks; set after the first cycle.
    mappings: Option<usize>,
}

/// Runs the soak and reports it; returns the exit status.
pub fn run(settings: &Settings, options: Options, interrupt: &Interrupt) -> Exit {
    let names = settings.stress.workloads();
    let selected: Vec<&dyn Workload> = names
        .iter()
        .map(|name| workloads::find(name).expect("Settings::resolve checked the names"))
        .collect();
    if settings.preflight {
        for workload in &selected {
            if let Err(err) = runner::preflight(*workload, settings) {
                eprintln!("costress: soak: {}: {err}", workload.name());
                return err.exit();
            }
        }
    }
    let human = settings.format == Format::Human && !settings.quiet;
    if human {
        print!("{}", header(settings, &options));
    }
    let mut baseline = Baseline {
        threads: process::threads().unwrap_or(0),
        mappings: None,
    };
    let mut summary = SoakSummary {
        limit: limit_text(options.limits.limit),
        baseline_threads: baseline.threads,
        baseline_mappings: 0,
        mapping_margin: MAPPING_MARGIN,
        cycles: Vec::new(),
        interrupted: false,
    };
    let started = Instant::now();
    let mut last = None;
    for number in 1u64.. {
        let workload = selected[(number as usize - 1) % selected.len()];
        let leak = options.leak_on_purpose && number == 1;
        let (cycle, outcome) = match run_cycle(
            workload,
            settings,
            &options,
            interrupt,
            number,
            leak,
            &mut baseline,
        ) {
            Ok(done) => done,
            Err(message) => {
                eprintln!("costress: soak: cycle {number}: {message}");
                return Exit::CheckFailed;
            }
        };
        summary.baseline_mappings = baseline.mappings.unwrap_or(0);
        if human {
            println!("{}", cycle_line(&cycle, &summary));
            let _ = std::io::stdout().flush();
        }
        let failed = !cycle.passed();
        summary.cycles.push(cycle);
        last = Some(outcome);
        if failed || interrupt.is_raised() || limit_reached(&summary, options.limits.limit, started)
        {
            break;
        }
    }
    summary.interrupted = interrupt.is_raised();
    finish(settings, &summary, last)
}

/// One cycle: build, run, park the leftovers, tear down, check.
fn run_cycle(
    workload: &dyn Workload,
    settings: &Settings,
    options: &Options,
    interrupt: &Interrupt,
    number: u64,
    leak: bool,
    baseline: &mut Baseline,
) -> Result<(SoakCycle, Outcome), String> {
    let pool_before = coscheduler::pool::stats();
    let runtime = runner::build_runtime(settings).map_err(|err| err.to_string())?;
    let run = Run {
        settings,
        duration: options.limits.cycle,
        interrupt,
    };
    let outcome = runner::run_on(workload, run, &runtime, &pool_before)
        .map_err(|err| format!("{}: {err}", workload.name()))?;
    let mut leftovers = Leftovers::park(
        &runtime,
        options.limits.leftovers,
        settings.runtime.stack_size_bytes(),
    )?;
    if leak {
        leftovers.leak_on_purpose();
    }
    let left_suspended = leftovers.count();
    let teardown = if number % 2 == 1 {
        Teardown::Shutdown
    } else {
        Teardown::Drop
    };
    let runtime = std::sync::Arc::try_unwrap(runtime)
        .map_err(|_| "the runtime is still shared after the workload".to_owned())?;
    let teardown_started = Instant::now();
    under_timer(
        settings.stress.stall_timeout(),
        number,
        teardown,
        || match teardown {
            Teardown::Shutdown => runtime.shutdown(),
            Teardown::Drop => drop(runtime),
        },
    );
    let teardown_ns = nanos(teardown_started.elapsed());
    let mut checks = leftovers.checks();
    checks.extend(process_checks(baseline));
    let pool = coscheduler::pool::stats();
    let (rss_kib, max_rss_kib) = process::resident_kib().unwrap_or((0, 0));
    let cycle = SoakCycle {
        cycle: number,
        teardown,
        elapsed_ns: nanos(outcome.throughput.elapsed),
        teardown_ns,
        ops: outcome.throughput.ops,
        contended_lock_ops: outcome.contended_lock_ops(),
        left_suspended,
        workload_passed: outcome.passed(),
        checks,
        threads: process::threads().unwrap_or(0),
        mappings: limits::mapping_count().unwrap_or(0),
        stacks_in_use: stacks_held(&pool),
        rss_kib,
        max_rss_kib,
    };
    Ok((cycle, outcome))
}

/// The thread, mapping and stack checks after a teardown. The first call sets the mapping
/// baseline (the first cycle creates the allocator arenas and thread-stack cache that every
/// later cycle reuses).
fn process_checks(baseline: &mut Baseline) -> Vec<Check> {
    let mut checks = Vec::new();
    if let Some(threads) = settled_threads(baseline.threads) {
        checks.push(Check::equal(
            "threads after the teardown == before the first cycle",
            baseline.threads as u64,
            threads as u64,
        ));
    }
    let pool = coscheduler::pool::stats();
    checks.push(Check::equal(
        "coroutine stacks still held after the teardown",
        0,
        stacks_held(&pool),
    ));
    if let Some(mappings) = limits::mapping_count() {
        let stacks = pool.allocated.saturating_sub(pool.freed) as usize;
        let others = mappings.saturating_sub(stacks * MAPPINGS_PER_STACK);
        let allowed = *baseline.mappings.get_or_insert(others) + MAPPING_MARGIN;
        checks.push(Check {
            passed: others <= allowed,
            what: format!(
                "mappings other than pooled stacks (at most the baseline + {MAPPING_MARGIN})"
            ),
            expected: allowed as u64,
            actual: others as u64,
        });
    }
    checks
}

/// The thread count once it is back to `baseline`, or after [`THREAD_SETTLE`] whatever it is.
fn settled_threads(baseline: usize) -> Option<usize> {
    let started = Instant::now();
    loop {
        let threads = process::threads()?;
        if threads <= baseline || started.elapsed() > THREAD_SETTLE {
            return Some(threads);
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `teardown`; if it takes longer than `limit`, reports the hang and exits with status 5
/// (a runtime that cannot be torn down is a leak of everything it holds).
fn under_timer(limit: Duration, number: u64, kind: Teardown, teardown: impl FnOnce()) {
    let (done, finished) = mpsc::channel::<()>();
    thread::scope(|scope| {
        scope.spawn(move || {
            if finished.recv_timeout(limit) == Err(mpsc::RecvTimeoutError::Timeout) {
                eprintln!(
                    "\ncostress: soak: cycle {number}: the runtime's {kind} did not finish within \
                     {}; the suspended coroutines were not all unwound",
                    format_duration(limit)
                );
                std::process::exit(i32::from(Exit::Leaked.code()));
            }
        });
        teardown();
        drop(done);
    });
}

/// The fewest cycles a soak runs, whatever its limit: one ended by `shutdown()` and one by
/// dropping the runtime, so that both teardowns are always checked.
const MIN_CYCLES: usize = 2;

fn limit_reached(summary: &SoakSummary, limit: SoakLimit, started: Instant) -> bool {
    summary.cycles.len() >= MIN_CYCLES
        && match limit {
            SoakLimit::Ops(ops) => summary.contended_lock_ops() >= ops,
            SoakLimit::Time(duration) => started.elapsed() >= duration,
        }
}

fn limit_text(limit: SoakLimit) -> String {
    match limit {
        SoakLimit::Ops(ops) => format!("{} contended lock operations", format_count(ops)),
        SoakLimit::Time(duration) => format_duration(duration),
    }
}

/// Stacks that exist and are not pooled: held by coroutines. Computed saturating, because
/// the pool's per-thread counters are summed without a common snapshot.
fn stacks_held(pool: &coscheduler::pool::PoolStats) -> u64 {
    pool.allocated
        .saturating_sub(pool.freed)
        .saturating_sub(pool.pooled as u64)
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn header(settings: &Settings, options: &Options) -> String {
    format!(
        "costress {} soak: {} in cycles of {}, until {}; threads {}, {} coroutines per \
         context, {} leftovers of each kind per context\n",
        env!("CARGO_PKG_VERSION"),
        settings.stress.workloads().join(", "),
        format_duration(options.limits.cycle),
        limit_text(options.limits.limit),
        settings
            .runtime
            .threads()
            .map_or_else(|| "one per core".to_owned(), |n| n.to_string()),
        settings.stress.coroutines(),
        options.limits.leftovers,
    )
}

/// One line per cycle, as it finishes.
fn cycle_line(cycle: &SoakCycle, summary: &SoakSummary) -> String {
    let mut line = format!(
        "cycle {:>5} {:<8} ops {:>12}  contended {:>11}  suspended {:>4}  threads {}/{}  \
         maps {}  stacks {}  rss {} KiB  max {} KiB  ",
        cycle.cycle,
        cycle.teardown.to_string(),
        format_count(cycle.ops),
        format_count(cycle.contended_lock_ops),
        cycle.left_suspended,
        cycle.threads,
        summary.baseline_threads,
        cycle.mappings,
        cycle.stacks_in_use,
        format_count(cycle.rss_kib),
        format_count(cycle.max_rss_kib),
    );
    if cycle.passed() {
        line.push_str("ok");
    } else {
        line.push_str("LEAK");
        if !cycle.workload_passed {
            line.push_str("; the workload's checks failed");
        }
        for check in cycle.checks.iter().filter(|check| !check.passed) {
            line.push_str(&format!("; {check}"));
        }
    }
    line
}

/// Prints the summary (or the JSON document), writes the files, picks the exit status.
fn finish(settings: &Settings, summary: &SoakSummary, last: Option<Outcome>) -> Exit {
    let outcomes: Vec<Outcome> = last.into_iter().collect();
    match settings.format {
        Format::Json => print!("{}", json::render_soak(settings, &outcomes, summary)),
        Format::Human => {
            if !summary.passed() && !settings.quiet {
                if let Some(outcome) = outcomes.first().filter(|outcome| !outcome.passed()) {
                    print!(
                        "\n{}",
                        report::human::render(settings, std::slice::from_ref(outcome), false)
                    );
                }
            }
            println!("{}", verdict(summary));
        }
    }
    if let Err(err) = report::write_soak_files(settings, &outcomes, summary) {
        eprintln!("costress: {err}");
        return Exit::BadInput;
    }
    if let Some(cycle) = summary.first_failure() {
        eprintln!("costress: soak: {}", failure_text(cycle));
        return if cycle.checks.iter().all(|check| check.passed) {
            Exit::CheckFailed
        } else {
            Exit::Leaked
        };
    }
    if summary.interrupted {
        eprintln!("costress: interrupted; reported the cycles that ran");
        return Exit::Interrupted;
    }
    Exit::Success
}

fn verdict(summary: &SoakSummary) -> String {
    let state = match summary.first_failure() {
        Some(cycle) => format!("FAILED in cycle {}", cycle.cycle),
        None if summary.interrupted => "no leak (interrupted)".to_owned(),
        None => "no leak".to_owned(),
    };
    let elapsed: u64 = summary
        .cycles
        .iter()
        .map(|c| c.elapsed_ns + c.teardown_ns)
        .sum();
    format!(
        "soak: {state}: {} cycles in {}, {} ops, {} contended lock operations, max RSS {} KiB",
        summary.cycles.len(),
        report::format_nanos(elapsed),
        format_count(summary.ops()),
        format_count(summary.contended_lock_ops()),
        format_count(summary.max_rss_kib()),
    )
}

fn failure_text(cycle: &SoakCycle) -> String {
    let mut what: Vec<String> = cycle
        .checks
        .iter()
        .filter(|check| !check.passed)
        .map(ToString::to_string)
        .collect();
    if !cycle.workload_passed {
        what.insert(
            0,
            "the workload's own checks failed (see the report)".to_owned(),
        );
    }
    format!(
        "cycle {} ({}) failed: {}",
        cycle.cycle,
        cycle.teardown,
        what.join("; ")
    )
}
