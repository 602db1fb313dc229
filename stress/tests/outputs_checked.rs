//! Output paths are checked before any workload starts: a bad one exits 2 at once.

mod common;

use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{costress, scratch};

/// Runs an hour-long costress with `args` and expects it to refuse at once, with status 2 and
/// every `needle` in stderr, and nothing on stdout.
fn refused_before_the_run(dir: &std::path::Path, args: &[&str], needles: &[&str]) {
    let started = Instant::now();
    let mut child = costress(dir)
        .args(["mutex", "--duration", "1h"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("{args:?}: the workload started: the path was not checked first");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(output.stdout.is_empty(), "{args:?}: no report");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{args:?}: {needle:?} not in {stderr}"
        );
    }
}

#[test]
fn a_missing_hgrm_directory_is_refused() {
    let dir = scratch("outputs-hgrm-missing");
    refused_before_the_run(
        &dir,
        &["--hgrm", "no/such/dir"],
        &["costress: --hgrm: no/such/dir: no such directory (create it first)"],
    );
}

#[test]
fn an_hgrm_path_that_is_a_file_is_refused() {
    let dir = scratch("outputs-hgrm-file");
    fs::write(dir.join("plain"), "").unwrap();
    refused_before_the_run(
        &dir,
        &["--hgrm", "plain"],
        &["--hgrm: plain: not a directory (it names a file)"],
    );
}

#[test]
fn bad_html_paths_are_refused() {
    let dir = scratch("outputs-html");
    fs::create_dir(dir.join("sub")).unwrap();
    refused_before_the_run(
        &dir,
        &["--html", "missing/report.html"],
        &["--html: missing/report.html: no such directory missing"],
    );
    refused_before_the_run(&dir, &["--html", "sub"], &["--html: sub: is a directory"]);
    // The environment variable is checked the same way.
    let started = Instant::now();
    let output = costress(&dir)
        .args(["mutex", "--duration", "1h"])
        .env("COSTRESS_HTML", "missing/r.html")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(!dir.join("missing").exists(), "nothing was created");
}
