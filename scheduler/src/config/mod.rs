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

use std::fs;
use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::runtime::settings::Settings;
use crate::runtime::settings::forms::{exact_duration, exact_size};
use crate::stack::MIN_STACK_SIZE;

mod error;

pub use self::error::ConfigError;
use self::error::ErrorKind;

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

#[cfg(test)]
mod tests;
