//! The one error type of `cobench`.
//!
//! `main` prints it and exits with status 2, which keeps "the tool failed" apart from
//! `compare`'s status 1, "a benchmark regressed".

use std::path::{Path, PathBuf};

/// Anything that stops a subcommand.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A results file is not valid JSON of the expected shape.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file involved.
        path: PathBuf,
        /// What serde said.
        source: serde_json::Error,
    },
    /// `valgrind` could not be started; the deterministic tier needs it.
    #[error(
        "the deterministic tier needs valgrind, which could not be started ({0}); install it \
         (Debian: apt-get install valgrind) or run only the time tier with `--tier time`"
    )]
    ValgrindMissing(std::io::Error),
    /// A callgrind measurement failed or produced unusable output.
    #[error("callgrind measurement of probe `{probe}` failed: {detail}")]
    Callgrind {
        /// The probe being measured.
        probe: String,
        /// What went wrong, including valgrind's stderr where relevant.
        detail: String,
    },
    /// `cobench probe` was given a name that is not in the probe table.
    #[error("no probe named `{0}`; `cobench list` lists them")]
    UnknownProbe(String),
    /// A time-tier workload broke its own invariant (such as a lost increment).
    #[error("workload `{name}` failed: {detail}")]
    Workload {
        /// The benchmark being measured.
        name: String,
        /// The broken invariant, with the observed values.
        detail: String,
    },
    /// A competitor of a loaded pass could not be started or stopped.
    #[error("load mode: {0}")]
    Load(String),
    /// Drawing a chart failed.
    #[error("chart {}: {detail}", path.display())]
    Chart {
        /// The SVG being written.
        path: PathBuf,
        /// What plotters said.
        detail: String,
    },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// Wraps a JSON error with the path it concerns.
    pub fn json(path: &Path, source: serde_json::Error) -> Self {
        Error::Json {
            path: path.to_owned(),
            source,
        }
    }
}
