//! Chart axes for the workspace's plotters charts (`cobench report`, `costress --html`):
//! ticks and their labels chosen here rather than by plotters, whose log-scale key points
//! repeat labels once rounded ("1.000 M" twice) and crowd the top of a decade, and whose
//! default formatter mixes notations on one axis.
//!
//! Ticks are "nice" numbers: 1-2-5 multiples of a power of ten on a log axis (thinned to
//! 1-3 and then to whole decades when the range is wide), and a 1-2-5 step on a linear one.
//! Every label of an axis is written the same way: an SI letter (k, M, G) and just enough
//! decimals to tell the ticks apart.
//!
//! ```
//! use chart_axis::TickAxis;
//!
//! let rates = TickAxis::new(0.0..2_300_000.0, false, 8);
//! let labels: Vec<String> = rates.ticks().iter().map(|t| rates.label(*t)).collect();
//! assert_eq!(labels, ["0.0M", "0.5M", "1.0M", "1.5M", "2.0M"]);
//! ```

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};

/// An axis, linear or logarithmic, whose grid lines and labels sit at ticks chosen here;
/// x or y, as the chart builder places it.
///
/// A plotters coordinate of our own because its key-point override (`with_key_points`)
/// drops the value formatter of a linear `f64` axis, and one type serving both scales keeps
/// the chart code to one path.
#[derive(Debug, Clone)]
pub struct TickAxis {
    range: Range<f64>,
    log: bool,
    ticks: Vec<f64>,
    labels: Vec<String>,
}

impl TickAxis {
    /// An axis over `range` (positive when `log`), with at most `max_ticks` ticks.
    pub fn new(range: Range<f64>, log: bool, max_ticks: usize) -> TickAxis {
        let ticks = if log {
            log_ticks(range.start, range.end, max_ticks)
        } else {
            linear_ticks(range.start, range.end, max_ticks)
        };
        let labels = labels(&ticks);
        TickAxis {
            range,
            log,
            ticks,
            labels,
        }
    }

    /// The ticks, ascending.
    pub fn ticks(&self) -> &[f64] {
        &self.ticks
    }

    /// The label of the tick at `v` (as [`labels`] writes the axis), or nothing for a value
    /// that is not a tick: the function to hand to plotters' `x_label_formatter` or
    /// `y_label_formatter`.
    pub fn label(&self, v: f64) -> String {
        self.ticks
            .iter()
            .position(|t| (t - v).abs() <= t.abs().max(1e-12) * 1e-9)
            .map_or_else(String::new, |i| self.labels[i].clone())
    }

    /// Where `v` falls on the axis, 0 at the bottom and 1 at the top.
    fn fraction(&self, v: f64) -> f64 {
        let (lo, hi) = (self.range.start, self.range.end);
        if self.log {
            (v.max(f64::MIN_POSITIVE).ln() - lo.ln()) / (hi.ln() - lo.ln())
        } else {
            (v - lo) / (hi - lo)
        }
    }
}

impl Ranged for TickAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let f = self.fraction(*value);
        if !f.is_finite() {
            return limit.0;
        }
        let pixels = f64::from(limit.1 - limit.0);
        limit.0 + (pixels * f).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Bold lines at the ticks; no light grid in between, which would crowd a log axis.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

/// The ticks of a log axis over `lo..hi` (both positive), at most `max` of them, at least
/// two (falling back to linear steps inside a range narrower than 1-2-5 can mark).
pub fn log_ticks(lo: f64, hi: f64, max: usize) -> Vec<f64> {
    let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    for mantissas in [&[1.0, 2.0, 5.0][..], &[1.0, 3.0][..], &[1.0][..]] {
        let ticks = decade_ticks(first, last, 1, mantissas, lo, hi);
        if ticks.len() > max {
            continue;
        }
        if ticks.len() < 3 && mantissas.len() == 3 {
            // Less than about a decade: 1-2-5 leaves too few marks to read a value by.
            return linear_ticks(lo, hi, max);
        }
        return ticks;
    }
    // Many decades: every second, third... decade, whichever first fits.
    (2..)
        .map(|every| decade_ticks(first, last, every, &[1.0], lo, hi))
        .find(|ticks| ticks.len() <= max)
        .unwrap_or_default()
}

/// `m × 10^k` for every `every`-th decade `k` in `first..=last` and every mantissa, kept
/// inside `lo..=hi`.
fn decade_ticks(
    first: i32,
    last: i32,
    every: usize,
    mantissas: &[f64],
    lo: f64,
    hi: f64,
) -> Vec<f64> {
    (first..=last)
        .step_by(every)
        .flat_map(|k| mantissas.iter().map(move |m| m * 10f64.powi(k)))
        .filter(|&t| t >= lo * (1.0 - 1e-9) && t <= hi * (1.0 + 1e-9))
        .collect()
}

/// The ticks of a linear axis over `lo..hi`: multiples of a 1-2-5 step, at most `max`.
pub fn linear_ticks(lo: f64, hi: f64, max: usize) -> Vec<f64> {
    let step = linear_step(lo, hi, max);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    // Rounded to the step's own decimals, so that 12 × 0.1 is 1.2 and not 1.2000000000000002.
    let unit = 10f64.powf((-step.log10().floor()).max(0.0));
    (first..=last)
        .map(|i| (i as f64 * step * unit).round() / unit)
        .collect()
}

