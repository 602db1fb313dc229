//! The renderers on synthetic outcomes: the JSON document has the documented fields, the
//! human report shows every table, and `.hgrm` files parse back as HdrHistogram percentile
//! distributions.

mod common;

use std::fs;
use std::time::Duration;

use costress::outcome::{
    Check, ContextSnapshot, HistogramKind, Outcome, PoolSnapshot, Throughput, new_histogram,
};
use costress::report::{hgrm, human, json};
use costress::settings::Settings;
use serde_json::Value;

/// An outcome with one passed and one failed check, two histograms, two contexts and a pool.
fn synthetic() -> Outcome {
    let mut wait = new_histogram();
    for value in 1..=10_000u64 {
        wait.record(value * 100).unwrap(); // 100 ns .. 1 ms, uniform
    }
    let mut oversleep = new_histogram();
    oversleep.record_n(50_000, 99).unwrap();
    oversleep.record(5_000_000).unwrap();
    Outcome::new(
        "mixed",
        Throughput {
            ops: 1_000_000,
            elapsed: Duration::from_secs(2),
        },
    )
    .with_check(Check::equal("counter == increments", 500, 500))
    .with_check(Check::equal("items consumed once", 10, 9))
    .with_histogram("mutex lock wait", HistogramKind::LockWait, wait)
    .with_histogram("oversleep", HistogramKind::Oversleep, oversleep)
    .with_histogram("idle", HistogramKind::WakeIo, new_histogram())
    .with_contexts_and_pool()
}

trait WithCounters {
    fn with_contexts_and_pool(self) -> Self;
}

impl WithCounters for Outcome {
    fn with_contexts_and_pool(mut self) -> Self {
        self.contexts = vec![
            ContextSnapshot {
                context: 0,
                switches: 1_000,
                steals: 3,
                hand_offs: 40,
                parks: 5,
                ..ContextSnapshot::default()
            },
            ContextSnapshot {
                context: 1,
                switches: 2_000,
                steals: 4,
                hand_offs: 50,
                parks: 6,
                ..ContextSnapshot::default()
            },
        ];
        self.pool = Some(PoolSnapshot {
            max_size: 128,
            pooled: 17,
            hits: 990,
            misses: 10,
            allocated: 27,
            ..PoolSnapshot::default()
        });
        self
    }
}

fn field<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .fold(value, |v, key| match key.parse::<usize>() {
            Ok(index) => &v[index],
            Err(_) => v
                .get(key)
                .unwrap_or_else(|| panic!("no field {key} in {path}: {v}")),
        })
}

