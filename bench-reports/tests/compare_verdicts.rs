//! `compare` on synthetic results: each kind of change gets the right verdict, and the
//! binary the right exit status.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use cobench::compare::{CompareOptions, Metric, Row, Verdict, compare};
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
        pin_threads: None,
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

/// `r` as measured on another machine: another host and CPU.
fn elsewhere(mut r: Results) -> Results {
    r.machine.hostname = "elsewhere".into();
    r.machine.cpu_model = "Other CPU".into();
    r
}

/// `row` measured under `load`.
fn under(mut row: Benchmark, load: &str) -> Benchmark {
    row.load = Some(load.into());
    row
}

fn row<'a>(report: &'a cobench::compare::Report, name: &str, load: &str) -> &'a Row {
    report
        .rows
        .iter()
        .find(|r| r.name == name && r.load.as_deref() == Some(load))
        .unwrap_or_else(|| panic!("no row {name} ({load}) in {report:?}"))
}

#[test]
fn the_time_tier_judges_ratios_not_absolute_times() {
    // Another machine, three times slower across the board: the row's absolute time is
    // +200 %, its ratio to the same-run reference unchanged.
    let base = results(vec![floor(100.0, 0.01), timed("w", 2.0, 0.01, 1.0)]);
    let mut slow = timed("w", 2.0, 0.01, 1.0);
    slow.value = 600.0;
    slow.reference.as_mut().unwrap().value = 300.0;
    let now = elsewhere(results(vec![floor(300.0, 0.01), slow]));
    let report = compare(&base, &now, &CompareOptions::default());
    let w = row(&report, "w", "quiet");
    assert_eq!(
        (w.metric, w.verdict),
        (Metric::Ratio, Verdict::Same),
        "{w:?}"
    );
    assert!(!report.failed);
}

#[test]
fn a_worse_ratio_fails_and_says_which_tier_row_and_ratio() {
    let base = results(vec![floor(100.0, 0.01), timed("w", 2.0, 0.01, 1.0)]);
    let now = elsewhere(results(vec![
        floor(100.0, 0.01),
        timed("w", 3.0, 0.01, 1.0),
    ]));
    let report = compare(&base, &now, &CompareOptions::default());
    assert_eq!(row(&report, "w", "quiet").verdict, Verdict::Regressed);
    assert!(report.failed);

    let (code, md) = run_compare("ratio-regressed", &base, &now, &[]);
    assert_eq!(code, 1, "{md}");
    assert!(md.contains("- time tier: FAIL"), "{md}");
    assert!(
        md.contains(
            "`w` (time, quiet) regressed: ratio to floor 2.00 → 3.00 (+50.0%; lower is better"
        ),
        "{md}"
    );
    assert!(md.contains("**Result: FAIL** in the time tier"), "{md}");
}

#[test]
fn an_improvement_never_fails_whatever_its_tails_did() {
    // The issue-16 case: much faster in median, a far worse p99, measured elsewhere.
    let base = results(vec![floor(100.0, 0.01), timed("w", 2.0, 0.01, 1.0)]);
    let now = elsewhere(results(vec![
        floor(100.0, 0.01),
        timed("w", 0.6, 0.01, 3.0),
    ]));
    let report = compare(&base, &now, &CompareOptions::default());
    let w = row(&report, "w", "quiet");
    assert_eq!(w.verdict, Verdict::Improved, "{w:?}");
    assert!(!report.failed);
    let (code, md) = run_compare("improved-elsewhere", &base, &now, &[]);
    assert_eq!(code, 0, "{md}");
    assert!(md.contains("**Result: pass**"), "{md}");

    // On the same machine the tail is judged, but still cannot fail an improved row.
    let same = results(vec![floor(100.0, 0.01), timed("w", 0.6, 0.01, 3.0)]);
    let report = compare(&base, &same, &CompareOptions::default());
    let w = row(&report, "w", "quiet");
    assert_eq!(w.verdict, Verdict::Improved, "{w:?}");
    assert!(
        w.reason.as_deref().unwrap().contains("tail regressed"),
        "{w:?}"
    );
    assert!(!report.failed);

    // Nor can a deterministic improvement fail.
    let report = compare(
        &results(vec![count("a", 100.0)]),
        &elsewhere(results(vec![count("a", 50.0)])),
        &CompareOptions::default(),
    );
    assert_eq!(report.rows[0].verdict, Verdict::Improved);
    assert!(!report.failed);
}

