//! The runtime's shutdown: stop the workers, unwind what they hold, join
//! them, and report what could not be unwound in time.

use std::sync::Arc;
use std::sync::atomic::Ordering::{Relaxed, Release, SeqCst};
use std::sync::atomic::fence;
use std::thread;
use std::time::{Duration, Instant};

use super::inspect::describe_running;
use super::spawn::drain_injector;
use super::{Runtime, Shared, worker};
use crate::core::home::SuspendedInfo;

impl Runtime {
    /// Stops the workers, unwinds every suspended coroutine on its home
    /// thread (its destructors run), drops coroutines that never started
    /// (their handles report [`JoinError::Cancelled`](crate::JoinError::Cancelled)), joins the threads and
    /// releases the runtime's share of the stack pool. `Drop` does the same.
    ///
    /// Waits at most the runtime's
    /// [`shutdown_timeout`](crate::Builder::shutdown_timeout) for suspended
    /// coroutines to finish unwinding; those still suspended then are leaked
    /// and reported on stderr (use [`shutdown_timeout`](Runtime::shutdown_timeout)
    /// to get them as an error instead). See
    /// [`shutdown_timeout`](Runtime::shutdown_timeout) for the whole
    /// procedure, and for what happens when called from one of the
    /// runtime's own coroutines.
    pub fn shutdown(mut self) {
        let timeout = self.shared.shutdown_timeout;
        if let Err(e) = self.shutdown_inner(timeout) {
            eprintln!("coscheduler: {e}");
        }
    }

    /// Shuts the runtime down like [`shutdown`](Runtime::shutdown), waiting
    /// at most `timeout` for suspended coroutines to unwind, and returns the
    /// ones that could not be unwound in time as an error.
    ///
    /// The procedure:
    /// 1. The shutdown flag is raised; workers stop taking new work. A spawn
    ///    from then on (from another thread, or from a destructor that runs
    ///    during the shutdown) is dropped unstarted: its handle reports
    ///    [`JoinError::Cancelled`](crate::JoinError::Cancelled).
    /// 2. Each worker drops the unstarted coroutines it holds, then unwinds
    ///    every coroutine homed on it, on its own thread, while still
    ///    serving wakes from the other workers: a coroutine whose destructor
    ///    waits (for a lock held by a coroutine of another worker, for a
    ///    join) gets what it waits for as the others unwind too.
    /// 3. A worker is done when none of its coroutines is left, or when
    ///    `timeout` has passed: coroutines still suspended then are leaked
    ///    with their stacks (their frames must not be skipped), counted in
    ///    [`PoolStats::leaked`](crate::stackpool::PoolStats::leaked) and in
    ///    [`ContextMetrics::coroutines_leaked`](crate::ContextMetrics::coroutines_leaked), and listed in the error.
    /// 4. The worker threads are joined. A coroutine that is *running* and
    ///    never suspends cannot be interrupted: the shutdown waits for it,
    ///    and says so on stderr once `timeout` has passed, naming the worker.
    ///
    /// Called from one of the runtime's own coroutines (or by dropping the
    /// runtime there), the shutdown cannot wait for the very worker it runs
    /// on: steps 1–4 then run on a helper thread, this call returns at once
    /// with `Ok(())`, and the calling coroutine is unwound like the others
    /// at its next suspension.
    ///
    /// ```
    /// use std::time::Duration;
    /// let rt = coscheduler::Runtime::builder().threads(1).build().unwrap();
    /// let h = rt.spawn(|| coscheduler::suspend()); // never woken
    /// while h.coroutine().context().is_none() {
    ///     std::thread::yield_now(); // until it has started
    /// }
    /// rt.shutdown_timeout(Duration::from_secs(1)).unwrap();
    /// assert!(matches!(h.join(), Err(coscheduler::JoinError::Cancelled)));
    /// ```
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Result<(), ShutdownError> {
        self.shutdown_inner(timeout)
    }

