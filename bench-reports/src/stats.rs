//! Summary statistics of a handful of samples: the median, a relative spread, and the
//! extremes.
//!
//! Benchmarks take few samples (5 to 15), so the estimators are the robust order statistics,
//! not the mean and standard deviation that one descheduled sample would drag.

/// The median and relative interquartile range of a set of samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// The middle sample (mean of the two middle ones for an even count).
    pub median: f64,
    /// `(Q3 - Q1) / median`, a fraction; 0 when the median is 0.
    pub spread: f64,
    /// The smallest sample: with the median and `max`, what shows a bimodal row (a few
    /// collapsed samples) that the median and the IQR are built to ignore.
    pub min: f64,
    /// The largest sample.
    pub max: f64,
}

/// Summarises `samples`; `None` when there are none or one is not finite.
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    if samples.is_empty() || samples.iter().any(|s| !s.is_finite()) {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = quantile(&sorted, 0.5);
    let iqr = quantile(&sorted, 0.75) - quantile(&sorted, 0.25);
    let spread = if median == 0.0 {
        0.0
    } else {
        (iqr / median).abs()
    };
    Some(Summary {
        median,
        spread,
        min: sorted[0],
        max: sorted[sorted.len() - 1],
    })
}

/// The `q` quantile of sorted, non-empty data, interpolating linearly between ranks (the
/// "type 7" definition that spreadsheets and NumPy use by default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = q * (sorted.len() - 1) as f64;
    let low = rank.floor() as usize;
    let high = rank.ceil() as usize;
    sorted[low] + (sorted[high] - sorted[low]) * (rank - low as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_and_even_counts() {
        let s = summarize(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!(s.median, 2.0);
        assert_eq!(s.spread, 0.5);
        let s = summarize(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert_eq!(s.spread, 1.5 / 2.5);
        assert_eq!((s.min, s.max), (1.0, 4.0));
    }

    #[test]
    fn one_wild_sample_barely_moves_the_spread() {
        let s = summarize(&[100.0, 101.0, 99.0, 100.0, 1000.0]).unwrap();
        assert_eq!(s.median, 100.0);
        assert!(s.spread <= 0.02, "spread = {}", s.spread);
        // ... but the extremes keep it in view.
        assert_eq!((s.min, s.max), (99.0, 1000.0));
    }

    #[test]
    fn rejects_empty_and_nan() {
        assert!(summarize(&[]).is_none());
        assert!(summarize(&[1.0, f64::NAN]).is_none());
    }
}
