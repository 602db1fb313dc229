//! More coroutines than `vm.max_map_count` allows are refused before the run, with the
//! limit, how many fit and the fix, and exit status 4; a stack allocation that fails in the
//! middle of a run gets the same diagnosis. Either way the runtime's shutdown unwinds every
//! coroutine: nothing on stderr says one could not be unwound or was leaked.

mod common;

use std::fs;

use common::{code, costress, run, scratch};

/// Fails if `stderr` carries any of the runtime's shutdown-failure reports: the
/// `ShutdownError` printed by `shutdown()` or `Drop` ("shutdown could not unwind N
/// coroutine(s) in time; leaked with their stacks"), a coroutine that could not be resumed
/// inside its own unwinding ("its stack is leaked"), or a thread context exiting with one
/// "still suspended; leaked".
fn assert_no_shutdown_leak(stderr: &str) {
    for needle in [
        "could not unwind",
        "could not be unwound",
        "still suspended",
        "leak",
    ] {
        assert!(
            !stderr.to_lowercase().contains(needle),
            "the shutdown reported {needle:?}: {stderr}"
        );
    }
}

/// The limit, if this kernel publishes it.
fn max_map_count() -> Option<usize> {
    fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[test]
fn too_many_coroutines_are_refused_before_the_run() {
    let Some(limit) = max_map_count() else {
        eprintln!("skipped: no /proc/sys/vm/max_map_count");
        return;
    };
    // Two contexts of `per_context` mutex coroutines, two mappings each: past the limit.
    let per_context = (limit / 4 + 1000).min(65_536);
    if per_context * 4 <= limit {
        eprintln!("skipped: vm.max_map_count = {limit} is too high to exceed");
        return;
    }
    let dir = scratch("mapping-limit-preflight");
    let (output, stdout, stderr) = run(costress(&dir).args([
        "mutex",
        "--threads",
        "2",
        "--pin-threads",
        "false",
        "--duration",
        "1h",
        "--coroutines",
        &per_context.to_string(),
    ]));
    assert_eq!(code(&output), 4, "{stderr}");
    assert!(stdout.is_empty(), "refused before the run: {stdout}");
    for needle in [
        "limit on memory mappings".to_owned(),
        format!("vm.max_map_count is {limit}"),
        "coroutines fit, with 1 MiB stacks".to_owned(),
        "sudo sysctl -w vm.max_map_count=".to_owned(),
        "or run with --coroutines".to_owned(),
    ] {
        assert!(stderr.contains(&needle), "{needle:?} not in {stderr}");
    }
    assert!(
        !stderr.contains("Cannot allocate memory"),
        "no stack was allocated: {stderr}"
    );
    assert_no_shutdown_leak(&stderr);
}

#[test]
fn a_failed_stack_allocation_in_the_run_names_the_limit() {
    let Some(limit) = max_map_count() else {
        eprintln!("skipped: no /proc/sys/vm/max_map_count");
        return;
    };
    // One context, so the failure is certain: more stacks than mappings allow at all.
    // 256 KiB: the mutex workload needs more than 64 KiB in a debug build;
    // stacks are reserved without backing, so the size costs no mappings.
    let per_context = limit / 2 + 100;
    if per_context > 65_536 {
        eprintln!("skipped: vm.max_map_count = {limit} is too high to exceed");
        return;
    }
    let dir = scratch("mapping-limit-run");
    let (output, _, stderr) = run(costress(&dir).args([
        "mutex",
        "--no-preflight",
        "--threads",
        "1",
        "--pin-threads",
        "false",
        "--duration",
        "200ms",
        "--stack-size",
        "256KiB",
        "--coroutines",
        &per_context.to_string(),
    ]));
    assert_eq!(code(&output), 4, "{stderr}");
    for needle in [
        "a coroutine stack could not be mapped".to_owned(),
        "os error 12".to_owned(),
        format!("vm.max_map_count is {limit}"),
        "with 256 KiB stacks".to_owned(),
        "sudo sysctl -w vm.max_map_count=".to_owned(),
    ] {
        assert!(stderr.contains(&needle), "{needle:?} not in {stderr}");
    }
    assert_no_shutdown_leak(&stderr);
}

/// The command, `costress mutex --coroutines 20000` on two contexts (40,000 stacks,
/// 80,000 mappings): refused before the run with exit status 4; and with `--no-preflight`,
/// the stack allocation fails in the run, the thousands of coroutines already suspended on
/// the mutex are unwound by the shutdown, and it still ends with the diagnosis and status 4.
#[test]
fn twenty_thousand_mutex_coroutines_end_with_the_diagnosis_and_nothing_leaked() {
    let Some(limit) = max_map_count() else {
        eprintln!("skipped: no /proc/sys/vm/max_map_count");
        return;
    };
    if 2 * 20_000 * 2 <= limit {
        eprintln!("skipped: vm.max_map_count = {limit} is too high to exceed");
        return;
    }
    let dir = scratch("mapping-limit-20000");
    let args = [
        "mutex",
        "--threads",
        "2",
        "--pin-threads",
        "false",
        "--duration",
        "1s",
        "--coroutines",
        "20000",
    ];
    let (output, stdout, stderr) = run(costress(&dir).args(args));
    assert_eq!(code(&output), 4, "{stderr}");
    assert!(stdout.is_empty(), "refused before the run: {stdout}");
    assert!(
        stderr.contains("too many coroutines for the kernel's limit on memory mappings"),
        "{stderr}"
    );
    assert_no_shutdown_leak(&stderr);

    let (output, _, stderr) = run(costress(&dir).args(args).arg("--no-preflight"));
    assert_eq!(code(&output), 4, "{stderr}");
    for needle in [
        "a coroutine stack could not be mapped",
        "os error 12",
        "sudo sysctl -w vm.max_map_count=",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
    assert_no_shutdown_leak(&stderr);
}
