//! Number formatting shared by the human renderer and the progress line.

/// Nanoseconds with three significant digits and a unit a person reads at a glance:
/// `870 ns`, `1.23 µs`, `45.6 ms`, `2.00 s`.
pub fn format_nanos(nanos: u64) -> String {
    const UNITS: [(f64, &str); 3] = [(1e9, "s"), (1e6, "ms"), (1e3, "µs")];
    let value = nanos as f64;
    match UNITS.iter().find(|(scale, _)| value >= *scale) {
        Some((scale, unit)) => format!("{} {unit}", three_digits(value / scale)),
        None => format!("{nanos} ns"),
    }
}

/// `x` with three significant digits, for 1 <= x < 1000 (and sensibly beyond).
fn three_digits(x: f64) -> String {
    if x < 10.0 {
        format!("{x:.2}")
    } else if x < 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

/// An integer with thousands separators: `1,234,567`.
///
/// A `String` rather than indicatif's `HumanCount` itself, because `HumanCount` ignores the
/// width and alignment that the tables pass.
pub fn format_count(count: u64) -> String {
    indicatif::HumanCount(count).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanos() {
        assert_eq!(format_nanos(0), "0 ns");
        assert_eq!(format_nanos(999), "999 ns");
        assert_eq!(format_nanos(1_234), "1.23 µs");
        assert_eq!(format_nanos(45_600_000), "45.6 ms");
        assert_eq!(format_nanos(2_000_000_000), "2.00 s");
        assert_eq!(format_nanos(250_000_000_000), "250 s");
    }

    #[test]
    fn counts() {
        assert_eq!(format_count(0), "0");
        assert_eq!(format_count(999), "999");
        assert_eq!(format_count(1_000), "1,000");
        assert_eq!(format_count(1_234_567), "1,234,567");
    }
}
