//! `cobench compare`: judges a results file against a baseline, row by row.
//!
//! This is a pure function of the two files and the options, so the CI gate's decision can
//! be tested on synthetic results. Rows are matched by name and, in the time tier, by load
//! (`quiet`, `busy:1`, ...). The rules:
//!
//! - **Deterministic tier**: instruction counts repeat exactly, so a change beyond the
//!   threshold (default [`DEFAULT_THRESHOLD`]) is real.
//! - **Time tier**: the figure judged is the ratio to the row's reference from the same run
//!   and load (tokio's twin of the workload, or a floor), which travels between machines
//!   where absolute times do not; a row without a reference is information only. The
//!   threshold is `max(threshold, SPREAD_FACTOR × √(s_baseline² + s_now²))`, where each `s`
//!   combines the row's relative spread with its reference's. See [`SPREAD_FACTOR`].
//! - **Tails**: the [`JUDGED_PERCENTILES`] are compared too, each with the row's threshold
//!   times its own factor, after rescaling by how much the reference moved between the runs.
//!   Tails do not travel: a p99 depends on the machine's scheduler and load far more than a
//!   median ratio does. So they can fail a row only when both files come from the same
//!   machine (host name, CPU model and core count), and only a row whose judged ratio held:
//!   **an improvement is never failed**, whatever its tails did (they are reported).
//! - A row in the baseline but not in the results is **missing**, and a row whose tier,
//!   unit, direction or reference changed, or a deterministic row measured under a different
//!   build profile, is **incomparable**. Both fail: a silently dropped or redefined
//!   benchmark would hide a regression. Refresh the baseline when that is intended. But a
//!   whole tier, or a whole load of the time tier, that the results did not measure at all
//!   (`--tier time`, a quiet-only run against a quiet+loaded baseline) is skipped with a
//!   note, not failed: nothing was dropped, it was not asked for.

use serde::Serialize;

use crate::schema::{Benchmark, Better, Results, Tier};

/// Threshold used when none is given: 3 %.
pub const DEFAULT_THRESHOLD: f64 = 0.03;

/// Multiple of the combined relative spread that a time-tier change must exceed.
///
/// Spreads are interquartile ranges over the median. For a normal distribution the IQR is
/// 1.35 σ, so two IQRs of the combined spread put a change about 2.7 σ of one sample away:
/// rare enough by chance that a red CI is worth reading, while a true 2× slowdown (the
/// targets in docs/BENCHMARKS.md are ratios like "≤ 2× corosensei") still shows on a quiet machine.
pub const SPREAD_FACTOR: f64 = 2.0;

/// Percentiles judged, with the multiple of the row's threshold each is allowed. The far
/// tail rests on few samples, so it gets twice the room; `max`, one sample, is not judged.
pub const JUDGED_PERCENTILES: [(&str, f64); 4] =
    [("p50", 1.0), ("p90", 1.0), ("p99", 2.0), ("p99.9", 2.0)];

/// How to compare.
#[derive(Clone, Copy, Debug)]
pub struct CompareOptions {
    /// Relative threshold, a fraction (0.03 = 3 %).
    pub threshold: f64,
    /// Judge only this tier; both when `None`.
    pub tier: Option<Tier>,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            threshold: DEFAULT_THRESHOLD,
            tier: None,
        }
    }
}

/// The outcome for one benchmark or one percentile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Better by more than the threshold.
    Improved,
    /// Within the threshold.
    Same,
    /// Worse by more than the threshold.
    Regressed,
    /// In the baseline, absent from the results.
    Missing,
    /// In the results, absent from the baseline.
    New,
    /// Present in both but measured differently; see the row's `reason`.
    Incomparable,
}

impl Verdict {
    /// The word used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Improved => "improved",
            Verdict::Same => "same",
            Verdict::Regressed => "regressed",
            Verdict::Missing => "missing",
            Verdict::New => "new",
            Verdict::Incomparable => "incomparable",
        }
    }

    /// Whether this verdict, on a gating row, fails the comparison.
    pub fn fails(self) -> bool {
        matches!(
            self,
            Verdict::Regressed | Verdict::Missing | Verdict::Incomparable
        )
    }
}

/// Which figure of a row was judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// The row's `value`.
    Value,
    /// The row's `ratio` to its reference.
    Ratio,
}

/// One percentile of a row, judged.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TailCheck {
    /// Percentile key, e.g. `"p99"`.
    pub key: String,
    /// Baseline percentile, in the row's `percentile_unit`.
    pub baseline: f64,
    /// Current percentile, rescaled by the reference's drift (see the module docs).
    pub now: f64,
    /// `(now - baseline) / baseline`.
    pub change: f64,
    /// Threshold this percentile was judged by.
    pub threshold: f64,
    /// The outcome.
    pub verdict: Verdict,
}

