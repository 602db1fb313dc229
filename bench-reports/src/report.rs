//! `cobench report`: SVG charts and a Markdown index over one or more results files.
//!
//! The files are taken as a history in the order given (oldest first). Each benchmark gets
//! a trend chart of its judged figure (the ratio where there is one, else the value) across
//! the files, and each benchmark with latency percentiles gets a percentile curve with one
//! line per file.
//!
//! Charts use plotters' SVG backend only. SVG text is emitted as `<text>` for the viewer to
//! render, and plotters' built-in size estimate lays out labels, so no font files,
//! fontconfig or other system libraries are needed.

use std::fmt::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::error::Error;
use crate::render::{number, short};
use crate::schema::Results;
use crate::timed::PERCENTILES;

/// Chart size in pixels: readable inline in a Markdown page.
const SIZE: (u32, u32) = (720, 400);

/// Name of the Markdown index written into the output directory.
pub const INDEX: &str = "index.md";

/// One point of a benchmark's history: (file index, figure).
type Trend = Vec<(i32, f64)>;

/// Writes the charts and `index.md` into `out` for `inputs` (path and parsed results, oldest
/// first) and returns the index's path.
pub fn write(inputs: &[(PathBuf, Results)], out: &Path) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let labels: Vec<String> = inputs.iter().map(|(_, r)| label(r)).collect();
    let mut index = header(inputs);

    index.push_str("\n## History\n\n");
    for name in benchmark_names(inputs) {
        let (trend, unit) = trend(inputs, &name);
        let file = format!("trend-{}.svg", slug(&name));
        trend_chart(&out.join(&file), &name, &unit, &trend, &labels)?;
        let _ = writeln!(index, "### {name}\n\n![{name} history]({file})\n");
    }

    let latency: Vec<String> = benchmark_names(inputs)
        .into_iter()
        .filter(|n| {
            inputs
                .iter()
                .any(|(_, r)| r.get(n).is_some_and(|b| b.percentiles.is_some()))
        })
        .collect();
    if !latency.is_empty() {
        index.push_str("## Latency percentiles\n\n");
    }
    for name in latency {
        let file = format!("latency-{}.svg", slug(&name));
        percentile_chart(&out.join(&file), &name, inputs, &labels)?;
        let _ = writeln!(index, "### {name}\n\n![{name} percentiles]({file})\n");
    }

    let path = out.join(INDEX);
    std::fs::write(&path, index).map_err(|e| Error::io(&path, e))?;
    Ok(path)
}

/// Title, the list of inputs and a table of the latest file's figures.
fn header(inputs: &[(PathBuf, Results)]) -> String {
    let mut md = String::from("# cobench report\n\n| # | file | commit | date | build | CPU |\n");
    md.push_str("|---:|---|---|---|---|---|\n");
    for (i, (path, r)) in inputs.iter().enumerate() {
        let quick = if r.quick { ", quick" } else { "" };
        let _ = writeln!(
            md,
            "| {i} | {} | `{}` | {} | {}{quick} | {} ({} cores) |",
            path.display(),
            short(&r.commit),
            r.date,
            r.profile,
            r.machine.cpu_model,
            r.machine.cores
        );
    }
    let Some((_, latest)) = inputs.last() else {
        return md;
    };
    md.push_str("\n## Latest results\n\n");
    md.push_str("| benchmark | tier | value | unit | ratio | reference | spread | samples |\n");
    md.push_str("|---|---|---:|---|---:|---|---:|---:|\n");
    for b in &latest.benchmarks {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {:.1}% | {} |",
            b.name,
            b.tier.as_str(),
            number(b.value),
            b.unit,
            b.ratio.map_or("—".into(), number),
            b.reference.as_ref().map_or("—", |r| r.name.as_str()),
            b.spread * 100.0,
            b.samples
        );
    }
    md
}

/// Every benchmark name in the inputs, in order of first appearance.
fn benchmark_names(inputs: &[(PathBuf, Results)]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for b in inputs.iter().flat_map(|(_, r)| &r.benchmarks) {
        if !names.contains(&b.name) {
            names.push(b.name.clone());
        }
    }
    names
}

/// The judged figure of `name` in each file that has it, and the axis label for it.
fn trend(inputs: &[(PathBuf, Results)], name: &str) -> (Trend, String) {
    let mut unit = String::new();
    let mut points = Trend::new();
    for (i, (_, r)) in inputs.iter().enumerate() {
        let Some(b) = r.get(name) else { continue };
        let (figure, what) = match (&b.ratio, &b.reference) {
            (Some(ratio), Some(reference)) => (*ratio, format!("ratio to {}", reference.name)),
            _ => (b.value, b.unit.clone()),
        };
        unit = what;
        points.push((i32::try_from(i).unwrap_or(i32::MAX), figure));
    }
    (points, unit)
}

