//! The `[stress]` table: how long, how many coroutines, which workloads.
//!
//! It is checked the way coscheduler checks `[runtime]` (see `coscheduler::config`): each key
//! is deserialized on its own so that a bad value is pinned to its key, then the whole table,
//! then the ranges. Workload names are checked against the registry later, in
//! [`Settings::resolve`](super::Settings::resolve), which knows where the names came from.

use std::time::Duration;

use coscheduler::config::format_duration;
use serde::{Deserialize, Serialize};

use super::error::SettingsError;

/// The workload run when none is named: all of them at once.
pub const DEFAULT_WORKLOAD: &str = "mixed";

/// The name of the table.
pub(super) const SECTION: &str = "stress";

/// The keys of `[stress]` with the form each takes, in documentation order.
const KEY_FORMS: [(&str, &str); 5] = [
    ("duration", r#"a duration such as "10s" or "500ms""#),
    ("coroutines", "a positive integer"),
    ("seed", "a non-negative integer"),
    ("stall_timeout", r#"a duration such as "10s""#),
    (
        "workloads",
        r#"a list of workload names such as ["mutex", "queue"]"#,
    ),
];

/// Bounds of the ranges checked after parsing.
const DURATION_RANGE: (Duration, Duration) =
    (Duration::from_millis(1), Duration::from_secs(86_400));
const STALL_RANGE: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(3_600));
/// Per context; the mapping limit (about 32k guarded stacks, docs/BENCHMARKS.md W6) is the real
/// ceiling and depends on the thread count, so this only catches typos.
const MAX_COROUTINES: usize = 65_536;

/// The workload list, always as a list once parsed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(from = "WorkloadList", into = "Vec<String>")]
struct Workloads(Vec<String>);

/// What a file may write for `workloads`: a list, or one string of names separated by commas
/// (which is also how `COSTRESS_WORKLOADS` and flags spell it).
#[derive(Deserialize)]
#[serde(untagged)]
enum WorkloadList {
    List(Vec<String>),
    Joined(String),
}

impl From<WorkloadList> for Workloads {
    fn from(list: WorkloadList) -> Self {
        Workloads(match list {
            WorkloadList::List(names) => names,
            WorkloadList::Joined(joined) => joined
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }
}

impl From<Workloads> for Vec<String> {
    fn from(workloads: Workloads) -> Self {
        workloads.0
    }
}

/// Writes a duration as `[runtime]` does ([`format_duration`]), so that `--print-config`
/// shows `1.5s` and not `1s 500ms`; it is read with humantime's forms.
fn write_duration<S: serde::Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_duration(*duration))
}

/// `[stress]` as serde sees it: types checked, ranges not yet.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct Fields {
    #[serde(
        deserialize_with = "humantime_serde::deserialize",
        serialize_with = "write_duration"
    )]
    duration: Duration,
    coroutines: usize,
    seed: u64,
    #[serde(
        deserialize_with = "humantime_serde::deserialize",
        serialize_with = "write_duration"
    )]
    stall_timeout: Duration,
    workloads: Workloads,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            duration: Duration::from_secs(10),
            coroutines: 32,
            seed: 1,
            stall_timeout: Duration::from_secs(10),
            workloads: Workloads(vec![DEFAULT_WORKLOAD.to_owned()]),
        }
    }
}

impl Fields {
    /// Takes the value of `key` from `other`, leaving the rest of `self` alone.
    fn take_key(&mut self, key: &str, other: Fields) {
        match key {
            "duration" => self.duration = other.duration,
            "coroutines" => self.coroutines = other.coroutines,
            "seed" => self.seed = other.seed,
            "stall_timeout" => self.stall_timeout = other.stall_timeout,
            "workloads" => self.workloads = other.workloads,
            _ => unreachable!("key {key:?} is in KEY_FORMS but not in Fields::take_key"),
        }
    }
}

/// The `[stress]` table, checked.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(try_from = "Fields", into = "Fields")]
pub struct StressConfig {
    fields: Fields,
}

