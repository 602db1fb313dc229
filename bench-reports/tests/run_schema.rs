//! `cobench run --quick` end to end: the file it writes validates against
//! `schema/results.schema.json`, parses into the typed results, and holds every benchmark
//! of both tables with sane figures. Needs valgrind, as CI does.

use std::path::{Path, PathBuf};
use std::process::Command;

use cobench::probe::PROBES;
use cobench::schema::{Results, Tier};
use cobench::workload::TIME_BENCHES;

fn schema() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/results.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn quick_run_writes_a_file_that_matches_the_schema() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("run-quick/results.json");
    let status = Command::new(env!("CARGO_BIN_EXE_cobench"))
        .args(["run", "--quick", "--out"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cobench run --quick failed ({status}); is valgrind installed?"
    );

    let text = std::fs::read_to_string(&out).unwrap();
    assert_valid(&text);

    let results = Results::load(&out).unwrap();
    assert!(results.quick);
    let expected = PROBES
        .iter()
        .map(|p| p.name)
        .chain(TIME_BENCHES.iter().map(|b| b.name));
    for name in expected {
        assert!(results.get(name).is_some(), "{name} missing from {text}");
    }
    for b in &results.benchmarks {
        if b.tier == Tier::Deterministic {
            // A switch or a lifecycle is at least a few instructions and, in any build, far
            // below a syscall's worth.
            assert!(b.value > 5.0 && b.value < 20_000.0, "{b:?}");
        }
        if let (Some(ratio), Some(reference)) = (b.ratio, &b.reference) {
            assert!(
                (ratio - b.value / reference.value).abs() <= 1e-9 * ratio,
                "{b:?}"
            );
        }
    }
}

/// Validates `text` against the schema, panicking with every violation.
fn assert_valid(text: &str) {
    let instance: serde_json::Value = serde_json::from_str(text).unwrap();
    let validator = jsonschema::validator_for(&schema()).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "schema violations:\n{}\n{text}",
        errors.join("\n")
    );
}

#[test]
fn a_quiet_and_loaded_run_has_every_row_under_both_loads() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("run-loaded/results.json");
    // W7's floor: quick to run in a debug build, and it holds up under a busy neighbour.
    let output = Command::new(env!("CARGO_BIN_EXE_cobench"))
        .args([
            "run",
            "--quick",
            "--tier",
            "time",
            "--filter",
            "std_sleep_threads",
        ])
        .args(["--load", "quiet,busy:1", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert_valid(&text);

    let results = Results::load(&out).unwrap();
    assert_eq!(results.time_loads(), ["quiet", "busy:1"]);
    for load in ["quiet", "busy:1"] {
        let row = results.get_at("std_sleep_threads", load).unwrap();
        let (min, max) = (row.min.unwrap(), row.max.unwrap());
        assert!(min <= row.value && row.value <= max, "{row:?}");
    }
    let passes: Vec<_> = results
        .loads
        .iter()
        .map(|p| (p.load.as_str(), p.competitors))
        .collect();
    assert_eq!(passes, [("quiet", 0), ("busy:1", 1)]);
    assert_eq!(results.loads[0].competitor_cpu_seconds, 0.0);
    assert!(
        results.loads[1].competitor_cpu_seconds > 0.0,
        "the competitor did not run: {:?}",
        results.loads[1]
    );
    assert!(stderr.contains("cobench: competitor pid "), "{stderr}");

    // The table printed at the end shows both loads side by side.
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        table.contains("quiet: median [min – max]") && table.contains("busy:1: median [min – max]"),
        "{table}"
    );
    assert!(table.contains("| std_sleep_threads | ms ↓ |"), "{table}");
}

#[test]
fn schema_rejects_what_the_types_reject() {
    let validator = jsonschema::validator_for(&schema()).unwrap();
    let bad = serde_json::json!({
        "schema_version": 2,
        "machine": {"hostname": "h", "cpu_model": "c", "cores": 2, "os": "o", "rustc": "r"},
        "commit": "unknown", "date": "2026-01-01T00:00:00Z", "quick": true, "profile": "release",
        "benchmarks": [{"name": "x", "tier": "deterministic", "value": 1.0, "unit": "u",
                        "better": "lower", "samples": 3, "spread": 0.0, "ratio": 2.0}]
    });
    assert!(
        !validator.is_valid(&bad),
        "a deterministic row with a ratio must be rejected"
    );
    let mut good = bad.clone();
    good["benchmarks"][0]
        .as_object_mut()
        .unwrap()
        .remove("ratio");
    assert!(
        validator.is_valid(&good),
        "{:?}",
        validator
            .iter_errors(&good)
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
    );
    let _: Results = serde_json::from_value(good).unwrap();
}

#[test]
fn missing_valgrind_is_a_clear_error() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("no-valgrind/results.json");
    let output = Command::new(env!("CARGO_BIN_EXE_cobench"))
        .args(["run", "--quick", "--tier", "deterministic", "--out"])
        .arg(&out)
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("needs valgrind"), "{stderr}");
    assert!(!out.exists());
}

#[test]
fn unknown_probe_is_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_cobench"))
        .args(["probe", "no_such_probe", "--iters", "1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no probe named `no_such_probe`"));
}
