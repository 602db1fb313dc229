//! `ci-gate.sh` end to end: against a baseline that is a faithful run of this very binary
//! it passes; against the same baseline with every count 20 % lower it fails with status 1,
//! printing the Markdown report both times. Needs valgrind, as CI does.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cobench::schema::{Results, Tier};

fn gate(baseline: &Path, out: &Path) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("ci-gate.sh");
    Command::new("bash")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_cobench"))
        .arg(baseline)
        .env("COBENCH_OUT", out)
        .env("COBENCH_FILTER", FILTER)
        .output()
        .unwrap()
}

/// The rows the test runs: enough for a real gate, few enough that the
/// debug binary under valgrind stays quick.
const FILTER: &str = "switch";

#[test]
fn doctored_baseline_fails_the_gate_and_the_real_one_passes() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ci-gate");
    std::fs::create_dir_all(&dir).unwrap();
    let baseline = dir.join("baseline.json");
    let status = Command::new(env!("CARGO_BIN_EXE_cobench"))
        .args([
            "run",
            "--quick",
            "--tier",
            "deterministic",
            "--filter",
            FILTER,
            "--out",
        ])
        .arg(&baseline)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "baseline run failed; is valgrind installed?"
    );

    let mut doctored = Results::load(&baseline).unwrap();
    for b in doctored
        .benchmarks
        .iter_mut()
        .filter(|b| b.tier == Tier::Deterministic)
    {
        b.value *= 0.8;
    }
    let doctored_path = dir.join("doctored.json");
    doctored.save(&doctored_path).unwrap();

    let failed = gate(&doctored_path, &dir.join("out-doctored"));
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert_eq!(
        failed.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&failed.stderr)
    );
    assert!(
        stdout.contains("**Result: FAIL**") && stdout.contains("+25.0%"),
        "{stdout}"
    );

    let passed = gate(&baseline, &dir.join("out-restored"));
    let stdout = String::from_utf8_lossy(&passed.stdout);
    assert_eq!(
        passed.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&passed.stderr)
    );
    assert!(stdout.contains("**Result: pass**"), "{stdout}");
    // Counts repeat to the instruction, so a faithful baseline shows no change at all.
    assert!(
        stdout.contains("+0.0%") && !stdout.contains("improved"),
        "{stdout}"
    );
}
