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
    /// The row of the same run this one is divided by, or `None` for a reference itself.
    pub reference: Option<&'static str>,
    /// Operations per sample, passed to `sample`.
    pub ops: Sizes,
    /// Timed samples (one untimed warm-up sample runs first).
    pub samples: Sizes,
    /// Runs `ops` operations and returns the sample's value in `unit`; may record
    /// per-operation latencies in `latency_unit`.
    pub sample: fn(ops: u64, latencies: &mut Latencies) -> Result<f64, Error>,
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

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

/// Measures `bench`: one warm-up sample, then the timed ones. The row's `reference` and
/// `ratio` are left empty for [`crate::run`] to fill once the reference is measured.
pub fn measure(bench: &TimeBench, quick: bool) -> Result<Benchmark, Error> {
    let ops = bench.ops.pick(quick);
    (bench.sample)(ops, &mut Latencies::new())?;

    let count = bench.samples.pick(quick);
    let mut latencies = Latencies::new();
    let mut values = Vec::with_capacity(count as usize);
    for _ in 0..count {
        values.push((bench.sample)(ops, &mut latencies)?);
    }
    let summary = stats::summarize(&values).ok_or_else(|| Error::Workload {
        name: bench.name.to_owned(),
        detail: format!("no usable samples: {values:?}"),
    })?;
    let percentiles = latencies.percentiles();
    if percentiles.is_some() && bench.latency_unit.is_none() {
        return Err(Error::Workload {
            name: bench.name.to_owned(),
            detail: "recorded latencies but its TimeBench has no latency_unit".to_owned(),
        });
    }
    Ok(Benchmark {
        name: bench.name.to_owned(),
        tier: Tier::Time,
        value: summary.median,
        unit: bench.unit.to_owned(),
        better: bench.better,
        samples: u32::try_from(count).unwrap_or(u32::MAX),
        spread: summary.spread,
        reference: None,
        ratio: None,
        percentile_unit: percentiles
            .as_ref()
            .and(bench.latency_unit)
            .map(str::to_owned),
        percentiles,
    })
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
}
