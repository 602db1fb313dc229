//! The results file: what `cobench run` writes and `compare`/`report` read.
//!
//! The JSON Schema in `bench-reports/schema/results.schema.json` describes the same shape; a
//! test validates real `run --quick` output against it, so the two cannot drift apart
//! silently. Bump [`SCHEMA_VERSION`] on any change that an older reader would misread.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Version of the results format written by this build.
///
/// Version 2 added the time tier's `load`, `min`, `max`, `other_references` and `metrics`
/// and the header's `loads`; files of version 1 still load (a time row without `load` was
/// measured quiet).
pub const SCHEMA_VERSION: u32 = 2;

/// The `load` of a time row measured with no competing process.
pub const QUIET: &str = "quiet";

/// One run of the suite on one machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Results {
    /// Format version; see [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The machine and toolchain the numbers came from.
    pub machine: Machine,
    /// `git rev-parse HEAD` of the measured tree, or `"unknown"` outside a checkout.
    pub commit: String,
    /// When the run started, RFC 3339 in UTC.
    pub date: String,
    /// Whether iteration counts were shrunk by `--quick`.
    pub quick: bool,
    /// Cargo profile family of the measuring binary: `"release"` or `"debug"`.
    ///
    /// Instruction counts of a debug build are several times those of a release build, so
    /// `compare` refuses to judge deterministic rows across profiles.
    pub profile: String,
    /// One entry per pass of the time tier (`--load quiet,busy:1` runs two), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loads: Vec<LoadPass>,
    /// `cobench run --pin-threads`: whether the coscheduler rows built with the
    /// runtime's defaults had their workers pinned by override; absent when they got
    /// the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_threads: Option<bool>,
    /// Every benchmark measured, in suite order (each time row once per load).
    pub benchmarks: Vec<Benchmark>,
}

/// One pass of the time tier under one load: what ran beside the benchmarks, and proof
/// that it did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadPass {
    /// `"quiet"` or a `busy:N` form; see [`crate::load::Load`].
    pub load: String,
    /// Competing processes started for the pass (0 when quiet).
    pub competitors: u32,
    /// Wall time of the pass, competitors running throughout.
    pub seconds: f64,
    /// CPU time the competitors used, summed, from the kernel's account of the reaped
    /// children: close to `competitors × seconds` when they really competed for the cores.
    pub competitor_cpu_seconds: f64,
}

/// Where a run happened; `compare` only notes differences, it cannot correct for them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    /// Host name, from `/proc/sys/kernel/hostname` (or `"unknown"`).
    pub hostname: String,
    /// The first `model name` in `/proc/cpuinfo` (or `"unknown"`).
    pub cpu_model: String,
    /// Logical CPUs this process may run on.
    pub cores: u32,
    /// Kernel and architecture, e.g. `"Linux 6.18.0 x86_64"`.
    pub os: String,
    /// `rustc -V` of the toolchain on `PATH` (or `"unknown"`).
    pub rustc: String,
}

/// Which harness produced a row, and so how `compare` judges it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Instruction counts from callgrind: repeatable to the instruction, judged by the plain
    /// threshold.
    Deterministic,
    /// Wall-clock measurements: judged by a threshold widened by the measured spread.
    Time,
}

impl Tier {
    /// The name used in the JSON file and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Deterministic => "deterministic",
            Tier::Time => "time",
        }
    }
}

/// Which way is good for a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Costs: instructions, nanoseconds, bytes.
    Lower,
    /// Rates: operations per second.
    Higher,
}

