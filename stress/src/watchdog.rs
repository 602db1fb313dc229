//! The watchdog: a thread that fires when a workload's progress counter stops moving.
//!
//! A lost wake-up does not crash; it leaves coroutines suspended forever and the run hangs.
//! The watchdog turns that into a diagnosis: after `stall_timeout` without progress it asks
//! for a dump of the suspended coroutines and what each waits on (`Runtime::dump()`), hands
//! it to its stall action, and the default action prints it and exits with status 3. When
//! the coroutines wait on each other in a cycle (`Runtime::deadlocks()`), the cycles are
//! printed after the dump.
//!
//! It runs in a [`std::thread::scope`], so the dump closure may borrow the runtime, and it
//! stops when its [`Armed`] handle is disarmed or dropped.

use std::fmt;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use crate::exit::Exit;
use crate::workload::Progress;
use coscheduler::config::format_duration;

/// What the watchdog saw when it fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    /// The workload that stopped making progress.
    pub workload: String,
    /// How long the counter had stood still.
    pub idle_for: Duration,
    /// The counter's value, unchanged for `idle_for`.
    pub progress: u64,
    /// What the dump closure returned.
    pub dump: String,
    /// The wait-for cycles the deadlocks closure found, one line each.
    pub deadlocks: Vec<String>,
}

impl fmt::Display for Stall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "watchdog: workload {} made no progress for {} (stuck at {} ops); runtime dump follows",
            self.workload,
            format_duration(round_to_millis(self.idle_for)),
            self.progress
        )?;
        f.write_str(self.dump.trim_end())?;
        if !self.deadlocks.is_empty() {
            write!(
                f,
                "\nwatchdog: {} wait-for cycle(s); these coroutines can never run again:",
                self.deadlocks.len()
            )?;
            for cycle in &self.deadlocks {
                write!(f, "\n  {cycle}")?;
            }
        }
        Ok(())
    }
}

fn round_to_millis(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The stall action used by the binary: print the stall to stderr and exit with status 3.
pub fn exit_on_stall(stall: Stall) {
    // Start on a fresh line, in case a progress line was being drawn.
    eprintln!("\ncostress: {stall}");
    std::process::exit(i32::from(Exit::Stalled.code()));
}

/// A running watchdog; disarm it (or drop it) when the workload returns.
#[derive(Debug)]
pub struct Armed<'scope> {
    /// Dropping the sender wakes the thread and tells it to stop.
    stop: mpsc::Sender<()>,
    thread: ScopedJoinHandle<'scope, ()>,
}

impl Armed<'_> {
    /// Stops the watchdog and waits for its thread.
    pub fn disarm(self) {
        drop(self.stop);
        // The thread only panics if the stall action or the dump does; let that propagate.
        if let Err(panic) = self.thread.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

/// Starts watching `progress` for `workload`.
///
/// Every `stall_timeout / 10` (clamped to 10 ms..1 s) it samples the counter; once the value
/// has been the same for `stall_timeout`, it calls `dump` and `deadlocks`, gives the
/// [`Stall`] to `on_stall` and stops.
pub fn arm<'scope, 'env>(
    scope: &'scope Scope<'scope, 'env>,
    workload: &str,
    progress: &'env Progress,
    stall_timeout: Duration,
    dump: &'env (dyn Fn() -> String + Sync),
    deadlocks: &'env (dyn Fn() -> Vec<String> + Sync),
    on_stall: impl FnOnce(Stall) + Send + 'scope,
) -> Armed<'scope> {
    let (stop, stopped) = mpsc::channel::<()>();
    let workload = workload.to_owned();
    let period = (stall_timeout / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let thread = scope.spawn(move || {
        let mut last = progress.get();
        let mut since = Instant::now();
        loop {
            match stopped.recv_timeout(period) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
            let now = progress.get();
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= stall_timeout {
                let idle_for = since.elapsed();
                on_stall(Stall {
                    workload,
                    idle_for,
                    progress: now,
                    dump: dump(),
                    deadlocks: deadlocks(),
                });
                return;
            }
        }
    });
    Armed { stop, thread }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::thread;

    #[test]
    fn fires_when_progress_stops() {
        let progress = Progress::default();
        let fired = Mutex::new(None);
        let dump = || "coroutine 7 waits on mutex 0x1".to_owned();
        let deadlocks = || vec!["deadlock: coroutine 7 (a) ... coroutine 8 (b)".to_owned()];
        thread::scope(|scope| {
            let armed = arm(
                scope,
                "mutex",
                &progress,
                Duration::from_millis(50),
                &dump,
                &deadlocks,
                |stall| {
                    *fired.lock().unwrap() = Some(stall);
                },
            );
            progress.add(3);
            thread::sleep(Duration::from_millis(300));
            armed.disarm();
        });
        let stall = fired
            .into_inner()
            .unwrap()
            .expect("the watchdog should have fired");
        assert_eq!(stall.workload, "mutex");
        assert_eq!(stall.progress, 3);
        assert!(stall.idle_for >= Duration::from_millis(50));
        let text = stall.to_string();
        assert!(
            text.contains("made no progress") && text.contains("coroutine 7 waits"),
            "{text}"
        );
        assert!(
            text.ends_with("1 wait-for cycle(s); these coroutines can never run again:\n  deadlock: coroutine 7 (a) ... coroutine 8 (b)"),
            "{text}"
        );
    }

    #[test]
    fn stays_quiet_while_progress_moves() {
        let progress = Progress::default();
        let fired = Mutex::new(false);
        let dump = String::new;
        let deadlocks = Vec::new;
        thread::scope(|scope| {
            let armed = arm(
                scope,
                "queue",
                &progress,
                Duration::from_millis(100),
                &dump,
                &deadlocks,
                |_| {
                    *fired.lock().unwrap() = true;
                },
            );
            for _ in 0..30 {
                progress.add(1);
                thread::sleep(Duration::from_millis(10));
            }
            armed.disarm();
        });
        assert!(!fired.into_inner().unwrap());
    }
}
