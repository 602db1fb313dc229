//! Helpers shared by the integration tests: run the binary in a clean environment.

#![allow(dead_code, unreachable_pub)] // Each test binary uses a different subset.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

/// A `costress` command with no `COSTRESS_*` variables inherited, run in `dir`.
pub fn costress(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_costress"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("COSTRESS_") {
            command.env_remove(name);
        }
    }
    command.current_dir(dir);
    command
}

/// A fresh, empty directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("costress-{name}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create scratch directory");
    dir
}

/// Runs `command` and returns its output, with stdout and stderr as text.
pub fn run(command: &mut Command) -> (Output, String, String) {
    let output = command.output().expect("run costress");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

/// The exit code, or a panic naming the signal-killed process.
pub fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or_else(|| {
        panic!(
            "costress was killed: {:?}; its stderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })
}
