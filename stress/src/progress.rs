//! The progress line on stderr: elapsed time against the duration, and the ops rate.
//!
//! Drawn only when stderr is a terminal and `--quiet` is off, so piped output and CI logs
//! stay clean. A scoped thread refreshes it from the workload's [`Progress`] counter; the
//! workload itself never touches it.

use std::io::{self, IsTerminal};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::report::format_count;
use crate::workload::Progress;

/// How often the line is redrawn.
const REFRESH: Duration = Duration::from_millis(100);

/// Whether a progress line should be drawn at all.
pub fn wanted(quiet: bool) -> bool {
    !quiet && io::stderr().is_terminal()
}

/// A progress line being drawn, or nothing when it is not wanted.
#[derive(Debug)]
pub struct ProgressLine<'scope> {
    running: Option<(mpsc::Sender<()>, ScopedJoinHandle<'scope, ()>)>,
}

impl ProgressLine<'_> {
    /// Clears the line and stops its thread.
    pub fn finish(self) {
        if let Some((stop, thread)) = self.running {
            drop(stop);
            // The refresher does nothing that can panic short of a bug in indicatif; a panic
            // there must not turn a finished run into a failure.
            let _ = thread.join();
        }
    }
}

/// Starts drawing `workload`'s progress towards `duration`, if `enabled`.
pub fn start<'scope, 'env>(
    scope: &'scope Scope<'scope, 'env>,
    enabled: bool,
    workload: &str,
    duration: Duration,
    progress: &'env Progress,
) -> ProgressLine<'scope> {
    if !enabled {
        return ProgressLine { running: None };
    }
    let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    let bar = ProgressBar::with_draw_target(Some(millis), ProgressDrawTarget::stderr());
    // The template is a constant; should it ever be refused, a plain bar will do.
    let style = ProgressStyle::with_template("{prefix:>10} [{bar:30}] {elapsed:>4} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar.set_prefix(workload.to_owned());
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = scope.spawn(move || {
        let started = Instant::now();
        while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(REFRESH) {
            let elapsed = started.elapsed();
            let ops = progress.get();
            let rate = ops as f64 / elapsed.as_secs_f64().max(1e-9);
            bar.set_position(
                u64::try_from(elapsed.as_millis())
                    .unwrap_or(u64::MAX)
                    .min(millis),
            );
            bar.set_message(format!(
                "{} ops, {} ops/s",
                format_count(ops),
                format_count(rate as u64)
            ));
        }
        bar.finish_and_clear();
    });
    ProgressLine {
        running: Some((stop, thread)),
    }
}