    fn shutdown_inner(&mut self, timeout: Duration) -> Result<(), ShutdownError> {
        if self.threads.is_empty() {
            return Ok(());
        }
        let ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        self.shared.drain_timeout_ns.store(ns, Relaxed);
        // Release: pairs with the workers' Acquire load of the flag, and
        // publishes the timeout. The fence pairs with the one in
        // `spawn_on_shared` (push, then check).
        self.shared.shutdown.store(true, Release);
        fence(SeqCst);
        for ctx in &self.shared.contexts {
            ctx.notify();
        }
        let threads = std::mem::take(&mut self.threads);
        let shared = self.shared.clone();
        let pool_added = self.pool_added;
        let w = worker::current_worker();
        // SAFETY: the worker-local block lives for the worker thread's whole
        // loop (the pointer is cleared before it ends), and we are on that
        // thread.
        let local = unsafe { w.as_ref() };
        let on_own_worker = local.is_some_and(|local| Arc::ptr_eq(&local.shared, &self.shared));
        if on_own_worker {
            let reaper = thread::Builder::new()
                .name("coscheduler-shutdown".to_owned())
                .spawn(move || {
                    if let Err(e) = finish_shutdown(&shared, threads, pool_added, timeout) {
                        eprintln!("coscheduler: {e}");
                    }
                });
            if let Err(e) = reaper {
                // No thread to wait on our behalf: the workers still stop,
                // but their threads are detached.
                eprintln!("coscheduler: cannot start the shutdown thread ({e}); workers detached");
            }
            return Ok(());
        }
        finish_shutdown(&shared, threads, pool_added, timeout)
    }
}

/// Steps 2–4 of [`Runtime::shutdown_timeout`], from a thread that is not a
/// worker: waits for every worker to report, joins them, drops whatever
/// was spawned meanwhile and gives back the pool share.
fn finish_shutdown(
    shared: &Shared,
    threads: Vec<thread::JoinHandle<()>>,
    pool_added: usize,
    timeout: Duration,
) -> Result<(), ShutdownError> {
    // The workers' own drains end by `timeout`; past that (plus a grace for
    // the last turn), a worker that has not reported is inside a coroutine
    // that does not suspend.
    let warn_at = Instant::now() + timeout + Duration::from_millis(100);
    let mut warned = false;
    let mut stopped = shared.stopped.lock().unwrap_or_else(|e| e.into_inner());
    while stopped.workers < threads.len() {
        let now = Instant::now();
        let wait = if warned || now >= warn_at {
            if !warned {
                warned = true;
                for (i, t) in threads.iter().enumerate() {
                    if !t.is_finished() {
                        let who = describe_running(shared, i, timeout).unwrap_or_else(|| {
                            format!("a coroutine there has been running for over {timeout:?}")
                        });
                        eprintln!(
                            "coscheduler: shutdown is waiting for worker {i} ({}): {who} \
                             without suspending; a running \
                             coroutine cannot be interrupted, so the shutdown waits until it \
                             suspends or returns",
                            shared.contexts[i].name()
                        );
                    }
                }
            }
            Duration::from_secs(3600)
        } else {
            warn_at - now
        };
        stopped = shared
            .stopped_cv
            .wait_timeout(stopped, wait)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    let leaked = std::mem::take(&mut stopped.leaked);
    drop(stopped);
    for t in threads {
        // Worker panics are contained inside their loops; a join error here
        // would be a scheduler bug, and shutting down goes on regardless.
        let _ = t.join();
    }
    // Coroutines waiting for blocking closures were waited for by the
    // drains above; what is still queued runs now, with the same timeout.
    shared
        .blocking
        .close(crate::blocking::close_deadline(timeout));
    shared.stall.stop();
    // Coroutines that never started: drop them (their handles report
    // cancellation).
    drain_injector(shared);
    crate::core::stacks::dec_pool_size(pool_added);
    crate::core::stacks::trim_to_max();
    if leaked.is_empty() {
        Ok(())
    } else {
        Err(ShutdownError { leaked })
    }
}

/// Coroutines a shutdown could not unwind in time (see
/// [`Runtime::shutdown_timeout`]); they were leaked with their stacks.
#[derive(Debug)]
pub struct ShutdownError {
    leaked: Vec<SuspendedInfo>,
}

impl ShutdownError {
    /// How many coroutines were leaked.
    pub fn leaked(&self) -> usize {
        self.leaked.len()
    }

    /// One line per leaked coroutine: id, name, context and what it was
    /// waiting on, as [`Runtime::dump`] shows them.
    pub fn coroutines(&self) -> Vec<String> {
        self.leaked.iter().map(ToString::to_string).collect()
    }
}

impl std::fmt::Display for ShutdownError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "shutdown could not unwind {} coroutine(s) in time; leaked with their stacks:",
            self.leaked.len()
        )?;
        for s in &self.leaked {
            write!(f, "\n  {s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ShutdownError {}

impl Drop for Runtime {
    fn drop(&mut self) {
        let timeout = self.shared.shutdown_timeout;
        if let Err(e) = self.shutdown_inner(timeout) {
            eprintln!("coscheduler: {e}");
        }
    }
}
