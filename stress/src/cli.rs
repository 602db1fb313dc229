//! The command line.
//!
//! Every configuration key has a flag and a `COSTRESS_<KEY>` environment variable; clap
//! resolves flag over environment, and [`Settings::resolve`](crate::settings::Settings::resolve)
//! lays the result over the configuration file. The override flags take text, not typed
//! values, so that a bad `--stack-size` is checked by the same code and worded the same way as
//! a bad `stack_size` in the file.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, ValueEnum};

use crate::settings::{Section, Settings};

/// How the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// Tables for people.
    #[default]
    Human,
    /// One JSON document (schema in stress/README.md).
    Json,
}

/// `costress [OPTIONS] [WORKLOAD]...`
///
/// The configuration overrides are plain text here; [`parse_from`] collects them into
/// [`Invocation::overrides`] together with where each came from, and that is what the
/// settings read.
#[derive(Debug, Parser)]
#[command(
    name = "costress",
    version,
    about = "Stress-tests coscheduler: runs workloads, checks nothing was lost, reports latency.",
    after_help = "Defaults shown are built in. Precedence: built-in defaults < config file < \
                  COSTRESS_* environment < flags.\n\
                  Exit status: 0 ok, 1 a check failed, 2 bad input, 3 the watchdog fired."
)]
pub struct Cli {
    /// Workloads to run, one after another; see --list
    #[arg(
        value_name = "WORKLOAD",
        env = "COSTRESS_WORKLOADS",
        value_delimiter = ','
    )]
    pub workloads: Vec<String>,

    /// Configuration file [default: ./config.toml if present, else built-in defaults]
    #[arg(short, long, value_name = "PATH", env = "COSTRESS_CONFIG")]
    pub config: Option<PathBuf>,

    /// Worker threads: a count, or 0 or "auto" for one per core
    #[arg(
        long,
        value_name = "N",
        env = "COSTRESS_THREADS",
        help_heading = "Runtime",
        allow_hyphen_values = true
    )]
    pub threads: Option<String>,

    /// Pin each worker to its own core
    #[arg(
        long,
        value_name = "BOOL",
        env = "COSTRESS_PIN_THREADS",
        help_heading = "Runtime",
        allow_hyphen_values = true
    )]
    pub pin_threads: Option<String>,

    /// Coroutine stack size, such as 64KiB or 1MiB
    #[arg(
        long,
        value_name = "SIZE",
        env = "COSTRESS_STACK_SIZE",
        help_heading = "Runtime",
        allow_hyphen_values = true
    )]
    pub stack_size: Option<String>,

    /// Most stacks kept in the coroutine pool
    #[arg(
        long,
        value_name = "N",
        env = "COSTRESS_POOL_MAX",
        help_heading = "Runtime",
        allow_hyphen_values = true
    )]
    pub pool_max: Option<String>,

    /// Longest busy-poll of an idle worker before it sleeps, such as 50us
    #[arg(
        long,
        value_name = "DURATION",
        env = "COSTRESS_POLL_MAX",
        help_heading = "Runtime",
        allow_hyphen_values = true
    )]
    pub poll_max: Option<String>,

    /// Prefix of worker thread names
    #[arg(
        long,
        value_name = "PREFIX",
        env = "COSTRESS_THREAD_NAME",
        help_heading = "Runtime",
        allow_hyphen_values = true
    )]
    pub thread_name: Option<String>,

    /// How long each workload runs, such as 10s or 500ms
    #[arg(
        short,
        long,
        value_name = "DURATION",
        env = "COSTRESS_DURATION",
        help_heading = "Stress",
        allow_hyphen_values = true
    )]
    pub duration: Option<String>,

    /// Coroutines per context
    #[arg(
        long,
        value_name = "N",
        env = "COSTRESS_COROUTINES",
        help_heading = "Stress",
        allow_hyphen_values = true
    )]
    pub coroutines: Option<String>,

    /// Seed for every random choice
    #[arg(
        long,
        value_name = "N",
        env = "COSTRESS_SEED",
        help_heading = "Stress",
        allow_hyphen_values = true
    )]
    pub seed: Option<String>,

    /// Fire the watchdog (exit 3) after this long without progress
    #[arg(
        long,
        value_name = "DURATION",
        env = "COSTRESS_STALL_TIMEOUT",
        help_heading = "Stress",
        allow_hyphen_values = true
    )]
    pub stall_timeout: Option<String>,

    /// Report format
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        default_value_t,
        env = "COSTRESS_FORMAT"
    )]
    pub format: Format,

    /// Also write each histogram to DIR in HdrHistogram's percentile-distribution format
    #[arg(long, value_name = "DIR", env = "COSTRESS_HGRM")]
    pub hgrm: Option<PathBuf>,

    /// No progress line; one summary line per workload instead of tables
    #[arg(short, long, env = "COSTRESS_QUIET")]
    pub quiet: bool,

    /// List the workloads and exit
    #[arg(long)]
    pub list: bool,

    /// Print the resolved configuration as TOML and exit
    #[arg(long)]
    pub print_config: bool,

    /// Run a scenario that deadlocks on purpose, to test the watchdog
    #[arg(long, hide = true)]
    pub test_deadlock: bool,
}

