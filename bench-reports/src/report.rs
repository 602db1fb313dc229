//! `cobench report`: SVG charts and a Markdown index over one or more results files.
//!
//! The files are taken as a history in the order given (oldest first). Each benchmark gets
//! a trend chart of its judged figure (the ratio where there is one, else the value) across
//! the files, one line per load (quiet, busy:1, ...), and each benchmark with latency
//! percentiles gets a percentile chart per load with one line per file.
//!
//! Charts use plotters' SVG backend only. SVG text is emitted as `<text>` for the viewer to
//! render, and plotters' built-in size estimate lays out labels, so no font files,
//! fontconfig or other system libraries are needed. Ticks and their labels come from
//! the `chart-axis` crate (shared with `costress --html`), colours from the Okabe–Ito set, and every file is told apart by commit
//! and time.

use std::fmt::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

use chart_axis::TickAxis;
use plotters::coord::ranged1d::SegmentedCoord;
use plotters::coord::types::RangedCoordi32;
use plotters::prelude::*;

use crate::error::Error;
use crate::render::{number, short};
use crate::schema::{Results, Tier};
use crate::timed::PERCENTILES;

/// Chart size in pixels: readable inline in a Markdown page.
const SIZE: (u32, u32) = (760, 420);

/// Width of the y label area; the plot gets the rest.
const Y_LABEL_AREA: u32 = 64;

/// Room one x label needs (a commit and a time, "0123abc 11-26 17:39", at the 12 px
/// default font), so that labels never touch.
const X_LABEL_WIDTH: u32 = 140;

/// Most y ticks per axis: enough to read a value by, few enough to stay apart.
const MAX_Y_TICKS: usize = 8;

/// Name of the Markdown index written into the output directory.
pub const INDEX: &str = "index.md";

/// Line colours, in order of use: the Okabe–Ito set, which stays distinguishable with the
/// common colour-vision deficiencies, without its yellow (faint on white), and black last.
const PALETTE: [RGBColor; 7] = [
    RGBColor(0x00, 0x72, 0xB2), // blue
    RGBColor(0xD5, 0x5E, 0x00), // vermillion
    RGBColor(0x00, 0x9E, 0x73), // bluish green
    RGBColor(0xCC, 0x79, 0xA7), // reddish purple
    RGBColor(0xE6, 0x9F, 0x00), // orange
    RGBColor(0x56, 0xB4, 0xE9), // sky blue
    RGBColor(0x00, 0x00, 0x00), // black
];

/// One line of a chart: its legend label and its points (segment index, value).
struct Line {
    label: String,
    points: Vec<(i32, f64)>,
}

/// Writes the charts and `index.md` into `out` for `inputs` (path and parsed results, oldest
/// first) and returns the index's path.
pub fn write(inputs: &[(PathBuf, Results)], out: &Path) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let labels = run_labels(inputs);
    let mut index = header(inputs, &labels);

    index.push_str("\n## History\n\n");
    for name in benchmark_names(inputs) {
        let (lines, unit) = trend(inputs, &name);
        let file = format!("trend-{}.svg", slug(&name));
        let x = Axis::new("results file (oldest → newest)", &labels);
        let parity = unit.starts_with("ratio");
        chart(
            &out.join(&file),
            &name,
            &x,
            &unit,
            &lines,
            Scale::Linear,
            parity,
        )?;
        let _ = writeln!(index, "### {name}\n\n![{name} history]({file})\n");
    }

    let mut latency = String::new();
    for name in benchmark_names(inputs) {
        for load in loads(inputs) {
            let lines = percentile_lines(inputs, &name, &load, &labels);
            if lines.is_empty() {
                continue;
            }
            let unit = inputs
                .iter()
                .rev()
                .find_map(|(_, r)| r.get_at(&name, &load)?.percentile_unit.clone())
                .unwrap_or_default();
            let suffix = if load == crate::schema::QUIET {
                String::new()
            } else {
                format!("-{}", slug(&load))
            };
            let file = format!("latency-{}{suffix}.svg", slug(&name));
            let title = format!("{name} ({load}): latency percentiles");
            let keys = percentile_keys();
            let x = Axis::new("percentile", &keys);
            chart(
                &out.join(&file),
                &title,
                &x,
                &unit,
                &lines,
                Scale::Log,
                false,
            )?;
            let _ = writeln!(
                latency,
                "### {name} ({load})\n\n![{name} percentiles]({file})\n"
            );
        }
    }
    if !latency.is_empty() {
        index.push_str("## Latency percentiles\n\n");
        index.push_str(&latency);
    }

    let path = out.join(INDEX);
    std::fs::write(&path, index).map_err(|e| Error::io(&path, e))?;
    Ok(path)
}

