//! `compare` on synthetic results: each kind of change gets the right verdict, and the
//! binary the right exit status.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use cobench::compare::{CompareOptions, Verdict, compare};
use cobench::schema::{Benchmark, Better, Machine, Reference, Results, SCHEMA_VERSION, Tier};

fn results(benchmarks: Vec<Benchmark>) -> Results {
    Results {
        schema_version: SCHEMA_VERSION,
        machine: Machine {
            hostname: "test".into(),
            cpu_model: "Test CPU".into(),
            cores: 2,
            os: "Linux 6.18 x86_64".into(),
            rustc: "rustc 1.95.0".into(),
        },
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
        date: "2026-01-01T00:00:00Z".into(),
        quick: true,
        profile: "release".into(),
        loads: Vec::new(),
        benchmarks,
    }
}

fn count(name: &str, value: f64) -> Benchmark {
    Benchmark {
        name: name.into(),
        tier: Tier::Deterministic,
        value,
        unit: "instructions/op".into(),
        better: Better::Lower,
        samples: 3,
        spread: 0.0,
        reference: None,
        ratio: None,
        percentiles: None,
        percentile_unit: None,
        load: None,
        min: None,
        max: None,
        other_references: Vec::new(),
        metrics: Default::default(),
    }
}

/// A time row with value `ratio × 100` against a reference of value 100 and the given
/// spread on both, with latency percentiles scaled from a base curve by `tail`.
fn timed(name: &str, ratio: f64, spread: f64, tail: f64) -> Benchmark {
    let percentiles: BTreeMap<String, f64> = [
        ("p50", 100.0),
        ("p90", 120.0),
        ("p99", 200.0),
        ("p99.9", 400.0),
        ("max", 900.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v * if k == "p50" { 1.0 } else { tail }))
    .collect();
    Benchmark {
        name: name.into(),
        tier: Tier::Time,
        value: 100.0 * ratio,
        unit: "ns/round-trip".into(),
        better: Better::Lower,
        samples: 5,
        spread,
        reference: Some(Reference {
            name: "floor".into(),
            value: 100.0,
            spread,
        }),
        ratio: Some(ratio),
        percentiles: Some(percentiles),
        percentile_unit: Some("ns".into()),
        load: None,
        min: None,
        max: None,
        other_references: Vec::new(),
        metrics: Default::default(),
    }
}

fn floor(value: f64, spread: f64) -> Benchmark {
    Benchmark {
        name: "floor".into(),
        tier: Tier::Time,
        value,
        unit: "ns/round-trip".into(),
        better: Better::Lower,
        samples: 5,
        spread,
        reference: None,
        ratio: None,
        percentiles: None,
        percentile_unit: None,
        load: None,
        min: None,
        max: None,
        other_references: Vec::new(),
        metrics: Default::default(),
    }
}

fn verdict_of(baseline: &Results, now: &Results, name: &str) -> Verdict {
    let report = compare(baseline, now, &CompareOptions::default());
    report
        .rows
        .iter()
        .find(|r| r.name == name)
        .map(|r| r.verdict)
        .unwrap()
}

#[test]
fn improvement_within_and_beyond_threshold() {
    let base = results(vec![
        count("a", 100.0),
        count("b", 100.0),
        count("c", 100.0),
    ]);
    let now = results(vec![count("a", 90.0), count("b", 102.9), count("c", 103.1)]);
    let report = compare(&base, &now, &CompareOptions::default());
    let verdicts: Vec<_> = report.rows.iter().map(|r| r.verdict).collect();
    assert_eq!(
        verdicts,
        [Verdict::Improved, Verdict::Same, Verdict::Regressed]
    );
    assert!(report.failed);
    assert!((report.rows[2].change.unwrap() - 0.031).abs() < 1e-9);
}

#[test]
fn threshold_option_moves_the_line() {
    let base = results(vec![count("a", 100.0)]);
    let now = results(vec![count("a", 105.0)]);
    let strict = CompareOptions::default();
    let loose = CompareOptions {
        threshold: 0.10,
        ..strict
    };
    assert!(compare(&base, &now, &strict).failed);
    assert!(!compare(&base, &now, &loose).failed);
}

