//! The report for people: a few aligned tables per workload.
//!
//! ```text
//! == mutex: ok ==
//! throughput  1,234,567 ops in 10.0 s = 123,457 ops/s
//! checks      ok    counter == increments: expected 1234567, got 1234567
//!
//! histogram              count      min      p50      p90      p99    p99.9      max
//! lock wait              1,000   120 ns  1.20 µs  ...
//!
//! context      started     switches       steals    hand-offs        parks
//! 0                 40        1,234           12           34            5
//! total        ...
//!
//! pool        shared max 128; pooled 17 (shared + thread caches); hits 1,000, misses 10 ...
//! ```
//!
//! `costress --explain` (see [`super::explain`]) describes every line and column.

use std::fmt::Write as _;

use coscheduler::config::format_duration;

use super::{PERCENTILES, format_count, format_nanos};
use crate::outcome::{ContextSnapshot, LockSnapshot, NamedHistogram, Outcome, PoolSnapshot};
use crate::settings::Settings;

/// The full report: a header with the settings that matter, then each outcome.
/// `interrupted` says the run was stopped by a signal, so later workloads did not run.
pub fn render(settings: &Settings, outcomes: &[Outcome], interrupted: bool) -> String {
    let mut out = header(settings);
    if interrupted {
        let _ = writeln!(
            out,
            "INTERRUPTED: stopped by a signal; {} of {} workloads ran, the last one cut short",
            outcomes.len(),
            settings.stress.workloads().len()
        );
    }
    for outcome in outcomes {
        out.push('\n');
        out.push_str(&render_outcome(outcome));
    }
    out.push_str("\n(costress --explain says what each line and column means)\n");
    out
}

/// One line per outcome, for `--quiet`.
pub fn render_summary(outcomes: &[Outcome], interrupted: bool) -> String {
    let mut out: String = outcomes
        .iter()
        .map(|outcome| summary_line(outcome) + "\n")
        .collect();
    if interrupted {
        out.push_str("interrupted\n");
    }
    out
}

fn verdict(outcome: &Outcome) -> String {
    let verdict = if outcome.passed() { "ok" } else { "FAILED" };
    if outcome.interrupted {
        let ran = u64::try_from(outcome.throughput.elapsed.as_nanos()).unwrap_or(u64::MAX);
        format!("{verdict}, interrupted after {}", format_nanos(ran))
    } else {
        verdict.to_owned()
    }
}

fn summary_line(outcome: &Outcome) -> String {
    let rate = format_count(outcome.throughput.per_second().round() as u64);
    let mut line = format!("{}: {}, {rate} ops/s", outcome.workload, verdict(outcome));
    for failure in outcome.failures() {
        let _ = write!(line, "; {failure}");
    }
    if outcome.checks.is_empty() {
        line.push_str("; no check ran");
    }
    line
}

fn header(settings: &Settings) -> String {
    let runtime = &settings.runtime;
    let threads = runtime
        .threads()
        .map_or_else(|| "one per core".to_owned(), |n| n.to_string());
    format!(
        "costress {}: {} for {} each\n\
         threads: {threads}, coroutines per context: {}, stack: {} bytes, seed: {}\n",
        env!("CARGO_PKG_VERSION"),
        settings.stress.workloads().join(", "),
        format_duration(settings.stress.duration()),
        settings.stress.coroutines(),
        format_count(runtime.stack_size_bytes() as u64),
        settings.stress.seed(),
    )
}

fn render_outcome(outcome: &Outcome) -> String {
    // `write!` to a String cannot fail; the results are ignored for that reason.
    let mut out = String::new();
    let _ = writeln!(out, "== {}: {} ==", outcome.workload, verdict(outcome));
    let throughput = &outcome.throughput;
    let _ = writeln!(
        out,
        "throughput  {} ops in {} = {} ops/s",
        format_count(throughput.ops),
        format_nanos(u64::try_from(throughput.elapsed.as_nanos()).unwrap_or(u64::MAX)),
        format_count(throughput.per_second().round() as u64),
    );
    for part in &outcome.parts {
        let _ = writeln!(
            out,
            "  {:<9} {} ops = {} ops/s",
            part.name,
            format_count(part.throughput.ops),
            format_count(part.throughput.per_second().round() as u64),
        );
    }
    if outcome.checks.is_empty() {
        let _ = writeln!(out, "checks      FAILED no check ran");
    }
    for (i, check) in outcome.checks.iter().enumerate() {
        let label = if i == 0 { "checks" } else { "" };
        let mark = if check.passed { "ok    " } else { "FAILED" };
        let _ = writeln!(out, "{label:<11} {mark} {check}");
    }
    if !outcome.histograms.is_empty() {
        out.push('\n');
        out.push_str(&histogram_table(&outcome.histograms));
    }
    if !outcome.locks.is_empty() {
        out.push('\n');
        out.push_str(&lock_table(&outcome.locks));
    }
    if !outcome.contexts.is_empty() {
        out.push('\n');
        out.push_str(&context_table(&outcome.contexts));
    }
    if let Some(pool) = &outcome.pool {
        out.push('\n');
        out.push_str(&pool_line(pool));
    }
    out
}

