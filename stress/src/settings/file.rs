//! The configuration file: `[runtime]` for coscheduler, `[stress]` for costress, nothing else.

use std::fs;
use std::path::Path;

use coscheduler::{Config, RuntimeConfig};
use serde::{Deserialize, Serialize};

use super::error::SettingsError;
use super::stress::{self, StressConfig};

/// The tables a costress configuration file may hold.
const TABLES: [&str; 2] = ["runtime", stress::SECTION];

/// The whole file. Unlike coscheduler, which ignores tables it does not own, costress owns
/// the whole file, so a misspelt table is an error rather than a silently ignored one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The runtime's table, checked by coscheduler.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// Our own table.
    #[serde(default)]
    pub stress: StressConfig,
}

impl FileConfig {
    /// Reads and checks the file at `path`.
    ///
    /// # Errors
    ///
    /// A [`SettingsError`] naming the path, and the key when a key is at fault.
    pub fn load(path: &Path) -> Result<FileConfig, SettingsError> {
        let text = fs::read_to_string(path).map_err(|err| SettingsError::io(path, err))?;
        FileConfig::parse(&text).map_err(|err| err.with_origin(path.display().to_string()))
    }

    /// Checks configuration text.
    ///
    /// # Errors
    ///
    /// A [`SettingsError`] naming the key at fault, or the line and column of a syntax error.
    pub fn parse(text: &str) -> Result<FileConfig, SettingsError> {
        toml::from_str(text).map_err(|err| diagnose(text, &err))
    }
}

/// Finds which key made `toml::from_str` fail.
///
/// serde's messages say what was wrong but not where; coscheduler pins syntax errors and
/// `[runtime]` errors down, and the checks below do the same for the rest of the file. The
/// happy path never comes here.
fn diagnose(text: &str, err: &toml::de::Error) -> SettingsError {
    if let Err(runtime_error) = Config::from_toml_str(text) {
        return runtime_error.into();
    }
    let Ok(document) = text.parse::<toml::Table>() else {
        // coscheduler has just parsed the same text, so this cannot happen; fall through to
        // toml's own words rather than panic.
        return SettingsError::other(err.message());
    };
    if let Some((name, value)) = document
        .iter()
        .find(|(name, _)| !TABLES.contains(&name.as_str()))
    {
        return SettingsError::unknown_top_level(name, value.is_table());
    }
    match document.get(stress::SECTION) {
        Some(toml::Value::Table(table)) => match StressConfig::from_table(table) {
            Err(stress_error) => stress_error,
            Ok(_) => SettingsError::other(err.message()),
        },
        Some(other) => {
            SettingsError::invalid(stress::SECTION, other.to_string(), "a table ([stress])")
        }
        None => SettingsError::other(err.message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        FileConfig::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn both_tables_parse() {
        let file =
            FileConfig::parse("[runtime]\npool_max = 3\n[stress]\ncoroutines = 2\n").unwrap();
        assert_eq!(file.runtime.pool_max(), 3);
        assert_eq!(file.stress.coroutines(), 2);
        assert_eq!(FileConfig::parse("").unwrap(), FileConfig::default());
    }

    #[test]
    fn misspelt_table() {
        assert_eq!(
            error("[stres]\nduration = \"1s\""),
            "unknown table [stres] (expected [runtime] or [stress])"
        );
        assert_eq!(
            error("duration = \"1s\""),
            "unknown top-level key duration (keys belong in [runtime] or [stress])"
        );
    }

    #[test]
    fn errors_in_either_table_name_the_key() {
        assert_eq!(
            error("[runtime]\nstack_size = \"12 parsecs\""),
            r#"runtime.stack_size = "12 parsecs": expected a size such as "64KiB" or "1MiB""#
        );
        assert_eq!(
            error("[stress]\nduration = \"0s\""),
            r#"stress.duration = "0s": expected a duration from "1ms" to "24h""#
        );
        assert_eq!(
            error("stress = 1"),
            "stress = 1: expected a table ([stress])"
        );
        assert!(error("[runtime\n").starts_with("TOML syntax error at line 1, column"));
    }

    #[test]
    fn written_settings_read_back() {
        let mut file = FileConfig::default();
        file.runtime.set("stack_size", "100000").unwrap();
        file.stress.set("workloads", "mutex,echo").unwrap();
        let text = toml::to_string(&file).unwrap();
        assert_eq!(FileConfig::parse(&text).unwrap(), file, "{text}");
    }
}
