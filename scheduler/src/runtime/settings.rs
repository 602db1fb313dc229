//! The knobs of a runtime that a configuration file can set, in one struct.
//!
//! [`Builder`](super::Builder) keeps its settings here and
//! [`RuntimeConfig`](crate::RuntimeConfig) (cargo feature `config`) parses a
//! `[runtime]` table into the same struct, so applying a configuration is one
//! assignment and a new knob is added in one place: a field here (with its
//! serde form), its default below, a setter on the builder and an accessor on
//! the configuration.

use std::num::NonZeroUsize;
use std::time::Duration;

use crate::aio::DEFAULT_POLL_MAX;
use crate::core::home::DEFAULT_SHUTDOWN_TIMEOUT;
use crate::runtime::blocking::{DEFAULT_BLOCKING_QUEUE, DEFAULT_BLOCKING_THREADS};
use crate::runtime::stall::DEFAULT_STALL_THRESHOLD;
use crate::stack::DEFAULT_STACK_SIZE;
use crate::stackpool::INITIAL_POOL_MAX;

/// The worker-name prefix when none is given.
pub(crate) const DEFAULT_THREAD_NAME: &str = "coscheduler-worker";

/// A runtime's configurable settings. Field names are the `[runtime]` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Deserialize, serde::Serialize),
    serde(deny_unknown_fields, default)
)]
pub(crate) struct Settings {
    /// Worker threads; `None`: one per available core.
    #[cfg_attr(
        feature = "config",
        serde(with = "crate::runtime::settings::forms::threads")
    )]
    pub(crate) threads: Option<NonZeroUsize>,
    /// Pin worker `i` to core `i mod cores`.
    pub(crate) pin_threads: bool,
    /// Usable bytes of each coroutine stack.
    #[cfg_attr(
        feature = "config",
        serde(with = "crate::runtime::settings::forms::size")
    )]
    pub(crate) stack_size: usize,
    /// Stacks added to the shared pool's maximum while the runtime runs.
    pub(crate) pool_max: usize,
    /// Each worker's adaptive busy-polling maximum.
    #[cfg_attr(
        feature = "config",
        serde(with = "crate::runtime::settings::forms::duration")
    )]
    pub(crate) poll_max: Duration,
    /// Worker thread name prefix.
    pub(crate) thread_name: String,
    /// How long a coroutine may run without suspending before it is reported.
    #[cfg_attr(
        feature = "config",
        serde(with = "crate::runtime::settings::forms::duration")
    )]
    pub(crate) stall_threshold: Duration,
    /// The blocking pool's most threads.
    pub(crate) blocking_threads: usize,
    /// Blocking closures that may wait for a pool thread.
    pub(crate) blocking_queue: usize,
    /// How long a shutdown waits for coroutines to unwind.
    #[cfg_attr(
        feature = "config",
        serde(with = "crate::runtime::settings::forms::duration")
    )]
    pub(crate) shutdown_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            threads: None,
            pin_threads: false,
            stack_size: DEFAULT_STACK_SIZE,
            pool_max: INITIAL_POOL_MAX,
            poll_max: DEFAULT_POLL_MAX,
            thread_name: DEFAULT_THREAD_NAME.to_owned(),
            stall_threshold: DEFAULT_STALL_THRESHOLD,
            blocking_threads: DEFAULT_BLOCKING_THREADS,
            blocking_queue: DEFAULT_BLOCKING_QUEUE,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

#[cfg(feature = "config")]
/// The serde forms of the values whose file spelling differs from their type.
pub(crate) mod forms {
    use std::time::Duration;

    /// Writes a size exactly, in the largest binary unit that divides it.
    ///
    /// `ByteSize`'s own `Display` rounds to one decimal ("97.7 KiB"), which would make a
    /// configuration that is written out and read back differ from the original.
    pub(crate) fn exact_size(bytes: u64) -> String {
        const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        UNITS
            .iter()
            .find(|(unit, _)| bytes >= *unit && bytes % unit == 0)
            .map_or_else(
                || format!("{bytes}B"),
                |(unit, name)| format!("{}{name}", bytes / unit),
            )
    }

