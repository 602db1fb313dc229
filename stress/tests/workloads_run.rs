//! Every workload runs on a real runtime for a moment, passes its checks, exits 0, and
//! reports JSON with the documented fields; `--hgrm` files parse as HdrHistogram
//! percentile distributions; the default workload prints a readable human report.

mod common;

use std::fs;
use std::path::Path;

use serde_json::Value;

use common::{code, costress, run, scratch};

/// Flags that keep a run short and light: two unpinned workers (so cross-context paths
/// exist on any machine), a few coroutines per context, 300 ms.
const SHORT: [&str; 10] = [
    "--duration",
    "300ms",
    "--threads",
    "2",
    "--pin-threads",
    "false",
    "--coroutines",
    "4",
    "--stall-timeout",
    "5s",
];

/// Runs `workload` with [`SHORT`] and `extra`, expects exit 0, and returns the JSON report.
fn run_json(dir: &Path, workload: &str, extra: &[&str]) -> Value {
    let (output, stdout, stderr) = run(costress(dir)
        .arg(workload)
        .args(SHORT)
        .args(["--format", "json"])
        .args(extra));
    assert_eq!(code(&output), 0, "{workload}: {stderr}\n{stdout}");
    serde_json::from_str(&stdout)
        .unwrap_or_else(|err| panic!("{workload}: not JSON: {err}\n{stdout}"))
}

fn field<'a>(value: &'a Value, key: &str) -> &'a Value {
    value
        .get(key)
        .unwrap_or_else(|| panic!("no field {key} in {value}"))
}

fn u64_field(value: &Value, key: &str) -> u64 {
    field(value, key)
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not an unsigned integer in {value}"))
}

/// Checks the documented shape of a report with one workload, `name`, and returns it.
fn one_workload<'a>(doc: &'a Value, name: &str) -> &'a Value {
    assert_eq!(field(doc, "schema"), "costress-report/1");
    assert_eq!(field(doc, "costress_version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(field(doc, "passed"), true);
    assert!(
        field(doc, "config_file").is_null(),
        "no config file in a scratch dir"
    );
    assert_eq!(field(field(doc, "config"), "runtime")["threads"], 2);
    assert_eq!(field(field(doc, "config"), "stress")["duration"], "300ms");
    let workloads = field(doc, "workloads").as_array().unwrap();
    assert_eq!(workloads.len(), 1);
    let workload = &workloads[0];
    assert_eq!(field(workload, "name"), name);
    assert_eq!(field(workload, "passed"), true);

    let throughput = field(workload, "throughput");
    assert!(
        u64_field(throughput, "ops") > 0,
        "{name} did nothing: {throughput}"
    );
    assert!(u64_field(throughput, "elapsed_ns") >= 300_000_000);
    assert!(field(throughput, "ops_per_s").as_f64().unwrap() > 0.0);

    let checks = field(workload, "checks").as_array().unwrap();
    assert!(!checks.is_empty(), "{name} has no checks");
    for check in checks {
        assert_eq!(field(check, "passed"), true, "{check}");
        assert!(field(check, "what").is_string());
        assert_eq!(u64_field(check, "expected"), u64_field(check, "actual"));
    }

    for histogram in field(workload, "histograms").as_array().unwrap() {
        assert!(field(histogram, "name").is_string());
        assert!(field(histogram, "kind").is_string());
        assert_eq!(field(histogram, "unit"), "ns");
        let count = u64_field(histogram, "count");
        let stats = ["min", "mean", "stdev", "p50", "p90", "p99", "p999", "max"];
        for stat in stats {
            assert_eq!(
                field(histogram, stat).is_null(),
                count == 0,
                "{stat}: {histogram}"
            );
        }
        if count > 0 {
            let ordered: Vec<u64> = ["min", "p50", "p90", "p99", "p999", "max"]
                .iter()
                .map(|stat| u64_field(histogram, stat))
                .collect();
            assert!(ordered.is_sorted(), "{histogram}");
        }
    }

    let contexts = field(workload, "contexts").as_array().unwrap();
    assert_eq!(contexts.len(), 2, "one entry per worker");
    for (index, context) in contexts.iter().enumerate() {
        assert_eq!(u64_field(context, "context"), index as u64);
        for key in ["switches", "steals", "hand_offs", "parks"] {
            u64_field(context, key);
        }
    }
    let switches: u64 = contexts.iter().map(|c| u64_field(c, "switches")).sum();
    assert!(switches > 0, "{name}: no coroutine ran? {contexts:?}");

    let pool = field(workload, "pool");
    for key in ["max_size", "pooled", "hits", "misses", "allocated"] {
        u64_field(pool, key);
    }
    workload
}

/// The histogram of `workload` with kind `kind`, named `name`.
fn histogram<'a>(workload: &'a Value, name: &str, kind: &str) -> &'a Value {
    let histograms = field(workload, "histograms").as_array().unwrap();
    let found = histograms
        .iter()
        .find(|h| field(h, "name") == name)
        .unwrap_or_else(|| panic!("no histogram {name:?} in {histograms:?}"));
    assert_eq!(field(found, "kind"), kind, "{found}");
    found
}

