//! HdrHistogram's percentile-distribution text (`.hgrm`), which its plotters read.
//!
//! The format is the one HdrHistogram's `outputPercentileDistribution` prints and its web
//! plotter (`plotFiles.html`) and `hdr-plot` parse: a header line, a blank line, one row per
//! percentile step with the columns `Value Percentile TotalCount 1/(1-Percentile)`, and a
//! footer of `#[...]` lines with the mean, standard deviation, maximum and count. The last
//! row, at percentile 1.0, has no fourth column (it would be infinite).
//!
//! Values are recorded in nanoseconds and written in microseconds with three decimals, so
//! nothing is lost and the plots read in a familiar unit. The unit is stated in the file, in
//! a last `#[Unit = ...]` footer line, which the plotters skip like the other footer lines.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;

use crate::outcome::{NamedHistogram, Outcome};

/// Recorded values are divided by this before printing: nanoseconds to microseconds.
pub const VALUE_SCALE: f64 = 1_000.0;

/// Percentile steps per halving of the remaining distance to 100%, as HdrHistogram's own
/// tools use by default.
const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// The percentile distribution of `histogram` in `.hgrm` text.
pub fn render(histogram: &Histogram<u64>) -> String {
    let decimals = usize::from(histogram.sigfig());
    let mut out = String::new();
    // `write!` to a String cannot fail; the results are ignored for that reason.
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for step in histogram.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        total += step.count_since_last_iteration();
        let value = step.value_iterated_to() as f64 / VALUE_SCALE;
        let quantile = step.quantile_iterated_to();
        if quantile < 1.0 {
            let inverse = 1.0 / (1.0 - quantile);
            let _ = writeln!(
                out,
                "{value:>12.decimals$} {quantile:>2.12} {total:>10} {inverse:>14.2}"
            );
        } else {
            let _ = writeln!(out, "{value:>12.decimals$} {quantile:>2.12} {total:>10}");
        }
    }
    let mean = histogram.mean() / VALUE_SCALE;
    let stdev = histogram.stdev() / VALUE_SCALE;
    let max = histogram.max() as f64 / VALUE_SCALE;
    let _ = writeln!(
        out,
        "#[Mean    = {mean:>12.decimals$}, StdDeviation   = {stdev:>12.decimals$}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:>12.decimals$}, Total count    = {:>12}]",
        histogram.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        histogram.buckets(),
        sub_bucket_count(histogram.sigfig())
    );
    let _ = writeln!(out, "{UNIT_LINE}");
    out
}

/// The footer line that states the unit of the `Value` column. Footer lines separate their
/// fields with commas, so this one has none in its value.
pub const UNIT_LINE: &str =
    "#[Unit    = microseconds (recorded in nanoseconds; written with 3 decimals)]";

/// The sub-buckets per bucket that `sigfig` significant figures need: the smallest power of
/// two covering 2 × 10^sigfig (hdrhistogram does not expose its own copy).
fn sub_bucket_count(sigfig: u8) -> u64 {
    (2 * 10u64.pow(u32::from(sigfig))).next_power_of_two()
}

/// The file a histogram is written to: `<workload>.<histogram name>.hgrm`, with anything but
/// letters, digits, `-` and `_` in the name replaced by `_`.
pub fn file_name(workload: &str, histogram: &NamedHistogram) -> String {
    let clean = |text: &str| -> String {
        text.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("{}.{}.hgrm", clean(workload), clean(&histogram.name))
}

/// Writes every non-empty histogram of every outcome into `dir`, creating it if needed, and
/// returns the paths written. Empty histograms are skipped: plotters cannot draw them.
///
/// # Errors
///
/// The first I/O error, with the path it concerns.
pub fn write_all(dir: &Path, outcomes: &[Outcome]) -> io::Result<Vec<PathBuf>> {
    let annotate = |path: &Path, err: io::Error| {
        io::Error::new(err.kind(), format!("{}: {err}", path.display()))
    };
    fs::create_dir_all(dir).map_err(|err| annotate(dir, err))?;
    let mut written = Vec::new();
    for outcome in outcomes {
        for named in outcome
            .histograms
            .iter()
            .filter(|h| !h.histogram.is_empty())
        {
            let path = dir.join(file_name(&outcome.workload, named));
            fs::write(&path, render(&named.histogram)).map_err(|err| annotate(&path, err))?;
            written.push(path);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{HistogramKind, new_histogram};

    #[test]
    fn sub_buckets_match_hdrhistogram() {
        // HdrHistogram's documented figure for 3 significant digits.
        assert_eq!(sub_bucket_count(3), 2048);
        assert_eq!(sub_bucket_count(2), 256);
    }

    #[test]
    fn layout() {
        let mut histogram = new_histogram();
        for value in 1..=1000u64 {
            histogram.record(value * 1_000).unwrap();
        }
        let text = render(&histogram);
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        assert_eq!(lines.next(), Some(""));
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .skip(1)
            .collect();
        assert_eq!(
            rows.last().unwrap().split_whitespace().count(),
            3,
            "last row has no 1/(1-p)"
        );
        assert!(
            rows[..rows.len() - 1]
                .iter()
                .all(|row| row.split_whitespace().count() == 4)
        );
        assert!(text.contains("#[Mean    ="), "{text}");
        assert!(text.contains("Total count    =         1000]"), "{text}");
        assert_eq!(text.lines().last(), Some(UNIT_LINE));
    }

    #[test]
    fn file_names_are_safe() {
        let named = NamedHistogram {
            name: "mutex lock/wait".to_owned(),
            kind: HistogramKind::LockWait,
            histogram: new_histogram(),
        };
        assert_eq!(file_name("mixed", &named), "mixed.mutex_lock_wait.hgrm");
    }
}