impl StressConfig {
    /// The keys `[stress]` accepts, in documentation order.
    pub fn keys() -> impl Iterator<Item = &'static str> {
        KEY_FORMS.iter().map(|(key, _)| *key)
    }

    /// How long each workload runs (`duration`, default 10 s).
    pub fn duration(&self) -> Duration {
        self.fields.duration
    }

    /// Coroutines per context for workloads that scale with it (`coroutines`, default 32,
    /// the largest contention level of docs/BENCHMARKS.md W4).
    pub fn coroutines(&self) -> usize {
        self.fields.coroutines
    }

    /// The seed of every random choice (`seed`, default 1).
    pub fn seed(&self) -> u64 {
        self.fields.seed
    }

    /// How long the progress counter may stand still before the watchdog fires
    /// (`stall_timeout`, default 10 s).
    pub fn stall_timeout(&self) -> Duration {
        self.fields.stall_timeout
    }

    /// The workloads to run, in order (`workloads`, default `["mixed"]`). Not yet checked
    /// against the registry.
    pub fn workloads(&self) -> Vec<String> {
        self.fields.workloads.0.clone()
    }

    /// Sets one key from text, as an environment variable or a flag gives it; on error
    /// `self` is unchanged.
    ///
    /// # Errors
    ///
    /// A [`SettingsError`] naming `stress.<key>` if the key is unknown or the value does not
    /// fit it.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SettingsError> {
        let mut last_error = None;
        for candidate in candidates(value) {
            match check_key(key, &candidate) {
                Ok(parsed) => {
                    let mut fields = self.fields.clone();
                    fields.take_key(key, parsed);
                    *self = StressConfig::try_from(fields)
                        .map_err(|err| err.with_given(|_| Some(&candidate)))?;
                    return Ok(());
                }
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.expect("candidates() always yields the value as a string"))
    }

    /// Checks and converts a `[stress]` table.
    pub(super) fn from_table(table: &toml::Table) -> Result<StressConfig, SettingsError> {
        for (key, value) in table {
            check_key(key, value)?;
        }
        let fields: Fields = table.clone().try_into().map_err(|err: toml::de::Error| {
            SettingsError::invalid(SECTION, "{ ... }".to_owned(), err.message())
        })?;
        StressConfig::try_from(fields).map_err(|err| err.with_given(|key| table.get(key)))
    }
}

impl TryFrom<Fields> for StressConfig {
    type Error = SettingsError;

    /// The range checks, which serde's types cannot express.
    fn try_from(fields: Fields) -> Result<Self, SettingsError> {
        check_duration("duration", fields.duration, DURATION_RANGE)?;
        check_duration("stall_timeout", fields.stall_timeout, STALL_RANGE)?;
        if !(1..=MAX_COROUTINES).contains(&fields.coroutines) {
            return Err(SettingsError::invalid(
                "stress.coroutines",
                fields.coroutines.to_string(),
                format!("an integer from 1 to {MAX_COROUTINES}"),
            ));
        }
        if fields.workloads.0.is_empty() {
            return Err(SettingsError::invalid(
                "stress.workloads",
                "[]".to_owned(),
                "at least one workload name",
            ));
        }
        Ok(StressConfig { fields })
    }
}

impl From<StressConfig> for Fields {
    fn from(config: StressConfig) -> Self {
        config.fields
    }
}

fn check_duration(
    key: &str,
    value: Duration,
    (min, max): (Duration, Duration),
) -> Result<(), SettingsError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    let show = |d| format!("{:?}", format_duration(d));
    Err(SettingsError::invalid(
        &format!("{SECTION}.{key}"),
        show(value),
        format!("a duration from {} to {}", show(min), show(max)),
    ))
}