/// One benchmark, judged.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// Benchmark name.
    pub name: String,
    /// Tier (of the results row, or of the baseline row when missing).
    pub tier: Tier,
    /// The time row's load (`quiet`, `busy:1`, ...); absent on deterministic rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<String>,
    /// Unit of `value` (of the results row, or of the baseline row when missing).
    pub unit: String,
    /// Which direction of `change` is an improvement.
    pub better: Better,
    /// Which figure `baseline` and `now` are.
    pub metric: Metric,
    /// The reference the ratio is to, when `metric` is `ratio`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Baseline figure.
    pub baseline: Option<f64>,
    /// Current figure.
    pub now: Option<f64>,
    /// `(now - baseline) / baseline`, signed; whether up is bad depends on `better`.
    pub change: Option<f64>,
    /// Effective threshold the main figure was judged by.
    pub threshold: f64,
    /// The row's outcome, the worst of the main figure's and the tails'.
    pub verdict: Verdict,
    /// Whether this row's verdict can fail the comparison (time rows without a reference
    /// cannot).
    pub gates: bool,
    /// Percentile checks, time tier only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tails: Vec<TailCheck>,
    /// Why the row is incomparable or missing, or a caveat about the tails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Header facts of one side of the comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Side {
    /// Commit measured.
    pub commit: String,
    /// Date of the run.
    pub date: String,
    /// Build profile of the measuring binary.
    pub profile: String,
    /// Whether it was a `--quick` run.
    pub quick: bool,
    /// CPU model.
    pub cpu_model: String,
    /// rustc version.
    pub rustc: String,
}

impl Side {
    fn of(r: &Results) -> Self {
        Side {
            commit: r.commit.clone(),
            date: r.date.clone(),
            profile: r.profile.clone(),
            quick: r.quick,
            cpu_model: r.machine.cpu_model.clone(),
            rustc: r.machine.rustc.clone(),
        }
    }
}

/// The whole comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// The baseline's header.
    pub baseline: Side,
    /// The results' header.
    pub now: Side,
    /// The threshold given (before widening by spreads).
    pub threshold: f64,
    /// The tier judged, or `None` for both.
    pub tier: Option<Tier>,
    /// Whether tail regressions can fail rows: only when both runs come from the same
    /// machine (see the module docs).
    pub tails_gate: bool,
    /// Differences between the runs worth knowing when reading the verdicts, and the
    /// tiers or loads skipped because the results did not measure them.
    pub notes: Vec<String>,
    /// One row per benchmark: the baseline's order, then rows new in the results.
    pub rows: Vec<Row>,
    /// Whether any gating row failed; `compare` exits 1 when it did.
    pub failed: bool,
}

/// Compares `now` against `baseline`.
pub fn compare(baseline: &Results, now: &Results, options: &CompareOptions) -> Report {
    let in_tier = |b: &&Benchmark| options.tier.is_none_or(|t| b.tier == t);
    let measured = |b: &Benchmark| now.benchmarks.iter().any(|n| same_pass(n, b));
    let tails_gate = same_machine(baseline, now);
    let mut notes = notes(baseline, now);
    let mut skipped: Vec<String> = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    for base in baseline.benchmarks.iter().filter(in_tier) {
        if !measured(base) {
            let pass = pass_name(base);
            if !skipped.contains(&pass) {
                skipped.push(pass);
            }
            continue;
        }
        rows.push(match find(now, base) {
            Some(cur) => judge_pair(baseline, now, base, cur, options.threshold, tails_gate),
            None => unpaired(base, options.threshold, Verdict::Missing),
        });
    }
    rows.extend(
        now.benchmarks
            .iter()
            .filter(in_tier)
            .filter(|cur| find(baseline, cur).is_none())
            .map(|cur| unpaired(cur, options.threshold, Verdict::New)),
    );
    for pass in skipped {
        notes.push(format!(
            "{pass}: in the baseline but not measured in the results at all; not judged"
        ));
    }
    if !tails_gate {
        notes.push(
            "the runs come from different machines: latency tails are shown but only the \
             time tier's same-run ratios are judged"
                .to_owned(),
        );
    }
    let failed = rows.iter().any(|r| r.gates && r.verdict.fails());
    Report {
        baseline: Side::of(baseline),
        now: Side::of(now),
        threshold: options.threshold,
        tier: options.tier,
        tails_gate,
        notes,
        rows,
        failed,
    }
}