/// The smallest 1-2-5 step that puts at most `max` ticks on `lo..hi`.
fn linear_step(lo: f64, hi: f64, max: usize) -> f64 {
    let span = (hi - lo).abs().max(f64::MIN_POSITIVE);
    let rough = span / max.saturating_sub(1).max(1) as f64;
    let magnitude = 10f64.powf(rough.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&step| ((span / step).floor() as usize) < max)
        .unwrap_or(10.0 * magnitude)
}

/// The SI scale for `v`: (divisor, letter).
fn scale(v: f64) -> (f64, &'static str) {
    let a = v.abs();
    if a >= 1e9 {
        (1e9, "G")
    } else if a >= 1e6 {
        (1e6, "M")
    } else if a >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    }
}

/// Labels for `ticks`, all in one notation. Ticks that are whole numbers of their own SI
/// unit (a log axis: 500, 1k, 2k, 1M) are written that way; otherwise the whole axis shares
/// the scale of its largest tick (0.90M, 0.95M, 1.00M) with the fewest decimals, up to 3,
/// that keep every label distinct and true to its tick.
pub fn labels(ticks: &[f64]) -> Vec<String> {
    let whole = ticks.iter().all(|&t| {
        let m = t / scale(t).0;
        (m - m.round()).abs() < 1e-9
    });
    if whole {
        let labels: Vec<String> = ticks
            .iter()
            .map(|&t| {
                let (div, letter) = scale(t);
                format!("{:.0}{letter}", t / div)
            })
            .collect();
        if distinct(&labels) {
            return labels;
        }
    }
    let largest = ticks.iter().fold(0.0f64, |m, t| m.max(t.abs()));
    let (div, letter) = scale(largest);
    let write = |decimals: usize| -> Vec<String> {
        ticks
            .iter()
            .map(|&t| format!("{:.*}{letter}", decimals, t / div))
            .collect()
    };
    for decimals in 0..=2 {
        let labels = write(decimals);
        let exact = ticks.iter().zip(&labels).all(|(&t, l)| {
            let shown: f64 = l.trim_end_matches(letter).parse().unwrap_or(f64::NAN);
            (shown * div - t).abs() <= largest * 1e-6
        });
        if exact && distinct(&labels) {
            return labels;
        }
    }
    write(3)
}

fn distinct(labels: &[String]) -> bool {
    let mut sorted = labels.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted.len() == labels.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ticks_are_one_two_five_and_thin_out_over_wide_ranges() {
        assert_eq!(
            log_ticks(80_000.0, 2_500_000.0, 8),
            [100e3, 200e3, 500e3, 1e6, 2e6]
        );
        let wide = log_ticks(40.0, 9e8, 8);
        assert!(wide.len() <= 8 && wide.len() >= 4, "{wide:?}");
        assert!(wide.windows(2).all(|w| w[1] > w[0]));
        let labels = labels(&log_ticks(80_000.0, 2_500_000.0, 8));
        assert_eq!(labels, ["100k", "200k", "500k", "1M", "2M"]);
    }

    #[test]
    fn a_narrow_log_range_falls_back_to_linear_steps() {
        // The range of the issue-16 chart that crammed 600000.0 ... 900000.0 together.
        let ticks = log_ticks(600_000.0, 1_100_000.0, 8);
        assert!(ticks.len() >= 3, "{ticks:?}");
        let labels = labels(&ticks);
        assert!(distinct(&labels), "{labels:?}");
        assert_eq!(labels[0], "0.6M");
        assert_eq!(labels.last().unwrap(), "1.1M");
    }

    #[test]
    fn the_axis_maps_its_ends_to_the_pixel_limits() {
        let log = TickAxis::new(10.0..1000.0, true, 8);
        assert_eq!(log.map(&10.0, (300, 0)), 300);
        assert_eq!(log.map(&100.0, (300, 0)), 150);
        assert_eq!(log.map(&1000.0, (300, 0)), 0);
        assert_eq!(log.ticks(), [10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]);
        let linear = TickAxis::new(0.0..2.0, false, 8);
        assert_eq!(linear.map(&0.5, (0, 400)), 100);
    }

    #[test]
    fn linear_ticks_use_a_nice_step_and_one_notation() {
        assert_eq!(linear_ticks(0.83, 1.27, 6), [0.9, 1.0, 1.1, 1.2]);
        assert_eq!(labels(&[0.9, 1.0, 1.1, 1.2]), ["0.9", "1.0", "1.1", "1.2"]);
        let ticks = linear_ticks(0.0, 4.3, 6);
        assert_eq!(ticks, [0.0, 1.0, 2.0, 3.0, 4.0]);
        assert_eq!(labels(&ticks), ["0", "1", "2", "3", "4"]);
        assert!(linear_ticks(2.0, 2.0 + 1e-12, 6).len() <= 6);
        let rates = linear_ticks(880_000.0, 1_070_000.0, 6);
        assert_eq!(labels(&rates), ["0.90M", "0.95M", "1.00M", "1.05M"]);
    }
}