#[test]
fn missing_new_and_changed_unit() {
    let mut changed = count("unit", 100.0);
    changed.unit = "instructions/coroutine".into();
    let base = results(vec![count("gone", 100.0), count("unit", 100.0)]);
    let now = results(vec![changed, count("fresh", 100.0)]);
    let report = compare(&base, &now, &CompareOptions::default());
    let got: Vec<_> = report
        .rows
        .iter()
        .map(|r| (r.name.as_str(), r.verdict))
        .collect();
    assert_eq!(
        got,
        [
            ("gone", Verdict::Missing),
            ("unit", Verdict::Incomparable),
            ("fresh", Verdict::New)
        ]
    );
    assert!(
        report.rows[1]
            .reason
            .as_deref()
            .unwrap()
            .contains("unit changed")
    );
    assert!(report.failed);

    let only_new = compare(
        &results(vec![]),
        &results(vec![count("fresh", 1.0)]),
        &CompareOptions::default(),
    );
    assert!(
        !only_new.failed,
        "a new benchmark alone must not fail the gate"
    );
}

#[test]
fn deterministic_rows_are_not_judged_across_build_profiles() {
    let base = results(vec![count("a", 100.0)]);
    let mut now = results(vec![count("a", 100.0)]);
    now.profile = "debug".into();
    assert_eq!(verdict_of(&base, &now, "a"), Verdict::Incomparable);
}

#[test]
fn doctored_baseline_twenty_percent_lower_fails() {
    let now = results(vec![count("switch", 30.0), count("lifecycle", 60.0)]);
    let mut doctored = now.clone();
    for b in &mut doctored.benchmarks {
        b.value *= 0.8;
    }
    assert!(compare(&doctored, &now, &CompareOptions::default()).failed);
    assert!(!compare(&now, &now, &CompareOptions::default()).failed);
}

#[test]
fn higher_is_better_rates_regress_downwards() {
    let mut base_row = count("rate", 1000.0);
    base_row.better = Better::Higher;
    base_row.unit = "ops/s".into();
    let mut now_row = base_row.clone();
    now_row.value = 900.0;
    assert_eq!(
        verdict_of(
            &results(vec![base_row.clone()]),
            &results(vec![now_row.clone()]),
            "rate"
        ),
        Verdict::Regressed
    );
    now_row.value = 1100.0;
    assert_eq!(
        verdict_of(&results(vec![base_row]), &results(vec![now_row]), "rate"),
        Verdict::Improved
    );
}

#[test]
fn time_tier_threshold_widens_with_spread() {
    // An 8 % worse ratio: within 2 × √(7.1 %² + 7.1 %²) ≈ 20 % when noisy, beyond 3 % when quiet.
    let noisy_base = results(vec![floor(100.0, 0.05), timed("w", 1.0, 0.05, 1.0)]);
    let noisy_now = results(vec![floor(100.0, 0.05), timed("w", 1.08, 0.05, 1.0)]);
    let report = compare(&noisy_base, &noisy_now, &CompareOptions::default());
    let row = report.rows.iter().find(|r| r.name == "w").unwrap();
    assert_eq!(row.verdict, Verdict::Same);
    assert!(
        (row.threshold - 0.2).abs() < 1e-9,
        "threshold = {}",
        row.threshold
    );

    let quiet_base = results(vec![floor(100.0, 0.001), timed("w", 1.0, 0.001, 1.0)]);
    let quiet_now = results(vec![floor(100.0, 0.001), timed("w", 1.08, 0.001, 1.0)]);
    assert_eq!(verdict_of(&quiet_base, &quiet_now, "w"), Verdict::Regressed);
}

#[test]
fn a_tail_regression_fails_even_when_the_median_holds() {
    let base = results(vec![floor(100.0, 0.001), timed("w", 1.0, 0.001, 1.0)]);
    let now = results(vec![floor(100.0, 0.001), timed("w", 1.0, 0.001, 1.5)]);
    let report = compare(&base, &now, &CompareOptions::default());
    let row = report.rows.iter().find(|r| r.name == "w").unwrap();
    assert_eq!(row.verdict, Verdict::Regressed);
    let p99 = row.tails.iter().find(|t| t.key == "p99").unwrap();
    assert_eq!(p99.verdict, Verdict::Regressed);
    assert!(report.failed);
}

