//! The HTML report (`--html FILE`): one self-contained page that a browser shows offline.
//!
//! Everything is inline: the charts are SVG drawn by `plotters`, the styling is one
//! `<style>` block, and there is no script and no reference to anything outside the file,
//! so the page can be mailed or attached to a CI run as it is. For each workload it shows
//! the verdict and checks, the throughput over time, a latency percentile chart per
//! histogram, the lock counters, and the per-context counters as a table with bars.
//!
//! The percentile charts follow HdrHistogram's plots: the horizontal axis is
//! `log10(1 / (1 - percentile))`, so 0%, 90%, 99%, 99.9%, ... are evenly spaced and the tail
//! gets as much room as the body; the vertical axis is the latency, logarithmic, because
//! the tail of a latency distribution is orders of magnitude above its median.

use std::fmt::Write as _;

use chart_axis::TickAxis;
use coscheduler::config::format_duration;
use hdrhistogram::Histogram;
use html_escape::encode_text;
use plotters::prelude::*;

use super::{PERCENTILES, format_count, format_nanos};
use crate::outcome::{ContextSnapshot, NamedHistogram, Outcome, Sample, SoakSummary};
use crate::settings::Settings;

/// What a chart is drawn on.
type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// What drawing on it can fail with.
type DrawError<'a> = DrawingAreaErrorKind<<SVGBackend<'a> as DrawingBackend>::ErrorType>;

/// Chart size in pixels.
const CHART: (u32, u32) = (560, 300);

/// Most ticks on a linear axis: enough to read a value by, few enough to stay apart at
/// [`CHART`]'s size.
const MAX_TICKS: usize = 8;

/// Percentile steps per halving of the distance to 100%, as HdrHistogram's plots use.
const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// The colour of every curve: dark enough to read on white.
const CURVE: RGBColor = RGBColor(0x1f, 0x4e, 0x9a);

/// The page for a normal run.
pub fn render(settings: &Settings, outcomes: &[Outcome], interrupted: bool) -> String {
    let mut body = String::new();
    if interrupted {
        body.push_str(
            "<p class=\"warn\">Interrupted by a signal: the last workload was cut short and \
             those after it did not run.</p>\n",
        );
    }
    for outcome in outcomes {
        body.push_str(&workload_section(outcome));
    }
    page(settings, &body)
}

/// The page for a soak: the cycles, then the failing (or last) cycle's outcome.
pub fn render_soak(settings: &Settings, outcomes: &[Outcome], soak: &SoakSummary) -> String {
    let mut body = soak_section(soak);
    for outcome in outcomes {
        body.push_str(&workload_section(outcome));
    }
    page(settings, &body)
}

fn page(settings: &Settings, body: &str) -> String {
    let runtime = &settings.runtime;
    let threads = runtime
        .threads()
        .map_or_else(|| "one per core".to_owned(), |n| n.to_string());
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>costress report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>costress {version}</h1>\n<p class=\"settings\">workloads {workloads}; \
         {duration} each; threads {threads}; {coroutines} coroutines per context; \
         stacks {stack} bytes; seed {seed}</p>\n{body}\
         <p class=\"foot\">Times are latencies from the run's monotonic clock. \
         <code>costress --explain</code> describes every figure.</p>\n</body>\n</html>\n",
        version = env!("CARGO_PKG_VERSION"),
        workloads = encode_text(&settings.stress.workloads().join(", ")),
        duration = format_duration(settings.stress.duration()),
        coroutines = settings.stress.coroutines(),
        stack = format_count(runtime.stack_size_bytes() as u64),
        seed = settings.stress.seed(),
    );
    out
}

