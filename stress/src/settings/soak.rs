//! The soak's limits: when to stop, and how long each create/drop cycle runs its workload.

use std::time::Duration;

use super::error::SettingsError;
use super::invocation::SoakRequest;
use coscheduler::config::format_duration;

/// How long each cycle runs its workload when `--cycle` is not given.
pub const DEFAULT_CYCLE: Duration = Duration::from_secs(1);

/// Leftover coroutines of each kind per context when `--leftovers` is not given.
pub const DEFAULT_LEFTOVERS: usize = 16;

/// The most `--leftovers`: each costs eight coroutines per context (seven kinds, and a
/// `co_timeout`'s function runs in a coroutine of its own).
const MAX_LEFTOVERS: usize = 4_096;

/// The shortest and longest `--cycle`.
const CYCLE_RANGE: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(3_600));

/// When a soak stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoakLimit {
    /// After this many contended lock operations (`--ops`).
    Ops(u64),
    /// After this long (`stress.duration`).
    Time(Duration),
}

/// A checked soak request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Soak {
    /// When to stop; checked between cycles, so the last cycle runs to its end.
    pub limit: SoakLimit,
    /// How long the workload runs in each cycle.
    pub cycle: Duration,
    /// Coroutines of each kind (suspended, sleeping, waiting on a lock, a queue, a join or a
    /// timeout) left suspended per context when the runtime is torn down; 0 leaves none (and
    /// no lock holder either).
    pub leftovers: usize,
}

impl Soak {
    /// Checks `--ops` and `--cycle`; without `--ops` the soak runs for `duration`.
    ///
    /// # Errors
    ///
    /// A [`SettingsError`] naming the flag, the value and the expected form.
    pub fn resolve(request: &SoakRequest, duration: Duration) -> Result<Soak, SettingsError> {
        let limit = match &request.ops {
            Some(text) => SoakLimit::Ops(parse_ops(text)?),
            None => SoakLimit::Time(duration),
        };
        let cycle = match &request.cycle {
            Some(text) => parse_cycle(text)?,
            None => DEFAULT_CYCLE,
        };
        let leftovers = match &request.leftovers {
            Some(text) => parse_leftovers(text)?,
            None => DEFAULT_LEFTOVERS,
        };
        Ok(Soak {
            limit,
            cycle,
            leftovers,
        })
    }
}

/// A positive count, as an integer (`1000000`, `1_000_000`) or in scientific notation
/// (`1e9`, `2.5e6`) as long as it is a whole number.
fn parse_ops(text: &str) -> Result<u64, SettingsError> {
    let invalid = || {
        SettingsError::invalid(
            "--ops",
            format!("{text:?}"),
            "a positive whole number such as 1000000 or 1e9",
        )
    };
    let clean: String = text.trim().chars().filter(|&c| c != '_').collect();
    let value = match clean.parse::<u64>() {
        Ok(value) => value,
        Err(_) => {
            let float: f64 = clean.parse().map_err(|_| invalid())?;
            // 2^64 itself is not representable; anything from it up is out of range.
            if !(float.is_finite() && float.fract() == 0.0 && float < 18_446_744_073_709_551_616.0)
            {
                return Err(invalid());
            }
            float as u64
        }
    };
    if value == 0 {
        return Err(invalid());
    }
    Ok(value)
}

fn parse_leftovers(text: &str) -> Result<usize, SettingsError> {
    match text.trim().parse::<usize>() {
        Ok(count) if count <= MAX_LEFTOVERS => Ok(count),
        _ => Err(SettingsError::invalid(
            "--leftovers",
            format!("{text:?}"),
            format!("an integer from 0 to {MAX_LEFTOVERS}"),
        )),
    }
}

fn parse_cycle(text: &str) -> Result<Duration, SettingsError> {
    let (min, max) = CYCLE_RANGE;
    let expected = format!(
        "a duration from {:?} to {:?}",
        format_duration(min),
        format_duration(max)
    );
    match humantime::parse_duration(text.trim()) {
        Ok(cycle) if (min..=max).contains(&cycle) => Ok(cycle),
        _ => Err(SettingsError::invalid(
            "--cycle",
            format!("{text:?}"),
            expected,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(ops: Option<&str>, cycle: Option<&str>) -> SoakRequest {
        SoakRequest {
            enabled: true,
            ops: ops.map(str::to_owned),
            cycle: cycle.map(str::to_owned),
            leftovers: None,
        }
    }

    #[test]
    fn limits() {
        let ten = Duration::from_secs(10);
        let soak = Soak::resolve(&request(None, None), ten).unwrap();
        assert_eq!(soak.limit, SoakLimit::Time(ten));
        assert_eq!(soak.cycle, DEFAULT_CYCLE);
        assert_eq!(soak.leftovers, DEFAULT_LEFTOVERS);
        for (text, ops) in [
            ("1e9", 1_000_000_000),
            ("2.5e3", 2_500),
            ("1_000", 1_000),
            ("7", 7),
        ] {
            let soak = Soak::resolve(&request(Some(text), Some("50ms")), ten).unwrap();
            assert_eq!(soak.limit, SoakLimit::Ops(ops), "{text}");
            assert_eq!(soak.cycle, Duration::from_millis(50));
        }
    }

    #[test]
    fn bad_values_are_refused() {
        for text in ["0", "-3", "1.5", "lots", "1e30", "inf"] {
            let err = Soak::resolve(&request(Some(text), None), Duration::ZERO).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("--ops = {text:?}: expected a positive")),
                "{err}"
            );
        }
        let mut many = request(None, None);
        many.leftovers = Some("5000".to_owned());
        let err = Soak::resolve(&many, Duration::ZERO).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--leftovers = \"5000\": expected an integer from 0 to 4096"
        );
        many.leftovers = Some("0".to_owned());
        assert_eq!(Soak::resolve(&many, Duration::ZERO).unwrap().leftovers, 0);
        for text in ["1ms", "2h", "soon"] {
            let err = Soak::resolve(&request(None, Some(text)), Duration::ZERO).unwrap_err();
            assert!(
                err.to_string()
                    .contains("expected a duration from \"10ms\""),
                "{err}"
            );
        }
    }
}
