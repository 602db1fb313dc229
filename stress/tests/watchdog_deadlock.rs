//! A deliberately deadlocking scenario trips the watchdog: exit status 3, after a dump of the
//! suspended coroutines and what each waits on.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{costress, scratch};

#[test]
fn deadlock_trips_the_watchdog() {
    let dir = scratch("deadlock");
    let started = Instant::now();
    let mut child = costress(&dir)
        .args([
            "--test-deadlock",
            "--stall-timeout",
            "300ms",
            "--duration",
            "60s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill it rather than hang the suite if the watchdog never fires.
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("the watchdog did not fire within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(
        stderr.contains("watchdog: workload deadlock made no progress for"),
        "{stderr}"
    );
    assert!(stderr.contains("runtime dump follows"), "{stderr}");
    // The dump lists both coroutines, suspended, each waiting on the other's lock.
    for (coroutine, lock) in [
        ("deadlock-left", "deadlock-b"),
        ("deadlock-right", "deadlock-a"),
    ] {
        let line = stderr
            .lines()
            .find(|line| line.contains(&format!("({coroutine})")))
            .unwrap_or_else(|| panic!("{coroutine} is not in the dump:\n{stderr}"));
        assert!(
            line.contains(&format!("waiting on CoMutex {lock}")),
            "{coroutine} should wait on {lock}: {line}"
        );
    }
    // And the cycle itself, after the dump.
    let cycle = stderr
        .lines()
        .rev()
        .find(|line| line.trim_start().starts_with("deadlock: "))
        .unwrap_or_else(|| panic!("no cycle printed:\n{stderr}"));
    assert!(
        cycle.contains("(deadlock-left)") && cycle.contains("(deadlock-right)"),
        "{cycle}"
    );
    assert!(stderr.contains("1 wait-for cycle(s)"), "{stderr}");
    assert!(output.stdout.is_empty(), "no report after a stall");
}
