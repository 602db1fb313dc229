//! [`ConfigError`]: why a configuration was refused, with the key, value and form.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::SECTION;

/// Why a configuration was refused.
///
/// The message names the key (`runtime.stack_size`), the value given and the form expected;
/// for TOML syntax errors, the line and column; for I/O errors, the path.
#[derive(Debug)]
pub struct ConfigError {
    kind: ErrorKind,
    /// The file the configuration came from, when it came from one.
    path: Option<PathBuf>,
}

#[derive(Debug)]
pub(super) enum ErrorKind {
    Io(io::Error),
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    UnknownKey {
        key: String,
        expected: &'static [&'static str],
    },
    Invalid {
        key: String,
        value: String,
        expected: String,
    },
}

impl ConfigError {
    pub(super) fn new(kind: ErrorKind) -> Self {
        ConfigError { kind, path: None }
    }

    pub(super) fn io(path: &Path, err: io::Error) -> Self {
        ConfigError {
            kind: ErrorKind::Io(err),
            path: Some(path.to_owned()),
        }
    }

    pub(super) fn syntax(text: &str, err: &toml::de::Error) -> Self {
        let offset = err.span().map_or(0, |span| span.start);
        let (line, column) = line_column(text, offset);
        let message = err.message().trim_end().to_owned();
        ConfigError::new(ErrorKind::Syntax {
            line,
            column,
            message,
        })
    }

    pub(super) fn invalid(key: String, value: String, expected: impl Into<String>) -> Self {
        ConfigError::new(ErrorKind::Invalid {
            key,
            value,
            expected: expected.into(),
        })
    }

    pub(super) fn in_runtime(key: &str, value: String, expected: impl Into<String>) -> Self {
        ConfigError::invalid(format!("{SECTION}.{key}"), value, expected)
    }

    pub(super) fn in_file(mut self, path: &Path) -> Self {
        self.path.get_or_insert_with(|| path.to_owned());
        self
    }

    /// Replaces the value in an `Invalid` error by the one the user wrote, when `given` knows
    /// it: a range error is found on the parsed value, which may be spelt differently
    /// ("1024KiB" parses to what we would print as "1MiB").
    pub(super) fn with_given<'a>(
        mut self,
        given: impl FnOnce(&str) -> Option<&'a toml::Value>,
    ) -> Self {
        if let ErrorKind::Invalid { key, value, .. } = &mut self.kind {
            let short = key.strip_prefix(SECTION).and_then(|k| k.strip_prefix('.'));
            if let Some(raw) = short.and_then(given) {
                *value = raw.to_string();
            }
        }
        self
    }

    /// The dotted key at fault (`runtime.stack_size`), or `None` for I/O and syntax errors.
    pub fn key(&self) -> Option<&str> {
        match &self.kind {
            ErrorKind::UnknownKey { key, .. } | ErrorKind::Invalid { key, .. } => Some(key),
            ErrorKind::Io(_) | ErrorKind::Syntax { .. } => None,
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.kind, &self.path) {
            (ErrorKind::Io(err), path) => {
                let path = path.as_deref().unwrap_or(Path::new("<unknown>"));
                return write!(f, "cannot read {}: {err}", path.display());
            }
            (_, Some(path)) => write!(f, "{}: ", path.display())?,
            (_, None) => {}
        }
        match &self.kind {
            ErrorKind::Io(_) => Ok(()),
            ErrorKind::Syntax {
                line,
                column,
                message,
            } => {
                write!(
                    f,
                    "TOML syntax error at line {line}, column {column}: {message}"
                )
            }
            ErrorKind::UnknownKey { key, expected } => {
                write!(
                    f,
                    "unknown key {key} (expected one of: {})",
                    expected.join(", ")
                )
            }
            ErrorKind::Invalid {
                key,
                value,
                expected,
            } => {
                write!(f, "{key} = {value}: expected {expected}")
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Io(err) => Some(err),
            _ => None,
        }
    }
}