/// The row of `run` with `b`'s name, tier and load.
fn find<'a>(run: &'a Results, b: &Benchmark) -> Option<&'a Benchmark> {
    run.benchmarks
        .iter()
        .find(|r| r.name == b.name && same_pass(r, b))
}

/// Whether two rows come from the same kind of pass: the same tier and, in the time tier,
/// the same load.
fn same_pass(a: &Benchmark, b: &Benchmark) -> bool {
    a.tier == b.tier && (a.tier == Tier::Deterministic || a.load() == b.load())
}

/// "deterministic tier" or "time tier (busy:1)".
fn pass_name(b: &Benchmark) -> String {
    match b.tier {
        Tier::Deterministic => "deterministic tier".to_owned(),
        Tier::Time => format!("time tier ({})", b.load()),
    }
}

/// Whether both runs come from one machine, where their latency tails are comparable.
fn same_machine(a: &Results, b: &Results) -> bool {
    let (a, b) = (&a.machine, &b.machine);
    a.hostname == b.hostname && a.cpu_model == b.cpu_model && a.cores == b.cores
}

/// A row present on one side only.
fn unpaired(b: &Benchmark, threshold: f64, verdict: Verdict) -> Row {
    let (baseline, now, reason) = if verdict == Verdict::Missing {
        let reason = "in the baseline but not measured now; refresh the baseline if it was \
                      removed on purpose";
        (Some(b.value), None, Some(reason.to_owned()))
    } else {
        (None, Some(b.value), None)
    };
    Row {
        name: b.name.clone(),
        tier: b.tier,
        load: (b.tier == Tier::Time).then(|| b.load().to_owned()),
        unit: b.unit.clone(),
        better: b.better,
        metric: Metric::Value,
        reference: None,
        baseline,
        now,
        change: None,
        threshold,
        verdict,
        gates: gates(b),
        tails: Vec::new(),
        reason,
    }
}

/// Time rows without a reference are absolute times, informational only.
fn gates(b: &Benchmark) -> bool {
    b.tier == Tier::Deterministic || b.reference.is_some()
}

fn judge_pair(
    base_run: &Results,
    now_run: &Results,
    base: &Benchmark,
    cur: &Benchmark,
    threshold: f64,
    tails_gate: bool,
) -> Row {
    let mut row = unpaired(cur, threshold, Verdict::Same);
    row.baseline = Some(base.value);
    if let Some(reason) = incomparable(base_run, now_run, base, cur) {
        row.verdict = Verdict::Incomparable;
        row.reason = Some(reason);
        return row;
    }
    let (metric, b, n, spreads) = match (base.ratio, cur.ratio, &base.reference, &cur.reference) {
        (Some(b), Some(n), Some(rb), Some(rn)) => {
            let spreads = [rss(base.spread, rb.spread), rss(cur.spread, rn.spread)];
            (Metric::Ratio, b, n, spreads)
        }
        _ => (
            Metric::Value,
            base.value,
            cur.value,
            [base.spread, cur.spread],
        ),
    };
    if cur.tier == Tier::Time {
        row.threshold = threshold.max(SPREAD_FACTOR * rss(spreads[0], spreads[1]));
    }
    row.metric = metric;
    row.reference = cur.reference.as_ref().map(|r| r.name.clone());
    row.baseline = Some(b);
    row.now = Some(n);
    let (change, verdict) = judge(b, n, cur.better, row.threshold);
    row.change = change;
    row.verdict = verdict;
    if cur.tier == Tier::Time {
        judge_tails(base_run, now_run, base, cur, &mut row, tails_gate);
    }
    row
}

/// Why two rows of the same name cannot be judged against each other, if they cannot.
fn incomparable(
    base_run: &Results,
    now_run: &Results,
    base: &Benchmark,
    cur: &Benchmark,
) -> Option<String> {
    let reference = |b: &Benchmark| b.reference.as_ref().map(|r| r.name.clone());
    if base.tier != cur.tier {
        Some(format!("tier changed: {:?} → {:?}", base.tier, cur.tier))
    } else if base.unit != cur.unit {
        Some(format!("unit changed: {} → {}", base.unit, cur.unit))
    } else if base.better != cur.better {
        Some(format!(
            "direction changed: {:?} → {:?}",
            base.better, cur.better
        ))
    } else if reference(base) != reference(cur) {
        Some(format!(
            "reference changed: {:?} → {:?}",
            reference(base),
            reference(cur)
        ))
    } else if cur.tier == Tier::Deterministic && base_run.profile != now_run.profile {
        Some(format!(
            "instruction counts from a {} build cannot be judged against a {} build",
            now_run.profile, base_run.profile
        ))
    } else {
        None
    }
}

