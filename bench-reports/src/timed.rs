//! The time tier's harness: run a workload for a number of samples, summarise them, and keep
//! a latency histogram for the percentiles.
//!
//! Wall-clock figures drift between machines and between runs on a shared one, so each time
//! row names a reference measured in the same run (see [`crate::workload`]), and `compare`
//! judges the ratio, with a threshold widened by the spread measured here.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::error::Error;
use crate::probe::Sizes;
use crate::schema::{Benchmark, Better, Tier};
use crate::stats;

/// Percentile keys written to a results file, with the quantile each stands for. `max` is
/// reported but, being one sample, `compare` does not judge it.
pub const PERCENTILES: [(&str, f64); 5] = [
    ("p50", 0.5),
    ("p90", 0.9),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("max", 1.0),
];

/// Significant decimal digits kept by the latency histogram: 0.1 % resolution at any
/// magnitude, well under the noise of a timed sample.
const SIGNIFICANT_DIGITS: u8 = 3;

/// One multi-threaded workload of the time tier.
#[derive(Debug)]
pub struct TimeBench {
    /// Benchmark name in the results file.
    pub name: &'static str,
    /// One line saying what one sample does.
    pub what: &'static str,
    /// Unit of a sample's value.
    pub unit: &'static str,
    /// Unit of the recorded latencies, when the workload records any.
    pub latency_unit: Option<&'static str>,
    /// Which direction is an improvement.
    pub better: Better,
    /// Rows sharing a group are measured together, their samples interleaved (A B A B):
    /// whatever the machine does meanwhile falls on both sides of a ratio alike.
    pub group: &'static str,
    /// The row of the same run this one is divided by and judged against (`compare`), or
    /// `None` for a reference itself. It is in the same group or an earlier one.
    pub reference: Option<&'static str>,
    /// Further same-run rows this one is shown against, for information (earlier rows or
    /// the same group).
    pub others: &'static [&'static str],
    /// Operations per sample, passed to `sample` (for a row that runs for a set time, the
    /// time in milliseconds).
    pub ops: Sizes,
    /// Timed samples (one untimed warm-up sample runs first).
    pub samples: Sizes,
    /// Runs `ops` operations and returns the sample's value in `unit`; may record
    /// per-operation latencies in `latency_unit` and secondary metrics.
    pub sample: fn(ops: u64, recorder: &mut Recorder) -> Result<f64, Error>,
}

/// What a sample records besides its value: per-operation latencies (kept across the
/// row's samples) and secondary metrics (one value per sample, summarised by the median).
#[derive(Debug, Default)]
pub struct Recorder {
    latencies: Latencies,
    metrics: Vec<(&'static str, f64)>,
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one operation's latency, in the benchmark's latency unit.
    #[inline]
    pub fn record(&mut self, value: u64) {
        self.latencies.record(value);
    }

    /// Adds latencies recorded elsewhere (on another thread, say).
    pub fn merge(&mut self, other: &Latencies) {
        self.latencies.merge(other);
    }

    /// Records this sample's value of a secondary metric; the name carries its unit.
    pub fn metric(&mut self, name: &'static str, value: f64) {
        self.metrics.push((name, value));
    }

    /// The latencies recorded so far.
    pub fn latencies(&self) -> &Latencies {
        &self.latencies
    }
}

/// Latencies of individual operations, kept in an HDR histogram.
#[derive(Debug)]
pub struct Latencies(Histogram<u64>);

impl Latencies {
    /// An empty, auto-resizing histogram.
    pub fn new() -> Self {
        // `new` with auto-resize only fails for significant digits outside 0..=5.
        let histogram = Histogram::new(SIGNIFICANT_DIGITS).expect("3 significant digits are valid");
        Latencies(histogram)
    }

    /// Records one operation's latency, in the benchmark's unit.
    #[inline]
    pub fn record(&mut self, value: u64) {
        // `record` grows the histogram to fit; it fails only if the bucket count would
        // overflow `usize`, and then the value is clamped rather than lost.
        // (`saturating_record` alone would clamp instead of growing.)
        if self.0.record(value).is_err() {
            self.0.saturating_record(value);
        }
    }

    /// Adds every latency recorded in `other` (one filled on another thread, say).
    pub fn merge(&mut self, other: &Latencies) {
        // `add` only fails when the sum does not fit and the histogram may not grow; both
        // of ours resize themselves.
        self.0
            .add(&other.0)
            .expect("auto-resizing histograms of equal precision add");
    }

