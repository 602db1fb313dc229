//! `cobench run`: measures the selected tiers and assembles a [`Results`].

use std::path::Path;

use crate::error::Error;
use crate::load::{Competitors, Load};
use crate::schema::{Benchmark, OtherReference, Reference, Results, SCHEMA_VERSION, Tier};
use crate::timed::TimeBench;
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
    /// The loads to run the time tier under, one pass each, in order; empty means quiet
    /// only.
    pub loads: Vec<Load>,
    /// Pin (or unpin) the workers of every coscheduler row that otherwise gets the
    /// runtime's default placement; `None` leaves the default.
    pub pin_threads: Option<bool>,
}

/// Runs the suite. `exe` is the `cobench` binary that callgrind runs the probes of, and
/// that a loaded pass starts its competitors from (normally the current executable).
/// Progress goes to stderr.
pub fn run(exe: &Path, options: &RunOptions) -> Result<Results, Error> {
    let date = machine::now_rfc3339();
    let mut benchmarks = Vec::new();
    let mut loads = Vec::new();
    if options.tier != Some(Tier::Time) {
        benchmarks.extend(deterministic(exe, options)?);
    }
    if options.tier != Some(Tier::Deterministic) {
        workload::override_pinning(options.pin_threads);
        let passes = if options.loads.is_empty() {
            &[Load::Quiet][..]
        } else {
            &options.loads
        };
        for &load in passes {
            // Dropping the competitors on an early return (`?`) kills them.
            let competitors = Competitors::start(exe, load)?;
            let rows = time(options, load)?;
            let pass = competitors.stop()?;
            eprintln!(
                "cobench: {} pass: {:.1} s, competitors used {:.1} CPU s",
                pass.load, pass.seconds, pass.competitor_cpu_seconds
            );
            benchmarks.extend(rows);
            loads.push(pass);
        }
    }
    Ok(Results {
        schema_version: SCHEMA_VERSION,
        machine: machine::describe(),
        commit: machine::commit(),
        date,
        quick: options.quick,
        profile: machine::profile(),
        loads,
        pin_threads: options.pin_threads,
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
            load: None,
            min: None,
            max: None,
            reference: None,
            ratio: None,
            other_references: Vec::new(),
            percentiles: None,
            percentile_unit: None,
            metrics: Default::default(),
        });
    }
    Ok(rows)
}

/// One pass of the time tier under `load`: the selected rows and every row their ratios
/// need, group by group.
fn time(options: &RunOptions, load: Load) -> Result<Vec<Benchmark>, Error> {
    let needed_by = |name: &str, b: &TimeBench| {
        selected(b.name, options) && (b.reference == Some(name) || b.others.contains(&name))
    };
    let wanted: Vec<&TimeBench> = TIME_BENCHES
        .iter()
        .filter(|b| selected(b.name, options) || TIME_BENCHES.iter().any(|o| needed_by(b.name, o)))
        .collect();
    let mut rows: Vec<Benchmark> = Vec::new();
    for group in wanted.chunk_by(|a, b| a.group == b.group) {
        let names: Vec<&str> = group.iter().map(|b| b.name).collect();
        eprintln!("cobench: timing {} ({load})", names.join(" + "));
        let started = std::time::Instant::now();
        let measured = timed::measure_group(group, options.quick);
        // The group's runtimes go before the next group (or the error) so that no idle
        // workers linger into another measurement.
        workload::finish_group();
        let measured = measured?;
        eprintln!("cobench:   ({:.1} s)", started.elapsed().as_secs_f64());
        for mut row in measured {
            row.load = Some(load.to_string());
            eprintln!(
                "cobench:   {}: {} {} [{} .. {}] (spread {:.3})",
                row.name,
                crate::render::number(row.value),
                row.unit,
                row.min.map_or_else(String::new, crate::render::number),
                row.max.map_or_else(String::new, crate::render::number),
                row.spread
            );
            rows.push(row);
        }
    }
    link_references(&mut rows)?;
    Ok(rows)
}

/// Fills each row's `reference`, `ratio` and `other_references` from the rows of the same
/// pass.
fn link_references(rows: &mut [Benchmark]) -> Result<(), Error> {
    let snapshot: Vec<(String, f64, f64)> = rows
        .iter()
        .map(|r| (r.name.clone(), r.value, r.spread))
        .collect();
    let find = |row: &str, name: &str| {
        snapshot
            .iter()
            .find(|(n, ..)| n == name)
            .ok_or_else(|| Error::Workload {
                name: row.to_owned(),
                detail: format!("its reference `{name}` was not measured in this pass"),
            })
    };
    for row in rows.iter_mut() {
        let Some(bench) = TIME_BENCHES.iter().find(|b| b.name == row.name) else {
            continue;
        };
        if let Some(reference) = bench.reference {
            let (name, value, spread) = find(bench.name, reference)?;
            row.ratio = Some(row.value / value);
            row.reference = Some(Reference {
                name: name.clone(),
                value: *value,
                spread: *spread,
            });
        }
        for other in bench.others {
            let (name, value, _) = find(bench.name, other)?;
            row.other_references.push(OtherReference {
                name: name.clone(),
                value: *value,
                ratio: row.value / value,
            });
        }
    }
    Ok(())
}
