//! The statistics clock: nanoseconds from a cheap counter.
//!
//! On x86-64 it reads the time-stamp counter (`rdtsc`, about 10 ns on the
//! reference VM against about 26 ns for `Instant::now()`), which is invariant
//! (`constant_tsc`, `nonstop_tsc`) on every CPU this project targets; the
//! tick length is calibrated once against `Instant` over
//! [`CALIBRATION`] when the first statistics entry is registered, so the
//! calibration never runs on a lock path. Elsewhere it is `Instant`.
//!
//! Readings are only ever subtracted from each other on the same machine;
//! they are not comparable with other clocks.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long the one-time calibration busy-waits: long enough that
/// `Instant`'s granularity is negligible (< 0.01 %).
#[cfg(target_arch = "x86_64")]
const CALIBRATION: Duration = Duration::from_millis(2);

struct Base {
    #[cfg(not(target_arch = "x86_64"))]
    instant: Instant,
    #[cfg(target_arch = "x86_64")]
    tsc: u64,
    /// Nanoseconds per tick, as a 32.32 fixed-point number.
    #[cfg(target_arch = "x86_64")]
    ns_per_tick_q32: u64,
}

static BASE: OnceLock<Base> = OnceLock::new();

#[cfg(target_arch = "x86_64")]
#[inline]
fn ticks() -> u64 {
    // SAFETY: `rdtsc` has no preconditions; every x86-64 CPU has it.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// An `Instant` and the tick count at (nearly) the same moment: the best of
/// a few tries, so that a preemption between the two reads cannot skew the
/// calibration.
#[cfg(target_arch = "x86_64")]
fn paired_reading() -> (Instant, u64) {
    (0..5)
        .map(|_| {
            let before = ticks();
            let instant = Instant::now();
            let after = ticks();
            (after.wrapping_sub(before), instant, before / 2 + after / 2)
        })
        .min_by_key(|&(gap, ..)| gap)
        .map(|(_, instant, tsc)| (instant, tsc))
        .unwrap_or_else(|| (Instant::now(), ticks()))
}

fn calibrate() -> Base {
    #[cfg(target_arch = "x86_64")]
    {
        let (i0, tsc) = paired_reading();
        while i0.elapsed() < CALIBRATION {
            std::hint::spin_loop();
        }
        let (i1, t1) = paired_reading();
        let ns = i1.duration_since(i0).as_nanos();
        let dt = t1.wrapping_sub(tsc).max(1);
        let ns_per_tick_q32 = ((ns << 32) / u128::from(dt)) as u64;
        Base {
            tsc,
            ns_per_tick_q32,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    Base {
        instant: Instant::now(),
    }
}

/// Calibrates now (called when a statistics entry is registered).
pub(crate) fn init() {
    BASE.get_or_init(calibrate);
}

/// Nanoseconds since the calibration, never 0 (0 means "no timestamp").
#[inline]
pub(crate) fn now() -> u64 {
    let base = BASE.get_or_init(calibrate);
    #[cfg(target_arch = "x86_64")]
    {
        let dt = ticks().wrapping_sub(base.tsc);
        ((u128::from(dt) * u128::from(base.ns_per_tick_q32)) >> 32) as u64 + 1
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        base.instant.elapsed().as_nanos() as u64 + 1
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn tracks_instant_within_a_percent() {
        init(); // outside the measured span: calibrating busy-waits
        let (i0, c0) = (Instant::now(), now());
        std::thread::sleep(Duration::from_millis(20));
        let (di, dc) = (i0.elapsed().as_nanos() as f64, (now() - c0) as f64);
        assert!(
            (dc / di - 1.0).abs() < 0.01,
            "clock {dc} ns vs Instant {di} ns"
        );
    }
}