const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:2em;color:#1a1a1a;max-width:1200px}\
h2{border-bottom:2px solid #ccc;padding-bottom:.2em;margin-top:2em}\
.ok{color:#17692c}.failed{color:#b00020}.warn{color:#8a4b00;font-weight:bold}\
table{border-collapse:collapse;margin:.5em 0 1em}\
td,th{padding:.2em .6em;border-bottom:1px solid #e4e4e4;text-align:right}\
td:first-child,th:first-child{text-align:left}\
.charts{display:flex;flex-wrap:wrap;gap:1em}\
.chart{border:1px solid #e4e4e4;padding:.3em}\
.bar{display:inline-block;height:.7em;background:#1f4e9a;vertical-align:middle}\
.settings,.foot{color:#555}";

fn workload_section(outcome: &Outcome) -> String {
    let mut out = String::new();
    let (class, verdict) = if outcome.passed() {
        ("ok", "ok")
    } else {
        ("failed", "FAILED")
    };
    let interrupted = if outcome.interrupted {
        " (interrupted)"
    } else {
        ""
    };
    let throughput = &outcome.throughput;
    let _ = write!(
        out,
        "<section>\n<h2>{name}: <span class=\"{class}\">{verdict}</span>{interrupted}</h2>\n\
         <p>{ops} ops in {elapsed} = {rate} ops/s</p>\n",
        name = encode_text(&outcome.workload),
        ops = format_count(throughput.ops),
        elapsed = format_nanos(u64::try_from(throughput.elapsed.as_nanos()).unwrap_or(u64::MAX)),
        rate = format_count(throughput.per_second().round() as u64),
    );
    out.push_str(&checks_table(outcome));
    out.push_str("<div class=\"charts\">\n");
    if outcome.timeline.len() > 1 {
        out.push_str(&chart_div(&throughput_chart(&outcome.timeline)));
    }
    for named in outcome
        .histograms
        .iter()
        .filter(|h| !h.histogram.is_empty())
    {
        out.push_str(&chart_div(&percentile_chart(named)));
    }
    out.push_str("</div>\n");
    out.push_str(&histogram_table(&outcome.histograms));
    out.push_str(&lock_table(outcome));
    out.push_str(&context_table(&outcome.contexts));
    if let Some(pool) = &outcome.pool {
        let _ = writeln!(
            out,
            "<p>pool: shared max {}; pooled at the end {} (shared pool and thread caches); \
             hits {}, misses {}; allocated {}, freed {}</p>",
            format_count(pool.max_size as u64),
            format_count(pool.pooled as u64),
            format_count(pool.hits),
            format_count(pool.misses),
            format_count(pool.allocated),
            format_count(pool.freed),
        );
    }
    out.push_str("</section>\n");
    out
}

fn chart_div(svg: &str) -> String {
    format!("<div class=\"chart\">{svg}</div>\n")
}

fn checks_table(outcome: &Outcome) -> String {
    let mut out = String::from(
        "<table class=\"checks\">\n<tr><th>check</th><th>expected</th><th>got</th><th></th></tr>\n",
    );
    for check in &outcome.checks {
        let (class, mark) = if check.passed {
            ("ok", "ok")
        } else {
            ("failed", "FAILED")
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{mark}</td></tr>",
            encode_text(&check.what),
            format_count(check.expected),
            format_count(check.actual),
        );
    }
    out.push_str("</table>\n");
    out
}

fn histogram_table(histograms: &[NamedHistogram]) -> String {
    let mut out = String::from(
        "<table class=\"histograms\">\n<tr><th>histogram</th><th>count</th><th>min</th>",
    );
    for (label, _) in PERCENTILES {
        let _ = write!(out, "<th>{label}</th>");
    }
    out.push_str("<th>max</th></tr>\n");
    for named in histograms {
        let h = &named.histogram;
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td>",
            encode_text(&named.name),
            format_count(h.len())
        );
        if h.is_empty() {
            out.push_str("<td colspan=\"6\">no values</td></tr>\n");
            continue;
        }
        let _ = write!(out, "<td>{}</td>", format_nanos(h.min()));
        for (_, quantile) in PERCENTILES {
            let _ = write!(
                out,
                "<td>{}</td>",
                format_nanos(h.value_at_quantile(quantile))
            );
        }
        let _ = writeln!(out, "<td>{}</td></tr>", format_nanos(h.max()));
    }
    out.push_str("</table>\n");
    out
}

fn lock_table(outcome: &Outcome) -> String {
    if outcome.locks.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<table class=\"locks\">\n<tr><th>lock</th><th>kind</th><th>acquisitions</th>\
         <th>uncontended</th><th>contended</th><th>in histogram</th></tr>\n",
    );
    for lock in &outcome.locks {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            encode_text(&lock.name),
            lock.kind,
            format_count(lock.acquisitions),
            format_count(lock.uncontended),
            format_count(lock.contended),
            format_count(lock.timed),
        );
    }
    out.push_str(
        "</table>\n<p class=\"settings\">Lock histograms time contended acquisitions only; \
         above 50,000 a second on a thread they are weighted samples, so \"in histogram\" \
         estimates \"contended\".</p>\n",
    );
    out
}

/// Per-context counters, each cell with a bar scaled to the column's largest value, so an
/// unbalanced worker stands out at a glance.
fn context_table(contexts: &[ContextSnapshot]) -> String {
    if contexts.is_empty() {
        return String::new();
    }
    type Column = (&'static str, fn(&ContextSnapshot) -> u64);
    const COLUMNS: [Column; 5] = [
        ("started", |c| c.started),
        ("switches", |c| c.switches),
        ("steals", |c| c.steals),
        ("hand-offs", |c| c.hand_offs),
        ("parks", |c| c.parks),
    ];
    let mut out = String::from("<table class=\"contexts\">\n<tr><th>context</th>");
    for (name, _) in COLUMNS {
        let _ = write!(out, "<th>{name}</th>");
    }
    out.push_str("</tr>\n");
    let largest = COLUMNS.map(|(_, get)| contexts.iter().map(get).max().unwrap_or(0).max(1));
    for context in contexts {
        let _ = write!(out, "<tr><td>{}</td>", context.context);
        for ((_, get), largest) in COLUMNS.iter().zip(largest) {
            let value = get(context);
            let width = (value as f64 / largest as f64 * 60.0).round();
            let _ = write!(
                out,
                "<td>{} <span class=\"bar\" style=\"width:{width}px\"></span></td>",
                format_count(value)
            );
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}

/// The distance to 100% of `quantile`, as the percentile axis measures it.
fn percentile_x(quantile: f64) -> f64 {
    (1.0 / (1.0 - quantile)).log10()
}

/// The label of a tick on the percentile axis: 0 is 0%, 1 is 90%, 2 is 99%, 3 is 99.9%...
fn percentile_label(x: f64) -> String {
    if (x - x.round()).abs() > 1e-9 || x < 0.0 {
        return String::new();
    }
    let nines = x.round() as usize;
    match nines {
        0 => "0%".to_owned(),
        1 => "90%".to_owned(),
        _ => format!("99.{}%", "9".repeat(nines - 2)).replace("99.%", "99%"),
    }
}

/// The points of `histogram`'s percentile curve: (distance to 100%, value), the last at
/// the largest finite distance the count supports.
fn percentile_points(histogram: &Histogram<u64>) -> Vec<(f64, f64)> {
    // With n values nothing finer than 1/n is measured, so the axis ends there.
    let end = (histogram.len().max(2) as f64).log10();
    let mut points: Vec<(f64, f64)> = histogram
        .iter_quantiles(TICKS_PER_HALF_DISTANCE)
        .map(|step| {
            let quantile = step.quantile_iterated_to();
            let x = if quantile >= 1.0 {
                end
            } else {
                percentile_x(quantile).min(end)
            };
            (x, step.value_iterated_to().max(1) as f64)
        })
        .collect();
    if let Some(&(x, _)) = points.last() {
        if x < end {
            points.push((end, histogram.max().max(1) as f64));
        }
    }
    points
}

fn percentile_chart(named: &NamedHistogram) -> String {
    let points: Vec<(f64, f64)> = percentile_points(&named.histogram)
        .into_iter()
        .map(|(x, value)| (x, value.log10()))
        .collect();
    let x_end = points.iter().map(|p| p.0).fold(1.0, f64::max).ceil();
    let (low, high) = points
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    // Whole decades, at least two, so that every label is a power of ten.
    let y_start = low.floor();
    let y_end = high.ceil().max(y_start + 2.0);
    let caption = format!(
        "{} ({} values)",
        named.name,
        format_count(named.histogram.len())
    );
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption(caption, ("sans-serif", 15))
            .margin(8)
            .margin_right(28)
            .x_label_area_size(34)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..x_end, y_start..y_end)?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency (log scale)")
            .x_labels(x_end as usize + 1)
            .y_labels((y_end - y_start) as usize + 1)
            .x_label_formatter(&|x| percentile_label(*x))
            .y_label_formatter(&|y| decade_label(*y))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        chart.draw_series(LineSeries::new(points, CURVE.stroke_width(2)))?;
        Ok(())
    })
}

/// The label of a tick on the logarithmic latency axis: only whole decades are labelled,
/// each as a whole number of the largest time unit it reaches (`100 ns`, `1 µs`, `10 µs`,
/// `1 ms`), so the axis reads in one notation.
fn decade_label(y: f64) -> String {
    if (y - y.round()).abs() > 1e-9 {
        return String::new();
    }
    const UNITS: [(i32, &str); 4] = [(9, "s"), (6, "ms"), (3, "µs"), (0, "ns")];
    let decade = y.round() as i32;
    let (exponent, unit) = UNITS
        .into_iter()
        .find(|(exponent, _)| decade >= *exponent)
        .unwrap_or((0, "ns"));
    format!("{} {unit}", 10u64.pow((decade - exponent).max(0) as u32))
}

/// Operations per second between consecutive samples, at each interval's end.
fn rates(timeline: &[Sample]) -> Vec<(f64, f64)> {
    timeline
        .windows(2)
        .filter(|w| w[1].elapsed_ns > w[0].elapsed_ns)
        .map(|w| {
            let seconds = (w[1].elapsed_ns - w[0].elapsed_ns) as f64 / 1e9;
            let ops = w[1].ops.saturating_sub(w[0].ops) as f64;
            (w[1].elapsed_ns as f64 / 1e9, ops / seconds)
        })
        .collect()
}

fn throughput_chart(timeline: &[Sample]) -> String {
    let points = rates(timeline);
    let x_end = points.last().map_or(1.0, |p| p.0).max(1e-3);
    let y_end = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    linear_chart(
        "throughput over time",
        ("seconds", TickAxis::new(0.0..x_end, false, MAX_TICKS)),
        ("ops/s", TickAxis::new(0.0..y_end, false, MAX_TICKS)),
        points,
    )
}

/// A line through `points` over two linear axes, each given with its title; the ticks and
/// their labels are [`TickAxis`]'s, one number format an axis.
fn linear_chart(
    title: &str,
    (x_desc, x): (&str, TickAxis),
    (y_desc, y): (&str, TickAxis),
    points: Vec<(f64, f64)>,
) -> String {
    svg(|root| {
        // The chart takes the axes; the labels are read from copies.
        let (x_labels, y_labels) = (x.clone(), y.clone());
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 15))
            .margin(8)
            .margin_right(28)
            .x_label_area_size(34)
            .y_label_area_size(64)
            .build_cartesian_2d(x, y)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&|v| x_labels.label(*v))
            .y_label_formatter(&|v| y_labels.label(*v))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        chart.draw_series(LineSeries::new(points, CURVE.stroke_width(2)))?;
        Ok(())
    })
}

