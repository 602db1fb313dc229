//! Bad input exits with status 2 and a message naming the problem; --help, --version and
//! --list work.

mod common;

use std::fs;

use common::{code, costress, run, scratch};

/// Runs costress with `args` in `dir` and expects exit status 2 with every `needle` in stderr.
fn refused(dir: &std::path::Path, args: &[&str], needles: &[&str]) {
    let (output, _, stderr) = run(costress(dir).args(args));
    assert_eq!(code(&output), 2, "{args:?}: {stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{args:?}: expected {needle:?} in:\n{stderr}"
        );
    }
}

#[test]
fn unknown_workload() {
    let dir = scratch("unknown-workload");
    refused(
        &dir,
        &["mutx"],
        &["unknown workload \"mutx\"", "mutex, rwlock, queue"],
    );
}

#[test]
fn bad_flags() {
    let dir = scratch("bad-flags");
    refused(&dir, &["--bogus"], &["unexpected argument '--bogus'"]);
    refused(
        &dir,
        &["--format", "xml"],
        &["invalid value 'xml' for '--format", "human, json"],
    );
    refused(
        &dir,
        &["--stack-size", "12 parsecs"],
        &["--stack-size: runtime.stack_size = \"12 parsecs\": expected a size such as \"64KiB\""],
    );
    refused(
        &dir,
        &["--threads", "-1"],
        &["--threads: runtime.threads = \"-1\": expected 0, \"auto\""],
    );
    refused(
        &dir,
        &["--stack-size", "4KiB"],
        &["runtime.stack_size = \"4KiB\": expected a size from \"16KiB\" to \"1GiB\""],
    );
    refused(
        &dir,
        &["--duration", "0s"],
        &["--duration: stress.duration = \"0s\": expected a duration from"],
    );
    refused(
        &dir,
        &["--coroutines", "0"],
        &["--coroutines: stress.coroutines = 0: expected an integer from 1"],
    );
    refused(
        &dir,
        &["--pin-threads", "maybe"],
        &["runtime.pin_threads = \"maybe\": expected true or false"],
    );
}

#[test]
fn bad_environment() {
    let dir = scratch("bad-environment");
    let (output, _, stderr) = run(costress(&dir).env("COSTRESS_POLL_MAX", "2s"));
    assert_eq!(code(&output), 2, "{stderr}");
    assert!(
        stderr.contains(
            "COSTRESS_POLL_MAX: runtime.poll_max = \"2s\": expected a duration of at most"
        ),
        "{stderr}"
    );
}

#[test]
fn bad_config_files() {
    let dir = scratch("bad-config");
    let cases = [
        (
            "[runtime]\nthreads = = 2\n",
            "TOML syntax error at line 2, column 11",
        ),
        (
            "[runtime]\nstak_size = \"1MiB\"\n",
            "unknown key runtime.stak_size (expected one of: threads,",
        ),
        (
            "[runtime]\nstack_size = \"12 parsecs\"\n",
            "runtime.stack_size = \"12 parsecs\": expected a size",
        ),
        (
            "[stres]\n",
            "unknown table [stres] (expected [runtime] or [stress])",
        ),
        ("duration = \"1s\"\n", "unknown top-level key duration"),
        (
            "[stress]\nduration = \"soon\"\n",
            "stress.duration = \"soon\": expected a duration such as",
        ),
        (
            "[stress]\nworkloads = [\"nope\"]\n",
            "stress.workloads: unknown workload \"nope\"",
        ),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let path = dir.join(format!("bad{i}.toml"));
        fs::write(&path, text).unwrap();
        let path = path.to_str().unwrap();
        refused(&dir, &["--config", path], &[&format!("{path}: "), needle]);
    }
    refused(
        &dir,
        &["--config", "missing.toml"],
        &["cannot read missing.toml: "],
    );
}