    /// How many latencies were recorded.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The [`PERCENTILES`] map, or `None` when nothing was recorded.
    pub fn percentiles(&self) -> Option<BTreeMap<String, f64>> {
        if self.is_empty() {
            return None;
        }
        let map = PERCENTILES
            .iter()
            .map(|&(key, q)| {
                let value = if q >= 1.0 {
                    self.0.max()
                } else {
                    self.0.value_at_quantile(q)
                };
                (key.to_owned(), value as f64)
            })
            .collect();
        Some(map)
    }
}

impl From<Histogram<u64>> for Latencies {
    /// Latencies recorded elsewhere, such as by the W8 client.
    fn from(histogram: Histogram<u64>) -> Self {
        Latencies(histogram)
    }
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

/// Measures a group of rows together: one warm-up sample of each, in order, then their
/// timed samples interleaved round by round (A B A B ...), so that a change in the
/// machine's state during the group (a neighbour waking, a frequency step) lands on every
/// row rather than on one. A row with fewer samples drops out of the later rounds.
///
/// The rows' `load`, `reference`, `ratio` and `other_references` are left empty for
/// [`crate::run`] to fill.
pub fn measure_group(benches: &[&TimeBench], quick: bool) -> Result<Vec<Benchmark>, Error> {
    for bench in benches {
        (bench.sample)(bench.ops.pick(quick), &mut Recorder::new())?;
    }
    let mut rows: Vec<RowSamples> = benches.iter().map(|_| RowSamples::default()).collect();
    let rounds = benches.iter().map(|b| b.samples.pick(quick)).max();
    for round in 0..rounds.unwrap_or(0) {
        for (bench, row) in benches.iter().zip(&mut rows) {
            if round < bench.samples.pick(quick) {
                let value = (bench.sample)(bench.ops.pick(quick), &mut row.recorder)?;
                row.values.push(value);
                for (name, v) in row.recorder.metrics.drain(..) {
                    row.metrics.entry(name).or_default().push(v);
                }
            }
        }
    }
    benches
        .iter()
        .zip(rows)
        .map(|(bench, row)| row.into_benchmark(bench))
        .collect()
}

/// What one row of a group has collected so far.
#[derive(Default)]
struct RowSamples {
    recorder: Recorder,
    values: Vec<f64>,
    metrics: BTreeMap<&'static str, Vec<f64>>,
}

impl RowSamples {
    fn into_benchmark(self, bench: &TimeBench) -> Result<Benchmark, Error> {
        let broken = |detail: String| Error::Workload {
            name: bench.name.to_owned(),
            detail,
        };
        let summary = stats::summarize(&self.values)
            .ok_or_else(|| broken(format!("no usable samples: {:?}", self.values)))?;
        let percentiles = self.recorder.latencies.percentiles();
        if percentiles.is_some() && bench.latency_unit.is_none() {
            return Err(broken(
                "recorded latencies but its TimeBench has no latency_unit".to_owned(),
            ));
        }
        let mut metrics = BTreeMap::new();
        for (name, values) in self.metrics {
            let m = stats::summarize(&values)
                .ok_or_else(|| broken(format!("metric {name} has unusable samples {values:?}")))?;
            metrics.insert(name.to_owned(), m.median);
        }
        Ok(Benchmark {
            name: bench.name.to_owned(),
            tier: Tier::Time,
            value: summary.median,
            unit: bench.unit.to_owned(),
            better: bench.better,
            samples: u32::try_from(self.values.len()).unwrap_or(u32::MAX),
            spread: summary.spread,
            load: None,
            min: Some(summary.min),
            max: Some(summary.max),
            reference: None,
            ratio: None,
            other_references: Vec::new(),
            percentile_unit: percentiles
                .as_ref()
                .and(bench.latency_unit)
                .map(str::to_owned),
            percentiles,
            metrics,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_cover_every_key() {
        let mut l = Latencies::new();
        for v in 1..=1000 {
            l.record(v);
        }
        let p = l.percentiles().unwrap();
        assert_eq!(p.len(), PERCENTILES.len());
        assert!((p["p50"] - 500.0).abs() <= 1.0, "{p:?}");
        assert!((p["p99"] - 990.0).abs() <= 1.0, "{p:?}");
        assert_eq!(p["max"], 1000.0);
        assert!(Latencies::new().percentiles().is_none());
    }

    thread_local! {
        static CALLS: std::cell::RefCell<Vec<&'static str>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    fn sample_a(_ops: u64, rec: &mut Recorder) -> Result<f64, Error> {
        let n = CALLS.with(|c| {
            c.borrow_mut().push("a");
            c.borrow().len()
        });
        rec.metric("calls_so_far", n as f64);
        Ok(n as f64)
    }

    fn sample_b(_ops: u64, rec: &mut Recorder) -> Result<f64, Error> {
        CALLS.with(|c| c.borrow_mut().push("b"));
        rec.record(7);
        Ok(1.0)
    }

    fn bench(
        name: &'static str,
        samples: u64,
        sample: fn(u64, &mut Recorder) -> Result<f64, Error>,
    ) -> TimeBench {
        TimeBench {
            name,
            what: "test",
            unit: "x",
            latency_unit: Some("ns"),
            better: Better::Lower,
            group: "g",
            reference: None,
            others: &[],
            ops: Sizes { quick: 1, full: 1 },
            samples: Sizes {
                quick: samples,
                full: samples,
            },
            sample,
        }
    }

    #[test]
    fn a_group_warms_up_then_interleaves_its_rows() {
        let (a, b) = (bench("a", 3, sample_a), bench("b", 2, sample_b));
        let rows = measure_group(&[&a, &b], true).unwrap();
        let calls = CALLS.with(|c| c.borrow().clone());
        assert_eq!(calls, ["a", "b", "a", "b", "a", "b", "a"]);
        // a's timed samples were calls 3, 5 and 7 of the sequence.
        assert_eq!(
            (rows[0].value, rows[0].min, rows[0].max),
            (5.0, Some(3.0), Some(7.0))
        );
        assert_eq!(rows[0].samples, 3);
        assert_eq!(rows[0].metrics["calls_so_far"], 5.0);
        assert!(rows[0].percentiles.is_none());
        // b's latencies: the warm-up's are not kept.
        assert_eq!(rows[1].samples, 2);
        assert_eq!(rows[1].percentiles.as_ref().unwrap()["max"], 7.0);
    }
}
