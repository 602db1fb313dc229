//! The time tier of one results file as Markdown: every row under every load side by
//! side, each as median [min – max] over its samples with its same-run ratios, then the
//! latency percentiles and the secondary metrics the same way.
//!
//! `cobench run` prints it at the end, `cobench show` prints it for any file, and
//! `cobench report` puts it into its index.

use std::fmt::Write;

use crate::render::number;
use crate::schema::{Benchmark, Better, Results, Tier};

/// The three tables, or a line saying the file has no time tier.
pub fn markdown(results: &Results) -> String {
    let loads = results.time_loads();
    let names = names(results);
    if names.is_empty() {
        return "No time-tier rows in this file.\n".to_owned();
    }
    let mut md = String::new();
    if let Some(pin) = results.pin_threads {
        let how = if pin { "pinned" } else { "unpinned" };
        md.push_str(&format!(
            "Coscheduler workers {how} by `--pin-threads {pin}` (rows that prescribe pinning stay pinned).\n\n"
        ));
    }
    figures(&mut md, results, &names, &loads);
    latencies(&mut md, results, &names, &loads);
    metrics(&mut md, results, &names, &loads);
    md
}

/// Time-row names in the order of the file.
fn names(results: &Results) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for b in results.benchmarks.iter().filter(|b| b.tier == Tier::Time) {
        if !names.contains(&b.name.as_str()) {
            names.push(&b.name);
        }
    }
    names
}

fn figures(md: &mut String, results: &Results, names: &[&str], loads: &[&str]) {
    md.push_str("| row | unit |");
    for load in loads {
        let _ = write!(md, " {load}: median [min – max] | {load}: ratio |");
    }
    let loaded = &loads[loads.len().min(1)..];
    for load in loaded {
        let _ = write!(md, " {load} ÷ {} |", loads[0]);
    }
    md.push_str("\n|---|---|");
    md.push_str(&"---:|---|".repeat(loads.len()));
    md.push_str(&"---:|".repeat(loaded.len()));
    md.push('\n');
    for name in names {
        let rows: Vec<Option<&Benchmark>> = loads.iter().map(|l| results.get_at(name, l)).collect();
        let Some(any) = rows.iter().flatten().next() else {
            continue;
        };
        let arrow = match any.better {
            Better::Lower => "↓",
            Better::Higher => "↑",
        };
        let _ = write!(md, "| {name} | {} {arrow} |", any.unit);
        for row in &rows {
            let _ = write!(md, " {} | {} |", spread_cell(*row), ratio_cell(*row));
        }
        for row in &rows[1.min(rows.len())..] {
            let _ = write!(md, " {} |", slowdown(rows[0], *row));
        }
        md.push('\n');
    }
    md.push_str(
        "\n↑ higher is better, ↓ lower is better. A ratio is the row's median over its \
         reference's, both measured in this run under the same load; the ÷ column is how \
         many times worse the loaded median is than the quiet one.\n",
    );
}

fn spread_cell(row: Option<&Benchmark>) -> String {
    let Some(b) = row else {
        return "—".to_owned();
    };
    match (b.min, b.max) {
        (Some(min), Some(max)) => {
            format!("{} [{} – {}]", number(b.value), number(min), number(max))
        }
        _ => number(b.value),
    }
}

/// The ratios to the reference and then the other references, e.g. "1.52× tokio · 0.40×
/// std".
fn ratio_cell(row: Option<&Benchmark>) -> String {
    let Some(b) = row else {
        return "—".to_owned();
    };
    let mut parts: Vec<String> = Vec::new();
    if let (Some(ratio), Some(reference)) = (b.ratio, &b.reference) {
        parts.push(format!(
            "**{}× {}**",
            number(ratio),
            short_name(&reference.name)
        ));
    }
    for other in &b.other_references {
        parts.push(format!(
            "{}× {}",
            number(other.ratio),
            short_name(&other.name)
        ));
    }
    if parts.is_empty() {
        "—".to_owned()
    } else {
        parts.join(" · ")
    }
}

/// A reference's family, the part of its name before the first `_`: `tokio`, `std`,
/// `raw`.
fn short_name(name: &str) -> &str {
    name.split('_').next().unwrap_or(name)
}

/// How many times worse `loaded` is than `quiet`, whichever way is better.
fn slowdown(quiet: Option<&Benchmark>, loaded: Option<&Benchmark>) -> String {
    let (Some(q), Some(l)) = (quiet, loaded) else {
        return "—".to_owned();
    };
    if q.value <= 0.0 || l.value <= 0.0 {
        return "—".to_owned();
    }
    let factor = match q.better {
        Better::Lower => l.value / q.value,
        Better::Higher => q.value / l.value,
    };
    format!("{}×", number(factor))
}

fn latencies(md: &mut String, results: &Results, names: &[&str], loads: &[&str]) {
    let with: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| {
            loads
                .iter()
                .any(|l| percentile(results, n, l, "p50").is_some())
        })
        .collect();
    if with.is_empty() {
        return;
    }
    md.push_str("\nLatency percentiles (lower is better):\n\n| row | unit |");
    for load in loads {
        let _ = write!(md, " {load}: p50 | {load}: p99 | {load}: max |");
    }
    md.push_str("\n|---|---|");
    md.push_str(&"---:|".repeat(3 * loads.len()));
    md.push('\n');
    for name in with {
        let unit = loads
            .iter()
            .find_map(|l| results.get_at(name, l)?.percentile_unit.clone())
            .unwrap_or_default();
        let _ = write!(md, "| {name} | {unit} |");
        for load in loads {
            for key in ["p50", "p99", "max"] {
                let cell = percentile(results, name, load, key).map_or("—".into(), number);
                let _ = write!(md, " {cell} |");
            }
        }
        md.push('\n');
    }
}

fn percentile(results: &Results, name: &str, load: &str, key: &str) -> Option<f64> {
    results
        .get_at(name, load)?
        .percentiles
        .as_ref()?
        .get(key)
        .copied()
}

fn metrics(md: &mut String, results: &Results, names: &[&str], loads: &[&str]) {
    let mut lines = Vec::new();
    for name in names {
        let mut keys: Vec<&str> = Vec::new();
        for load in loads {
            if let Some(b) = results.get_at(name, load) {
                keys.extend(b.metrics.keys().map(String::as_str));
            }
        }
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            let mut line = format!("| {name} | {key} |");
            for load in loads {
                let v = results.get_at(name, load).and_then(|b| b.metrics.get(key));
                let _ = write!(line, " {} |", v.map_or("—".into(), |v| number(*v)));
            }
            lines.push(line);
        }
    }
    if lines.is_empty() {
        return;
    }
    md.push_str("\nMetrics (median over samples):\n\n| row | metric |");
    for load in loads {
        let _ = write!(md, " {load} |");
    }
    md.push_str("\n|---|---|");
    md.push_str(&"---:|".repeat(loads.len()));
    md.push('\n');
    for line in lines {
        md.push_str(&line);
        md.push('\n');
    }
}