/// Deserializes `key = value` on its own, which pins a type error to that key.
fn check_key(key: &str, value: &toml::Value) -> Result<Fields, SettingsError> {
    let Some((_, form)) = KEY_FORMS.iter().find(|(name, _)| *name == key) else {
        return Err(SettingsError::unknown_key(
            format!("{SECTION}.{key}"),
            StressConfig::keys().collect(),
        ));
    };
    let single = toml::Table::from_iter([(key.to_owned(), value.clone())]);
    single.try_into().map_err(|_: toml::de::Error| {
        SettingsError::invalid(&format!("{SECTION}.{key}"), value.to_string(), *form)
    })
}

/// The TOML values that text from an environment variable or a flag might stand for, most
/// specific first; the last is always the text as a string.
fn candidates(text: &str) -> Vec<toml::Value> {
    let mut values = Vec::with_capacity(2);
    if let Ok(integer) = text.trim().parse::<i64>() {
        values.push(toml::Value::Integer(integer));
    }
    values.push(toml::Value::String(text.to_owned()));
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<StressConfig, SettingsError> {
        StressConfig::from_table(&text.parse().unwrap())
    }

    #[test]
    fn defaults() {
        let config = StressConfig::default();
        assert_eq!(config.duration(), Duration::from_secs(10));
        assert_eq!(config.coroutines(), 32);
        assert_eq!(config.seed(), 1);
        assert_eq!(config.stall_timeout(), Duration::from_secs(10));
        assert_eq!(config.workloads(), ["mixed"]);
        assert_eq!(parse("").unwrap(), config);
    }

    #[test]
    fn every_key_parses() {
        let config = parse(
            r#"
            duration = "250ms"
            coroutines = 4
            seed = 99
            stall_timeout = "2s"
            workloads = ["mutex", "queue"]
            "#,
        )
        .unwrap();
        assert_eq!(config.duration(), Duration::from_millis(250));
        assert_eq!(config.coroutines(), 4);
        assert_eq!(config.seed(), 99);
        assert_eq!(config.stall_timeout(), Duration::from_secs(2));
        assert_eq!(config.workloads(), ["mutex", "queue"]);
        assert_eq!(
            parse("workloads = \"wake, sleep\"").unwrap().workloads(),
            ["wake", "sleep"]
        );
    }

    #[test]
    fn bad_values_name_key_value_and_form() {
        let cases = [
            (
                "duration = \"forever\"",
                "stress.duration",
                r#""forever""#,
                "a duration such as",
            ),
            (
                "duration = \"0s\"",
                "stress.duration",
                r#""0s""#,
                r#"from "1ms" to "24h""#,
            ),
            (
                "coroutines = 0",
                "stress.coroutines",
                "0",
                "from 1 to 65536",
            ),
            (
                "coroutines = \"lots\"",
                "stress.coroutines",
                r#""lots""#,
                "a positive integer",
            ),
            ("seed = -1", "stress.seed", "-1", "a non-negative integer"),
            (
                "stall_timeout = \"1ms\"",
                "stress.stall_timeout",
                r#""1ms""#,
                "from \"100ms\"",
            ),
            ("workloads = []", "stress.workloads", "[]", "at least one"),
            (
                "workloads = 3",
                "stress.workloads",
                "3",
                "a list of workload names",
            ),
        ];
        for (line, key, value, expected) in cases {
            let err = parse(line).unwrap_err();
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
    fn unknown_key() {
        let err = parse("durations = \"1s\"").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown key stress.durations (expected one of: duration, coroutines, seed, \
             stall_timeout, workloads)"
        );
    }

    #[test]
    fn set_from_text() {
        let mut config = StressConfig::default();
        config.set("duration", "3s").unwrap();
        config.set("coroutines", "8").unwrap();
        config.set("seed", "7").unwrap();
        config.set("workloads", "echo,wake").unwrap();
        assert_eq!(config.duration(), Duration::from_secs(3));
        assert_eq!(config.coroutines(), 8);
        assert_eq!(config.seed(), 7);
        assert_eq!(config.workloads(), ["echo", "wake"]);
        let err = config.set("coroutines", "0").unwrap_err();
        assert_eq!(
            err.to_string(),
            "stress.coroutines = 0: expected an integer from 1 to 65536"
        );
        assert_eq!(config.coroutines(), 8);
    }
}
