//! The stall detector: which coroutine keeps a worker from running the
//! others, for how long, and where it is.
//!
//! A cooperative runtime's worst failure is silent: one coroutine that
//! computes for a second, or calls a blocking system call, holds up every
//! coroutine of its context. Each [`Runtime`](crate::Runtime) therefore runs
//! a watchdog thread (unless [`Builder::stall_threshold`] is zero) that
//! samples every worker and reports a coroutine that has run longer than
//! the threshold without suspending.
//!
//! # How a stall is seen, without touching the switch path
//!
//! Every return from a coroutine to its worker already bumps the context's
//! switch counter ([`ContextMetrics::switches`]), and the worker's
//! thread-local "current coroutine" cell says what runs now. The watchdog
//! reads both, relaxed, every `threshold / 8` (between 1 and 25 ms): when two
//! samples see the same non-null current coroutine and the same switch
//! count, that coroutine has run without suspending since the first of them
//! (a suspension, a return or a nested coroutine's return would have moved
//! the count). The switch path reads no clock and stores nothing more than
//! it did; a stall's length is known to within one sampling period.
//!
//! A run that has lasted the threshold is not reported if its thread spent
//! all but a quarter of the threshold runnable but descheduled by the OS
//! (the kernel's run-queue wait, from `/proc/self/task/<tid>/schedstat`): on
//! an oversubscribed machine a coroutine that suspends every millisecond can
//! have its thread preempted for longer than the threshold, and that is not
//! the coroutine holding its worker. A thread blocked in a system call is
//! not runnable, so that time counts.
//!
//! # What is reported
//!
//! Once per stall, when it passes the threshold, the watchdog interrupts the
//! worker thread with a signal ([`capture`]), whose handler copies the
//! running coroutine's id and name and unwinds the stalled stack into a
//! preallocated slot; the frames are symbolised afterwards, on the watchdog
//! thread. The [`StallReport`] goes to the [`Builder::on_stall`] callback
//! (default: one line on stderr). When the coroutine finally suspends, the
//! total goes to [`Builder::on_stall_end`] (default: another line on stderr,
//! unless `on_stall` was set) and into the histogram of
//! [`RuntimeMetrics::stalls`](crate::RuntimeMetrics::stalls).
//!
//! # While a worker is stalled
//!
//! Its unstarted coroutines — in its stealable deque, or in the global
//! injector — are taken by the other workers as usual (work stealing looks
//! at every worker's deque); on detection the watchdog also wakes a sleeping
//! worker, in case the stalled one holds work nobody has looked at yet.
//! Started coroutines stay on their home context, as the soundness rule
//! requires, and so do coroutines placed there explicitly.
//!
//! [`Builder::stall_threshold`]: crate::Builder::stall_threshold
//! [`Builder::on_stall`]: crate::Builder::on_stall
//! [`Builder::on_stall_end`]: crate::Builder::on_stall_end
//! [`ContextMetrics::switches`]: crate::ContextMetrics::switches

pub(crate) mod capture;
pub(crate) mod detector;
pub(crate) mod handshake;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use self::capture::Captured;
use crate::aio::AioContext;

/// The default [`Builder::stall_threshold`](crate::Builder::stall_threshold):
/// 100 ms.
pub const DEFAULT_STALL_THRESHOLD: Duration = Duration::from_millis(100);

/// A coroutine that ran longer than the stall threshold without suspending,
/// as given to [`Builder::on_stall`](crate::Builder::on_stall) (when it is
/// detected) and [`Builder::on_stall_end`](crate::Builder::on_stall_end)
/// (when it is over).
///
/// Its `Display` is one line:
///
/// ```text
/// coroutine 12 (spinner) on context 3 (coscheduler-worker-0) has run for 112ms without suspending, in app::crunch at src/app.rs:40
/// ```
#[derive(Clone, Debug)]
pub struct StallReport {
    pub(crate) coroutine: Option<(u64, Option<String>)>,
    pub(crate) worker: usize,
    pub(crate) context: AioContext,
    pub(crate) elapsed: Duration,
    /// Shared by the clones, so that the frames are symbolised once.
    pub(crate) frames: Arc<Frames>,
    pub(crate) ended: bool,
}

/// A capture's frames, symbolised on first use.
#[derive(Debug)]
pub(crate) struct Frames {
    captured: Option<Captured>,
    text: OnceLock<String>,
}

impl Frames {
    pub(crate) fn new(captured: Option<Captured>) -> Frames {
        Frames {
            captured,
            text: OnceLock::new(),
        }
    }

    fn text(&self) -> &str {
        self.text.get_or_init(|| {
            self.captured
                .as_ref()
                .map_or_else(String::new, Captured::symbolise)
        })
    }
}

