//! What the command line asked for, as plain data.
//!
//! The command-line parser (`crate::cli`) fills an [`Invocation`] in; [`Settings::resolve`]
//! (super::Settings::resolve) reads it. Keeping these types here, below the parser, is what
//! lets the settings know nothing of clap's structures and the parser depend on the settings
//! (for the defaults it shows in `--help`) without a cycle.

use std::fmt;
use std::path::PathBuf;

use clap::ValueEnum;

use super::Section;

/// How the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// Tables for people.
    #[default]
    Human,
    /// One JSON document (schema in stress/README.md).
    Json,
}

/// Where a value on the command line came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A flag, or a positional argument (`--stack-size`, `WORKLOAD`).
    Flag(String),
    /// An environment variable (`COSTRESS_STACK_SIZE`).
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(name) | Origin::Env(name) => f.write_str(name),
        }
    }
}

/// A configuration key set on the command line or in the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// The table the key lives in.
    pub section: Section,
    /// The key (`stack_size`).
    pub key: &'static str,
    /// The text given.
    pub value: String,
    /// Which flag or variable gave it.
    pub origin: Origin,
}

/// The soak options as given, not yet checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SoakRequest {
    /// Whether `--soak` was given.
    pub enabled: bool,
    /// `--ops`: contended lock operations after which the soak stops.
    pub ops: Option<String>,
    /// `--cycle`: how long the workload runs in each create/drop cycle.
    pub cycle: Option<String>,
    /// `--leftovers`: coroutines of each kind left suspended per context at each teardown.
    pub leftovers: Option<String>,
}

/// A parsed command line: every setting the run reads, with the origin of each override.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    /// `--config PATH`, when given.
    pub config: Option<PathBuf>,
    /// The configuration keys given by flags or `COSTRESS_*`, in the order `--help` lists them.
    pub overrides: Vec<Override>,
    /// The `WORKLOAD` arguments (or `COSTRESS_WORKLOADS`), possibly empty.
    pub workloads: Vec<String>,
    /// Where the `WORKLOAD` arguments came from, when there were any.
    pub workloads_origin: Option<Origin>,
    /// `--format`.
    pub format: Format,
    /// `--hgrm DIR`.
    pub hgrm: Option<PathBuf>,
    /// `--html FILE`.
    pub html: Option<PathBuf>,
    /// `--quiet`.
    pub quiet: bool,
    /// `--no-preflight`: skip the check that the coroutines fit under the mapping limit.
    pub no_preflight: bool,
    /// `--soak`, `--ops`, `--cycle`.
    pub soak: SoakRequest,
}
