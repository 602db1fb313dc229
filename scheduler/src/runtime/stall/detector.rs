//! The per-runtime detector: worker registrations, the sampling thread and
//! the bookkeeping of stalls in progress (see the [module docs](super)).

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::capture::{self, AltStack, Captured, ThreadTarget};
use super::{StallMetrics, StallReport};
use crate::aio::AioContext;
use crate::core::tls::{self, ThreadState};

/// A user callback for stall reports.
#[derive(Clone)]
pub(crate) struct Hook(pub(crate) Arc<dyn Fn(&StallReport) + Send + Sync>);

impl fmt::Debug for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<callback>")
    }
}

/// What the builder hands over.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) threshold: Duration,
    pub(crate) on_stall: Option<Hook>,
    pub(crate) on_stall_end: Option<Hook>,
}

/// A registered worker thread: how to signal it, and its thread-local
/// state, whose `current` cell the watchdog reads (identity only, never
/// dereferenced).
struct Attached {
    target: ThreadTarget,
    state: *const ThreadState,
}

// SAFETY: `state` points into the worker's thread-local storage and is read
// only through its atomic `current` cell, under the registration lock,
// which the worker takes to clear the registration before it exits.
unsafe impl Send for Attached {}

/// What the watchdog knows about one worker between samples.
#[derive(Default)]
struct Track {
    switches: u64,
    /// The running coroutine's control block address, 0 when none.
    current: usize,
    /// The first sample that saw this (`switches`, `current`) pair with a
    /// coroutine running: the run began between the previous sample and
    /// this one.
    since: Option<Instant>,
    /// The stall being reported, once the run passed the threshold.
    open: Option<Open>,
    /// The last stall that ended before its report was ready: its start
    /// and total.
    ended: Option<(Instant, Duration)>,
    /// The thread's run-queue wait when this run was seen a second time.
    wait_base: Option<Duration>,
}

struct Open {
    since: Instant,
    /// Filled once the capture came back.
    report: Option<StallReport>,
}

struct Tracks {
    workers: Vec<Track>,
    detected: u64,
    /// Lengths of ended stalls, nanoseconds.
    lengths: Histogram<u64>,
    /// Ends seen by a worker leaving (see `Attachment`), for the watchdog
    /// or `stop` to report.
    deferred: Vec<Event>,
}

/// Something the watchdog must act on outside the tracks lock.
enum Event {
    Detected { worker: usize, since: Instant },
    Ended { report: StallReport },
}

