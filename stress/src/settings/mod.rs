//! The resolved settings of a run, and the layering that produces them.
//!
//! Built-in defaults < configuration file < `COSTRESS_*` environment < flags. The file is
//! `--config PATH` (or `COSTRESS_CONFIG`) when given, which must then exist; otherwise
//! `config.toml` in the current directory when there is one; otherwise none. clap already
//! puts flags over the environment, so the layering here is: parse the file, then apply each
//! override with the same checks the file went through.

mod error;
mod file;
mod stress;

use std::path::{Path, PathBuf};

use coscheduler::RuntimeConfig;

pub use error::SettingsError;
pub use file::FileConfig;
pub use stress::StressConfig;

use crate::cli::{Format, Invocation, Origin};
use crate::workloads;

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
    /// Where to write `.hgrm` files, if anywhere.
    pub hgrm_dir: Option<PathBuf>,
    /// No progress line, short report.
    pub quiet: bool,
    /// The configuration file that was read, if any.
    pub config_file: Option<PathBuf>,
}

impl Settings {
    /// Lays the configuration file, the environment and the flags over the built-in
    /// defaults, and checks the result, workload names included.
    ///
    /// # Errors
    ///
    /// A [`SettingsError`] naming the file, variable or flag, the key, the value and the
    /// expected form.
    pub fn resolve(invocation: &Invocation) -> Result<Settings, SettingsError> {
        let cli = &invocation.cli;
        let config_file = match &cli.config {
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
            let joined = cli.workloads.join(",");
            stress
                .set("workloads", &joined)
                .map_err(|err| err.with_origin(origin.to_string()))?;
            // Positional names need no prefix: the message quotes the name itself.
            workloads_origin = match origin {
                Origin::Env(name) => Some(name.clone()),
                Origin::Flag(_) => None,
            };
        }
        check_workloads(&stress, workloads_origin)?;
        Ok(Settings {
            runtime,
            stress,
            format: cli.format,
            hgrm_dir: cli.hgrm.clone(),
            quiet: cli.quiet,
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

/// Refuses workload names the registry does not know.
fn check_workloads(stress: &StressConfig, origin: Option<String>) -> Result<(), SettingsError> {
    let Some(unknown) = stress
        .workloads()
        .into_iter()
        .find(|name| workloads::find(name).is_none())
    else {
        return Ok(());
    };
    let err = SettingsError::unknown_workload(&unknown, workloads::names());
    Err(match origin {
        Some(origin) => err.with_origin(origin),
        None => err,
    })
}