#[test]
fn tails_are_rescaled_by_the_reference_drift() {
    // The whole machine is 1.5× slower now: the reference, the row and its tails all moved
    // together, so nothing regressed.
    let base = results(vec![floor(100.0, 0.001), timed("w", 1.0, 0.001, 1.0)]);
    let mut slow = timed("w", 1.0, 0.001, 1.5);
    if let Some(p) = slow.percentiles.as_mut() {
        p.insert("p50".into(), 150.0);
    }
    slow.value = 150.0;
    slow.reference.as_mut().unwrap().value = 150.0;
    let now = results(vec![floor(150.0, 0.001), slow]);
    let report = compare(&base, &now, &CompareOptions::default());
    let row = report.rows.iter().find(|r| r.name == "w").unwrap();
    assert_eq!(row.verdict, Verdict::Same, "{row:?}");
    // The reference row itself regressed, but it is absolute time: information only.
    let reference = report.rows.iter().find(|r| r.name == "floor").unwrap();
    assert_eq!(reference.verdict, Verdict::Regressed);
    assert!(!reference.gates);
    assert!(!report.failed);
}

#[test]
fn tier_filter_ignores_the_other_tier() {
    let base = results(vec![
        count("a", 100.0),
        floor(100.0, 0.0),
        timed("w", 1.0, 0.0, 1.0),
    ]);
    let now = results(vec![
        count("a", 100.0),
        floor(100.0, 0.0),
        timed("w", 2.0, 0.0, 1.0),
    ]);
    let deterministic = CompareOptions {
        tier: Some(Tier::Deterministic),
        ..Default::default()
    };
    let report = compare(&base, &now, &deterministic);
    assert_eq!(report.rows.len(), 1);
    assert!(!report.failed);
    assert!(compare(&base, &now, &CompareOptions::default()).failed);
}

/// Writes `base` and `now` to files and runs `cobench compare` on them.
fn run_compare(case: &str, base: &Results, now: &Results, extra: &[&str]) -> (i32, String) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("compare-{case}"));
    std::fs::create_dir_all(&dir).unwrap();
    let (b, n) = (dir.join("baseline.json"), dir.join("now.json"));
    base.save(&b).unwrap();
    now.save(&n).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cobench"))
        .arg("compare")
        .args([&b, &n])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[test]
fn binary_exit_status_follows_the_verdicts() {
    let base = results(vec![count("a", 100.0), count("b", 100.0)]);

    let (code, md) = run_compare(
        "improved",
        &base,
        &results(vec![count("a", 80.0), count("b", 100.0)]),
        &[],
    );
    assert_eq!(code, 0, "{md}");
    assert!(
        md.contains("| a | deterministic |") && md.contains("improved"),
        "{md}"
    );
    assert!(md.contains("**Result: pass**"), "{md}");

    let (code, md) = run_compare(
        "within",
        &base,
        &results(vec![count("a", 102.0), count("b", 100.0)]),
        &[],
    );
    assert_eq!(code, 0, "{md}");

    let (code, md) = run_compare(
        "beyond",
        &base,
        &results(vec![count("a", 104.0), count("b", 100.0)]),
        &[],
    );
    assert_eq!(code, 1, "{md}");
    assert!(
        md.contains("**regressed**") && md.contains("**Result: FAIL**"),
        "{md}"
    );

    let (code, _) = run_compare(
        "threshold",
        &base,
        &results(vec![count("a", 104.0), count("b", 100.0)]),
        &["--threshold", "5%"],
    );
    assert_eq!(code, 0);

    let (code, md) = run_compare("missing", &base, &results(vec![count("a", 100.0)]), &[]);
    assert_eq!(code, 1, "{md}");
    assert!(md.contains("missing"), "{md}");

    let mut unit = count("b", 100.0);
    unit.unit = "ns/op".into();
    let (code, json) = run_compare(
        "unit",
        &base,
        &results(vec![count("a", 100.0), unit]),
        &["--format", "json"],
    );
    assert_eq!(code, 1, "{json}");
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["failed"], true);
    assert_eq!(report["rows"][1]["verdict"], "incomparable");
}

#[test]
fn binary_reports_tool_errors_with_status_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_cobench"))
        .args(["compare", "/nonexistent/base.json", "/nonexistent/now.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/base.json"));
}
