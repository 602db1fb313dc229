//! `cobench report` over a short synthetic history: one trend chart per benchmark, one
//! percentile chart per benchmark with percentiles, and an index that links them all.

use std::path::PathBuf;
use std::process::Command;

use cobench::schema::{Benchmark, Better, Machine, Reference, Results, SCHEMA_VERSION, Tier};

fn results(day: u32, switch: f64, p99: f64) -> Results {
    let percentiles = [
        ("p50", 160.0),
        ("p90", 180.0),
        ("p99", p99),
        ("p99.9", 2.0 * p99),
        ("max", 9000.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Results {
        schema_version: SCHEMA_VERSION,
        machine: Machine {
            hostname: "h".into(),
            cpu_model: "Test CPU".into(),
            cores: 2,
            os: "Linux".into(),
            rustc: "rustc 1.95.0".into(),
        },
        commit: format!("{day:040x}"),
        date: format!("2026-01-{day:02}T00:00:00Z"),
        quick: false,
        profile: "release".into(),
        loads: Vec::new(),
        pin_threads: None,
        benchmarks: vec![
            Benchmark {
                name: "raw_switch".into(),
                tier: Tier::Deterministic,
                value: switch,
                unit: "instructions/round-trip".into(),
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
            },
            Benchmark {
                name: "w3_pingpong".into(),
                tier: Tier::Time,
                value: 400.0,
                unit: "ns/round-trip".into(),
                better: Better::Lower,
                samples: 5,
                spread: 0.02,
                reference: Some(Reference {
                    name: "floor".into(),
                    value: 160.0,
                    spread: 0.01,
                }),
                ratio: Some(2.5),
                percentiles: Some(percentiles),
                percentile_unit: Some("ns".into()),
                load: None,
                min: None,
                max: None,
                other_references: Vec::new(),
                metrics: Default::default(),
            },
        ],
    }
}

/// Runs `cobench report FILES --out OUT`, which must succeed.
fn report(files: &[PathBuf], out: &std::path::Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_cobench"))
        .arg("report")
        .args(files)
        .arg("--out")
        .arg(out)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn charts_and_index_for_a_history() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report");
    let out = dir.join("out");
    let _ = std::fs::remove_dir_all(&dir);
    let files: Vec<PathBuf> = [(1, 30.0, 300.0), (2, 31.0, 350.0), (3, 29.0, 320.0)]
        .into_iter()
        .map(|(day, switch, p99)| {
            let path = dir.join(format!("r{day}.json"));
            results(day, switch, p99).save(&path).unwrap();
            path
        })
        .collect();
    report(&files, &out);

    let index = std::fs::read_to_string(out.join("index.md")).unwrap();
    for svg in [
        "trend-raw_switch.svg",
        "trend-w3_pingpong.svg",
        "latency-w3_pingpong.svg",
    ] {
        assert!(
            index.contains(&format!("]({svg})")),
            "{svg} not linked:\n{index}"
        );
        let text = std::fs::read_to_string(out.join(svg)).unwrap();
        assert!(
            text.starts_with("<svg") && text.trim_end().ends_with("</svg>"),
            "{svg}"
        );
        assert!(
            text.contains("<polyline") || text.contains("<path"),
            "{svg} has no line"
        );
        assert!(text.contains("<text"), "{svg} has no labels");
    }
    assert!(!out.join("latency-raw_switch.svg").exists());
    assert!(
        index.contains("| w3_pingpong | time | 400.0 | ns/round-trip | 2.50 | floor |"),
        "{index}"
    );
}

/// The text nodes of an SVG, in order.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = t.split_once('>')?.1;
            Some(body.split_once("</text>")?.0.trim().to_owned())
        })
        .collect()
}

#[test]
fn two_runs_of_one_commit_are_told_apart_and_axis_labels_never_repeat() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-same-commit");
    let out = dir.join("out");
    let _ = std::fs::remove_dir_all(&dir);
    // Same commit, same minute; tails spanning four decades.
    let files: Vec<PathBuf> = [300.0, 3_000_000.0]
        .into_iter()
        .enumerate()
        .map(|(i, p99)| {
            let mut r = results(1, 30.0, p99);
            r.date = "2026-01-01T10:20:00Z".into();
            let path = dir.join(format!("same{i}.json"));
            r.save(&path).unwrap();
            path
        })
        .collect();
    report(&files, &out);

    let svg = std::fs::read_to_string(out.join("latency-w3_pingpong.svg")).unwrap();
    let texts = texts(&svg);
    let label = format!("{} 01-01 10:20", &format!("{:040x}", 1)[..7]);
    for i in 0..2 {
        assert!(
            texts.contains(&format!("{label} #{i}")),
            "legend {i}: {texts:?}"
        );
    }
    // Y tick labels: SI-lettered numbers, one notation, none twice.
    let ticks: Vec<&String> = texts
        .iter()
        .filter(|t| {
            let digits = t.trim_end_matches(['k', 'M', 'G']);
            !digits.is_empty() && digits.parse::<f64>().is_ok()
        })
        .collect();
    assert!(ticks.len() >= 4, "{texts:?}");
    let mut unique = ticks.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ticks.len(), "repeated y labels: {ticks:?}");
    assert!(ticks.len() <= 8, "crowded y axis: {ticks:?}");
    assert!(
        ticks.iter().all(|t| !t.contains('.')),
        "a 1-2-5 log axis needs no decimals: {ticks:?}"
    );
}