impl StallReport {
    /// The stalled coroutine's id ([`Coroutine::id`](crate::Coroutine::id)),
    /// or `None` if its thread did not answer the capture (the signal is
    /// blocked there, or the thread sleeps in the kernel uninterruptibly).
    pub fn coroutine_id(&self) -> Option<u64> {
        self.coroutine.as_ref().map(|(id, _)| *id)
    }

    /// The stalled coroutine's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.coroutine.as_ref().and_then(|(_, n)| n.as_deref())
    }

    /// How long the coroutine had run without suspending: so far, when the
    /// stall is detected; in all, once it is over
    /// ([`has_ended`](StallReport::has_ended)). Accurate to one sampling
    /// period (an eighth of the threshold, at most 25 ms).
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// The stalled thread's stack when the stall was detected, innermost
    /// frame first, one symbolised frame a line (`function at file:line`;
    /// inlined functions get lines of their own, frames without symbols
    /// show their address). Empty if the thread did not answer.
    ///
    /// The frames are captured on the stalled thread and symbolised once,
    /// on the watchdog thread right after the callback returns, or by the
    /// first caller of this method if that comes first (reading debug
    /// info can take a second the first time in a process).
    pub fn backtrace(&self) -> &str {
        self.frames.text()
    }

    /// The context (worker) the coroutine stalls.
    pub fn context(&self) -> &AioContext {
        &self.context
    }

    /// The worker's index in [`Runtime::contexts`](crate::Runtime::contexts).
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// True in the report of a stall that is over (the coroutine suspended
    /// or returned): `elapsed` is then the stall's total length.
    pub fn has_ended(&self) -> bool {
        self.ended
    }

    /// The innermost frame that is the program's own rather than the
    /// standard library's or the system's, for the one-line report.
    fn innermost_own_frame(&self) -> Option<&str> {
        const FOREIGN: [&str; 8] = [
            "std::", "core::", "alloc::", "<std::", "<core::", "<alloc::", "__", "clock_",
        ];
        self.backtrace()
            .lines()
            .find(|l| !FOREIGN.iter().any(|p| l.starts_with(p)) && !l.starts_with("0x"))
    }
}

impl fmt::Display for StallReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.coroutine {
            Some((id, name)) => write!(
                f,
                "coroutine {id} ({})",
                name.as_deref().unwrap_or("unnamed")
            )?,
            None => f.write_str("a coroutine")?,
        }
        write!(
            f,
            " on context {} ({})",
            self.context.id(),
            self.context.name()
        )?;
        let ms = Duration::from_millis(u64::try_from(self.elapsed.as_millis()).unwrap_or(u64::MAX));
        if self.ended {
            write!(
                f,
                " ran for {} without suspending (the stall is over)",
                DisplayDuration(ms)
            )?;
        } else {
            write!(f, " has run for {} without suspending", DisplayDuration(ms))?;
        }
        if let Some(frame) = self.innermost_own_frame() {
            write!(f, ", in {frame}")?;
        }
        Ok(())
    }
}

/// Milliseconds as `123ms` (Debug of a Duration would print `123ms` too,
/// but `1.2s` for longer ones, which reads worse next to the threshold).
struct DisplayDuration(Duration);

impl fmt::Display for DisplayDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0.as_millis())
    }
}

/// The stall detector's figures, in [`RuntimeMetrics::stalls`](crate::RuntimeMetrics::stalls).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StallMetrics {
    /// The threshold in force (zero: the detector is off).
    pub threshold: Duration,
    /// Stalls detected since the runtime started.
    pub detected: u64,
    /// Stalls going on right now.
    pub in_progress: usize,
    /// Lengths of the stalls detected, in nanoseconds, one value each: the
    /// total of every stall that is over, and the length so far of those
    /// in progress. Every value is at least the threshold.
    pub lengths: hdrhistogram::Histogram<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(backtrace: &str, ended: bool) -> StallReport {
        let frames = Frames::new(None);
        frames.text.set(backtrace.to_owned()).unwrap();
        StallReport {
            coroutine: Some((12, Some("spinner".to_owned()))),
            worker: 0,
            context: AioContext::current(),
            elapsed: Duration::from_micros(112_400),
            frames: Arc::new(frames),
            ended,
        }
    }

    #[test]
    fn display_is_one_line_naming_the_frame() {
        let r = report(
            "core::hint::spin_loop at x.rs:1\napp::crunch at src/app.rs:40\nmain\n",
            false,
        );
        let line = r.to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.starts_with("coroutine 12 (spinner) on context "),
            "{line}"
        );
        assert!(
            line.ends_with("has run for 112ms without suspending, in app::crunch at src/app.rs:40"),
            "{line}"
        );
        let over = report("", true).to_string();
        assert!(
            over.ends_with("ran for 112ms without suspending (the stall is over)"),
            "{over}"
        );
    }
}
