//! Describes the machine and tree a run measured, for the header of a results file.
//!
//! Every probe here degrades to `"unknown"` instead of failing: a missing `/proc` entry or
//! `git` must not cost a whole benchmark run.

use std::process::Command;

use crate::schema::Machine;

const UNKNOWN: &str = "unknown";

/// Collects hostname, CPU model, usable cores, kernel and the compiler of this binary.
pub fn describe() -> Machine {
    Machine {
        hostname: read_trimmed("/proc/sys/kernel/hostname").unwrap_or_else(|| UNKNOWN.into()),
        cpu_model: cpu_model().unwrap_or_else(|| UNKNOWN.into()),
        cores: cores(),
        os: os(),
        rustc: env!("COBENCH_RUSTC_VERSION").to_owned(),
    }
}

/// The Cargo profile family this binary was built with (`"release"` or `"debug"`).
pub fn profile() -> String {
    env!("COBENCH_PROFILE").to_owned()
}

/// `git rev-parse HEAD` of the current directory's checkout, with `-dirty` appended when the
/// work tree differs from it, or `"unknown"` outside a checkout or without git.
pub fn commit() -> String {
    let Some(head) = git(&["rev-parse", "HEAD"]) else {
        return UNKNOWN.into();
    };
    // `diff-index` exits 1 when tracked files differ from HEAD; untracked files do not count,
    // since build outputs and results files are untracked too.
    let clean = Command::new("git")
        .args(["diff-index", "--quiet", "HEAD", "--"])
        .status()
        .is_ok_and(|s| s.success());
    if clean { head } else { format!("{head}-dirty") }
}

/// The current time as RFC 3339 in UTC, to the second.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| key.trim() == "model name")
        .map(|(_, value)| value.trim().to_owned())
}

fn cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
}

fn os() -> String {
    let kernel =
        read_trimmed("/proc/sys/kernel/ostype").unwrap_or_else(|| std::env::consts::OS.into());
    let release = read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(|| UNKNOWN.into());
    format!("{kernel} {release} {}", std::env::consts::ARCH)
}

fn read_trimmed(path: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.trim().to_owned()).filter(|s| !s.is_empty())
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
