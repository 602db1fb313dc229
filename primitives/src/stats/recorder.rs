//! Per-thread recording of lock statistics, merged on read.
//!
//! # Layout and who touches what
//!
//! | data | written by | read by |
//! |---|---|---|
//! | `GLOBAL.by_name`, `GLOBAL.handles` | `register` (under `GLOBAL`) | `snapshot`, `reset` (under `GLOBAL`) |
//! | `GLOBAL.threads`, `GLOBAL.retired` | thread start/exit, `reset` (under `GLOBAL`) | `snapshot` |
//! | `ThreadRecorder::counters` | its own thread only, with a plain load + store (no RMW) | `snapshot`/`reset`/exit, with loads |
//! | `ThreadRecorder::slow` (histograms, overflow counters, baselines) | its own thread, `reset` — under that thread's own mutex | `snapshot`, exit |
//! | `SAMPLER`, `COUNTERS` (const thread-locals) | its own thread only | — |
//!
//! Lock order: `GLOBAL`, then one thread's `slow`. A recording thread only
//! ever takes its own `slow`, never `GLOBAL`, so it cannot deadlock with a
//! snapshot, and its mutex is uncontended except while a snapshot or reset
//! visits it.
//!
//! Counters are never written by another thread: `reset` records a
//! per-thread baseline (under `slow`) that readers subtract, so a reset
//! cannot race with the owner's non-atomic increment.
//!
//! The hot paths (counting, the sampling decision) touch only
//! `const`-initialised thread-locals without destructors, which compile to
//! a plain thread-pointer-relative access: `COUNTERS` caches a pointer to
//! this thread's counter array, set when `LOCAL` (which owns it, and whose
//! first use registers the thread) is created and cleared when it is
//! destroyed.
//!
//! # Sampling of times
//!
//! Counting is exact and cheap (a thread-local store). Timing costs two or
//! three clock reads and a histogram update under the thread's mutex, about
//! 50 ns, which is more than a whole contended lock + unlock on a busy
//! mutex. So each thread times every contended acquisition while it sees at
//! most [`TIMED_PER_SEC`] of them per second, and one in `period` above that
//! (`period` a power of two, at most [`MAX_PERIOD`], re-estimated every
//! millisecond from the events seen: raised at once, lowered by half at
//! most per estimate), recording each timed sample with weight `period`:
//! histogram counts and percentiles remain estimates over all contended
//! acquisitions, exact at low rates.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ptr;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use hdrhistogram::Histogram;

use super::{Counters, LockKind, LockStats};

/// Names with an id below this count in the per-thread array (no lock);
/// later names fall back to the per-thread mutex.
const SLOTS: usize = 128;

/// Significant figures of every histogram (0.1% resolution). Histograms
/// auto-resize up to the largest value recorded, so values are recorded with
/// `record_n` (`saturating_record` would clamp instead of growing).
const SIGFIG: u8 = 3;

/// Timed contended acquisitions per thread per second before sampling
/// starts (about 0.3% of a core at ~50 ns each).
pub(crate) const TIMED_PER_SEC: u64 = 50_000;

/// The largest sampling period.
const MAX_PERIOD: u32 = 1024;

/// How often (in nanoseconds of the events' own clock) a thread
/// re-estimates its sampling period.
const WINDOW_NS: u64 = 1_000_000;

/// One counter of [`Counters`], as an index into a thread's slot.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Counter {
    Fast = 0,
    Spun,
    Raced,
    Waited,
    Handoffs,
    /// Waits that ended without a hand-over (the waiter stole a hand-off
    /// offer and was first in line): rare, so it is counted instead of the
    /// hand-overs, which are `Waited − SelfGranted`.
    SelfGranted,
    SpinIterations,
    /// Counted directly by the queue (wakes) and the rwlock (grants).
    Handovers,
    /// Mutex unlocks, by the hand-over policy's choice.
    LocalHandovers,
    RemoteHandovers,
    Barged,
    FifoForced,
    /// Mutex lockers' failed claims.
    ClaimRetries,
    SpinThenPark,
}

const N_COUNTERS: usize = 14;

type Slot = [u64; N_COUNTERS];