fn trend_chart(
    path: &Path,
    name: &str,
    unit: &str,
    points: &[(i32, f64)],
    labels: &[String],
) -> Result<(), Error> {
    let fail = chart_error(path);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(&fail)?;
    // One segment per file, points at the segment centres: labels never hang off the edge.
    let x = (0..count(labels.len()) - 1).into_segmented();
    let y = padded(points.iter().map(|p| p.1), false);
    let mut chart = ChartBuilder::on(&root)
        .caption(name, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x, y)
        .map_err(&fail)?;
    chart
        .configure_mesh()
        .x_labels(labels.len().min(12))
        .x_label_formatter(&|x| segment_label(x, labels))
        .y_label_formatter(&|y| number(*y))
        .x_desc("results file (oldest → newest)")
        .y_desc(unit)
        .draw()
        .map_err(&fail)?;
    chart
        .draw_series(LineSeries::new(
            points.iter().map(|&(i, y)| (centre(i), y)),
            BLUE.stroke_width(2),
        ))
        .map_err(&fail)?;
    chart
        .draw_series(
            points
                .iter()
                .map(|&(i, y)| Circle::new((centre(i), y), 4, BLUE.filled())),
        )
        .map_err(&fail)?;
    root.present().map_err(&fail)
}

fn percentile_chart(
    path: &Path,
    name: &str,
    inputs: &[(PathBuf, Results)],
    labels: &[String],
) -> Result<(), Error> {
    let fail = chart_error(path);
    // Percentile curves, one per file, with the judged percentiles evenly spaced on x (p90,
    // p99 and p99.9 are then one "nine" apart, as on a log(1 - q) axis).
    let keys: Vec<&str> = PERCENTILES
        .iter()
        .filter(|(_, q)| *q < 1.0)
        .map(|(k, _)| *k)
        .collect();
    let curves: Vec<(usize, Vec<(i32, f64)>)> = inputs
        .iter()
        .enumerate()
        .filter_map(|(i, (_, r))| {
            let map = r.get(name)?.percentiles.as_ref()?;
            let curve = (0..)
                .zip(&keys)
                .filter_map(|(x, key)| Some((x, *map.get(*key)?)))
                .filter(|&(_, v)| v > 0.0)
                .collect::<Vec<_>>();
            Some((i, curve))
        })
        .collect();
    let unit = inputs
        .iter()
        .rev()
        .find_map(|(_, r)| r.get(name)?.percentile_unit.clone())
        .unwrap_or_default();

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(&fail)?;
    let x = (0..count(keys.len()) - 1).into_segmented();
    let y = padded(curves.iter().flat_map(|(_, c)| c.iter().map(|p| p.1)), true);
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{name}: latency percentiles"), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x, y.log_scale())
        .map_err(&fail)?;
    chart
        .configure_mesh()
        .x_labels(keys.len())
        .x_label_formatter(&|x| segment_label(x, &keys))
        .y_label_formatter(&|y| number(*y))
        .x_desc("percentile")
        .y_desc(format!("{unit} (log scale)"))
        .draw()
        .map_err(&fail)?;
    for (i, curve) in curves {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                curve.iter().map(|&(x, y)| (centre(x), y)),
                color.stroke_width(2),
            ))
            .map_err(&fail)?
            .label(labels[i].clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(&fail)?;
    root.present().map_err(&fail)
}

/// The centre of segment `i` on a segmented axis.
fn centre(i: i32) -> SegmentValue<i32> {
    SegmentValue::CenterOf(i)
}

/// The label of the segment a key point falls in: only centres get one.
fn segment_label(x: &SegmentValue<i32>, labels: &[impl AsRef<str>]) -> String {
    match x {
        SegmentValue::CenterOf(i) => usize::try_from(*i)
            .ok()
            .and_then(|i| labels.get(i))
            .map_or_else(String::new, |l| l.as_ref().to_owned()),
        _ => String::new(),
    }
}

/// `n` as an axis coordinate.
fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A y range around `values` with 10 % of room (or a unit range when empty or flat); kept
/// strictly positive for a log axis.
fn padded(values: impl Iterator<Item = f64>, log: bool) -> Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return if log { 1.0..10.0 } else { 0.0..1.0 };
    }
    if log {
        return (lo / 1.5)..(hi * 1.5);
    }
    let pad = if hi > lo {
        (hi - lo) * 0.1
    } else {
        hi.abs().max(1.0) * 0.1
    };
    (lo - pad)..(hi + pad)
}

/// Short label of a results file for axes and legends: commit and day.
fn label(r: &Results) -> String {
    let day = r.date.get(..10).unwrap_or(&r.date);
    format!(
        "{} {day}",
        short(&r.commit).chars().take(7).collect::<String>()
    )
}

/// A file-name-safe form of a benchmark name.
fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn chart_error<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> Error + '_ {
    move |e| Error::Chart {
        path: path.to_owned(),
        detail: e.to_string(),
    }
}
