//! What a runtime reports about itself: its counters ([`RuntimeMetrics`]),
//! the dump of its suspended coroutines, and its wait-for cycles.

use std::fmt::Write as _;
use std::time::Duration;

use super::{Runtime, Shared};
use crate::aio::AioContext;
use crate::core::home::ContextMetrics;

impl Runtime {
    /// Counters of every worker context, their sum, and the stall
    /// detector's figures.
    pub fn metrics(&self) -> RuntimeMetrics {
        let per_context: Vec<ContextMetrics> = self
            .shared
            .contexts
            .iter()
            .map(AioContext::metrics)
            .collect();
        let mut total = ContextMetrics::default();
        per_context.iter().for_each(|m| total.accumulate(m));
        RuntimeMetrics {
            per_context,
            total,
            injector_len: self.shared.injector.len(),
            sleeping_workers: self.shared.idle.count() as usize,
            pool: crate::core::stacks::stats(),
            stalls: self.shared.stall.metrics(),
            blocking: self.shared.blocking.metrics(),
        }
    }

    /// A human-readable list of the suspended coroutines of every worker:
    /// id, name, home context, and what they wait on when a primitive said;
    /// members of a wait-for cycle are marked `[deadlock N]`, and each cycle
    /// is described at the end (see [`deadlocks`](Runtime::deadlocks)).
    /// Each worker answers from its own thread; one that does not answer
    /// within a second (busy in a coroutine that never yields) is reported
    /// as such.
    pub fn dump(&self) -> String {
        let deadlocks = self.deadlocks();
        let mut out = String::new();
        let m = self.metrics();
        let _ = writeln!(
            out,
            "runtime: {} workers, {} sleeping, {} queued in the injector",
            self.shared.contexts.len(),
            m.sleeping_workers,
            m.injector_len
        );
        let replies: Vec<_> = self
            .shared
            .contexts
            .iter()
            .map(|ctx| ctx.ask_owner(|owner| (owner.describe_suspended(), owner.registered())))
            .collect();
        for (i, (ctx, rx)) in self.shared.contexts.iter().zip(replies).enumerate() {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok((list, started)) => {
                    let _ = writeln!(
                        out,
                        "context {} ({}): {} started, {} suspended",
                        ctx.id(),
                        ctx.name(),
                        started,
                        list.len()
                    );
                    for s in list {
                        let mark = deadlocks
                            .iter()
                            .position(|d| d.contains(s.id))
                            .map_or_else(String::new, |k| format!(" [deadlock {}]", k + 1));
                        let _ = writeln!(out, "  {s}{mark}");
                    }
                }
                Err(_) => {
                    let _ = writeln!(
                        out,
                        "context {} ({}): did not answer within 1 s ({})",
                        ctx.id(),
                        ctx.name(),
                        self.describe_busy_worker(i)
                    );
                }
            }
        }
        for (k, d) in deadlocks.iter().enumerate() {
            let _ = writeln!(out, "[deadlock {}] {d}", k + 1);
        }
        out
    }

    /// QEMU has no such thing: every cycle of coroutines waiting on each
    /// other — through [`JoinHandle::join`](crate::JoinHandle::join), and through the primitives that
    /// say what they wait on (`coprimitives`' `CoMutex` and `CoRwLock`) —
    /// with each member's id, name, context and the lock it waits on. See
    /// [`deadlock`](crate::deadlock) for how the graph is built. Each worker
    /// answers from its own thread; one busy in a coroutine that does not
    /// suspend for a second is left out.
    ///
    /// ```
    /// let rt = coscheduler::Runtime::builder().threads(1).build().unwrap();
    /// assert!(rt.deadlocks().is_empty());
    /// ```
    pub fn deadlocks(&self) -> Vec<crate::Deadlock> {
        crate::deadlock::find(&self.shared.contexts)
    }

    /// What a worker that does not answer is busy with, from the stall
    /// detector.
    fn describe_busy_worker(&self, worker: usize) -> String {
        match describe_running(&self.shared, worker, Duration::from_secs(1)) {
            Some(who) => format!("{who} without suspending"),
            None => "busy running a coroutine that does not yield?".to_owned(),
        }
    }
}

/// "coroutine 7 (name) has been running for 1200ms", naming what runs on
/// a worker that does not answer, when the stall detector can tell; how
/// long defaults to "over `at_least`".
pub(super) fn describe_running(
    shared: &Shared,
    worker: usize,
    at_least: Duration,
) -> Option<String> {
    let running = shared.stall.running_on(worker)?;
    let name = running.name.as_deref().unwrap_or("unnamed");
    let how_long = match running.running_for {
        Some(d) if d >= at_least => format!("{}ms", d.as_millis()),
        _ => format!("over {at_least:?}"),
    };
    Some(format!(
        "coroutine {} ({name}) has been running for {how_long}",
        running.id
    ))
}

/// A snapshot of a runtime's counters.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RuntimeMetrics {
    /// One entry per worker, in worker order.
    pub per_context: Vec<ContextMetrics>,
    /// The sum over workers.
    pub total: ContextMetrics,
    /// Coroutines waiting in the global injector.
    pub injector_len: usize,
    /// Workers asleep right now.
    pub sleeping_workers: usize,
    /// The process-wide stack pool.
    pub pool: crate::stackpool::PoolStats,
    /// The stall detector: how many coroutines ran past the
    /// [`stall_threshold`](crate::Builder::stall_threshold) without suspending,
    /// and for how long.
    pub stalls: crate::StallMetrics,
    /// The blocking pool ([`blocking`](crate::blocking)): threads, queue,
    /// and how long closures waited for a thread.
    pub blocking: crate::blocking::BlockingMetrics,
}
