//! The command line.
//!
//! Every configuration key has a flag and a `COSTRESS_<KEY>` environment variable; clap
//! resolves flag over environment, and [`Settings::resolve`](crate::settings::Settings::resolve)
//! lays the result over the configuration file. The override flags take text, not typed
//! values, so that a bad `--stack-size` is checked by the same code and worded the same way as
//! a bad `stack_size` in the file. [`parse_from`] turns clap's matches into the plain
//! [`Invocation`] that the settings read, with the origin of every override.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

use crate::settings::{Format, Invocation, Origin, Override, Section, Settings, SoakRequest};

/// What `costress --help` says first; the rest of `--help` lists the options.
const LONG_ABOUT: &str = "\
Runs load-testing workloads on coscheduler for a fixed time, then checks that nothing was \
lost (every increment counted, every item consumed once, every wake received) and reports \
throughput, latency percentiles and the scheduler's counters.

With no argument it runs the `mixed` workload (all of them at once) for 10 s, using \
./config.toml when there is one. `costress --list` describes the workloads; \
`costress --explain` says what each line and column of the report means.";

/// What `costress --help` says last.
const AFTER_HELP: &str = "\
Defaults shown are built in; precedence: built-in defaults < config file < COSTRESS_* \
environment < flags. `--print-config` shows the result.

Exit status: 0 every check passed; 1 a check failed or a workload could not finish; 2 bad \
input (unknown workload, bad value, unwritable output path); 3 the watchdog fired (no \
progress for --stall-timeout); 4 the coroutines do not fit under the kernel's mapping limit \
(vm.max_map_count); 5 the soak found a leak; 130 interrupted (Ctrl-C or SIGTERM: the report \
of what ran is still printed; a second Ctrl-C exits at once).";

/// The command line of `costress`, as clap parses it.
#[derive(Debug, Parser)]
#[command(
    name = "costress",
    version,
    about = "Load tests for coscheduler: run workloads, check nothing was lost, report latency.",
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP
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

    /// How long a coroutine may run without suspending before the stall detector reports
    /// it, such as 100ms; 0s turns the detector off
    #[arg(
        long,
        value_name = "DURATION",
        env = "COSTRESS_STALL_THRESHOLD",
        help_heading = "Runtime",
        allow_hyphen_values = true
    )]
    pub stall_threshold: Option<String>,

    /// Most threads of the blocking pool (co_blocking)
    #[arg(
        long,
        value_name = "N",
        env = "COSTRESS_BLOCKING_THREADS",
        help_heading = "Runtime",
        allow_hyphen_values = true
    )]
    pub blocking_threads: Option<String>,

    /// Blocking closures that may wait for a pool thread before callers wait to submit
    #[arg(
        long,
        value_name = "N",
        env = "COSTRESS_BLOCKING_QUEUE",
        help_heading = "Runtime",
        allow_hyphen_values = true
    )]
    pub blocking_queue: Option<String>,

    /// How long a shutdown waits for suspended coroutines to unwind before it leaks the rest,
    /// such as 5s
    #[arg(
        long,
        value_name = "DURATION",
        env = "COSTRESS_SHUTDOWN_TIMEOUT",
        help_heading = "Runtime",
        allow_hyphen_values = true
    )]
    pub shutdown_timeout: Option<String>,

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

    /// Also write each histogram to DIR (which must exist) as an HdrHistogram
    /// percentile-distribution file, values in microseconds
    #[arg(
        long,
        value_name = "DIR",
        env = "COSTRESS_HGRM",
        help_heading = "Output"
    )]
    pub hgrm: Option<PathBuf>,

    /// Also write the report as one self-contained HTML page with latency percentile charts
    #[arg(
        long,
        value_name = "FILE",
        env = "COSTRESS_HTML",
        help_heading = "Output"
    )]
    pub html: Option<PathBuf>,

    /// No progress line; one summary line per workload instead of tables
    #[arg(short, long, env = "COSTRESS_QUIET", help_heading = "Output")]
    pub quiet: bool,

    /// Instead of running each workload once, run the mixed workload in cycles, creating and
    /// dropping a runtime each time, and check after each that nothing leaked (threads,
    /// mappings, stacks, destructors, locks); at least two cycles, one of each teardown
    #[arg(long, help_heading = "Soak")]
    pub soak: bool,

    /// Stop the soak after this many contended lock operations, such as 1e9 [default: stop
    /// after --duration]
    #[arg(
        long,
        value_name = "N",
        env = "COSTRESS_SOAK_OPS",
        help_heading = "Soak",
        requires = "soak"
    )]
    pub ops: Option<String>,

    /// How long the workload runs in each soak cycle [default: 1s]
    #[arg(
        long,
        value_name = "DURATION",
        env = "COSTRESS_SOAK_CYCLE",
        help_heading = "Soak",
        requires = "soak"
    )]
    pub cycle: Option<String>,

    /// Coroutines of each kind (in suspend(), co_sleep, join and co_timeout, queued on a held
    /// CoMutex, a held CoRwLock and a CoQueue) left suspended per context at each soak
    /// teardown, for it to unwind [default: 16]
    #[arg(
        long,
        value_name = "N",
        env = "COSTRESS_SOAK_LEFTOVERS",
        help_heading = "Soak",
        requires = "soak"
    )]
    pub leftovers: Option<String>,

    /// Skip the check, before the run, that the coroutines fit under vm.max_map_count
    #[arg(long)]
    pub no_preflight: bool,

    /// Describe each workload and exit
    #[arg(long)]
    pub list: bool,

    /// Explain every line and column of the report and exit
    #[arg(long)]
    pub explain: bool,

    /// Print the resolved configuration as TOML and exit
    #[arg(long)]
    pub print_config: bool,

    /// Run a scenario that deadlocks on purpose, to test the watchdog
    #[arg(long, hide = true)]
    pub test_deadlock: bool,

    /// In a soak, leak on purpose in the first cycle, to test the leak checks
    #[arg(long, hide = true, requires = "soak")]
    pub test_leak: bool,
}