/// One runtime's stall detector.
pub(crate) struct Detector {
    settings: Settings,
    contexts: Vec<AioContext>,
    /// One registration per worker (see [`Attached`]).
    registrations: Box<[Mutex<Option<Attached>>]>,
    tracks: Mutex<Tracks>,
    stop: Mutex<bool>,
    stop_cv: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The running coroutine of a worker, as a shutdown message names it.
#[derive(Clone, Debug)]
pub(crate) struct Running {
    pub(crate) id: u64,
    pub(crate) name: Option<String>,
    /// How long it has run without suspending, when the detector knows.
    pub(crate) running_for: Option<Duration>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves its data consistent at each step.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to one hour, three significant digits.
    Histogram::new_with_bounds(1_000, 3_600_000_000_000, 3)
        .expect("static histogram bounds are valid")
}

/// The time thread `tid` of this process has spent runnable but waiting
/// for a CPU, from the kernel's scheduler statistics (the second field of
/// `/proc/self/task/<tid>/schedstat`); `None` where the kernel keeps none.
fn runqueue_wait(tid: u64) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    let ns = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Detector {
    /// A detector for the runtime whose workers run `contexts`.
    pub(crate) fn new(settings: Settings, contexts: Vec<AioContext>) -> Detector {
        let n = contexts.len();
        Detector {
            settings,
            registrations: (0..n).map(|_| Mutex::new(None)).collect(),
            contexts,
            tracks: Mutex::new(Tracks {
                workers: (0..n).map(|_| Track::default()).collect(),
                detected: 0,
                lengths: new_histogram(),
                deferred: Vec::new(),
            }),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            thread: Mutex::new(None),
        }
    }

    /// True unless the threshold is zero.
    pub(crate) fn enabled(&self) -> bool {
        !self.settings.threshold.is_zero()
    }

    /// How often the watchdog samples.
    fn period(&self) -> Duration {
        (self.settings.threshold / 8).clamp(Duration::from_millis(1), Duration::from_millis(25))
    }

    /// Worker `index`, on its own thread: registers the thread for sampling
    /// and captures, until the returned guard is dropped (on this thread,
    /// before it exits).
    pub(crate) fn attach(self: &Arc<Self>, index: usize) -> Attachment {
        let altstack = if self.enabled() {
            if let Err(e) = capture::install() {
                eprintln!("coscheduler: stall backtraces unavailable: {e}");
            }
            Some(AltStack::install())
        } else {
            None
        };
        *lock(&self.registrations[index]) = Some(Attached {
            target: ThreadTarget::current(),
            state: tls::thread_state(),
        });
        Attachment {
            detector: self.clone(),
            index,
            _altstack: altstack,
        }
    }

    /// The worker's switch count and running coroutine, if it is attached.
    fn observe(&self, worker: usize) -> Option<(u64, usize)> {
        let registered = lock(&self.registrations[worker]);
        let attached = registered.as_ref()?;
        let switches = self.contexts[worker].home.counters.switches.load(Relaxed);
        // SAFETY: the registration lock is held, so the worker thread (whose
        // thread-local block `state` points into) has not exited; the cell
        // read is atomic.
        let current = unsafe { (*attached.state).current.get() } as usize;
        Some((switches, current))
    }

    /// How long the worker's thread has waited for a CPU so far, if the
    /// kernel says.
    fn runqueue_wait(&self, worker: usize) -> Option<Duration> {
        let tid = lock(&self.registrations[worker]).as_ref()?.target.tid();
        runqueue_wait(tid)
    }

    /// One sample of every worker (module docs). With `detect`, runs past
    /// the threshold open a stall; either way, stalls that are over are
    /// closed and recorded.
    fn sample(&self, now: Instant, detect: bool) -> Vec<Event> {
        let mut events = Vec::new();
        let threshold = self.settings.threshold;
        let mut tracks = lock(&self.tracks);
        let Tracks {
            workers,
            detected,
            lengths,
            ..
        } = &mut *tracks;
        for (i, t) in workers.iter_mut().enumerate() {
            let Some((switches, current)) = self.observe(i) else {
                continue;
            };
            if current == 0 || switches != t.switches || current != t.current {
                if let Some(open) = t.open.take() {
                    let total = now.saturating_duration_since(open.since);
                    lengths.saturating_record(nanos(total));
                    match open.report {
                        Some(mut report) => {
                            report.elapsed = total;
                            report.ended = true;
                            events.push(Event::Ended { report });
                        }
                        // Still being captured: the capture reports the end.
                        None => t.ended = Some((open.since, total)),
                    }
                }
                t.switches = switches;
                t.current = current;
                t.since = (current != 0).then_some(now);
                t.wait_base = None;
            } else if let (true, None, Some(since)) = (detect, &t.open, t.since) {
                // A run that lasted the threshold is a stall unless its thread
                // spent nearly all of it runnable but descheduled (measured
                // from the run's second sample): then the OS held the worker
                // up, not the coroutine (module docs).
                let waited = match (t.wait_base, self.runqueue_wait(i)) {
                    (Some(base), Some(now_waited)) => now_waited.saturating_sub(base),
                    (None, now_waited) => {
                        t.wait_base = now_waited;
                        Duration::ZERO
                    }
                    (Some(_), None) => Duration::ZERO,
                };
                let lasted = now.saturating_duration_since(since);
                if lasted >= threshold && lasted.saturating_sub(waited) >= threshold / 4 {
                    t.open = Some(Open {
                        since,
                        report: None,
                    });
                    *detected += 1;
                    events.push(Event::Detected { worker: i, since });
                }
            }
        }
        events
    }

    /// Captures the stalled threads and calls the callbacks, outside the
    /// tracks lock (a callback may read the metrics).
    fn dispatch(&self, events: Vec<Event>, on_detect: &dyn Fn(usize)) {
        for event in events {
            match event {
                Event::Detected { worker, since } => {
                    on_detect(worker);
                    let captured = self.capture(worker);
                    if !self.still_stalled(worker, since) {
                        // Over before the thread answered: the capture may
                        // show whatever ran next, so it is not reported
                        // (its length is in the histogram).
                        continue;
                    }
                    let report = self.report(worker, since, captured);
                    let ended_after = {
                        let mut tracks = lock(&self.tracks);
                        let t = &mut tracks.workers[worker];
                        match &mut t.open {
                            Some(open) if open.since == since => {
                                open.report = Some(report.clone());
                                None
                            }
                            _ => t.ended.filter(|(s, _)| *s == since).map(|(_, total)| total),
                        }
                    };
                    self.call(self.settings.on_stall.as_ref(), &report, true);
                    // Symbolise here rather than wherever the report is read
                    // first: reading debug info can take a second the first
                    // time in a process.
                    let _ = report.backtrace();
                    if let Some(total) = ended_after {
                        let mut over = report;
                        over.elapsed = total;
                        over.ended = true;
                        let default = self.settings.on_stall.is_none();
                        self.call(self.settings.on_stall_end.as_ref(), &over, default);
                    }
                }
                Event::Ended { report } => {
                    let default = self.settings.on_stall.is_none();
                    self.call(self.settings.on_stall_end.as_ref(), &report, default);
                }
            }
        }
    }

    /// True if worker `worker` has not switched since the sample that
    /// opened the stall begun at `since`: whatever a capture taken since
    /// then saw is that stall.
    fn still_stalled(&self, worker: usize, since: Instant) -> bool {
        let tracks = lock(&self.tracks);
        let t = &tracks.workers[worker];
        t.open.as_ref().is_some_and(|o| o.since == since)
            && self.observe(worker) == Some((t.switches, t.current))
    }

    fn capture(&self, worker: usize) -> Option<Captured> {
        capture::capture(&self.registrations[worker], |r| {
            r.as_ref().map(|a| a.target)
        })
    }

    fn report(&self, worker: usize, since: Instant, captured: Option<Captured>) -> StallReport {
        StallReport {
            coroutine: captured.as_ref().and_then(|c| c.coroutine.clone()),
            worker,
            context: self.contexts[worker].clone(),
            elapsed: since.elapsed(),
            frames: Arc::new(super::Frames::new(captured)),
            ended: false,
        }
    }

    /// Calls `hook`, or prints the report on stderr when there is none and
    /// `default` says so. A panicking callback is reported and does not
    /// stop the watchdog.
    fn call(&self, hook: Option<&Hook>, report: &StallReport, default: bool) {
        let Some(Hook(f)) = hook else {
            if default {
                eprintln!("coscheduler: {report}");
            }
            return;
        };
        if catch_unwind(AssertUnwindSafe(|| f(report))).is_err() {
            eprintln!("coscheduler: a stall callback panicked; the watchdog goes on");
        }
    }

    /// The figures for `RuntimeMetrics`, after closing the stalls that are
    /// over (their end callbacks run here, on the caller's thread).
    pub(crate) fn metrics(&self) -> StallMetrics {
        let now = Instant::now();
        let ended = self.sample(now, false);
        let metrics = {
            let tracks = lock(&self.tracks);
            let mut lengths = tracks.lengths.clone();
            let mut in_progress = 0;
            for open in tracks.workers.iter().filter_map(|t| t.open.as_ref()) {
                in_progress += 1;
                lengths.saturating_record(nanos(now.saturating_duration_since(open.since)));
            }
            StallMetrics {
                threshold: self.settings.threshold,
                detected: tracks.detected,
                in_progress,
                lengths,
            }
        };
        self.dispatch(ended, &|_| {});
        metrics
    }

    /// What worker `index` is running right now, for messages about a
    /// worker that does not answer: from the stall in progress if there is
    /// one, else by asking the thread.
    pub(crate) fn running_on(&self, worker: usize) -> Option<Running> {
        let since = {
            let tracks = lock(&self.tracks);
            let t = &tracks.workers[worker];
            if let Some(report) = t.open.as_ref().and_then(|o| o.report.as_ref()) {
                if let Some((id, name)) = &report.coroutine {
                    return Some(Running {
                        id: *id,
                        name: name.clone(),
                        running_for: t.open.as_ref().map(|o| o.since.elapsed()),
                    });
                }
            }
            t.since
        };
        let (id, name) = self.capture(worker)?.coroutine?;
        Some(Running {
            id,
            name,
            running_for: since.map(|s| s.elapsed()),
        })
    }

    /// Starts the watchdog thread (when enabled). `on_detect(worker)` runs
    /// on it when a stall is detected, before the capture.
    pub(crate) fn start(
        self: &Arc<Self>,
        on_detect: impl Fn(usize) + Send + 'static,
    ) -> std::io::Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        let me = self.clone();
        let thread = std::thread::Builder::new()
            .name("coscheduler-stall".to_owned())
            .spawn(move || me.watch(&on_detect))?;
        *lock(&self.thread) = Some(thread);
        Ok(())
    }