/// The flags that override configuration keys: the flag's id (which is also the key) and the
/// table the key lives in.
const OVERRIDES: [(&str, Section); 10] = [
    ("threads", Section::Runtime),
    ("pin_threads", Section::Runtime),
    ("stack_size", Section::Runtime),
    ("pool_max", Section::Runtime),
    ("poll_max", Section::Runtime),
    ("thread_name", Section::Runtime),
    ("duration", Section::Stress),
    ("coroutines", Section::Stress),
    ("seed", Section::Stress),
    ("stall_timeout", Section::Stress),
];

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

/// A parsed command line, with the origin of every override.
#[derive(Debug)]
pub struct Invocation {
    /// The parsed flags.
    pub cli: Cli,
    /// The configuration keys given by flags or `COSTRESS_*`, in the order `--help` lists them.
    pub overrides: Vec<Override>,
    /// Where the `WORKLOAD` arguments came from, when there were any.
    pub workloads_origin: Option<Origin>,
}

/// The clap command, with each override's built-in default added to its help.
pub fn command() -> clap::Command {
    let defaults = Settings::default().to_document();
    let workloads = Settings::default().stress.workloads().join(",");
    let command = Cli::command().mut_arg("workloads", |arg| {
        let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        arg.help(format!("{help} [default: {workloads}]"))
    });
    OVERRIDES.iter().fold(command, |command, (id, section)| {
        let shown = defaults
            .get(section.name())
            .and_then(|table| table.get(*id))
            .map(|value| {
                value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned)
            })
            .unwrap_or_default();
        command.mut_arg(*id, |arg| {
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            arg.help(format!("{help} [default: {shown}]"))
        })
    })
}

/// Parses `args` (including the program name).
///
/// # Errors
///
/// clap's error for an unknown flag or a missing value, and also for `--help` and
/// `--version`, which clap reports as errors that print to stdout and exit 0.
pub fn parse_from<I, T>(args: I) -> Result<Invocation, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut command = command();
    let matches = command.try_get_matches_from_mut(args)?;
    let cli = Cli::from_arg_matches(&matches).map_err(|err| err.format(&mut command))?;
    let overrides = OVERRIDES
        .iter()
        .filter_map(|&(key, section)| {
            let value = matches.get_one::<String>(key)?.clone();
            Some(Override {
                section,
                key,
                value,
                origin: origin(&command, &matches, key)?,
            })
        })
        .collect();
    let workloads_origin = origin(&command, &matches, "workloads");
    Ok(Invocation {
        cli,
        overrides,
        workloads_origin,
    })
}

/// Whether `id` came from a flag or the environment; `None` if it was not given.
fn origin(command: &clap::Command, matches: &ArgMatches, id: &str) -> Option<Origin> {
    let arg = command.get_arguments().find(|arg| arg.get_id() == id)?;
    match matches.value_source(id)? {
        ValueSource::EnvVariable => {
            let name = arg.get_env().map(|env| env.to_string_lossy().into_owned());
            Some(Origin::Env(name.unwrap_or_default()))
        }
        ValueSource::CommandLine => Some(Origin::Flag(match arg.get_long() {
            Some(long) => format!("--{long}"),
            None => arg
                .get_value_names()
                .and_then(|n| n.first())
                .map_or_else(String::new, ToString::to_string),
        })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn every_override_is_a_config_key() {
        let runtime: Vec<_> = coscheduler::RuntimeConfig::KEYS.to_vec();
        let stress: Vec<_> = crate::settings::StressConfig::keys().collect();
        for (key, section) in OVERRIDES {
            let keys = match section {
                Section::Runtime => &runtime,
                Section::Stress => &stress,
            };
            assert!(
                keys.contains(&key),
                "{key} is not a key of [{}]",
                section.name()
            );
        }
        // Every key but the workload list (which is the positional argument) has a flag.
        assert_eq!(OVERRIDES.len(), runtime.len() + stress.len() - 1);
    }

    #[test]
    fn flags_record_their_origin() {
        let invocation = parse_from(["costress", "--stack-size", "64KiB", "mutex"]).unwrap();
        assert_eq!(
            invocation.overrides,
            [Override {
                section: Section::Runtime,
                key: "stack_size",
                value: "64KiB".to_owned(),
                origin: Origin::Flag("--stack-size".to_owned()),
            }]
        );
        assert_eq!(
            invocation.workloads_origin,
            Some(Origin::Flag("WORKLOAD".to_owned()))
        );
        assert_eq!(invocation.cli.workloads, ["mutex"]);
    }
}
