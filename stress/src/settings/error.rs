//! Why the settings were refused. Every such error exits with status 2.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use coscheduler::ConfigError;

/// A refused configuration file, environment variable or flag.
///
/// Messages have the shape coscheduler's [`ConfigError`] has: the key, the value given and
/// the form expected, prefixed by where the value came from (the file's path, the
/// environment variable or the flag).
#[derive(Debug)]
pub struct SettingsError {
    kind: Kind,
    /// Where the offending value came from, when the message alone would not say.
    origin: Option<String>,
}

#[derive(Debug)]
enum Kind {
    /// Syntax, I/O and `[runtime]` errors, as coscheduler words them.
    Runtime(ConfigError),
    Io {
        path: PathBuf,
        source: io::Error,
    },
    /// A top-level key other than `runtime` and `stress`: a misspelt table, or a key written
    /// above the table it belongs in.
    UnknownTopLevel {
        name: String,
        is_table: bool,
    },
    UnknownKey {
        key: String,
        expected: Vec<&'static str>,
    },
    Invalid {
        key: String,
        value: String,
        expected: String,
    },
    UnknownWorkload {
        name: String,
        expected: Vec<&'static str>,
    },
    /// An output path that cannot be written.
    Output {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// What toml said, when no key could be blamed.
    Other(String),
}

impl SettingsError {
    fn new(kind: Kind) -> SettingsError {
        SettingsError { kind, origin: None }
    }

    pub(super) fn io(path: &Path, source: io::Error) -> SettingsError {
        SettingsError::new(Kind::Io {
            path: path.to_owned(),
            source,
        })
    }

    pub(super) fn unknown_top_level(name: &str, is_table: bool) -> SettingsError {
        SettingsError::new(Kind::UnknownTopLevel {
            name: name.to_owned(),
            is_table,
        })
    }

    pub(super) fn unknown_key(key: String, expected: Vec<&'static str>) -> SettingsError {
        SettingsError::new(Kind::UnknownKey { key, expected })
    }

    pub(super) fn invalid(key: &str, value: String, expected: impl Into<String>) -> SettingsError {
        SettingsError::new(Kind::Invalid {
            key: key.to_owned(),
            value,
            expected: expected.into(),
        })
    }

    pub(super) fn unknown_workload(name: &str, expected: Vec<&'static str>) -> SettingsError {
        SettingsError::new(Kind::UnknownWorkload {
            name: name.to_owned(),
            expected,
        })
    }

    pub(super) fn output(flag: &'static str, path: &Path, reason: String) -> SettingsError {
        SettingsError::new(Kind::Output {
            flag,
            path: path.to_owned(),
            reason,
        })
    }

    pub(super) fn other(message: &str) -> SettingsError {
        SettingsError::new(Kind::Other(message.trim_end().to_owned()))
    }

    /// Says where the value came from: a file path, `--flag` or `COSTRESS_VARIABLE`.
    pub(super) fn with_origin(mut self, origin: impl Into<String>) -> SettingsError {
        self.origin.get_or_insert_with(|| origin.into());
        self
    }

    /// Replaces the value in an `Invalid` error by the one the user wrote, when `given` knows
    /// it (a range error is found on the parsed value, which may be spelt differently).
    pub(super) fn with_given<'a>(
        mut self,
        given: impl FnOnce(&str) -> Option<&'a toml::Value>,
    ) -> SettingsError {
        if let Kind::Invalid { key, value, .. } = &mut self.kind {
            let short = key.split_once('.').map(|(_, short)| short);
            if let Some(raw) = short.and_then(given) {
                *value = raw.to_string();
            }
        }
        self
    }

    /// The dotted key at fault (`stress.duration`, `runtime.stack_size`), if there is one.
    pub fn key(&self) -> Option<&str> {
        match &self.kind {
            Kind::Runtime(err) => err.key(),
            Kind::UnknownKey { key, .. } | Kind::Invalid { key, .. } => Some(key),
            Kind::UnknownWorkload { .. } => Some("stress.workloads"),
            Kind::UnknownTopLevel { name, .. } => Some(name),
            Kind::Io { .. } | Kind::Output { .. } | Kind::Other(_) => None,
        }
    }
}

impl From<ConfigError> for SettingsError {
    fn from(err: ConfigError) -> Self {
        SettingsError::new(Kind::Runtime(err))
    }
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(origin) = &self.origin {
            write!(f, "{origin}: ")?;
        }
        match &self.kind {
            Kind::Runtime(err) => write!(f, "{err}"),
            Kind::Io { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            Kind::UnknownTopLevel {
                name,
                is_table: true,
            } => {
                write!(f, "unknown table [{name}] (expected [runtime] or [stress])")
            }
            Kind::UnknownTopLevel {
                name,
                is_table: false,
            } => write!(
                f,
                "unknown top-level key {name} (keys belong in [runtime] or [stress])"
            ),
            Kind::UnknownKey { key, expected } => {
                write!(
                    f,
                    "unknown key {key} (expected one of: {})",
                    expected.join(", ")
                )
            }
            Kind::Invalid {
                key,
                value,
                expected,
            } => {
                write!(f, "{key} = {value}: expected {expected}")
            }
            Kind::UnknownWorkload { name, expected } => write!(
                f,
                "unknown workload {name:?} (expected one of: {}; see costress --list)",
                expected.join(", ")
            ),
            Kind::Output { flag, path, reason } => {
                write!(f, "{flag}: {}: {reason}", path.display())
            }
            Kind::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for SettingsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Runtime(err) => Some(err),
            Kind::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