/// One measured figure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Benchmark {
    /// Stable identifier; `compare` matches rows by it.
    pub name: String,
    /// The harness that measured it.
    pub tier: Tier,
    /// The figure: instructions per operation (deterministic tier) or the median of the
    /// samples (time tier).
    pub value: f64,
    /// Unit of `value` and of the percentiles, e.g. `"instructions/op"`, `"ns/round-trip"`.
    pub unit: String,
    /// Which direction is an improvement.
    pub better: Better,
    /// Deterministic tier: callgrind runs (one per iteration count). Time tier: timed
    /// samples, warm-up excluded.
    pub samples: u32,
    /// Relative spread of `value`, a fraction (0.05 = 5 %).
    ///
    /// Time tier: the interquartile range of the samples divided by their median. It ignores
    /// one wild sample, which `(max - min) / median` would not.
    ///
    /// Deterministic tier: the disagreement of the two per-operation slopes measured over
    /// `[N, 2N]` and `[2N, 3N]`, divided by the overall slope. It is 0 for an operation whose
    /// cost does not depend on how many ran before; anything else means amortised work
    /// (a pool or vector growing) that the figure averages over.
    pub spread: f64,
    /// Time tier: what ran beside the benchmark, `"quiet"` or `busy:N` (see
    /// [`crate::load::Load`]); rows are identified by name and load together. Absent on
    /// deterministic rows, whose counts no neighbour moves, and in version 1 files, whose
    /// time rows were all quiet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<String>,
    /// Time tier: the smallest sample, so that a bimodal row (most samples fast, some
    /// collapsed) shows beside its median.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Time tier: the largest sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// The reference measured in the same run (and under the same load) that `ratio`
    /// divides by and `compare` judges (time tier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
    /// `value / reference.value`: the figure that survives a change of machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// Further rows of the same run and load this one is shown against (the std floors
    /// beside a tokio reference), for information; `compare` does not judge them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_references: Vec<OtherReference>,
    /// Latency percentiles, keyed `"p50"`, `"p90"`, `"p99"`, `"p99.9"`, `"max"`.
    ///
    /// Always of a cost (a latency, an oversleep), so lower is better whatever `better`
    /// says of `value`: a requests/s row may carry request latencies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentiles: Option<BTreeMap<String, f64>>,
    /// Unit of `percentiles`; present whenever they are, since it may differ from `unit`
    /// (requests/s against µs of latency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentile_unit: Option<String>,
    /// Secondary figures of a time row, each the median over the samples, keyed by a name
    /// that carries its unit (e.g. `server_cpu_ns_per_request`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
}

impl Benchmark {
    /// The row's load, `"quiet"` when it has none (deterministic rows, version 1 files).
    pub fn load(&self) -> &str {
        self.load.as_deref().unwrap_or(QUIET)
    }
}

/// A copy of the reference row a ratio was computed against.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    /// Name of the reference benchmark in the same results file.
    pub name: String,
    /// Its value in this run.
    pub value: f64,
    /// Its relative spread in this run; `compare` combines it with the row's own.
    pub spread: f64,
}

/// Another same-run row a time row is shown against, with the ratio to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtherReference {
    /// Name of the row in the same results file (same load).
    pub name: String,
    /// Its value in this run.
    pub value: f64,
    /// `value` of the row divided by this one's.
    pub ratio: f64,
}

impl Results {
    /// Reads and parses a results file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::json(path, e))
    }

    /// Writes the file as pretty JSON, creating parent directories.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let mut text = serde_json::to_string_pretty(self).map_err(|e| Error::json(path, e))?;
        text.push('\n');
        std::fs::write(path, text).map_err(|e| Error::io(path, e))
    }

    /// The first benchmark called `name` (its quiet row, when it ran under several loads).
    pub fn get(&self, name: &str) -> Option<&Benchmark> {
        self.get_at(name, QUIET)
            .or_else(|| self.benchmarks.iter().find(|b| b.name == name))
    }

    /// The benchmark called `name` measured under `load`.
    pub fn get_at(&self, name: &str, load: &str) -> Option<&Benchmark> {
        self.benchmarks
            .iter()
            .find(|b| b.name == name && b.load() == load)
    }

    /// The loads the time tier ran under, in order of first appearance.
    pub fn time_loads(&self) -> Vec<&str> {
        let mut loads: Vec<&str> = Vec::new();
        for b in self.benchmarks.iter().filter(|b| b.tier == Tier::Time) {
            if !loads.contains(&b.load()) {
                loads.push(b.load());
            }
        }
        loads
    }
}