#[test]
fn mutex() {
    let doc = run_json(&scratch("run-mutex"), "mutex", &[]);
    let workload = one_workload(&doc, "mutex");
    histogram(workload, "lock wait", "lock_wait");
    histogram(workload, "lock hold", "lock_hold");
}

#[test]
fn rwlock() {
    let doc = run_json(&scratch("run-rwlock"), "rwlock", &[]);
    let workload = one_workload(&doc, "rwlock");
    histogram(workload, "lock wait", "lock_wait");
    histogram(workload, "lock hold", "lock_hold");
}

#[test]
fn queue() {
    let doc = run_json(&scratch("run-queue"), "queue", &[]);
    let workload = one_workload(&doc, "queue");
    histogram(workload, "lock wait", "lock_wait");
    histogram(workload, "consumer wait (queue empty)", "lock_wait");
}

#[test]
fn wake() {
    let doc = run_json(&scratch("run-wake"), "wake", &[]);
    let workload = one_workload(&doc, "wake");
    let local = histogram(workload, "wake latency (local)", "wake_local");
    let cross = histogram(workload, "wake latency (cross-context)", "wake_cross");
    assert!(u64_field(local, "count") > 0, "{local}");
    assert!(u64_field(cross, "count") > 0, "{cross}");
    let hand_offs: u64 = field(workload, "contexts")
        .as_array()
        .unwrap()
        .iter()
        .map(|c| u64_field(c, "hand_offs"))
        .sum();
    assert!(hand_offs > 0, "cross-context wakes are hand-offs");
}

#[test]
fn lifecycle() {
    let doc = run_json(&scratch("run-lifecycle"), "lifecycle", &[]);
    let workload = one_workload(&doc, "lifecycle");
    let pool = field(workload, "pool");
    assert!(
        u64_field(pool, "hits") > 0,
        "the churn reuses stacks: {pool}"
    );
    histogram(workload, "spawn wake latency (local)", "wake_local");
    histogram(
        workload,
        "injector wake latency (cross-context)",
        "wake_cross",
    );
}

#[test]
fn sleep() {
    let doc = run_json(&scratch("run-sleep"), "sleep", &[]);
    let workload = one_workload(&doc, "sleep");
    let oversleep = histogram(workload, "oversleep", "oversleep");
    let timer = histogram(workload, "wake latency (timer)", "wake_timer");
    assert!(u64_field(oversleep, "count") > 0, "{oversleep}");
    assert!(u64_field(timer, "count") > 0, "{timer}");
}

#[test]
fn echo() {
    let doc = run_json(&scratch("run-echo"), "echo", &[]);
    let workload = one_workload(&doc, "echo");
    let latency = histogram(workload, "request latency", "request_latency");
    assert!(u64_field(latency, "count") > 0, "{latency}");
    histogram(workload, "wake latency (I/O)", "wake_io");
}

#[test]
fn mixed_runs_every_part() {
    let doc = run_json(&scratch("run-mixed"), "mixed", &[]);
    let workload = one_workload(&doc, "mixed");
    let parts: Vec<&str> = field(workload, "parts")
        .as_array()
        .unwrap()
        .iter()
        .map(|part| field(part, "name").as_str().unwrap())
        .collect();
    assert_eq!(
        parts,
        [
            "mutex",
            "rwlock",
            "queue",
            "wake",
            "lifecycle",
            "sleep",
            "echo"
        ]
    );
    for part in field(workload, "parts").as_array().unwrap() {
        assert!(u64_field(part, "ops") > 0, "{part}");
    }
    // Each part's checks and histograms carry its name.
    let checks = field(workload, "checks").as_array().unwrap();
    for part in &parts {
        let prefix = format!("{part}: ");
        assert!(
            checks
                .iter()
                .any(|c| field(c, "what").as_str().unwrap().starts_with(&prefix)),
            "no check of {part}"
        );
    }
    histogram(workload, "echo: request latency", "request_latency");
    histogram(workload, "mutex: lock wait", "lock_wait");
}