fn to_counters(s: &Slot, kind: LockKind) -> Counters {
    // A mutex counts the rare waits that ended without a hand-over instead
    // of the hand-overs themselves (see `Counter::SelfGranted`).
    let handovers = match kind {
        LockKind::Mutex => s[Counter::Waited as usize] - s[Counter::SelfGranted as usize],
        _ => s[Counter::Handovers as usize],
    };
    Counters {
        fast: s[Counter::Fast as usize],
        spun: s[Counter::Spun as usize],
        raced: s[Counter::Raced as usize],
        waited: s[Counter::Waited as usize],
        handoffs: s[Counter::Handoffs as usize],
        handovers,
        spin_iterations: s[Counter::SpinIterations as usize],
        local_handovers: s[Counter::LocalHandovers as usize],
        remote_handovers: s[Counter::RemoteHandovers as usize],
        barged: s[Counter::Barged as usize],
        fifo_forced: s[Counter::FifoForced as usize],
        claim_retries: s[Counter::ClaimRetries as usize],
        spin_then_park: s[Counter::SpinThenPark as usize],
    }
}

/// A registered lock name. Leaked: one per distinct name for the process
/// lifetime, so locks can hold a `&'static` and test it for free.
#[derive(Debug)]
pub(crate) struct StatsHandle {
    pub(crate) id: usize,
    pub(crate) name: Arc<str>,
    pub(crate) kind: LockKind,
    /// "CoMutex <name>" and so on, for `set_wait_reason` without cloning an
    /// `Arc` on every wait.
    pub(crate) wait_label: &'static str,
}

/// One thread's histograms of one lock name (and its counters when the
/// name's id has no slot).
#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub(crate) wait: Histogram<u64>,
    pub(crate) hold: Histogram<u64>,
    counters: Slot,
}

impl Record {
    fn new() -> Record {
        let h = || {
            Histogram::new(SIGFIG).expect("3 significant figures is a valid histogram precision")
        };
        Record {
            wait: h(),
            hold: h(),
            counters: [0; N_COUNTERS],
        }
    }

    fn merge(&mut self, other: &Record) {
        // `add` fails only if the other histogram holds values this one
        // cannot grow to; both auto-resize, so it does not.
        let _ = self.wait.add(&other.wait);
        let _ = self.hold.add(&other.hold);
        self.counters
            .iter_mut()
            .zip(other.counters)
            .for_each(|(a, b)| *a += b);
    }

    fn clear(&mut self) {
        self.wait.reset();
        self.hold.reset();
        self.counters = [0; N_COUNTERS];
    }
}

#[derive(Default)]
struct ThreadSlow {
    records: Vec<Option<Record>>,
    baseline: Vec<Slot>,
}

type CounterArray = [[AtomicU64; N_COUNTERS]; SLOTS];

struct ThreadRecorder {
    counters: Box<CounterArray>,
    slow: Mutex<ThreadSlow>,
}

impl ThreadRecorder {
    fn slow(&self) -> MutexGuard<'_, ThreadSlow> {
        // Recording never panics while holding the lock; a poisoned lock
        // still holds consistent data.
        self.slow.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// This thread's record of `id` since the last reset, counters
    /// included. Caller holds `slow`.
    fn record_of(&self, slow: &ThreadSlow, id: usize) -> Option<Record> {
        let mut rec = slow.records.get(id).cloned().flatten();
        if id < SLOTS {
            let base = slow.baseline.get(id).copied().unwrap_or_default();
            // Relaxed: a statistic; the owner's later increments may or may
            // not be included, as with any snapshot of running counters.
            let now: Slot = std::array::from_fn(|i| self.counters[id][i].load(Relaxed) - base[i]);
            if now.iter().any(|&c| c != 0) {
                let r = rec.get_or_insert_with(Record::new);
                r.counters.iter_mut().zip(now).for_each(|(a, b)| *a += b);
            }
        }
        rec
    }
}

struct Global {
    by_name: BTreeMap<Arc<str>, &'static StatsHandle>,
    handles: Vec<&'static StatsHandle>,
    threads: Vec<Arc<ThreadRecorder>>,
    /// Records of threads that have exited.
    retired: Vec<Option<Record>>,
}

static GLOBAL: Mutex<Global> = Mutex::new(Global {
    by_name: BTreeMap::new(),
    handles: Vec::new(),
    threads: Vec::new(),
    retired: Vec::new(),
});

