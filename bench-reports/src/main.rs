//! The `cobench` command line; everything it does lives in the `cobench` library.
//!
//! Exit status: 0 on success, 1 when `compare` finds a regression (or a missing or
//! incomparable benchmark), 2 when the tool itself fails or is misused.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use cobench::compare::{self, CompareOptions};
use cobench::load::{self, Load};
use cobench::run::RunOptions;
use cobench::schema::{Results, Tier};
use cobench::{Error, probe, render, report, table, workload};

/// Performance suite and CI regression reports for coscheduler.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the suite and write one JSON results file.
    Run {
        /// Shrink iteration and sample counts (for CI: well under two minutes).
        #[arg(long)]
        quick: bool,
        /// Where to write the results.
        #[arg(long, default_value = "cobench-results.json")]
        out: PathBuf,
        /// Measure only one tier.
        #[arg(long, value_enum)]
        tier: Option<TierArg>,
        /// Measure only benchmarks whose name contains this.
        #[arg(long)]
        filter: Option<String>,
        /// Run the time tier once per load, comma-separated: `quiet` (nothing of ours
        /// beside it), `busy:N` (N competing processes each spinning on a core, placed by
        /// the kernel) or `busy:N:pinned` (one per core from the last). E.g.
        /// `--load quiet,busy:1` shows every time row quiet and loaded.
        #[arg(long, default_value = "quiet", value_parser = parse_loads)]
        load: Loads,
        /// Override the worker pinning of the coscheduler rows that use the runtime's
        /// defaults (`true` or `false`), to measure the other placement; the rows whose
        /// workload prescribes pinning (W3) stay pinned.
        #[arg(long)]
        pin_threads: Option<bool>,
    },
    /// Print the time tier of a results file: every row under every load, median [min –
    /// max] with its same-run ratios.
    Show {
        /// The results file.
        results: PathBuf,
    },
    /// Judge RESULTS against BASELINE; exit 1 on a regression.
    ///
    /// Deterministic rows (instruction counts) fail beyond --threshold.
    ///
    /// Time rows are judged by their ratio to a reference measured in the same run, which
    /// travels between machines where absolute times do not. Tails (p50 to p99.9) can fail a
    /// row only when both files come from the same machine (host name, CPU model, core
    /// count), and an improvement never fails.
    ///
    /// For a CI gate, or any baseline from another machine: --tier deterministic.
    ///
    /// Exit status: 0 pass, 1 a regressed, missing or incomparable row, 2 the tool failed.
    /// The rules in full: bench-reports/README.md, "How compare judges".
    Compare {
        /// The results file to compare against (e.g. bench-reports/baseline.json).
        baseline: PathBuf,
        /// The results file to judge.
        results: PathBuf,
        /// Relative threshold, as a percentage ("3%" or "3").
        #[arg(long, default_value = "3%", value_parser = parse_threshold)]
        threshold: f64,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Markdown)]
        format: Format,
        /// Judge only one tier (`deterministic` for a baseline from another machine).
        #[arg(long, value_enum)]
        tier: Option<TierArg>,
    },
    /// Draw SVG charts and a Markdown index over results files (oldest first).
    Report {
        /// Results files, oldest first; the last one is tabulated as the latest.
        #[arg(required = true)]
        results: Vec<PathBuf>,
        /// Directory to write index.md and the SVGs into.
        #[arg(long)]
        out: PathBuf,
    },
    /// List the benchmarks of both tiers.
    List,
    /// Run one deterministic-tier operation N times (what callgrind measures).
    #[command(hide = true)]
    Probe {
        /// Probe name, from `cobench list`.
        name: String,
        /// Iterations.
        #[arg(long)]
        iters: u64,
    },
    /// Spin on a core until the parent process is gone (a loaded pass's competitor).
    #[command(hide = true)]
    Busy {
        /// Process id of the `cobench run` that started this one.
        #[arg(long)]
        parent: u32,
        /// Pin to this core (an index into the usable cores).
        #[arg(long)]
        core: Option<usize>,
    },
}

