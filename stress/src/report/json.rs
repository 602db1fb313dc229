//! The machine-readable report: one JSON document per run.
//!
//! The schema is documented in `stress/README.md` and identified by [`SCHEMA`]; bump its
//! number when a field changes meaning or disappears (adding fields is compatible).

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::outcome::{
    Check, ContextSnapshot, HistogramKind, LockSnapshot, NamedHistogram, Outcome, PoolSnapshot,
    Sample, SoakSummary, Throughput,
};
use crate::settings::{FileConfig, Settings};

/// The value of the document's `schema` field.
pub const SCHEMA: &str = "costress-report/1";

#[derive(Serialize)]
struct Document<'a> {
    schema: &'static str,
    costress_version: &'static str,
    passed: bool,
    interrupted: bool,
    config_file: Option<String>,
    config: FileConfig,
    workloads: Vec<WorkloadReport<'a>>,
    soak: Option<&'a SoakSummary>,
}

#[derive(Serialize)]
struct WorkloadReport<'a> {
    name: &'a str,
    passed: bool,
    interrupted: bool,
    throughput: ThroughputReport,
    parts: Vec<PartReport<'a>>,
    checks: &'a [Check],
    histograms: Vec<HistogramReport<'a>>,
    locks: &'a [LockSnapshot],
    contexts: &'a [ContextSnapshot],
    pool: Option<&'a PoolSnapshot>,
    timeline: &'a [Sample],
}

#[derive(Serialize)]
struct ThroughputReport {
    ops: u64,
    elapsed_ns: u64,
    ops_per_s: f64,
}

impl ThroughputReport {
    fn new(throughput: &Throughput) -> Self {
        ThroughputReport {
            ops: throughput.ops,
            elapsed_ns: u64::try_from(throughput.elapsed.as_nanos()).unwrap_or(u64::MAX),
            ops_per_s: throughput.per_second(),
        }
    }
}

/// One part of a workload that runs several at once: its name and throughput.
#[derive(Serialize)]
struct PartReport<'a> {
    name: &'a str,
    #[serde(flatten)]
    throughput: ThroughputReport,
}

/// A histogram's summary; the statistics are `null` when it is empty.
#[derive(Serialize)]
struct HistogramReport<'a> {
    name: &'a str,
    kind: HistogramKind,
    unit: &'static str,
    count: u64,
    min: Option<u64>,
    mean: Option<f64>,
    stdev: Option<f64>,
    p50: Option<u64>,
    p90: Option<u64>,
    p99: Option<u64>,
    p999: Option<u64>,
    max: Option<u64>,
}

impl<'a> HistogramReport<'a> {
    fn new(named: &'a NamedHistogram) -> Self {
        let h: &Histogram<u64> = &named.histogram;
        let stat = |f: &dyn Fn() -> u64| (!h.is_empty()).then(f);
        HistogramReport {
            name: &named.name,
            kind: named.kind,
            unit: "ns",
            count: h.len(),
            min: stat(&|| h.min()),
            mean: (!h.is_empty()).then(|| h.mean()),
            stdev: (!h.is_empty()).then(|| h.stdev()),
            p50: stat(&|| h.value_at_quantile(0.5)),
            p90: stat(&|| h.value_at_quantile(0.9)),
            p99: stat(&|| h.value_at_quantile(0.99)),
            p999: stat(&|| h.value_at_quantile(0.999)),
            max: stat(&|| h.max()),
        }
    }
}

impl<'a> WorkloadReport<'a> {
    fn new(outcome: &'a Outcome) -> Self {
        WorkloadReport {
            name: &outcome.workload,
            passed: outcome.passed(),
            interrupted: outcome.interrupted,
            throughput: ThroughputReport::new(&outcome.throughput),
            parts: outcome
                .parts
                .iter()
                .map(|part| PartReport {
                    name: &part.name,
                    throughput: ThroughputReport::new(&part.throughput),
                })
                .collect(),
            checks: &outcome.checks,
            histograms: outcome
                .histograms
                .iter()
                .map(HistogramReport::new)
                .collect(),
            locks: &outcome.locks,
            contexts: &outcome.contexts,
            pool: outcome.pool.as_ref(),
            timeline: &outcome.timeline,
        }
    }
}

/// The report as pretty-printed JSON, ending in a newline.
///
/// `passed` is true only if the run was not `interrupted` and every workload passed.
pub fn render(settings: &Settings, outcomes: &[Outcome], interrupted: bool) -> String {
    render_with_soak(settings, outcomes, interrupted, None)
}

/// The report of a soak: the cycles, and in `workloads` the outcome of the failing cycle
/// (or of the last one).
pub fn render_soak(settings: &Settings, outcomes: &[Outcome], soak: &SoakSummary) -> String {
    render_with_soak(settings, outcomes, soak.interrupted, Some(soak))
}

fn render_with_soak(
    settings: &Settings,
    outcomes: &[Outcome],
    interrupted: bool,
    soak: Option<&SoakSummary>,
) -> String {
    let passed = match soak {
        Some(soak) => soak.passed(),
        None => !outcomes.is_empty() && outcomes.iter().all(Outcome::passed),
    };
    let document = Document {
        schema: SCHEMA,
        costress_version: env!("CARGO_PKG_VERSION"),
        passed: passed && !interrupted,
        interrupted,
        config_file: settings
            .config_file()
            .map(|path| path.display().to_string()),
        config: FileConfig {
            runtime: settings.runtime.clone(),
            stress: settings.stress.clone(),
        },
        workloads: outcomes.iter().map(WorkloadReport::new).collect(),
        soak,
    };
    let mut text = serde_json::to_string_pretty(&document)
        .expect("the report has string keys and finite numbers");
    text.push('\n');
    text
}
