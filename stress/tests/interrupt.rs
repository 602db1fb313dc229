//! Ctrl-C and SIGTERM stop the run cleanly: the report of what ran, marked interrupted, in
//! the chosen format, and exit status 130; a second signal ends a run that does not stop.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{costress, scratch};

/// Sends `signal` (a `kill -s` name) to `child`.
fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args(["-s", signal, &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -s {signal} failed");
}

/// Waits for `child` to exit, killing it (and failing) after `limit`.
fn wait_at_most(child: &mut Child, limit: Duration) -> Duration {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            panic!("costress did not exit within {limit:?} of the signal");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    started.elapsed()
}

/// A 10 s run in `format`, stopped by `name` after a second.
fn interrupted_run(
    dir: &std::path::Path,
    format: &str,
    name: &str,
) -> (Duration, i32, String, String) {
    let mut child = costress(dir)
        .args([
            "mixed",
            "--duration",
            "10s",
            "--threads",
            "2",
            "--pin-threads",
            "false",
        ])
        .args(["--coroutines", "4", "--format", format])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    signal(&child, name);
    let took = wait_at_most(&mut child, Duration::from_secs(30));
    let output = child.wait_with_output().unwrap();
    (
        took,
        output.status.code().expect("exited, not killed"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn sigint_gives_a_partial_json_report_and_130_within_a_second() {
    let dir = scratch("interrupt-json");
    let (took, code, stdout, stderr) = interrupted_run(&dir, "json", "INT");
    assert_eq!(code, 130, "{stderr}");
    assert!(took < Duration::from_secs(1), "took {took:?} to stop");
    let doc: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("not JSON: {err}\n{stdout}"));
    assert_eq!(doc["interrupted"], true);
    assert_eq!(
        doc["passed"], false,
        "an interrupted run did not run everything"
    );
    let workload = &doc["workloads"][0];
    assert_eq!(workload["name"], "mixed");
    assert_eq!(workload["interrupted"], true);
    let elapsed = workload["throughput"]["elapsed_ns"].as_u64().unwrap();
    assert!(elapsed < 9_000_000_000, "it stopped early: {elapsed} ns");
    assert!(workload["throughput"]["ops"].as_u64().unwrap() > 0);
    // What ran was still checked, and the checks held.
    let checks = workload["checks"].as_array().unwrap();
    assert!(!checks.is_empty());
    assert!(
        checks.iter().all(|check| check["passed"] == true),
        "{checks:?}"
    );
    assert!(stderr.contains("interrupted"), "{stderr}");
}

#[test]
fn sigterm_gives_a_human_report_marked_interrupted() {
    let dir = scratch("interrupt-human");
    let (_, code, stdout, stderr) = interrupted_run(&dir, "human", "TERM");
    assert_eq!(code, 130, "{stderr}");
    assert!(
        stdout.contains("INTERRUPTED: stopped by a signal"),
        "{stdout}"
    );
    assert!(
        stdout.contains("== mixed: ok, interrupted after"),
        "{stdout}"
    );
    assert!(stdout.ends_with('\n'));
}

#[test]
fn a_second_sigint_exits_at_once() {
    // The deadlock scenario never looks at the interrupt flag, so only the second signal
    // can end it.
    let dir = scratch("interrupt-twice");
    let mut child = costress(&dir)
        .args([
            "--test-deadlock",
            "--stall-timeout",
            "1h",
            "--duration",
            "1h",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, "INT");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first signal only asks"
    );
    signal(&child, "INT");
    wait_at_most(&mut child, Duration::from_secs(10));
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.starts_with("\ncostress: interrupted again"),
        "the message starts on a fresh line: {stderr:?}"
    );
}
