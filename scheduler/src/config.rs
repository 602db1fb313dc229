//! The runtime's configuration: the `[runtime]` table of a TOML file.
//!
//! QEMU takes these knobs from its command line and from `-object iothread,poll-max-ns=...`;
//! we read them from a file so that a test rig, a benchmark and a service can share one
//! description of the runtime. A file looks like this (every key is optional):
//!
//! ```toml
//! [runtime]
//! threads = "auto"        # or 0, or a positive integer
//! pin_threads = false
//! stack_size = "1MiB"
//! pool_max = 128
//! poll_max = "32.768us"
//! thread_name = "coscheduler-worker"
//! stall_threshold = "100ms"  # "0s" turns the stall detector off
//! blocking_threads = 64
//! blocking_queue = 256
//! shutdown_timeout = "5s"
//! ```
//!
//! Other top-level tables belong to other tools (`costress` keeps its `[stress]` table in the
//! same file) and are ignored here; inside `[runtime]`, an unknown key is an error, because a
//! misspelt knob that silently keeps its default is worse than a refusal to start.
//!
//! Every error names the key, the value that was given and what was expected, so that a user
//! can fix the file without reading this module:
//!
//! ```text
//! config.toml: runtime.stack_size = "12 parsecs": expected a size such as "64KiB" or "1MiB"
//! ```
//!
//! # How values are checked
//!
//! serde's own messages say what type was wanted but not which key held the bad value, and
//! `toml` keeps the key path to itself. So each key of the table is first deserialized on its
//! own (into an otherwise empty table), which pins a failure to that key; the whole table is
//! then deserialized once, and the ranges are checked last. The same per-key path serves
//! [`RuntimeConfig::set`], which is how environment variables and command-line flags arrive.
//!
//! The values land in the same settings struct the [`Builder`](crate::Builder) keeps, so
//! [`Builder::config`](crate::Builder::config) applies a configuration in one assignment.
//! This module is behind the `config` cargo feature: a program that builds its `Runtime` in
//! code does not compile serde, toml and their helpers.

use std::fmt;
use std::fs;
use std::io;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::runtime::settings::Settings;
use crate::runtime::settings::forms::{exact_duration, exact_size};
use crate::stack::MIN_STACK_SIZE;

/// The name of the table this module reads.
const SECTION: &str = "runtime";

/// The largest stack accepted: beyond this, a typo ("1GB" for "1MB") would exhaust the
/// address space after a few thousand coroutines.
const MAX_STACK_SIZE: u64 = 1 << 30;

/// The longest busy-poll accepted: a worker spinning for longer than this before it sleeps
/// is burning a core, not saving a wake-up.
const MAX_POLL_MAX: Duration = Duration::from_secs(1);

/// The longest stall threshold accepted: a coroutine that holds its worker for an hour is
/// long past any report being useful.
const MAX_STALL_THRESHOLD: Duration = Duration::from_secs(3600);

/// The most blocking-pool threads accepted (each is a full OS thread with its own stack).
const MAX_BLOCKING_THREADS: usize = 4096;

/// The longest shutdown timeout accepted.
const MAX_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3600);