/// An SVG drawn by `draw`, as text. A drawing error leaves a note in place of the chart:
/// the rest of the report is still worth having.
fn svg(draw: impl for<'a> FnOnce(&Area<'a>) -> Result<(), DrawError<'a>>) -> String {
    let mut text = String::new();
    let result = {
        let root = SVGBackend::with_string(&mut text, CHART).into_drawing_area();
        let drawn = root
            .fill(&WHITE)
            .map_err(|err| err.to_string())
            .and_then(|()| draw(&root).map_err(|err| err.to_string()));
        drawn.and_then(|()| root.present().map_err(|err| err.to_string()))
    };
    match result {
        Ok(()) => text,
        Err(err) => format!(
            "<p class=\"failed\">chart not drawn: {}</p>",
            encode_text(&err)
        ),
    }
}

fn soak_section(soak: &SoakSummary) -> String {
    let mut out = String::new();
    let (class, verdict) = if soak.passed() {
        ("ok", "no leak")
    } else {
        ("failed", "LEAK")
    };
    let _ = writeln!(
        out,
        "<section>\n<h2>soak: <span class=\"{class}\">{verdict}</span>{}</h2>\n\
         <p>{} cycles, {} ops, {} contended lock operations; limit {}; max RSS {} KiB; \
         baseline {} threads, {} mappings (± {})</p>",
        if soak.interrupted {
            " (interrupted)"
        } else {
            ""
        },
        soak.cycles.len(),
        format_count(soak.ops()),
        format_count(soak.contended_lock_ops()),
        encode_text(&soak.limit),
        format_count(soak.max_rss_kib()),
        soak.baseline_threads,
        soak.baseline_mappings,
        soak.mapping_margin,
    );
    if soak.cycles.len() > 1 {
        let series = |get: fn(&crate::outcome::SoakCycle) -> u64| -> Vec<(f64, f64)> {
            soak.cycles
                .iter()
                .map(|c| (c.cycle as f64, get(c) as f64))
                .collect()
        };
        out.push_str("<div class=\"charts\">\n");
        out.push_str(&chart_div(&cycle_chart(
            "RSS after teardown (KiB)",
            &series(|c| c.rss_kib),
        )));
        out.push_str(&chart_div(&cycle_chart(
            "mappings after teardown",
            &series(|c| c.mappings as u64),
        )));
        out.push_str("</div>\n");
    }
    out.push_str(
        "<table class=\"cycles\">\n<tr><th>cycle</th><th>teardown</th><th>ops</th>\
         <th>contended</th><th>suspended</th><th>threads</th><th>maps</th><th>stacks</th>\
         <th>rss KiB</th><th>leaks</th></tr>\n",
    );
    for cycle in &soak.cycles {
        let leaks: Vec<String> = cycle
            .checks
            .iter()
            .filter(|check| !check.passed)
            .map(|check| encode_text(&check.to_string()).into_owned())
            .collect();
        let leaks = if leaks.is_empty() {
            "none".to_owned()
        } else {
            format!("<span class=\"failed\">{}</span>", leaks.join("; "))
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{leaks}</td></tr>",
            cycle.cycle,
            cycle.teardown,
            format_count(cycle.ops),
            format_count(cycle.contended_lock_ops),
            cycle.left_suspended,
            cycle.threads,
            cycle.mappings,
            cycle.stacks_in_use,
            format_count(cycle.rss_kib),
        );
    }
    out.push_str("</table>\n</section>\n");
    out
}

fn cycle_chart(title: &str, points: &[(f64, f64)]) -> String {
    let x_end = points.last().map_or(1.0, |p| p.0).max(2.0);
    let y_end = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    // No more ticks than cycles, so that every tick is a whole cycle.
    let cycles = (x_end as usize).clamp(2, MAX_TICKS);
    linear_chart(
        title,
        ("cycle", TickAxis::new(1.0..x_end, false, cycles)),
        ("", TickAxis::new(0.0..y_end, false, MAX_TICKS)),
        points.to_vec(),
    )
}

#[cfg(test)]
mod tests;