#[test]
fn json_has_the_documented_fields() {
    let passing = Outcome::new(
        "mutex",
        Throughput {
            ops: 10,
            elapsed: Duration::from_millis(10),
        },
    )
    .with_check(Check::equal("counter == increments", 10, 10));
    let text = json::render(&Settings::default(), &[synthetic(), passing], false);
    let doc: Value = serde_json::from_str(&text).expect("the report is JSON");

    assert_eq!(field(&doc, "schema"), json::SCHEMA);
    assert_eq!(field(&doc, "costress_version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(field(&doc, "passed"), false);
    assert!(field(&doc, "config_file").is_null());
    assert_eq!(field(&doc, "config.runtime.stack_size"), "1MiB");
    assert_eq!(field(&doc, "config.runtime.threads"), "auto");
    assert_eq!(field(&doc, "config.stress.duration"), "10s");

    let mixed = field(&doc, "workloads.0");
    assert_eq!(field(mixed, "name"), "mixed");
    assert_eq!(field(mixed, "passed"), false);
    assert_eq!(field(mixed, "throughput.ops"), 1_000_000);
    assert_eq!(field(mixed, "throughput.elapsed_ns"), 2_000_000_000u64);
    assert_eq!(field(mixed, "throughput.ops_per_s"), 500_000.0);
    let failed = field(mixed, "checks.1");
    for (key, expected) in [
        ("passed", Value::from(false)),
        ("what", "items consumed once".into()),
        ("expected", 10.into()),
        ("actual", 9.into()),
    ] {
        assert_eq!(field(failed, key), &expected, "checks.1.{key}");
    }

    let wait = field(mixed, "histograms.0");
    assert_eq!(field(wait, "name"), "mutex lock wait");
    assert_eq!(field(wait, "kind"), "lock_wait");
    assert_eq!(field(wait, "unit"), "ns");
    assert_eq!(field(wait, "count"), 10_000);
    let stat = |key| {
        field(wait, key)
            .as_f64()
            .unwrap_or_else(|| panic!("{key} is not a number"))
    };
    assert!((stat("min") - 100.0).abs() < 1.0);
    assert!(
        (stat("p50") / 500_000.0 - 1.0).abs() < 0.01,
        "p50 = {}",
        stat("p50")
    );
    assert!((stat("p90") / 900_000.0 - 1.0).abs() < 0.01);
    assert!((stat("p99") / 990_000.0 - 1.0).abs() < 0.01);
    assert!((stat("p999") / 999_000.0 - 1.0).abs() < 0.01);
    assert!((stat("max") / 1_000_000.0 - 1.0).abs() < 0.01);
    assert!((stat("mean") / 500_050.0 - 1.0).abs() < 0.01);
    assert!(stat("stdev") > 0.0);
    let empty = field(mixed, "histograms.2");
    assert_eq!(field(empty, "count"), 0);
    for key in ["min", "mean", "stdev", "p50", "p90", "p99", "p999", "max"] {
        assert!(
            field(empty, key).is_null(),
            "empty histogram: {key} should be null"
        );
    }

    for (key, expected) in [
        ("context", 1),
        ("switches", 2_000),
        ("steals", 4),
        ("hand_offs", 50),
        ("parks", 6),
    ] {
        assert_eq!(
            field(mixed, &format!("contexts.1.{key}")),
            expected,
            "contexts.1.{key}"
        );
    }
    for (key, expected) in [
        ("max_size", 128),
        ("pooled", 17),
        ("hits", 990),
        ("misses", 10),
        ("allocated", 27),
    ] {
        assert_eq!(field(mixed, &format!("pool.{key}")), expected, "pool.{key}");
    }

    let mutex = field(&doc, "workloads.1");
    assert_eq!(field(mutex, "passed"), true);
    assert_eq!(field(mutex, "contexts"), &Value::Array(vec![]));
    assert!(field(mutex, "pool").is_null());
}

#[test]
fn human_report_shows_every_table() {
    let text = human::render(&Settings::default(), &[synthetic()], false);
    for needle in [
        "== mixed: FAILED ==",
        "throughput  1,000,000 ops in 2.00 s = 500,000 ops/s",
        "ok     counter == increments: expected 500, got 500",
        "FAILED items consumed once: expected 10, got 9 (off by -1)",
        "histogram",
        "p50",
        "p99.9",
        "mutex lock wait ",
        "oversleep ",
        "idle (wake latency (I/O))",
        "context",
        "hand-offs",
        "total",
        "3,000",
        "pool        shared max 128; pooled at the end 17 (shared pool + every thread's cache of \
         up to 256); hits 990, misses 10 (99.0% hits); allocated 27",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    let summary = human::render_summary(&[synthetic()], false);
    assert_eq!(summary.lines().count(), 1);
    assert!(
        summary.starts_with("mixed: FAILED, 500,000 ops/s; items consumed once"),
        "{summary}"
    );
}

/// One row of a percentile distribution.
#[derive(Debug)]
struct Row {
    value: f64,
    percentile: f64,
    total_count: u64,
    inverse: Option<f64>,
}

/// The parts of a `.hgrm` file a plotter uses.
#[derive(Debug)]
struct Distribution {
    rows: Vec<Row>,
    mean: f64,
    stdev: f64,
    max: f64,
    total_count: u64,
}

/// Parses HdrHistogram's percentile-distribution text: a header naming the columns
/// `Value Percentile TotalCount 1/(1-Percentile)`, a blank line, rows of 4 numbers (3 on
/// the 100% row), and `#[Name = value, Name = value]` footer lines.
fn parse_hgrm(text: &str) -> Distribution {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
    );
    assert_eq!(lines.next(), Some(""), "a blank line follows the header");
    let mut rows = Vec::new();
    let mut footer = std::collections::HashMap::new();
    for line in lines {
        if let Some(inner) = line.strip_prefix("#[").and_then(|l| l.strip_suffix(']')) {
            for pair in inner.split(',') {
                let (name, value) = pair.split_once('=').expect("name = value");
                footer.insert(name.trim().to_owned(), value.trim().to_owned());
            }
            continue;
        }
        let columns: Vec<&str> = line.split_whitespace().collect();
        assert!(matches!(columns.len(), 3 | 4), "bad row {line:?}");
        rows.push(Row {
            value: columns[0].parse().unwrap(),
            percentile: columns[1].parse().unwrap(),
            total_count: columns[2].parse().unwrap(),
            inverse: columns.get(3).map(|c| c.parse().unwrap()),
        });
    }
    let number = |name: &str| -> f64 {
        footer[name]
            .parse()
            .unwrap_or_else(|_| panic!("footer {name}"))
    };
    assert!(
        footer["Unit"].starts_with("microseconds"),
        "the unit is stated: {footer:?}"
    );
    Distribution {
        rows,
        mean: number("Mean"),
        stdev: number("StdDeviation"),
        max: number("Max"),
        total_count: footer["Total count"].parse().unwrap(),
    }
}

#[test]
fn hgrm_files_parse_back() {
    let dir = common::scratch("hgrm");
    let outcome = synthetic();
    let written = hgrm::write_all(&dir.join("out"), std::slice::from_ref(&outcome)).unwrap();
    let names: Vec<String> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["mixed.mutex_lock_wait.hgrm", "mixed.oversleep.hgrm"],
        "empty histograms are skipped"
    );

    for (path, named) in written.iter().zip(&outcome.histograms) {
        let histogram = &named.histogram;
        let dist = parse_hgrm(&fs::read_to_string(path).unwrap());
        assert!(
            dist.rows.len() > 10,
            "{path:?} has {} rows",
            dist.rows.len()
        );
        assert!(dist.rows.windows(2).all(|w| w[0].value <= w[1].value
            && w[0].percentile <= w[1].percentile
            && w[0].total_count <= w[1].total_count));
        for row in &dist.rows[..dist.rows.len() - 1] {
            let inverse = row
                .inverse
                .expect("every row but the last has 1/(1-Percentile)");
            assert!((inverse - 1.0 / (1.0 - row.percentile)).abs() <= 0.01 * inverse.max(1.0));
        }
        let last = dist.rows.last().unwrap();
        assert_eq!(last.percentile, 1.0);
        assert!(last.inverse.is_none());
        assert_eq!(last.total_count, histogram.len());
        assert_eq!(dist.total_count, histogram.len());
        // Values are microseconds, three decimals.
        let micros = |nanos: f64| nanos / 1_000.0;
        assert!((dist.max - micros(histogram.max() as f64)).abs() < 0.001);
        assert!((last.value - micros(histogram.max() as f64)).abs() < 0.001);
        assert!((dist.mean - micros(histogram.mean())).abs() < 0.001);
        assert!((dist.stdev - micros(histogram.stdev())).abs() < 0.001);
        // The median row agrees with the histogram.
        let median = dist.rows.iter().find(|row| row.percentile >= 0.5).unwrap();
        assert!((median.value - micros(histogram.value_at_quantile(0.5) as f64)).abs() < 0.001);
    }
}