fn histogram_table(histograms: &[NamedHistogram]) -> String {
    let label = |h: &NamedHistogram| {
        let kind = h.kind.to_string();
        // Name the kind too unless the name already says it ("mutex lock wait").
        if h.name.contains(&kind) {
            h.name.clone()
        } else {
            format!("{} ({kind})", h.name)
        }
    };
    let width = histograms
        .iter()
        .map(|h| label(h).chars().count())
        .max()
        .unwrap_or(0)
        .max(9);
    let mut out = format!("{:<width$} {:>10} {:>9}", "histogram", "count", "min");
    for (name, _) in PERCENTILES {
        let _ = write!(out, " {name:>9}");
    }
    out.push_str(&format!(" {:>9}\n", "max"));
    for named in histograms {
        let h = &named.histogram;
        let _ = write!(
            out,
            "{:<width$} {:>10}",
            label(named),
            format_count(h.len())
        );
        if h.is_empty() {
            out.push_str(&format!(" {:>9}\n", "-"));
            continue;
        }
        let _ = write!(out, " {:>9}", format_nanos(h.min()));
        for (_, quantile) in PERCENTILES {
            let _ = write!(out, " {:>9}", format_nanos(h.value_at_quantile(quantile)));
        }
        let _ = writeln!(out, " {:>9}", format_nanos(h.max()));
    }
    out
}

/// The locks' exact counters beside the count their wait histogram recorded, which covers
/// contended acquisitions only (sampled when they are frequent).
fn lock_table(locks: &[LockSnapshot]) -> String {
    let width = locks
        .iter()
        .map(|lock| lock.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = format!(
        "{:<width$} {:>6} {:>13} {:>13} {:>13} {:>13}\n",
        "lock", "kind", "acquisitions", "uncontended", "contended", "in histogram"
    );
    for lock in locks {
        let cells = [
            lock.acquisitions,
            lock.uncontended,
            lock.contended,
            lock.timed,
        ]
        .map(format_count);
        let _ = writeln!(
            out,
            "{:<width$} {:>6} {:>13} {:>13} {:>13} {:>13}",
            lock.name,
            lock.kind.to_string(),
            cells[0],
            cells[1],
            cells[2],
            cells[3]
        );
    }
    out.push_str(
        "(lock wait/hold histograms time contended acquisitions only; above 50k a second on a \
         thread they are weighted samples, so \"in histogram\" estimates \"contended\")\n",
    );
    out
}

fn context_table(contexts: &[ContextSnapshot]) -> String {
    let row = |name: &str, c: &ContextSnapshot| {
        let cells = [c.started, c.switches, c.steals, c.hand_offs, c.parks].map(format_count);
        format!(
            "{name:<7} {:>12} {:>12} {:>12} {:>12} {:>12}\n",
            cells[0], cells[1], cells[2], cells[3], cells[4]
        )
    };
    let mut out = format!(
        "{:<7} {:>12} {:>12} {:>12} {:>12} {:>12}\n",
        "context", "started", "switches", "steals", "hand-offs", "parks"
    );
    let mut total = ContextSnapshot::default();
    for context in contexts {
        out.push_str(&row(&context.context.to_string(), context));
        total.accumulate(context);
    }
    if contexts.len() > 1 {
        out.push_str(&row("total", &total));
    }
    out
}

/// The pool's line. Its maximum bounds the shared pool only; every thread also caches up
/// to [`THREAD_CACHE`] stacks of its own, which is why "pooled" can exceed "max".
fn pool_line(pool: &PoolSnapshot) -> String {
    let hit_rate = pool
        .hit_rate()
        .map_or_else(String::new, |rate| format!(" ({:.1}% hits)", rate * 100.0));
    format!(
        "pool        shared max {}; pooled at the end {} (shared pool + every thread's cache of \
         up to {THREAD_CACHE}); hits {}, misses {}{hit_rate}; allocated {}, freed {}\n",
        format_count(pool.max_size as u64),
        format_count(pool.pooled as u64),
        format_count(pool.hits),
        format_count(pool.misses),
        format_count(pool.allocated),
        format_count(pool.freed),
    )
}

/// Stacks a thread caches outside the shared pool's maximum: two batches.
const THREAD_CACHE: usize = 2 * coscheduler::pool::BATCH_SIZE;
