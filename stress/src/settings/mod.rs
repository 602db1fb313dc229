//! The resolved settings of a run, and the layering that produces them.
//!
//! Built-in defaults < configuration file < `COSTRESS_*` environment < flags. The file is
//! `--config PATH` (or `COSTRESS_CONFIG`) when given, which must then exist; otherwise
//! `config.toml` in the current directory when there is one; otherwise none. clap already
//! puts flags over the environment, so the layering here is: parse the file, then apply each
//! override with the same checks the file went through.

mod error;
mod file;
mod invocation;
mod outputs;
mod soak;
mod stress;

use std::path::{Path, PathBuf};

use coscheduler::RuntimeConfig;

pub use error::SettingsError;
pub use file::FileConfig;
pub use invocation::{Format, Invocation, Origin, Override, SoakRequest};
pub use outputs::Outputs;
pub use soak::{DEFAULT_CYCLE, DEFAULT_LEFTOVERS, Soak, SoakLimit};
pub use stress::{DEFAULT_WORKLOAD, StressConfig};

/// The configuration file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG: &str = "config.toml";

/// The table of the configuration file a key lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// `[runtime]`, owned by coscheduler.
    Runtime,
    /// `[stress]`, owned by costress.
    Stress,
}

impl Section {
    /// The table's name in the file.
    pub fn name(self) -> &'static str {
        match self {
            Section::Runtime => "runtime",
            Section::Stress => stress::SECTION,
        }
    }
}

/// Everything a run needs to know, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// The runtime's configuration.
    pub runtime: RuntimeConfig,
    /// Durations, sizes and the workload list.
    pub stress: StressConfig,
    /// How to print the report.
    pub format: Format,
    /// The files written besides stdout (`--hgrm`, `--html`).
    pub outputs: Outputs,
    /// No progress line, short report.
    pub quiet: bool,
    /// Check before the run that its coroutines fit under the mapping limit (on unless
    /// `--no-preflight`).
    pub preflight: bool,
    /// Run create/drop cycles instead of the workloads once (`--soak`).
    pub soak: Option<Soak>,
    /// The configuration file that was read, if any.
    pub config_file: Option<PathBuf>,
}

impl Settings {
    /// Lays the configuration file, the environment and the flags over the built-in
    /// defaults, and checks the result, workload names included: `known` lists the names the
    /// caller can run.
    ///
    /// Output paths are not checked here (see [`Outputs::validate`]), so that
    /// `--print-config` works whatever they are.
    ///
    /// # Errors
    ///
    /// A [`SettingsError`] naming the file, variable or flag, the key, the value and the
    /// expected form.
    pub fn resolve(
        invocation: &Invocation,
        known: &[&'static str],
    ) -> Result<Settings, SettingsError> {
        let config_file = match &invocation.config {
            Some(path) => Some(path.clone()),
            None => Some(PathBuf::from(DEFAULT_CONFIG)).filter(|path| path.is_file()),
        };
        let file = match &config_file {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let FileConfig {
            mut runtime,
            mut stress,
        } = file;
        for o in &invocation.overrides {
            let applied = match o.section {
                Section::Runtime => runtime.set(o.key, &o.value).map_err(SettingsError::from),
                Section::Stress => stress.set(o.key, &o.value),
            };
            applied.map_err(|err| err.with_origin(o.origin.to_string()))?;
        }
        let mut workloads_origin = config_file
            .as_deref()
            .map(|path| format!("{}: stress.workloads", path.display()));
        if let Some(origin) = &invocation.workloads_origin {
            let joined = invocation.workloads.join(",");
            stress
                .set("workloads", &joined)
                .map_err(|err| err.with_origin(origin.to_string()))?;
            // Positional names need no prefix: the message quotes the name itself.
            workloads_origin = match origin {
                Origin::Env(name) => Some(name.clone()),
                Origin::Flag(_) => None,
            };
        }
        check_workloads(&stress, known, workloads_origin)?;
        let soak = if invocation.soak.enabled {
            Some(Soak::resolve(&invocation.soak, stress.duration())?)
        } else {
            None
        };
        Ok(Settings {
            runtime,
            stress,
            format: invocation.format,
            outputs: Outputs {
                hgrm_dir: invocation.hgrm.clone(),
                html_file: invocation.html.clone(),
            },
            quiet: invocation.quiet,
            preflight: !invocation.no_preflight,
            soak,
            config_file,
        })
    }

    /// The configuration part of the settings as a TOML document with `[runtime]` and
    /// `[stress]`, which reads back as the same configuration.
    pub fn to_document(&self) -> toml::Table {
        let file = FileConfig {
            runtime: self.runtime.clone(),
            stress: self.stress.clone(),
        };
        toml::Table::try_from(file).expect("the configuration types serialize to TOML tables")
    }

    /// [`to_document`](Settings::to_document) as text, for `--print-config`.
    pub fn to_toml(&self) -> String {
        self.to_document().to_string()
    }

    /// The file the settings came from, for messages.
    pub fn config_file(&self) -> Option<&Path> {
        self.config_file.as_deref()
    }
}

/// Refuses workload names that are not in `known`.
fn check_workloads(
    stress: &StressConfig,
    known: &[&'static str],
    origin: Option<String>,
) -> Result<(), SettingsError> {
    let Some(unknown) = stress
        .workloads()
        .into_iter()
        .find(|name| !known.contains(&name.as_str()))
    else {
        return Ok(());
    };
    let err = SettingsError::unknown_workload(&unknown, known.to_vec());
    Err(match origin {
        Some(origin) => err.with_origin(origin),
        None => err,
    })
}