/// The flags that override configuration keys: the flag's id (which is also the key) and the
/// table the key lives in.
const OVERRIDES: [(&str, Section); 14] = [
    ("threads", Section::Runtime),
    ("pin_threads", Section::Runtime),
    ("stack_size", Section::Runtime),
    ("pool_max", Section::Runtime),
    ("poll_max", Section::Runtime),
    ("thread_name", Section::Runtime),
    ("stall_threshold", Section::Runtime),
    ("blocking_threads", Section::Runtime),
    ("blocking_queue", Section::Runtime),
    ("shutdown_timeout", Section::Runtime),
    ("duration", Section::Stress),
    ("coroutines", Section::Stress),
    ("seed", Section::Stress),
    ("stall_timeout", Section::Stress),
];

/// A parsed command line: the flags as clap gave them, and the plain data the settings read.
#[derive(Debug)]
pub struct Parsed {
    /// The flags, including those that are not settings (`--list`, `--explain`, ...).
    pub cli: Cli,
    /// What the settings read, with the origin of every override.
    pub invocation: Invocation,
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
pub fn parse_from<I, T>(args: I) -> Result<Parsed, clap::Error>
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
    let invocation = Invocation {
        config: cli.config.clone(),
        overrides,
        workloads: cli.workloads.clone(),
        workloads_origin,
        format: cli.format,
        hgrm: cli.hgrm.clone(),
        html: cli.html.clone(),
        quiet: cli.quiet,
        no_preflight: cli.no_preflight,
        soak: SoakRequest {
            enabled: cli.soak,
            ops: cli.ops.clone(),
            cycle: cli.cycle.clone(),
            leftovers: cli.leftovers.clone(),
        },
    };
    Ok(Parsed { cli, invocation })
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
        let parsed = parse_from(["costress", "--stack-size", "64KiB", "mutex"]).unwrap();
        let invocation = &parsed.invocation;
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
        assert_eq!(invocation.workloads, ["mutex"]);
    }

    #[test]
    fn help_is_written_for_users() {
        let help = command().render_long_help().to_string();
        assert!(help.starts_with("Runs load-testing workloads"), "{help}");
        for internal in ["[`", "parse_from", "Invocation", "overrides"] {
            assert!(
                !help.contains(internal),
                "--help leaks {internal:?}:\n{help}"
            );
        }
        for documented in ["--explain", "--list", "vm.max_map_count", "130"] {
            assert!(help.contains(documented), "--help lacks {documented:?}");
        }
    }

    #[test]
    fn soak_flags_need_soak() {
        assert!(parse_from(["costress", "--ops", "1e9"]).is_err());
        let parsed = parse_from(["costress", "--soak", "--ops", "1e9", "--cycle", "2s"]).unwrap();
        assert_eq!(
            parsed.invocation.soak,
            SoakRequest {
                enabled: true,
                ops: Some("1e9".to_owned()),
                cycle: Some("2s".to_owned()),
                leftovers: None,
            }
        );
    }
}