fn global() -> MutexGuard<'static, Global> {
    GLOBAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The adaptive sampler of one thread (see the module docs).
#[derive(Clone, Copy)]
struct Sampler {
    /// Contended events to skip before the next timed one.
    countdown: u32,
    period: u32,
    window_start: u64,
    window_events: u64,
}

impl Sampler {
    const INIT: Sampler = Sampler {
        countdown: 0,
        period: 1,
        window_start: 0,
        window_events: 0,
    };
}

/// The calling thread's recorder, registered on first use and folded into
/// `GLOBAL.retired` when the thread exits.
struct Local {
    rec: Arc<ThreadRecorder>,
}

impl Local {
    fn new() -> Local {
        let rec = Arc::new(ThreadRecorder {
            counters: Box::new(std::array::from_fn(|_| {
                std::array::from_fn(|_| AtomicU64::new(0))
            })),
            slow: Mutex::new(ThreadSlow::default()),
        });
        global().threads.push(rec.clone());
        COUNTERS.with(|c| c.set(&*rec.counters));
        Local { rec }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        // From here on, counting goes through `LOCAL`, which is gone.
        let _ = COUNTERS.try_with(|c| c.set(ptr::null()));
        let mut g = global();
        g.threads.retain(|t| !Arc::ptr_eq(t, &self.rec));
        let slow = self.rec.slow();
        for id in 0..g.handles.len() {
            if let Some(rec) = self.rec.record_of(&slow, id) {
                if g.retired.len() <= id {
                    g.retired.resize(id + 1, None);
                }
                g.retired[id].get_or_insert_with(Record::new).merge(&rec);
            }
        }
    }
}

thread_local! {
    static LOCAL: Local = Local::new();
    /// This thread's counter array (owned by `LOCAL`), or null before
    /// `LOCAL` exists and after it is destroyed.
    static COUNTERS: Cell<*const CounterArray> = const { Cell::new(ptr::null()) };
    static SAMPLER: Cell<Sampler> = const { Cell::new(Sampler::INIT) };
}

/// The process-wide entry of `name`, created on first use.
pub(crate) fn register(name: &str, kind: LockKind) -> &'static StatsHandle {
    super::clock::init();
    let mut g = global();
    if let Some(h) = g.by_name.get(name) {
        return h;
    }
    let prefix = match kind {
        LockKind::Mutex => "CoMutex",
        LockKind::RwLock => "CoRwLock",
        LockKind::Queue => "CoQueue",
    };
    let wait_label: &'static str = Box::leak(format!("{prefix} {name}").into_boxed_str());
    let handle: &'static StatsHandle = Box::leak(Box::new(StatsHandle {
        id: g.handles.len(),
        name: name.into(),
        kind,
        wait_label,
    }));
    g.handles.push(handle);
    g.by_name.insert(handle.name.clone(), handle);
    handle
}

/// Adds to counters of `h` on this thread: a thread-local load and store
/// per counter, no lock and no atomic read-modify-write. Zero adds are
/// skipped.
#[inline]
pub(crate) fn count<const N: usize>(h: &StatsHandle, adds: [(Counter, u64); N]) {
    let array = COUNTERS.with(Cell::get);
    if array.is_null() || h.id >= SLOTS {
        count_slow(h, adds);
        return;
    }
    // SAFETY: a non-null `COUNTERS` points into this thread's live `LOCAL`
    // (cleared before `LOCAL` drops it), and only this thread writes it.
    let slot = unsafe { &(*array)[h.id] };
    for (c, n) in adds {
        if n != 0 {
            let c = &slot[c as usize];
            // Owner-only counter: a plain load and store (module docs).
            c.store(c.load(Relaxed) + n, Relaxed);
        }
    }
}

/// `count` for the first use on a thread (registers it) or names without a
/// slot; skipped while the thread's locals are being destroyed.
#[cold]
fn count_slow<const N: usize>(h: &StatsHandle, adds: [(Counter, u64); N]) {
    let _ = LOCAL.try_with(|l| {
        if h.id < SLOTS {
            // `LOCAL` exists now, and `COUNTERS` with it.
            count(h, adds);
        } else {
            with_record(l, h, |r| {
                adds.iter().for_each(|&(c, n)| r.counters[c as usize] += n)
            });
        }
    });
}

