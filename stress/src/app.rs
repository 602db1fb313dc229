//! The run itself: parse, resolve, check the outputs and the mapping limit, run each
//! workload (or the soak), report, exit.

use std::ffi::OsString;
use std::process::ExitCode;

use crate::cli::{self, Parsed};
use crate::exit::Exit;
use crate::interrupt::Interrupt;
use crate::outcome::Outcome;
use crate::report::{self, explain};
use crate::runner::{self, Run};
use crate::settings::Settings;
use crate::workload::Workload;
use crate::{soak, workloads};

/// The entry point of the `costress` binary.
pub fn main() -> ExitCode {
    run(std::env::args_os()).into()
}

/// Runs `costress` with `args` (program name first) and returns its exit status.
fn run(args: impl IntoIterator<Item = OsString>) -> Exit {
    let Parsed { cli, invocation } = match cli::parse_from(args) {
        Ok(parsed) => parsed,
        Err(err) => {
            // clap prints help and the version to stdout, errors to stderr, with usage.
            let _ = err.print();
            return Exit::from_clap(&err);
        }
    };
    if cli.list {
        print!("{}", list());
        return Exit::Success;
    }
    if cli.explain {
        print!("{}", explain::text());
        return Exit::Success;
    }
    let settings = match Settings::resolve(&invocation, &workloads::names()) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("costress: {err}");
            return Exit::BadInput;
        }
    };
    if cli.print_config {
        print!("{}", settings.to_toml());
        return Exit::Success;
    }
    if let Err(err) = settings.outputs.validate() {
        eprintln!("costress: {err}");
        return Exit::BadInput;
    }
    let interrupt = Interrupt::install().unwrap_or_else(|err| {
        eprintln!("costress: cannot handle Ctrl-C ({err}); it will end the run without a report");
        Interrupt::manual()
    });
    if let Some(limits) = settings.soak {
        let options = soak::Options {
            limits,
            leak_on_purpose: cli.test_leak,
        };
        return soak::run(&settings, options, &interrupt);
    }
    let selected: Vec<&dyn Workload> = if cli.test_deadlock {
        vec![&workloads::deadlock::Deadlock]
    } else {
        let names = settings.stress.workloads();
        names
            .iter()
            .map(|name| workloads::find(name).expect("Settings::resolve checked the names"))
            .collect()
    };
    if settings.preflight {
        for workload in &selected {
            if let Err(err) = runner::preflight(*workload, &settings) {
                eprintln!("costress: {}: {err}", workload.name());
                return err.exit();
            }
        }
    }
    let run = Run {
        settings: &settings,
        duration: settings.stress.duration(),
        interrupt: &interrupt,
    };
    let mut outcomes = Vec::with_capacity(selected.len());
    for workload in selected {
        if interrupt.is_raised() {
            break;
        }
        match runner::run_one(workload, run) {
            Ok(outcome) => outcomes.push(outcome),
            Err(err) => {
                eprintln!("costress: {}: {err}", workload.name());
                return err.exit();
            }
        }
    }
    finish(&settings, &outcomes, interrupt.is_raised())
}

/// The `--list` text: each workload's name and what it does, in words.
fn list() -> String {
    let all = workloads::all();
    let width = all.iter().map(|w| w.name().len()).max().unwrap_or(0);
    let indent = " ".repeat(width + 2);
    let mut out = String::from(
        "Workloads: run one or more with `costress NAME...`; each runs for --duration on a\n\
         runtime of its own. A context is one of the runtime's worker threads, each with its\n\
         own event loop; --coroutines sets how many coroutines a workload starts per context.\n\n",
    );
    for workload in all {
        let default = if workload.name() == workloads::DEFAULT {
            " [default]"
        } else {
            ""
        };
        let text = format!("{}{default}", workload.description());
        let options = textwrap::Options::new(92)
            .initial_indent(&indent)
            .subsequent_indent(&indent);
        let wrapped = textwrap::fill(&text, options);
        out.push_str(&format!(
            "{:<width$}{}\n\n",
            workload.name(),
            &wrapped[width..]
        ));
    }
    out.push_str(
        "`costress --explain` describes every line and column of the report; stress/README.md\n\
         has more on each workload.\n",
    );
    out
}

/// Prints the report, writes the other outputs, and picks the exit status.
fn finish(settings: &Settings, outcomes: &[Outcome], interrupted: bool) -> Exit {
    if interrupted {
        eprintln!("costress: interrupted; reporting what ran");
    }
    print!("{}", report::render(settings, outcomes, interrupted));
    if let Err(err) = report::write_files(settings, outcomes, interrupted) {
        eprintln!("costress: {err}");
        return Exit::BadInput;
    }
    let mut exit = Exit::Success;
    for outcome in outcomes.iter().filter(|outcome| !outcome.passed()) {
        for failure in outcome.failures() {
            eprintln!("costress: {}: check failed: {failure}", outcome.workload);
        }
        if outcome.checks.is_empty() {
            eprintln!("costress: {}: no correctness check ran", outcome.workload);
        }
        exit = Exit::CheckFailed;
    }
    if interrupted { Exit::Interrupted } else { exit }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_explains_every_workload_in_words() {
        let text = list();
        for workload in workloads::all() {
            let entry = text
                .split("\n\n")
                .find(|entry| entry.starts_with(workload.name()))
                .unwrap_or_else(|| panic!("{} is not listed:\n{text}", workload.name()));
            assert!(
                entry.contains("Checks") || entry.contains("checks"),
                "{entry}"
            );
            assert!(
                entry.lines().all(|line| line.chars().count() <= 92),
                "{entry}"
            );
        }
        assert!(
            !text.contains("(W"),
            "no unexplained WORKLOADS.md codes:\n{text}"
        );
        assert!(text.contains("[default]"));
    }
}