#[test]
fn help_lists_every_option_with_its_default() {
    let dir = scratch("help");
    let (output, stdout, _) = run(costress(&dir).arg("--help"));
    assert_eq!(code(&output), 0);
    // (flag, default shown, environment variable)
    let options = [
        (
            "--config",
            Some("[default: ./config.toml if present"),
            Some("COSTRESS_CONFIG"),
        ),
        (
            "--threads",
            Some("[default: auto]"),
            Some("COSTRESS_THREADS"),
        ),
        (
            "--pin-threads",
            Some("[default: false]"),
            Some("COSTRESS_PIN_THREADS"),
        ),
        (
            "--stack-size",
            Some("[default: 1MiB]"),
            Some("COSTRESS_STACK_SIZE"),
        ),
        (
            "--pool-max",
            Some("[default: 128]"),
            Some("COSTRESS_POOL_MAX"),
        ),
        (
            "--poll-max",
            Some("[default: 32.768us]"),
            Some("COSTRESS_POLL_MAX"),
        ),
        (
            "--thread-name",
            Some("[default: coscheduler-worker]"),
            Some("COSTRESS_THREAD_NAME"),
        ),
        (
            "--duration",
            Some("[default: 10s]"),
            Some("COSTRESS_DURATION"),
        ),
        (
            "--coroutines",
            Some("[default: 32]"),
            Some("COSTRESS_COROUTINES"),
        ),
        ("--seed", Some("[default: 1]"), Some("COSTRESS_SEED")),
        (
            "--stall-timeout",
            Some("[default: 10s]"),
            Some("COSTRESS_STALL_TIMEOUT"),
        ),
        (
            "--format",
            Some("[default: human]"),
            Some("COSTRESS_FORMAT"),
        ),
        ("--hgrm", None, Some("COSTRESS_HGRM")),
        ("--quiet", None, Some("COSTRESS_QUIET")),
        ("--list", None, None),
        ("--print-config", None, None),
        ("--version", None, None),
    ];
    for (flag, default, env) in options {
        let start = stdout
            .find(&format!("{flag} "))
            .or_else(|| stdout.find(&format!("{flag}\n")))
            .unwrap_or_else(|| panic!("{flag} missing from --help:\n{stdout}"));
        let entry = entry_at(&stdout[start..]);
        for needle in [default, env].into_iter().flatten() {
            assert!(entry.contains(needle), "{flag}: no {needle} in {entry:?}");
        }
    }
    assert!(stdout.contains("[default: mixed]"), "{stdout}");
    assert!(stdout.contains("COSTRESS_WORKLOADS"), "{stdout}");
    assert!(
        !stdout.contains("test-deadlock"),
        "the test-only flag is hidden"
    );
}

/// An option's entry in --help: its first line and the indented lines up to the next option
/// or heading.
fn entry_at(text: &str) -> String {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    // Options are indented by 2 or 6 spaces, their help (possible values included) by 10.
    let rest = lines.take_while(|line| {
        let indent = line.len() - line.trim_start().len();
        line.is_empty() || indent >= 10
    });
    std::iter::once(first)
        .chain(rest)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn version_and_list() {
    let dir = scratch("version");
    let (output, stdout, _) = run(costress(&dir).arg("--version"));
    assert_eq!(code(&output), 0);
    assert_eq!(
        stdout.trim(),
        format!("costress {}", env!("CARGO_PKG_VERSION"))
    );

    let (output, stdout, _) = run(costress(&dir).arg("--list"));
    assert_eq!(code(&output), 0);
    // An introduction, one paragraph per workload (its name, then its description), and a
    // closing line.
    let paragraphs: Vec<&str> = stdout.trim_end().split("\n\n").collect();
    let names: Vec<&str> = paragraphs[1..paragraphs.len() - 1]
        .iter()
        .filter_map(|paragraph| paragraph.split_whitespace().next())
        .collect();
    assert_eq!(
        names,
        [
            "mutex",
            "rwlock",
            "queue",
            "wake",
            "lifecycle",
            "sleep",
            "echo",
            "mixed"
        ]
    );
}