    /// Writes a duration exactly, in the largest unit that holds it with at most three
    /// decimals: `32.768us`, `1.5s`, `100ms`, `90s`, `2h`, `0s`.
    ///
    /// humantime's `format_duration` splits a value over several units (`32us 768ns`,
    /// `1m 30s`), which reads as two settings; this form is what a person would type, and
    /// humantime parses it back to the same value. Minutes and hours are used only for whole
    /// counts, because a fraction of a minute is not how anyone writes a time.
    pub(crate) fn exact_duration(duration: Duration) -> String {
        const UNITS: [(u128, &str, bool); 6] = [
            (3_600_000_000_000, "h", false),
            (60_000_000_000, "m", false),
            (1_000_000_000, "s", true),
            (1_000_000, "ms", true),
            (1_000, "us", true),
            (1, "ns", false),
        ];
        let nanos = duration.as_nanos();
        if nanos == 0 {
            return "0s".to_owned();
        }
        let written = |(unit, name, decimals): (u128, &str, bool)| {
            let whole = nanos / unit;
            let rest = nanos % unit;
            if whole == 0 {
                None
            } else if rest == 0 {
                Some(format!("{whole}{name}"))
            } else if decimals && (rest * 1_000) % unit == 0 {
                let thousandths = format!("{:03}", rest * 1_000 / unit);
                Some(format!(
                    "{whole}.{}{name}",
                    thousandths.trim_end_matches('0')
                ))
            } else {
                None
            }
        };
        // Microseconds with three decimals hold any count of nanoseconds, so whole
        // nanoseconds are only reached below a microsecond, and always fit.
        UNITS
            .into_iter()
            .find_map(written)
            .unwrap_or_else(|| format!("{nanos}ns"))
    }

    /// Durations: humantime's spellings when read, [`exact_duration`] when written.
    pub(crate) mod duration {
        use std::time::Duration;

        use serde::{Deserializer, Serializer};

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
            humantime_serde::deserialize(d)
        }

        pub(crate) fn serialize<S: Serializer>(
            duration: &Duration,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            s.collect_str(&super::exact_duration(*duration))
        }
    }

    /// `threads`: an integer, or a string holding `auto` or one; 0 and `auto` mean one per
    /// core (`None`).
    pub(crate) mod threads {
        use std::num::NonZeroUsize;

        use serde::{Deserialize, Deserializer, Serialize, Serializer};

        /// What a file may write.
        #[derive(Deserialize, Serialize)]
        #[serde(untagged)]
        enum Repr {
            Count(u64),
            Word(String),
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<NonZeroUsize>, D::Error> {
            // Never shown: a failure here is reported with `threads`' entry in KEY_FORMS.
            let count = match Repr::deserialize(d)? {
                Repr::Count(count) => count,
                Repr::Word(word) if word.eq_ignore_ascii_case("auto") => 0,
                Repr::Word(word) => word
                    .trim()
                    .parse()
                    .map_err(|_| serde::de::Error::custom("not a count"))?,
            };
            let count =
                usize::try_from(count).map_err(|_| serde::de::Error::custom("too many threads"))?;
            Ok(NonZeroUsize::new(count))
        }

        pub(crate) fn serialize<S: Serializer>(
            threads: &Option<NonZeroUsize>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match threads {
                None => Repr::Word("auto".to_owned()),
                // A usize always fits a u64 on the targets we build for (64-bit Linux).
                Some(count) => Repr::Count(count.get() as u64),
            }
            .serialize(s)
        }
    }

    /// `stack_size`: a byte count, or a size with a unit (`"64KiB"`, `"1 MiB"`).
    pub(crate) mod size {
        use bytesize::ByteSize;
        use serde::{Deserialize, Deserializer, Serializer};

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
            let size = ByteSize::deserialize(d)?.as_u64();
            // Sizes past the address space are refused by the range check; saturate so
            // that it sees them.
            Ok(usize::try_from(size).unwrap_or(usize::MAX))
        }

        pub(crate) fn serialize<S: Serializer>(bytes: &usize, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(&super::exact_size(*bytes as u64))
        }
    }
}
