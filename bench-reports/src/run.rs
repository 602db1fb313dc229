//! `cobench run`: measures the selected tiers and assembles a [`Results`].

use std::path::Path;

use crate::error::Error;
use crate::schema::{Benchmark, Reference, Results, SCHEMA_VERSION, Tier};
use crate::workload::TIME_BENCHES;
use crate::{callgrind, machine, probe, timed, workload};

/// What to measure.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Shrink iteration and sample counts (`--quick`).
    pub quick: bool,
    /// Measure only this tier; both when `None`.
    pub tier: Option<Tier>,
    /// Measure only benchmarks whose name contains this (references of selected time rows
    /// are measured too, since their ratios need them).
    pub filter: Option<String>,
}

/// Runs the suite. `exe` is the `cobench` binary that callgrind runs the probes of (normally
/// the current executable). Progress goes to stderr.
pub fn run(exe: &Path, options: &RunOptions) -> Result<Results, Error> {
    let date = machine::now_rfc3339();
    let mut benchmarks = Vec::new();
    if options.tier != Some(Tier::Time) {
        benchmarks.extend(deterministic(exe, options)?);
    }
    if options.tier != Some(Tier::Deterministic) {
        benchmarks.extend(time(options)?);
    }
    Ok(Results {
        schema_version: SCHEMA_VERSION,
        machine: machine::describe(),
        commit: machine::commit(),
        date,
        quick: options.quick,
        profile: machine::profile(),
        benchmarks,
    })
}

fn selected(name: &str, options: &RunOptions) -> bool {
    options.filter.as_deref().is_none_or(|f| name.contains(f))
}

fn deterministic(exe: &Path, options: &RunOptions) -> Result<Vec<Benchmark>, Error> {
    let mut rows = Vec::new();
    for p in probe::PROBES.iter().filter(|p| selected(p.name, options)) {
        let n = p.iters.pick(options.quick);
        eprintln!("cobench: callgrind {} (N = {n}, 2N, 3N)", p.name);
        let m = callgrind::measure(exe, p.name, n)?;
        eprintln!(
            "cobench:   {:.1} {} (spread {:.4})",
            m.per_op, p.unit, m.spread
        );
        rows.push(Benchmark {
            name: p.name.to_owned(),
            tier: Tier::Deterministic,
            value: m.per_op,
            unit: p.unit.to_owned(),
            better: crate::schema::Better::Lower,
            samples: m.totals.len() as u32,
            spread: m.spread,
            reference: None,
            ratio: None,
            percentiles: None,
            percentile_unit: None,
        });
    }
    Ok(rows)
}

fn time(options: &RunOptions) -> Result<Vec<Benchmark>, Error> {
    let wanted = |name: &str| {
        selected(name, options)
            || TIME_BENCHES
                .iter()
                .any(|b| b.reference == Some(name) && selected(b.name, options))
    };
    let mut rows: Vec<Benchmark> = Vec::new();
    for bench in TIME_BENCHES.iter().filter(|b| wanted(b.name)) {
        eprintln!("cobench: timing {}", bench.name);
        let measured = timed::measure(bench, options.quick);
        // The row's runtime, if its workload used one, goes before the next row (or the
        // error) so that no idle workers linger into another measurement.
        workload::finish_row();
        let mut row = measured?;
        if let Some(reference) = bench.reference {
            let base =
                rows.iter()
                    .find(|r| r.name == reference)
                    .ok_or_else(|| Error::Workload {
                        name: bench.name.to_owned(),
                        detail: format!(
                            "its reference `{reference}` must come earlier in TIME_BENCHES"
                        ),
                    })?;
            row.ratio = Some(row.value / base.value);
            row.reference = Some(Reference {
                name: base.name.clone(),
                value: base.value,
                spread: base.spread,
            });
        }
        eprintln!(
            "cobench:   {:.1} {} (spread {:.3})",
            row.value, row.unit, row.spread
        );
        rows.push(row);
    }
    Ok(rows)
}