    fn watch(&self, on_detect: &dyn Fn(usize)) {
        let period = self.period();
        let mut stopped = lock(&self.stop);
        loop {
            stopped = self
                .stop_cv
                .wait_timeout(stopped, period)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            if *stopped {
                return;
            }
            drop(stopped);
            let events = self.sample(Instant::now(), true);
            self.dispatch(events, on_detect);
            self.dispatch_deferred();
            stopped = lock(&self.stop);
        }
    }

    /// Reports the ends that leaving workers saw.
    fn dispatch_deferred(&self) {
        let deferred = std::mem::take(&mut lock(&self.tracks).deferred);
        self.dispatch(deferred, &|_| {});
    }

    /// Stops and joins the watchdog thread, then reports the ends the
    /// workers saw as they left (idempotent; called once the workers are
    /// joined).
    pub(crate) fn stop(&self) {
        *lock(&self.stop) = true;
        self.stop_cv.notify_all();
        let thread = lock(&self.thread).take();
        if let Some(t) = thread {
            // A callback's panic is caught inside; a join error would be a
            // detector bug, and the shutdown goes on regardless.
            let _ = t.join();
        }
        self.dispatch_deferred();
    }
}

/// A worker's registration with the detector; dropping it (on the worker
/// thread, before it exits) unregisters the thread and puts its previous
/// alternate signal stack back.
pub(crate) struct Attachment {
    detector: Arc<Detector>,
    index: usize,
    _altstack: Option<AltStack>,
}

impl Drop for Attachment {
    fn drop(&mut self) {
        // The last sample of this worker: a stall it had is over now.
        let ended = self.detector.sample(Instant::now(), false);
        lock(&self.detector.tracks).deferred.extend(ended);
        *lock(&self.detector.registrations[self.index]) = None;
    }
}
