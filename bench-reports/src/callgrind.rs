//! The deterministic tier: instructions per operation, counted by callgrind.
//!
//! A probe is run as `EXE probe NAME --iters K` under `valgrind --tool=callgrind` for
//! K = N, 2N and 3N, and the figure is the slope `(I(3N) - I(N)) / 2N`. Differencing cancels
//! everything that does not grow with K: valgrind's own start, the dynamic loader, argument
//! parsing, the probe's setup and teardown. The middle point gives a second pair of slopes
//! whose disagreement is the row's spread (see [`Benchmark::spread`]).
//!
//! Callgrind counts instructions, not time, so the figure repeats to the instruction for the
//! same binary whatever else the machine is doing; this is what lets CI gate on a 3 %
//! threshold on a shared two-core machine.
//!
//! [`Benchmark::spread`]: crate::schema::Benchmark::spread

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::Error;

/// Iteration multipliers of the three runs.
const MULTIPLIERS: [u64; 3] = [1, 2, 3];

/// What the three callgrind runs of one probe gave.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measurement {
    /// Instructions per iteration over `[N, 3N]`.
    pub per_op: f64,
    /// `|slope[N, 2N] - slope[2N, 3N]| / per_op`.
    pub spread: f64,
    /// Instruction totals at N, 2N and 3N.
    pub totals: [u64; 3],
}

/// Counts the instructions per iteration of the probe `probe` of the binary `exe`, with
/// base count `n`.
pub fn measure(exe: &Path, probe: &str, n: u64) -> Result<Measurement, Error> {
    let dir = ScratchDir::new(probe)?;
    let mut totals = [0; 3];
    for (total, m) in totals.iter_mut().zip(MULTIPLIERS) {
        *total = count(exe, probe, n * m, &dir.0)?;
    }
    slopes(n, totals).ok_or_else(|| Error::Callgrind {
        probe: probe.to_owned(),
        detail: format!(
            "instruction totals {totals:?} at N = {n}, 2N, 3N do not grow with N; \
             the probe's loop was probably optimised away"
        ),
    })
}

/// Turns the totals at N, 2N, 3N into a [`Measurement`]; `None` unless they strictly grow.
pub fn slopes(n: u64, totals: [u64; 3]) -> Option<Measurement> {
    let [a, b, c] = totals;
    if n == 0 || !(a < b && b < c) {
        return None;
    }
    let n = n as f64;
    let per_op = (c - a) as f64 / (2.0 * n);
    let first = (b - a) as f64 / n;
    let second = (c - b) as f64 / n;
    Some(Measurement {
        per_op,
        spread: (first - second).abs() / per_op,
        totals,
    })
}

/// Runs one probe under callgrind and returns the program's total instruction count.
fn count(exe: &Path, probe: &str, iters: u64, dir: &Path) -> Result<u64, Error> {
    let out_file = dir.join(format!("callgrind.{iters}.out"));
    let output = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg("--")
        .arg(exe)
        .args(["probe", probe, "--iters", &iters.to_string()])
        .output()
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound | ErrorKind::PermissionDenied => Error::ValgrindMissing(e),
            _ => Error::io(Path::new("valgrind"), e),
        })?;
    let fail = |detail: String| Error::Callgrind {
        probe: probe.to_owned(),
        detail,
    };
    if !output.status.success() {
        return Err(fail(format!(
            "`{} probe {probe} --iters {iters}` under valgrind exited with {}; stderr:\n{}",
            exe.display(),
            output.status,
            tail(&String::from_utf8_lossy(&output.stderr), 40),
        )));
    }
    let text = std::fs::read_to_string(&out_file).map_err(|e| Error::io(&out_file, e))?;
    parse_total(&text).ok_or_else(|| {
        fail(format!(
            "{} has no `totals:` or `summary:` line",
            out_file.display()
        ))
    })
}

/// The total instruction count in callgrind's output: the first event of the `totals:` line,
/// or of the `summary:` line where an older callgrind wrote no `totals:`.
pub fn parse_total(callgrind_out: &str) -> Option<u64> {
    let first_number = |key: &str| {
        callgrind_out
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    first_number("totals:").or_else(|| first_number("summary:"))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A private directory for callgrind's output files, removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(probe: &str) -> Result<Self, Error> {
        let dir = std::env::temp_dir().join(format!("cobench-{}-{probe}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(ScratchDir(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // Best effort: a leftover directory in the temp dir is harmless.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_totals_before_summary() {
        let text = "events: Ir\nsummary: 900\nfn=(1) main\n0 5\ntotals: 1234 7\n";
        assert_eq!(parse_total(text), Some(1234));
        assert_eq!(parse_total("events: Ir\nsummary: 42\n"), Some(42));
        assert_eq!(parse_total("events: Ir\n"), None);
    }

    #[test]
    fn slope_cancels_setup_and_flags_nonlinearity() {
        let m = slopes(1000, [50_000 + 30_000, 50_000 + 60_000, 50_000 + 90_000]).unwrap();
        assert_eq!(m.per_op, 30.0);
        assert_eq!(m.spread, 0.0);
        let m = slopes(1000, [10_000, 40_000, 80_000]).unwrap();
        assert_eq!(m.per_op, 35.0);
        assert!((m.spread - 10.0 / 35.0).abs() < 1e-12);
        assert!(slopes(1000, [5, 5, 6]).is_none());
    }
}