/// The parsed `--load` list (a newtype, so that clap takes the whole list as one value).
#[derive(Clone, Debug)]
struct Loads(Vec<Load>);

fn parse_loads(s: &str) -> Result<Loads, String> {
    load::parse_list(s).map(Loads)
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TierArg {
    Deterministic,
    Time,
}

impl From<TierArg> for Tier {
    fn from(t: TierArg) -> Self {
        match t {
            TierArg::Deterministic => Tier::Deterministic,
            TierArg::Time => Tier::Time,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Markdown,
    Json,
}

fn main() -> ExitCode {
    match execute(Cli::parse().command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cobench: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn execute(command: Command) -> Result<ExitCode, Error> {
    match command {
        Command::Run {
            quick,
            out,
            tier,
            filter,
            load,
            pin_threads,
        } => {
            let exe =
                std::env::current_exe().map_err(|e| Error::io("/proc/self/exe".as_ref(), e))?;
            let options = RunOptions {
                quick,
                tier: tier.map(Tier::from),
                filter,
                loads: load.0,
                pin_threads,
            };
            let results = cobench::run::run(&exe, &options)?;
            results.save(&out)?;
            if results.benchmarks.iter().any(|b| b.tier == Tier::Time) {
                println!("{}", table::markdown(&results));
            }
            eprintln!("cobench: wrote {}", out.display());
        }
        Command::Show { results } => print!("{}", table::markdown(&Results::load(&results)?)),
        Command::Compare {
            baseline,
            results,
            threshold,
            format,
            tier,
        } => {
            let options = CompareOptions {
                threshold,
                tier: tier.map(Tier::from),
            };
            let report = compare::compare(
                &Results::load(&baseline)?,
                &Results::load(&results)?,
                &options,
            );
            match format {
                Format::Markdown => print!("{}", render::markdown(&report)),
                Format::Json => println!("{}", render::json(&report)),
            }
            return Ok(if report.failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            });
        }
        Command::Report { results, out } => {
            let inputs = results
                .into_iter()
                .map(|path| Results::load(&path).map(|r| (path, r)))
                .collect::<Result<Vec<_>, _>>()?;
            let index = report::write(&inputs, &out)?;
            eprintln!("cobench: wrote {}", index.display());
        }
        Command::List => list(),
        Command::Probe { name, iters } => (probe::find(&name)?.run)(iters)?,
        Command::Busy { parent, core } => load::busy(parent, core)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn list() {
    for p in probe::PROBES {
        println!("deterministic  {:<40} {:<26} {}", p.name, p.unit, p.what);
    }
    for b in workload::TIME_BENCHES {
        let against = b
            .reference
            .map_or_else(String::new, |r| format!(" [÷ {r}]"));
        println!(
            "time           {:<40} {:<26} {}{against}",
            b.name, b.unit, b.what
        );
    }
}

/// Parses "3%", "3" or "0.5%" into a fraction.
fn parse_threshold(s: &str) -> Result<f64, String> {
    let number = s.trim().trim_end_matches('%').trim();
    match number.parse::<f64>() {
        Ok(p) if p.is_finite() && p >= 0.0 => Ok(p / 100.0),
        _ => Err(format!("`{s}` is not a percentage such as 3%")),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// A newcomer comparing against the shipped baseline learns from `--help` why a time row
    /// from another machine does not fail on its tails, and what CI runs.
    #[test]
    fn compare_help_states_the_rules() {
        let help = Cli::command()
            .find_subcommand_mut("compare")
            .expect("compare subcommand")
            .render_long_help()
            .to_string();
        // Wrapped to the terminal's width: compare words, not lines.
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        for rule in [
            "ratio to a reference measured in the same run",
            "only when both files come from the same machine",
            "an improvement never fails",
            "--tier deterministic",
        ] {
            assert!(
                help.contains(rule),
                "`compare --help` lacks {rule:?}:\n{help}"
            );
        }
    }
}