/// Judges one figure; returns the signed relative change and the verdict.
fn judge(base: f64, now: f64, better: Better, threshold: f64) -> (Option<f64>, Verdict) {
    if !(base.is_finite() && now.is_finite()) || base <= 0.0 {
        return (None, Verdict::Incomparable);
    }
    let change = (now - base) / base;
    let worse = match better {
        Better::Lower => change,
        Better::Higher => -change,
    };
    let verdict = if worse > threshold {
        Verdict::Regressed
    } else if worse < -threshold {
        Verdict::Improved
    } else {
        Verdict::Same
    };
    (Some(change), verdict)
}

/// Compares the [`JUDGED_PERCENTILES`] present on both sides. When `gate` is set (both runs
/// on one machine), a tail regression makes a row whose main figure held regress; an
/// improved row stays improved, with the tail named in its reason.
fn judge_tails(
    base_run: &Results,
    now_run: &Results,
    base: &Benchmark,
    cur: &Benchmark,
    row: &mut Row,
    gate: bool,
) {
    let (Some(bp), Some(np)) = (&base.percentiles, &cur.percentiles) else {
        return;
    };
    if base.percentile_unit != cur.percentile_unit {
        row.reason = Some(format!(
            "percentile unit changed ({:?} → {:?}); tails not judged",
            base.percentile_unit, cur.percentile_unit
        ));
        return;
    }
    let drift = drift(base_run, now_run, base, cur);
    for (key, factor) in JUDGED_PERCENTILES {
        let (Some(&b), Some(&n)) = (bp.get(key), np.get(key)) else {
            continue;
        };
        let now = n * drift;
        let threshold = row.threshold * factor;
        let (Some(change), verdict) = judge(b, now, Better::Lower, threshold) else {
            continue;
        };
        row.tails.push(TailCheck {
            key: key.to_owned(),
            baseline: b,
            now,
            change,
            threshold,
            verdict,
        });
    }
    let worse: Vec<&str> = row
        .tails
        .iter()
        .filter(|t| t.verdict == Verdict::Regressed)
        .map(|t| t.key.as_str())
        .collect();
    if worse.is_empty() {
        return;
    }
    let keys = worse.join(", ");
    if !gate {
        row.reason = Some(format!(
            "the {keys} tail moved, measured on another machine (not judged)"
        ));
        return;
    }
    row.reason = Some(match row.verdict {
        Verdict::Same => {
            row.verdict = Verdict::Regressed;
            format!("the median held but the {keys} tail regressed")
        }
        Verdict::Improved => format!("the {keys} tail regressed (the row improved)"),
        _ => format!("the {keys} tail regressed too"),
    });
}

/// How much faster the reference ran now than in the baseline (2.0 = twice as fast), so that
/// multiplying a current latency by it expresses it at the baseline's machine speed. 1.0
/// when the row has no reference or a side lacks the reference row.
fn drift(base_run: &Results, now_run: &Results, base: &Benchmark, cur: &Benchmark) -> f64 {
    let Some(name) = cur.reference.as_ref().map(|r| r.name.as_str()) else {
        return 1.0;
    };
    let (Some(b), Some(n)) = (
        base_run.get_at(name, base.load()),
        now_run.get_at(name, cur.load()),
    ) else {
        return 1.0;
    };
    if !(b.value > 0.0 && n.value > 0.0) {
        return 1.0;
    }
    match n.better {
        Better::Lower => b.value / n.value,
        Better::Higher => n.value / b.value,
    }
}

/// Root of the sum of squares: the spread of a quotient or difference of two independent
/// figures, to first order.
fn rss(a: f64, b: f64) -> f64 {
    a.hypot(b)
}

fn notes(baseline: &Results, now: &Results) -> Vec<String> {
    let (b, n) = (&baseline.machine, &now.machine);
    let mut notes = Vec::new();
    let mut differs = |what: &str, old: &str, new: &str| {
        if old != new {
            notes.push(format!("{what} differs: baseline {old}, now {new}"));
        }
    };
    differs(
        "schema version",
        &baseline.schema_version.to_string(),
        &now.schema_version.to_string(),
    );
    differs("build profile", &baseline.profile, &now.profile);
    differs("host", &b.hostname, &n.hostname);
    differs("rustc", &b.rustc, &n.rustc);
    differs("CPU model", &b.cpu_model, &n.cpu_model);
    differs("cores", &b.cores.to_string(), &n.cores.to_string());
    differs("quick", &baseline.quick.to_string(), &now.quick.to_string());
    notes
}