#[test]
fn hgrm_files_are_percentile_distributions() {
    let dir = scratch("run-hgrm");
    let out = dir.join("hgrm");
    fs::create_dir_all(&out).unwrap();
    let doc = run_json(&dir, "sleep", &["--hgrm", out.to_str().unwrap()]);
    let workload = one_workload(&doc, "sleep");
    let mut files = 0;
    for histogram in field(workload, "histograms").as_array().unwrap() {
        let name = field(histogram, "name").as_str().unwrap();
        let count = u64_field(histogram, "count");
        let file_name = format!(
            "sleep.{}.hgrm",
            name.replace(
                |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_',
                "_"
            )
        );
        let path = out.join(&file_name);
        if count == 0 {
            assert!(
                !path.exists(),
                "an empty histogram has no file: {file_name}"
            );
            continue;
        }
        let text =
            fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        let parsed = parse_hgrm(&text);
        assert_eq!(parsed.total, count, "{file_name}");
        // Microseconds with three decimals, recorded in nanoseconds.
        let max_us = u64_field(histogram, "max") as f64 / 1_000.0;
        assert!(
            (parsed.max - max_us).abs() <= max_us * 0.01 + 0.001,
            "{file_name}: {} vs {max_us}",
            parsed.max
        );
        files += 1;
    }
    assert_eq!(files, 2, "oversleep and timer wake latency");
}

/// What `parse_hgrm` read.
struct Hgrm {
    total: u64,
    max: f64,
}

/// Parses HdrHistogram's percentile-distribution text as its plotters do, asserting the
/// layout: the header, a blank line, rows of `Value Percentile TotalCount 1/(1-Percentile)`
/// (the last, at percentile 1, without the fourth column), then the `#[...]` footer.
fn parse_hgrm(text: &str) -> Hgrm {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
    );
    assert_eq!(lines.next(), Some(""));
    let mut rows = Vec::new();
    let mut footer = Vec::new();
    for line in lines {
        if line.starts_with("#[") {
            footer.push(line);
            continue;
        }
        assert!(footer.is_empty(), "a row after the footer: {line}");
        let columns: Vec<&str> = line.split_whitespace().collect();
        let value: f64 = columns[0].parse().unwrap();
        let percentile: f64 = columns[1].parse().unwrap();
        let total: u64 = columns[2].parse().unwrap();
        if percentile < 1.0 {
            assert_eq!(columns.len(), 4, "{line}");
            let inverse: f64 = columns[3].parse().unwrap();
            assert!(
                (inverse - 1.0 / (1.0 - percentile)).abs() < 0.01 * inverse + 0.01,
                "{line}"
            );
        } else {
            assert_eq!(
                columns.len(),
                3,
                "the 100% row has no fourth column: {line}"
            );
        }
        rows.push((value, percentile, total));
    }
    assert!(!rows.is_empty());
    for pair in rows.windows(2) {
        let ((v0, p0, t0), (v1, p1, t1)) = (pair[0], pair[1]);
        assert!(
            v0 <= v1 && p0 <= p1 && t0 <= t1,
            "rows must not decrease: {pair:?}"
        );
    }
    let (_, last_percentile, last_total) = *rows.last().unwrap();
    assert_eq!(last_percentile, 1.0);
    assert_eq!(footer.len(), 4, "{footer:?}");
    assert!(
        footer[3].starts_with("#[Unit    = microseconds"),
        "the unit is stated: {footer:?}"
    );
    assert!(footer[0].starts_with("#[Mean    =") && footer[0].contains("StdDeviation   ="));
    assert!(footer[1].starts_with("#[Max     =") && footer[1].contains("Total count    ="));
    assert!(footer[2].starts_with("#[Buckets =") && footer[2].contains("SubBuckets     ="));
    let number_after = |line: &str, label: &str| -> f64 {
        let rest = &line[line.find(label).unwrap() + label.len()..];
        rest.trim_start_matches([' ', '='])
            .split([',', ']'])
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let total = number_after(footer[1], "Total count") as u64;
    assert_eq!(total, last_total, "the footer's count is the last row's");
    Hgrm {
        total,
        max: number_after(footer[1], "#[Max"),
    }
}

#[test]
fn the_default_workload_prints_a_readable_report() {
    let dir = scratch("run-default");
    // No workload named: mixed, as with no argument at all (only shorter).
    let (output, stdout, stderr) = run(costress(&dir).args(SHORT));
    assert_eq!(code(&output), 0, "{stderr}\n{stdout}");
    assert!(stdout.starts_with("costress "), "{stdout}");
    assert!(stdout.contains("mixed for 300ms each"), "{stdout}");
    for needle in [
        "== mixed: ok ==",
        "throughput ",
        "checks      ok ",
        "histogram ",
        " p50 ",
        " p99.9 ",
        "echo: request latency",
        "wake: wake latency (cross-context)",
        "context ",
        "switches",
        "hand-offs",
        "total ",
        "pool ",
        "% hits",
    ] {
        assert!(stdout.contains(needle), "no {needle:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("FAILED"), "{stdout}");
}