/// The keys of `[runtime]`, each with the form it takes, in the order the documentation lists
/// them. [`RuntimeConfig::KEYS`] and the error messages are both read from here.
const KEY_FORMS: [(&str, &str); 10] = [
    ("threads", r#"0, "auto" or a positive integer"#),
    ("pin_threads", "true or false"),
    ("stack_size", r#"a size such as "64KiB" or "1MiB""#),
    ("pool_max", "a non-negative integer"),
    ("poll_max", r#"a duration such as "50us" or "0s""#),
    ("thread_name", "a string"),
    ("stall_threshold", r#"a duration such as "100ms" or "0s""#),
    ("blocking_threads", "a positive integer"),
    ("blocking_queue", "a non-negative integer"),
    ("shutdown_timeout", r#"a duration such as "5s""#),
];

/// Writes `duration` as a configuration file spells it, and as this module writes it when
/// a configuration is serialized: exactly, in one unit, with at most three decimals
/// (`32.768us`, `1.5s`, `100ms`, `90s`, `2h`, `0s`).
///
/// Reading the text back gives the same duration, so a configuration that is written out
/// and read again is unchanged; tools that show durations next to configuration values
/// (`costress --help`, its reports) use this too, so that one value reads one way.
///
/// ```
/// use std::time::Duration;
/// use coscheduler::config::format_duration;
///
/// assert_eq!(format_duration(Duration::from_nanos(32_768)), "32.768us");
/// assert_eq!(format_duration(Duration::from_secs(90)), "90s");
/// ```
pub fn format_duration(duration: Duration) -> String {
    exact_duration(duration)
}

/// A whole configuration file, as far as the runtime is concerned.
///
/// Only `[runtime]` is read; other tables are left to the tools that own them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// The `[runtime]` table; its defaults when the table is absent.
    pub runtime: RuntimeConfig,
}

impl Config {
    /// Reads and parses the file at `path`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `path` if it cannot be read, is not valid TOML, or its
    /// `[runtime]` table has an unknown key or a bad value.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = fs::read_to_string(path).map_err(|err| ConfigError::io(path, err))?;
        Config::from_toml_str(&text).map_err(|err| err.in_file(path))
    }

    /// Parses a configuration from TOML text.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if `text` is not valid TOML (with the line and column), or if its
    /// `[runtime]` table has an unknown key or a bad value.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let document: toml::Table = text
            .parse()
            .map_err(|err| ConfigError::syntax(text, &err))?;
        let runtime = match document.get(SECTION) {
            None => RuntimeConfig::default(),
            Some(toml::Value::Table(table)) => RuntimeConfig::from_table(table)?,
            Some(other) => {
                return Err(ConfigError::invalid(
                    SECTION.to_owned(),
                    other.to_string(),
                    "a table ([runtime])",
                ));
            }
        };
        Ok(Config { runtime })
    }
}

/// The `[runtime]` table: how many workers, their stacks, pool and polling.
///
/// A value of this type has passed every check, whichever way it was made: from a file
/// ([`Config`]), from serde inside a tool's own configuration struct, or through
/// [`set`](RuntimeConfig::set). The runtime's `Builder` reads it through the accessors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "Settings", into = "Settings")]
pub struct RuntimeConfig {
    settings: Settings,
}

impl RuntimeConfig {
    /// The keys the `[runtime]` table accepts, in documentation order.
    pub const KEYS: [&'static str; 10] = {
        let mut keys = [""; 10];
        let mut i = 0;
        while i < KEY_FORMS.len() {
            keys[i] = KEY_FORMS[i].0;
            i += 1;
        }
        keys
    };

    /// Worker threads to start; `None` means one per core (`threads = 0` or `"auto"`).
    pub fn threads(&self) -> Option<NonZeroUsize> {
        self.settings.threads
    }

    /// Whether each worker is pinned to its own core (`pin_threads`, default `false`).
    pub fn pin_threads(&self) -> bool {
        self.settings.pin_threads
    }

    /// The usable size of each coroutine stack in bytes (`stack_size`, default 1 MiB like
    /// QEMU's `COROUTINE_STACK_SIZE`), between 16 KiB and 1 GiB. The stack allocator rounds
    /// it up to whole pages.
    pub fn stack_size_bytes(&self) -> usize {
        self.settings.stack_size
    }

    /// The most stacks the coroutine pool keeps for reuse (`pool_max`, default 128). `0`
    /// turns pooling off, which makes every coroutine creation an `mmap`.
    pub fn pool_max(&self) -> usize {
        self.settings.pool_max
    }

    /// How long an idle worker busy-polls before it sleeps (`poll_max`, QEMU's
    /// `poll-max-ns`, default 32 768 ns), at most one second. Zero disables polling.
    pub fn poll_max(&self) -> Duration {
        self.settings.poll_max
    }

    /// The prefix of worker thread names (`thread_name`, default `"coscheduler-worker"`).
    /// Linux keeps only the first 15 bytes of a thread name.
    pub fn thread_name(&self) -> &str {
        &self.settings.thread_name
    }

    /// How long a coroutine may run without suspending before the stall detector reports it
    /// (`stall_threshold`, default 100 ms), at most one hour. Zero turns the detector off.
    pub fn stall_threshold(&self) -> Duration {
        self.settings.stall_threshold
    }

    /// The most threads of the blocking pool that runs `co_blocking` and
    /// `Runtime::spawn_blocking` closures (`blocking_threads`, default 64, like QEMU's
    /// thread pool), from 1 to 4096.
    pub fn blocking_threads(&self) -> usize {
        self.settings.blocking_threads
    }

    /// How many blocking closures may wait for a pool thread before callers wait to submit
    /// theirs (`blocking_queue`, default 256). `0`: a caller waits until a thread is free.
    pub fn blocking_queue(&self) -> usize {
        self.settings.blocking_queue
    }

    /// How long a shutdown waits for suspended coroutines to unwind before it leaks the rest
    /// (`shutdown_timeout`, default 5 s), at most one hour.
    pub fn shutdown_timeout(&self) -> Duration {
        self.settings.shutdown_timeout
    }

    /// The settings a `Builder` applies.
    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Sets one key from text, as an environment variable or a command-line flag gives it.
    ///
    /// `value` is read as an integer or a boolean where it looks like one and the key takes
    /// one, and as a string otherwise, so `set("threads", "4")`, `set("threads", "auto")` and
    /// `set("stack_size", "64KiB")` all work. On error `self` is unchanged.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `runtime.<key>` if the key is unknown or the value does not
    /// fit it.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let mut last_error = None;
        for candidate in candidates(value) {
            match check_key(key, &candidate) {
                Ok(()) => {
                    // The other keys as they are, this one as given: the same path a file
                    // takes, so no key needs code of its own here.
                    let mut table = toml::Table::try_from(&self.settings)
                        .expect("settings always serialize to a table");
                    table.insert(key.to_owned(), candidate.clone());
                    let settings: Settings = table
                        .try_into()
                        .expect("each key passed check_key, so the table deserializes");
                    let valid = RuntimeConfig::try_from(settings)
                        .map_err(|err| err.with_given(|_| Some(&candidate)))?;
                    *self = valid;
                    return Ok(());
                }
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.expect("candidates() always yields the value as a string"))
    }

    /// Checks and converts a `[runtime]` table.
    fn from_table(table: &toml::Table) -> Result<RuntimeConfig, ConfigError> {
        for (key, value) in table {
            check_key(key, value)?;
        }
        let settings: Settings = table.clone().try_into().map_err(|err: toml::de::Error| {
            // Each key passed on its own above; only a serde quirk could bring us here, so
            // say what serde said rather than guess a key.
            ConfigError::invalid(SECTION.to_owned(), "{ ... }".to_owned(), err.message())
        })?;
        RuntimeConfig::try_from(settings).map_err(|err| err.with_given(|key| table.get(key)))
    }
}

impl TryFrom<Settings> for RuntimeConfig {
    type Error = ConfigError;

    /// The range checks, which serde's types cannot express.
    fn try_from(fields: Settings) -> Result<Self, ConfigError> {
        let size = fields.stack_size as u64;
        if !(MIN_STACK_SIZE as u64..=MAX_STACK_SIZE).contains(&size) {
            return Err(ConfigError::in_runtime(
                "stack_size",
                format!("{:?}", exact_size(size)),
                format!(
                    "a size from {:?} to {:?}",
                    exact_size(MIN_STACK_SIZE as u64),
                    exact_size(MAX_STACK_SIZE)
                ),
            ));
        }
        if fields.poll_max > MAX_POLL_MAX {
            return Err(ConfigError::in_runtime(
                "poll_max",
                format!("{:?}", format_duration(fields.poll_max)),
                r#"a duration of at most "1s""#,
            ));
        }
        if fields.stall_threshold > MAX_STALL_THRESHOLD {
            return Err(ConfigError::in_runtime(
                "stall_threshold",
                format!("{:?}", format_duration(fields.stall_threshold)),
                r#"a duration of at most "1h""#,
            ));
        }
        if fields.shutdown_timeout > MAX_SHUTDOWN_TIMEOUT {
            return Err(ConfigError::in_runtime(
                "shutdown_timeout",
                format!("{:?}", format_duration(fields.shutdown_timeout)),
                r#"a duration of at most "1h""#,
            ));
        }
        if !(1..=MAX_BLOCKING_THREADS).contains(&fields.blocking_threads) {
            return Err(ConfigError::in_runtime(
                "blocking_threads",
                fields.blocking_threads.to_string(),
                format!("an integer from 1 to {MAX_BLOCKING_THREADS}"),
            ));
        }
        if fields.thread_name.is_empty() || fields.thread_name.contains('\0') {
            return Err(ConfigError::in_runtime(
                "thread_name",
                format!("{:?}", fields.thread_name),
                "a non-empty string without NUL characters",
            ));
        }
        Ok(RuntimeConfig { settings: fields })
    }
}

impl From<RuntimeConfig> for Settings {
    fn from(config: RuntimeConfig) -> Self {
        config.settings
    }
}

/// Deserializes `key = value` on its own, which pins a type error to that key.
fn check_key(key: &str, value: &toml::Value) -> Result<(), ConfigError> {
    let Some((_, form)) = KEY_FORMS.iter().find(|(name, _)| *name == key) else {
        return Err(ConfigError::new(ErrorKind::UnknownKey {
            key: format!("{SECTION}.{key}"),
            expected: &RuntimeConfig::KEYS,
        }));
    };
    let single = toml::Table::from_iter([(key.to_owned(), value.clone())]);
    single
        .try_into::<Settings>()
        .map(drop)
        .map_err(|_: toml::de::Error| ConfigError::in_runtime(key, value.to_string(), *form))
}

/// The TOML values that text from an environment variable or a flag might stand for, most
/// specific first; the last is always the text as a string.
fn candidates(text: &str) -> Vec<toml::Value> {
    let mut values = Vec::with_capacity(2);
    if let Ok(integer) = text.trim().parse::<i64>() {
        values.push(toml::Value::Integer(integer));
    }
    if let Ok(boolean) = text.trim().parse::<bool>() {
        values.push(toml::Value::Boolean(boolean));
    }
    values.push(toml::Value::String(text.to_owned()));
    values
}

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
enum ErrorKind {
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
    fn new(kind: ErrorKind) -> Self {
        ConfigError { kind, path: None }
    }

    fn io(path: &Path, err: io::Error) -> Self {
        ConfigError {
            kind: ErrorKind::Io(err),
            path: Some(path.to_owned()),
        }
    }

    fn syntax(text: &str, err: &toml::de::Error) -> Self {
        let offset = err.span().map_or(0, |span| span.start);
        let (line, column) = line_column(text, offset);
        let message = err.message().trim_end().to_owned();
        ConfigError::new(ErrorKind::Syntax {
            line,
            column,
            message,
        })
    }

    fn invalid(key: String, value: String, expected: impl Into<String>) -> Self {
        ConfigError::new(ErrorKind::Invalid {
            key,
            value,
            expected: expected.into(),
        })
    }

    fn in_runtime(key: &str, value: String, expected: impl Into<String>) -> Self {
        ConfigError::invalid(format!("{SECTION}.{key}"), value, expected)
    }

    fn in_file(mut self, path: &Path) -> Self {
        self.path.get_or_insert_with(|| path.to_owned());
        self
    }

    /// Replaces the value in an `Invalid` error by the one the user wrote, when `given` knows
    /// it: a range error is found on the parsed value, which may be spelt differently
    /// ("1024KiB" parses to what we would print as "1MiB").
    fn with_given<'a>(mut self, given: impl FnOnce(&str) -> Option<&'a toml::Value>) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RuntimeConfig, ConfigError> {
        Config::from_toml_str(text).map(|config| config.runtime)
    }

    fn error(text: &str) -> ConfigError {
        parse(text).expect_err("the configuration should be refused")
    }

    #[test]
    fn durations_are_written_in_one_unit_and_read_back_unchanged() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(1), "1ns"),
            (Duration::from_nanos(32_768), "32.768us"),
            (Duration::from_nanos(999), "999ns"),
            (Duration::from_nanos(1_000_001), "1000.001us"),
            (Duration::from_micros(50), "50us"),
            (Duration::from_micros(1_500), "1.5ms"),
            (Duration::from_millis(100), "100ms"),
            (Duration::from_millis(1_250), "1.25s"),
            (Duration::from_secs(5), "5s"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(7_200), "2h"),
            (Duration::from_secs(86_400), "24h"),
        ];
        for (duration, text) in cases {
            assert_eq!(format_duration(duration), text);
            assert_eq!(
                humantime_serde::re::humantime::parse_duration(text),
                Ok(duration),
                "{text} reads back"
            );
        }
    }

    #[test]
    fn a_written_configuration_spells_durations_in_one_unit() {
        let text = toml::to_string(&RuntimeConfig::default()).unwrap();
        assert!(text.contains(r#"poll_max = "32.768us""#), "{text}");
        assert_eq!(
            parse(&format!("[runtime]\n{text}")).unwrap(),
            RuntimeConfig::default()
        );
    }

    #[test]
    fn defaults() {
        let config = RuntimeConfig::default();
        assert_eq!(config.threads(), None);
        assert!(!config.pin_threads());
        assert_eq!(config.stack_size_bytes(), 1 << 20);
        assert_eq!(config.pool_max(), 128);
        assert_eq!(config.poll_max(), Duration::from_nanos(32_768));
        assert_eq!(config.thread_name(), "coscheduler-worker");
        assert_eq!(config.stall_threshold(), Duration::from_millis(100));
        assert_eq!(config.blocking_threads(), 64);
        assert_eq!(config.blocking_queue(), 256);
        assert_eq!(config.shutdown_timeout(), Duration::from_secs(5));
        assert_eq!(parse("").unwrap(), config);
        assert_eq!(parse("[runtime]").unwrap(), config);
        assert_eq!(Config::default().runtime, config);
    }

    #[test]
    fn every_key_parses() {
        let config = parse(
            r#"
            [runtime]
            threads = 3
            pin_threads = true
            stack_size = "64KiB"
            pool_max = 0
            poll_max = "50us"
            thread_name = "io"
            stall_threshold = "0s"
            blocking_threads = 4
            blocking_queue = 0
            shutdown_timeout = "250ms"
            "#,
        )
        .unwrap();
        assert_eq!(config.threads(), NonZeroUsize::new(3));
        assert!(config.pin_threads());
        assert_eq!(config.stack_size_bytes(), 64 * 1024);
        assert_eq!(config.pool_max(), 0);
        assert_eq!(config.poll_max(), Duration::from_micros(50));
        assert_eq!(config.thread_name(), "io");
        assert_eq!(config.stall_threshold(), Duration::ZERO);
        assert_eq!(config.blocking_threads(), 4);
        assert_eq!(config.blocking_queue(), 0);
        assert_eq!(config.shutdown_timeout(), Duration::from_millis(250));
        let refused = error("[runtime]\nshutdown_timeout = \"2h\"").to_string();
        assert!(refused.contains("runtime.shutdown_timeout"), "{refused}");
        let refused = error("[runtime]\nblocking_threads = 0").to_string();
        assert!(
            refused.contains("runtime.blocking_threads = 0"),
            "{refused}"
        );
        let refused = error("[runtime]\nstall_threshold = \"2h\"").to_string();
        assert!(refused.contains("runtime.stall_threshold"), "{refused}");
    }

    #[test]
    fn threads_auto_spellings() {
        for text in ["threads = 0", r#"threads = "auto""#, r#"threads = "AUTO""#] {
            let config = parse(&format!("[runtime]\n{text}")).unwrap();
            assert_eq!(config.threads(), None, "{text}");
        }
        let config = parse("[runtime]\nthreads = \"8\"").unwrap();
        assert_eq!(config.threads(), NonZeroUsize::new(8));
    }

    #[test]
    fn sizes_accept_integers_and_units() {
        let config = parse("[runtime]\nstack_size = 32768").unwrap();
        assert_eq!(config.stack_size_bytes(), 32 * 1024);
        let config = parse("[runtime]\nstack_size = \"1 GiB\"").unwrap();
        assert_eq!(config.stack_size_bytes(), 1 << 30);
    }

    #[test]
    fn other_tables_are_ignored() {
        let config = parse("[stress]\nduration = \"1s\"\nwhatever = 1\n[runtime]\npool_max = 3");
        assert_eq!(config.unwrap().pool_max(), 3);
    }

    /// Every bad value: the message names the key, repeats the value and says what was
    /// expected.
    #[test]
    fn bad_values_name_key_value_and_form() {
        let cases = [
            (
                "threads = -2",
                "runtime.threads",
                "-2",
                r#"0, "auto" or a positive integer"#,
            ),
            (
                "threads = \"many\"",
                "runtime.threads",
                r#""many""#,
                "positive integer",
            ),
            (
                "pin_threads = \"yes\"",
                "runtime.pin_threads",
                r#""yes""#,
                "true or false",
            ),
            (
                "stack_size = \"12 parsecs\"",
                "runtime.stack_size",
                r#""12 parsecs""#,
                r#"a size such as "64KiB" or "1MiB""#,
            ),
            (
                "stack_size = \"8KiB\"",
                "runtime.stack_size",
                r#""8KiB""#,
                "from \"16KiB\"",
            ),
            (
                "stack_size = \"2GiB\"",
                "runtime.stack_size",
                r#""2GiB""#,
                "to \"1GiB\"",
            ),
            (
                "pool_max = -1",
                "runtime.pool_max",
                "-1",
                "a non-negative integer",
            ),
            (
                "pool_max = 1.5",
                "runtime.pool_max",
                "1.5",
                "a non-negative integer",
            ),
            (
                "poll_max = \"soon\"",
                "runtime.poll_max",
                r#""soon""#,
                "a duration such as",
            ),
            (
                "poll_max = 50",
                "runtime.poll_max",
                "50",
                "a duration such as",
            ),
            (
                "poll_max = \"2s\"",
                "runtime.poll_max",
                r#""2s""#,
                "at most \"1s\"",
            ),
            (
                "thread_name = \"\"",
                "runtime.thread_name",
                r#""""#,
                "a non-empty string",
            ),
            (
                "thread_name = \"a\\u0000b\"",
                "runtime.thread_name",
                "\"a\\u0000b\"",
                "NUL",
            ),
            ("thread_name = 7", "runtime.thread_name", "7", "a string"),
        ];
        for (line, key, value, expected) in cases {
            let err = error(&format!("[runtime]\n{line}"));
            let message = err.to_string();
            assert_eq!(err.key(), Some(key), "{line}: {message}");
            assert!(
                message.starts_with(&format!("{key} = {value}: expected ")),
                "{message}"
            );
            assert!(message.contains(expected), "{line}: {message}");
        }
    }

    #[test]
    fn runtime_must_be_a_table() {
        let err = error("runtime = 4");
        assert_eq!(err.key(), Some("runtime"));
        assert_eq!(err.to_string(), "runtime = 4: expected a table ([runtime])");
    }

    #[test]
    fn unknown_key_lists_the_known_ones() {
        let err = error("[runtime]\nstak_size = \"64KiB\"");
        assert_eq!(err.key(), Some("runtime.stak_size"));
        assert_eq!(
            err.to_string(),
            "unknown key runtime.stak_size (expected one of: threads, pin_threads, stack_size, \
             pool_max, poll_max, thread_name, stall_threshold, blocking_threads, blocking_queue, shutdown_timeout)"
        );
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let err = error("[runtime]\npool_max = 3\nthreads = = 2\n");
        let message = err.to_string();
        assert_eq!(err.key(), None);
        assert!(
            message.starts_with("TOML syntax error at line 3, column 11: "),
            "{message}"
        );
    }

    #[test]
    fn file_errors_name_the_path() {
        let missing = Path::new("/nonexistent/coscheduler/config.toml");
        let err = Config::from_file(missing).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("cannot read /nonexistent/coscheduler/config.toml: "));
        assert!(std::error::Error::source(&err).is_some());
        assert_eq!(err.key(), None);

        let dir = std::env::temp_dir().join(format!("coscheduler-config-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bad.toml");
        fs::write(&file, "[runtime]\npool_max = \"lots\"\n").unwrap();
        let message = Config::from_file(&file).unwrap_err().to_string();
        fs::remove_dir_all(&dir).unwrap();
        let expected = format!(
            "{}: runtime.pool_max = \"lots\": expected a non-negative integer",
            file.display()
        );
        assert_eq!(message, expected);
    }

    #[test]
    fn set_reads_flag_and_environment_text() {
        let mut config = RuntimeConfig::default();
        config.set("threads", "4").unwrap();
        config.set("pin_threads", "true").unwrap();
        config.set("stack_size", "64KiB").unwrap();
        config.set("pool_max", "7").unwrap();
        config.set("poll_max", "1ms").unwrap();
        config.set("thread_name", "1234").unwrap();
        assert_eq!(config.threads(), NonZeroUsize::new(4));
        assert!(config.pin_threads());
        assert_eq!(config.stack_size_bytes(), 64 * 1024);
        assert_eq!(config.pool_max(), 7);
        assert_eq!(config.poll_max(), Duration::from_millis(1));
        assert_eq!(config.thread_name(), "1234");
        config.set("threads", "auto").unwrap();
        assert_eq!(config.threads(), None);
    }

    #[test]
    fn set_refuses_and_leaves_the_config_alone() {
        let mut config = RuntimeConfig::default();
        let err = config.set("stack_size", "4KiB").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"runtime.stack_size = "4KiB": expected a size from "16KiB" to "1GiB""#
        );
        let err = config.set("pool_max", "-5").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"runtime.pool_max = "-5": expected a non-negative integer"#
        );
        let err = config.set("stak_size", "1MiB").unwrap_err();
        assert_eq!(err.key(), Some("runtime.stak_size"));
        assert_eq!(config, RuntimeConfig::default());
    }

    #[test]
    fn serde_paths_validate_too() {
        #[derive(Deserialize)]
        struct Tool {
            runtime: RuntimeConfig,
        }
        let tool: Tool = toml::from_str("[runtime]\npool_max = 2").unwrap();
        assert_eq!(tool.runtime.pool_max(), 2);
        let err = toml::from_str::<Tool>("[runtime]\nstack_size = 1024")
            .err()
            .unwrap();
        assert!(
            err.message().contains("runtime.stack_size"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn serializes_losslessly() {
        let mut config = RuntimeConfig::default();
        config.set("stack_size", "100000").unwrap();
        config.set("threads", "3").unwrap();
        let text = toml::to_string(&Config::to_document(&config)).unwrap();
        assert_eq!(parse(&text).unwrap(), config, "{text}");
    }

    #[test]
    fn keys_match_fields() {
        let document = toml::Table::try_from(RuntimeConfig::default()).unwrap();
        let written: Vec<&str> = document.keys().map(String::as_str).collect();
        let mut keys = RuntimeConfig::KEYS.to_vec();
        keys.sort_unstable();
        assert_eq!(written, keys);
    }

    impl Config {
        fn to_document(runtime: &RuntimeConfig) -> toml::Table {
            toml::Table::from_iter([(
                SECTION.to_owned(),
                toml::Value::try_from(runtime.clone()).unwrap(),
            )])
        }
    }
}