/// Decides whether this thread times its next contended acquisition;
/// returns the weight to record it with (its sampling period), or 0.
#[inline]
pub(crate) fn sample() -> u64 {
    SAMPLER.with(|cell| {
        let mut s = cell.get();
        s.window_events += 1;
        let weight = if s.countdown == 0 {
            s.countdown = s.period - 1;
            u64::from(s.period)
        } else {
            s.countdown -= 1;
            0
        };
        cell.set(s);
        weight
    })
}

/// Adapts this thread's sampling period; `now` is a timed event's clock
/// reading.
fn adapt(now: u64) {
    SAMPLER.with(|cell| {
        let mut s = cell.get();
        let elapsed = now.saturating_sub(s.window_start);
        if elapsed >= WINDOW_NS {
            // Events per second over the window, against the timing budget.
            let rate = s.window_events.saturating_mul(1_000_000_000) / elapsed;
            let wanted = (rate / TIMED_PER_SEC).clamp(1, u64::from(MAX_PERIOD));
            let wanted = (wanted as u32).next_power_of_two().min(MAX_PERIOD);
            // Up at once, down by half at most: a window that spanned an
            // idle gap under-estimates the rate of the burst that follows.
            s.period = wanted.max(s.period / 2);
            s.countdown = s.countdown.min(s.period - 1);
            s.window_start = now;
            s.window_events = 0;
            cell.set(s);
        }
    });
}

fn with_record(l: &Local, h: &StatsHandle, f: impl FnOnce(&mut Record)) {
    let mut slow = l.rec.slow();
    if slow.records.len() <= h.id {
        slow.records.resize(h.id + 1, None);
    }
    f(slow.records[h.id].get_or_insert_with(Record::new));
}

/// Records one timed contended acquisition of `h` (wait and, if known,
/// hold, in nanoseconds) with `weight`; `now` is the last clock reading.
pub(crate) fn record_times(
    h: &StatsHandle,
    wait_ns: u64,
    hold_ns: Option<u64>,
    weight: u64,
    now: u64,
) {
    adapt(now);
    let _ = LOCAL.try_with(|l| {
        with_record(l, h, |r| {
            let _ = r.wait.record_n(wait_ns, weight);
            if let Some(hold) = hold_ns {
                let _ = r.hold.record_n(hold, weight);
            }
        });
    });
}

/// Records a hold time on its own (for locks that record the wait at
/// acquisition: the reader-writer lock).
pub(crate) fn record_hold(h: &StatsHandle, hold_ns: u64, weight: u64) {
    let _ = LOCAL.try_with(|l| {
        with_record(l, h, |r| {
            let _ = r.hold.record_n(hold_ns, weight);
        });
    });
}

/// Merges every thread's records, for all names or one.
pub(crate) fn snapshot(only: Option<&str>) -> BTreeMap<String, LockStats> {
    let g = global();
    let wanted: Vec<&'static StatsHandle> = match only {
        Some(name) => g.by_name.get(name).copied().into_iter().collect(),
        None => g.handles.clone(),
    };
    let mut merged: Vec<Record> = wanted
        .iter()
        .map(|h| {
            g.retired
                .get(h.id)
                .cloned()
                .flatten()
                .unwrap_or_else(Record::new)
        })
        .collect();
    for t in &g.threads {
        let slow = t.slow();
        for (h, m) in wanted.iter().zip(merged.iter_mut()) {
            if let Some(rec) = t.record_of(&slow, h.id) {
                m.merge(&rec);
            }
        }
    }
    wanted
        .into_iter()
        .zip(merged)
        .map(|(h, r)| {
            let counters = to_counters(&r.counters, h.kind);
            let stats = LockStats {
                name: h.name.to_string(),
                kind: h.kind,
                wait: r.wait,
                hold: r.hold,
                counters,
            };
            (stats.name.clone(), stats)
        })
        .collect()
}

/// Clears every record; counters get a new baseline.
pub(crate) fn reset() {
    let mut g = global();
    g.retired.clear();
    for t in &g.threads {
        let mut slow = t.slow();
        slow.records.iter_mut().flatten().for_each(Record::clear);
        // Relaxed: see `record_of`.
        slow.baseline = t
            .counters
            .iter()
            .map(|slot| std::array::from_fn(|i| slot[i].load(Relaxed)))
            .collect();
    }
}
