//! `costress --soak`: create/run/teardown cycles with a leak check after each. A clean
//! teardown passes, a leak (planted, or the runtime's own) fails loudly with the cycle and
//! what leaked.

mod common;

use serde_json::Value;

use common::{code, costress, run, scratch};

/// Flags for a small, short soak.
const SMALL: [&str; 10] = [
    "--soak",
    "--threads",
    "2",
    "--pin-threads",
    "false",
    "--coroutines",
    "2",
    "--cycle",
    "100ms",
    "--format",
];

fn soak(name: &str, extra: &[&str]) -> (i32, Value, String) {
    let dir = scratch(name);
    let (output, stdout, stderr) = run(costress(&dir).args(SMALL).arg("json").args(extra));
    let doc = serde_json::from_str(&stdout)
        .unwrap_or_else(|err| panic!("not JSON ({err}): {stdout}\n{stderr}"));
    (code(&output), doc, stderr)
}

#[test]
fn teardowns_with_nothing_suspended_leak_nothing() {
    let (code, doc, stderr) = soak("soak-clean", &["--leftovers", "0", "--duration", "400ms"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(doc["passed"], true);
    let soak = &doc["soak"];
    let cycles = soak["cycles"].as_array().unwrap();
    assert!(cycles.len() >= 2, "{soak}");
    let teardowns: Vec<&str> = cycles
        .iter()
        .map(|c| c["teardown"].as_str().unwrap())
        .collect();
    assert_eq!(
        teardowns[..2],
        ["shutdown", "drop"],
        "the two teardowns take turns"
    );
    for cycle in cycles {
        assert_eq!(cycle["workload_passed"], true, "{cycle}");
        assert_eq!(cycle["stacks_in_use"], 0, "{cycle}");
        assert_eq!(cycle["threads"], soak["baseline_threads"], "{cycle}");
        assert!(cycle["max_rss_kib"].as_u64().unwrap() > 0);
        let checks = cycle["checks"].as_array().unwrap();
        assert!(checks.len() >= 5, "{cycle}");
        assert!(checks.iter().all(|c| c["passed"] == true), "{cycle}");
    }
    assert_eq!(
        doc["workloads"][0]["name"], "mixed",
        "the last cycle's outcome"
    );
}

#[test]
fn an_ops_target_ends_the_soak_after_one_cycle_of_each_teardown() {
    let (code, doc, stderr) = soak("soak-ops", &["--leftovers", "0", "--ops", "1"]);
    assert_eq!(code, 0, "{stderr}");
    let teardowns: Vec<&str> = doc["soak"]["cycles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["teardown"].as_str().unwrap())
        .collect();
    assert_eq!(
        teardowns,
        ["shutdown", "drop"],
        "one contended operation is reached in the first cycle, but both teardowns run"
    );
    assert_eq!(doc["soak"]["limit"], "1 contended lock operations");
}

#[test]
fn a_planted_leak_fails_the_soak_naming_the_cycle() {
    let (code, doc, stderr) = soak(
        "soak-leak",
        &["--leftovers", "0", "--test-leak", "--ops", "1e12"],
    );
    assert_eq!(code, 5, "{stderr}");
    assert_eq!(doc["passed"], false);
    let cycles = doc["soak"]["cycles"].as_array().unwrap();
    assert_eq!(cycles.len(), 1, "the soak stops at the first leak");
    assert_eq!(cycles[0]["stacks_in_use"], 1);
    for needle in [
        "costress: soak: cycle 1 (shutdown) failed",
        "suspended coroutines unwound (their destructors ran): expected 1, got 0",
        "Arc::strong_count): expected 1, got 3",
        "coroutine stacks still held after the teardown: expected 0, got 1",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
}

/// With coroutines left suspended the teardown must unwind them all, under `shutdown()` and
/// under `Drop`: every leftover's destructor runs, their shared state is released, no stack
/// stays held, and the soak passes.
#[test]
fn teardowns_with_suspended_coroutines_are_checked() {
    let (code, doc, stderr) = soak(
        "soak-leftovers",
        &["--leftovers", "4", "--duration", "300ms"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(doc["passed"], true, "{stderr}");
    assert!(!stderr.contains("leak"), "{stderr}");
    let cycles = doc["soak"]["cycles"].as_array().unwrap();
    assert!(cycles.len() >= 2, "both teardowns ran: {cycles:?}");
    for cycle in cycles {
        assert_eq!(
            cycle["left_suspended"],
            2 + 8 * 4 * 2,
            "2 lock holders, and 8 coroutines (7 kinds, a co_timeout's function its own) \
             × 4 × 2 contexts"
        );
        assert_eq!(cycle["stacks_in_use"], 0, "{cycle}");
        let checks = cycle["checks"].as_array().unwrap();
        let unwound = checks
            .iter()
            .find(|c| c["what"] == "suspended coroutines unwound (their destructors ran)")
            .unwrap_or_else(|| panic!("no unwinding check in {cycle}"));
        assert_eq!(unwound["actual"], cycle["left_suspended"], "{cycle}");
        assert!(checks.iter().all(|c| c["passed"] == true), "{cycle}");
    }
}