/// Title, the list of inputs and the latest file's figures: every row, then the time tier
/// quiet beside loaded.
fn header(inputs: &[(PathBuf, Results)], labels: &[String]) -> String {
    let mut md = String::from(
        "# cobench report\n\n| # | label | file | commit | date | build | loads | CPU |\n",
    );
    md.push_str("|---:|---|---|---|---|---|---|---|\n");
    for (i, (path, r)) in inputs.iter().enumerate() {
        let quick = if r.quick { ", quick" } else { "" };
        let _ = writeln!(
            md,
            "| {i} | {} | {} | `{}` | {} | {}{quick} | {} | {} ({} cores) |",
            labels[i],
            path.display(),
            short(&r.commit),
            r.date,
            r.profile,
            r.time_loads().join(", "),
            r.machine.cpu_model,
            r.machine.cores
        );
    }
    let Some((_, latest)) = inputs.last() else {
        return md;
    };
    md.push_str("\n## Latest results\n\n");
    md.push_str(
        "| benchmark | tier | value | unit | ratio | reference | spread | samples | load |\n",
    );
    md.push_str("|---|---|---:|---|---:|---|---:|---:|---|\n");
    for b in &latest.benchmarks {
        let load = if b.tier == Tier::Time {
            b.load()
        } else {
            "—"
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {:.1}% | {} | {load} |",
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
    if latest.benchmarks.iter().any(|b| b.tier == Tier::Time) {
        md.push_str("\n### Time tier, every load\n\n");
        md.push_str(&crate::table::markdown(latest));
    }
    md
}

/// A label per input that tells it apart from every other: commit and time of the run,
/// with `#i` appended where two would still read the same.
fn run_labels(inputs: &[(PathBuf, Results)]) -> Vec<String> {
    let base: Vec<String> = inputs
        .iter()
        .map(|(_, r)| {
            // "2026-11-26T17:39:53Z" → "11-26 17:39".
            let when = r.date.get(5..16).unwrap_or(&r.date).replace('T', " ");
            let commit: String = short(&r.commit).chars().take(7).collect();
            format!("{commit} {when}")
        })
        .collect();
    base.iter()
        .enumerate()
        .map(|(i, label)| {
            if base.iter().filter(|l| *l == label).count() > 1 {
                format!("{label} #{i}")
            } else {
                label.clone()
            }
        })
        .collect()
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

/// Every time-tier load in the inputs, in order of first appearance.
fn loads(inputs: &[(PathBuf, Results)]) -> Vec<String> {
    let mut loads: Vec<String> = Vec::new();
    for load in inputs.iter().flat_map(|(_, r)| r.time_loads()) {
        if !loads.iter().any(|l| l == load) {
            loads.push(load.to_owned());
        }
    }
    if loads.is_empty() {
        loads.push(crate::schema::QUIET.to_owned());
    }
    loads
}

/// The judged figure of `name` in each file that has it, one line per load, and the axis
/// label for it.
fn trend(inputs: &[(PathBuf, Results)], name: &str) -> (Vec<Line>, String) {
    let mut unit = String::new();
    let mut lines: Vec<Line> = Vec::new();
    for (i, (_, r)) in inputs.iter().enumerate() {
        for b in r.benchmarks.iter().filter(|b| b.name == name) {
            let (figure, what) = match (&b.ratio, &b.reference) {
                (Some(ratio), Some(reference)) => (*ratio, format!("ratio to {}", reference.name)),
                _ => (b.value, b.unit.clone()),
            };
            unit = what;
            let label = if b.tier == Tier::Time {
                b.load().to_owned()
            } else {
                b.tier.as_str().to_owned()
            };
            let point = (i32::try_from(i).unwrap_or(i32::MAX), figure);
            match lines.iter_mut().find(|l| l.label == label) {
                Some(line) => line.points.push(point),
                None => lines.push(Line {
                    label,
                    points: vec![point],
                }),
            }
        }
    }
    (lines, unit)
}

/// The percentile keys drawn, in order (`max`, one sample, is left out).
fn percentile_keys() -> Vec<String> {
    PERCENTILES
        .iter()
        .filter(|(_, q)| *q < 1.0)
        .map(|(k, _)| (*k).to_owned())
        .collect()
}

/// One line per file that has percentiles for `name` under `load`, with the judged
/// percentiles evenly spaced on x (p90, p99 and p99.9 are then one "nine" apart, as on a
/// log(1 − q) axis).
fn percentile_lines(
    inputs: &[(PathBuf, Results)],
    name: &str,
    load: &str,
    labels: &[String],
) -> Vec<Line> {
    let keys = percentile_keys();
    inputs
        .iter()
        .enumerate()
        .filter_map(|(i, (_, r))| {
            let map = r.get_at(name, load)?.percentiles.as_ref()?;
            let points = (0..)
                .zip(&keys)
                .filter_map(|(x, key)| Some((x, *map.get(key.as_str())?)))
                .filter(|&(_, v)| v > 0.0)
                .collect::<Vec<_>>();
            Some(Line {
                label: labels[i].clone(),
                points,
            })
        })
        .collect()
}

/// The x axis of a chart: one segment per label, labelled at its centre.
struct Axis<'a> {
    title: &'a str,
    labels: &'a [String],
}

impl<'a> Axis<'a> {
    fn new(title: &'a str, labels: &'a [String]) -> Self {
        Axis { title, labels }
    }

    /// The label of segment `x`: its own if it is one of those labelled (all if they fit,
    /// else every k-th counting back from the newest), otherwise none.
    fn label(&self, x: &SegmentValue<i32>) -> String {
        let SegmentValue::CenterOf(i) = x else {
            return String::new();
        };
        let Ok(i) = usize::try_from(*i) else {
            return String::new();
        };
        let n = self.labels.len();
        let plot = SIZE.0.saturating_sub(Y_LABEL_AREA + 40);
        let fit = usize::try_from(plot / X_LABEL_WIDTH).unwrap_or(1).max(1);
        let every = n.div_ceil(fit).max(1);
        if i < n && (n - 1 - i) % every == 0 {
            self.labels[i].clone()
        } else {
            String::new()
        }
    }

    fn coord(&self) -> SegmentedCoord<RangedCoordi32> {
        (0..count(self.labels.len()) - 1).into_segmented()
    }
}

/// The y scale of a chart.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scale {
    Linear,
    Log,
}

/// Draws `lines` over the x axis `x` with a `scale` y axis labelled `unit` (ticks and
/// labels from [`chart_axis`]), a colour of [`PALETTE`] and a marker per point for each line, and
/// a legend naming the lines. With `parity`, a dashed line marks 1 (a ratio's "equal to the
/// reference") and the axis always reaches it.
fn chart(
    path: &Path,
    title: &str,
    x: &Axis<'_>,
    unit: &str,
    lines: &[Line],
    scale: Scale,
    parity: bool,
) -> Result<(), Error> {
    let fail = chart_error(path);
    let values = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .chain(parity.then_some(1.0));
    let y = TickAxis::new(
        padded(values, scale == Scale::Log),
        scale == Scale::Log,
        MAX_Y_TICKS,
    );
    // The chart takes the axis; its labels are read from a copy.
    let labels = y.clone();
    let y_desc = match scale {
        Scale::Log => format!("{unit} (log scale)"),
        Scale::Linear => unit.to_owned(),
    };

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(&fail)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .margin_right(24)
        .x_label_area_size(44)
        .y_label_area_size(Y_LABEL_AREA)
        .build_cartesian_2d(x.coord(), y)
        .map_err(&fail)?;
    chart
        .configure_mesh()
        .x_labels(x.labels.len())
        .x_label_formatter(&|v| x.label(v))
        .y_label_formatter(&|v| labels.label(*v))
        .x_desc(x.title)
        .y_desc(&y_desc)
        .light_line_style(RGBColor(0xF0, 0xF0, 0xF0))
        .bold_line_style(RGBColor(0xD8, 0xD8, 0xD8))
        .draw()
        .map_err(&fail)?;
    if parity {
        let grey = RGBColor(0x66, 0x66, 0x66);
        let ends = [centre(0), centre(count(x.labels.len()) - 1)];
        chart
            .draw_series(DashedLineSeries::new(
                ends.into_iter().map(|x| (x, 1.0)),
                6,
                4,
                grey.stroke_width(1),
            ))
            .map_err(&fail)?
            .label("1 = equal to the reference")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], grey.stroke_width(1)));
    }
    for (i, line) in lines.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                line.points.iter().map(|&(x, y)| (centre(x), y)),
                color.stroke_width(2),
            ))
            .map_err(&fail)?
            .label(line.label.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
        chart
            .draw_series(
                line.points
                    .iter()
                    .map(|&(x, y)| Circle::new((centre(x), y), 3, color.filled())),
            )
            .map_err(&fail)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(0x99, 0x99, 0x99))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(&fail)?;
    root.present().map_err(&fail)
}

/// The centre of segment `i` on a segmented axis.
fn centre(i: i32) -> SegmentValue<i32> {
    SegmentValue::CenterOf(i)
}

/// `n` as an axis coordinate.
fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A y range around `values` with room above and below (or a unit range when empty or
/// flat); kept strictly positive for a log axis.
fn padded(values: impl Iterator<Item = f64>, log: bool) -> Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && (!log || *v > 0.0))
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
    // A figure that cannot be negative (all of ours) keeps a non-negative axis.
    let bottom = if lo >= 0.0 {
        (lo - pad).max(0.0)
    } else {
        lo - pad
    };
    bottom..(hi + pad)
}

/// A file-name-safe form of a benchmark name or load.
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