#[test]
fn tails_from_another_machine_are_shown_not_judged() {
    // As `a_tail_regression_fails_even_when_the_median_holds`, but measured elsewhere.
    let base = results(vec![floor(100.0, 0.001), timed("w", 1.0, 0.001, 1.0)]);
    let now = elsewhere(results(vec![
        floor(100.0, 0.001),
        timed("w", 1.0, 0.001, 1.5),
    ]));
    let report = compare(&base, &now, &CompareOptions::default());
    let w = row(&report, "w", "quiet");
    assert_eq!(w.verdict, Verdict::Same, "{w:?}");
    assert!(w.tails.iter().any(|t| t.verdict == Verdict::Regressed));
    assert!(w.reason.as_deref().unwrap().contains("not judged"), "{w:?}");
    assert!(!report.tails_gate && !report.failed);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("different machines"))
    );
}

#[test]
fn each_load_is_judged_against_the_same_load() {
    let base = results(vec![
        floor(100.0, 0.01),
        timed("w", 2.0, 0.01, 1.0),
        under(floor(100.0, 0.01), "busy:1"),
        under(timed("w", 2.0, 0.01, 1.0), "busy:1"),
    ]);
    let now = results(vec![
        floor(100.0, 0.01),
        timed("w", 2.0, 0.01, 1.0),
        under(floor(100.0, 0.01), "busy:1"),
        under(timed("w", 5.0, 0.01, 1.0), "busy:1"),
    ]);
    let report = compare(&base, &now, &CompareOptions::default());
    assert_eq!(row(&report, "w", "quiet").verdict, Verdict::Same);
    assert_eq!(row(&report, "w", "busy:1").verdict, Verdict::Regressed);
    assert!(report.failed);
    let (code, md) = run_compare("loaded-regressed", &base, &now, &[]);
    assert_eq!(code, 1, "{md}");
    assert!(
        md.contains("`w` (time, busy:1) regressed: ratio to floor 2.00 → 5.00"),
        "{md}"
    );
}

#[test]
fn a_tier_or_load_not_measured_is_skipped_not_failed() {
    let base = results(vec![
        count("a", 100.0),
        floor(100.0, 0.01),
        timed("w", 2.0, 0.01, 1.0),
        under(floor(100.0, 0.01), "busy:1"),
        under(timed("w", 2.0, 0.01, 1.0), "busy:1"),
    ]);
    // `cobench run --tier time` (no valgrind), quiet only.
    let now = results(vec![floor(100.0, 0.01), timed("w", 2.0, 0.01, 1.0)]);
    let report = compare(&base, &now, &CompareOptions::default());
    assert!(!report.failed, "{report:?}");
    assert_eq!(report.rows.len(), 2);
    for pass in ["deterministic tier", "time tier (busy:1)"] {
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.starts_with(pass) && n.contains("not judged")),
            "{pass}: {:?}",
            report.notes
        );
    }
    // A row dropped from a pass that did run still fails.
    let now = results(vec![count("a", 100.0), floor(100.0, 0.01)]);
    let report = compare(&base, &now, &CompareOptions::default());
    assert_eq!(row(&report, "w", "quiet").verdict, Verdict::Missing);
    assert!(report.failed);
}

#[test]
fn a_newcomer_comparing_against_the_committed_baseline_passes_on_an_improvement() {
    // The committed baseline, and a run of it on another machine where every time row got
    // 71 % better in median against its reference and its tails three times worse.
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("baseline.json");
    let base = Results::load(&path).unwrap();
    let mut now = elsewhere(base.clone());
    for b in now.benchmarks.iter_mut().filter(|b| b.reference.is_some()) {
        let better = match b.better {
            Better::Lower => 0.29,
            Better::Higher => 1.0 / 0.29,
        };
        b.value *= better;
        b.ratio = b.ratio.map(|r| r * better);
        for p in b.percentiles.iter_mut().flat_map(|p| p.values_mut()) {
            *p *= 3.0;
        }
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compare-newcomer");
    std::fs::create_dir_all(&dir).unwrap();
    let now_path = dir.join("now.json");
    now.save(&now_path).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cobench"))
        .arg("compare")
        .args([&path, &now_path])
        .output()
        .unwrap();
    let md = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{md}");
    assert!(
        md.contains("**Result: pass**") && md.contains("improved"),
        "{md}"
    );
}

#[test]
fn a_version_1_file_still_loads_as_quiet() {
    let v1 = r#"{"schema_version": 1,
        "machine": {"hostname": "h", "cpu_model": "c", "cores": 2, "os": "o", "rustc": "r"},
        "commit": "unknown", "date": "2026-01-01T00:00:00Z", "quick": true,
        "profile": "release",
        "benchmarks": [{"name": "w", "tier": "time", "value": 2.0, "unit": "ns",
                        "better": "lower", "samples": 5, "spread": 0.0,
                        "reference": {"name": "f", "value": 1.0, "spread": 0.0},
                        "ratio": 2.0}]}"#;
    let r: Results = serde_json::from_str(v1).unwrap();
    assert_eq!(r.benchmarks[0].load(), "quiet");
    assert_eq!(r.time_loads(), ["quiet"]);
    assert!(r.get_at("w", "quiet").is_some());
}
