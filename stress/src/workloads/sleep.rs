//! `sleep`: a storm of short sleeps on every context (docs/BENCHMARKS.md W7).
//!
//! `2 × coroutines` coroutines per context sleep, again and again, for a random
//! 50 µs – 2 ms. Half of them call `co_sleep` and record their **oversleep**: how long after
//! the requested deadline `co_sleep` returned. The other half arm a timer of their own with
//! `AioContext::add_timer`, whose callback stamps the time and wakes them, and suspend;
//! they record the **timer wake latency**: from the callback's stamp to their first
//! instruction after `suspend`.
//!
//! Checks: no `co_sleep` returned before its deadline, no timer fired before its deadline,
//! and no timer sleeper resumed without its timer having fired (a stray wake).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coprimitives::co_sleep;
use coscheduler::raw::{clear_wait_reason, set_wait_reason};
use coscheduler::{AioContext, JoinHandle, current, suspend};

use super::part::{self, Clock, Part, PartEnv, PartReport, Recorder, Rng, Stop, Tally};
use crate::outcome::{Check, HistogramKind};
use crate::workload::RunError;

/// The workload's name.
pub(super) const NAME: &str = "sleep";

/// The `--list` paragraph.
pub(super) const DESCRIPTION: &str = "Many coroutines per context sleep for 50 µs to 2 ms, again and again, half with \
     co_sleep and half on a timer of their own. Checks that no sleep ended early, no \
     timer fired early, and no sleeper woke without its timer. Measures oversleep (how \
     late co_sleep returned) and timer wake latency.";

/// The shortest and longest sleep, in microseconds.
const SLEEP_MICROS: (u64, u64) = (50, 2_000);

/// What one sleeper counted.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    sleeps: u64,
    early: u64,
    stray: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.sleeps += other.sleeps;
        self.early += other.early;
        self.stray += other.stray;
    }
}

/// A sleeper's loop state.
struct Sleeper {
    stop: Stop,
    rng: Rng,
    clock: Clock,
    recorder: Recorder,
    slot: usize,
    tally: Tally,
    counts: Counts,
}

impl Sleeper {
    fn next_duration(&mut self) -> Duration {
        let (min, max) = SLEEP_MICROS;
        Duration::from_micros(min + self.rng.below(max - min + 1))
    }
}

struct Running {
    oversleep: Recorder,
    timer_wake: Recorder,
    sleepers: Vec<JoinHandle<Counts>>,
    timers: Vec<JoinHandle<Counts>>,
}

/// Coroutines held at once, for the mapping-limit preflight. Every context runs `2 × per_context` sleepers.
pub(super) fn coroutines(per_context: usize, contexts: usize) -> usize {
    2 * per_context * contexts
}

/// Starts the sleepers.
pub(super) fn start(env: &PartEnv<'_>) -> Result<Box<dyn Part>, RunError> {
    let contexts = env.contexts().len();
    let per_context = env.coroutines() * 2;
    let oversleep = Recorder::new(contexts);
    let timer_wake = Recorder::new(contexts);
    let mut sleepers = Vec::new();
    let mut timers = Vec::new();
    for context in 0..contexts {
        for index in 0..per_context {
            let by_timer = index % 2 == 1;
            let sleeper = Sleeper {
                stop: env.stop().clone(),
                rng: Rng::new(env.seed(), (context * per_context + index) as u64),
                clock: env.clock(),
                recorder: if by_timer {
                    timer_wake.clone()
                } else {
                    oversleep.clone()
                },
                slot: context,
                tally: Tally::new(env.progress(), 1),
                counts: Counts::default(),
            };
            if by_timer {
                let name = format!("sleep-timer-{context}.{index}");
                timers.push(env.spawn(context, name, move || sleep_on_timers(sleeper))?);
            } else {
                let name = format!("sleep-co_sleep-{context}.{index}");
                sleepers.push(env.spawn(context, name, move || sleep_with_co_sleep(sleeper))?);
            }
        }
    }
    Ok(Box::new(Running {
        oversleep,
        timer_wake,
        sleepers,
        timers,
    }))
}

/// Sleeps with `co_sleep` until the stop flag, recording each oversleep.
fn sleep_with_co_sleep(mut me: Sleeper) -> Counts {
    while !me.stop.is_set() {
        let duration = me.next_duration();
        let deadline = Instant::now() + duration;
        co_sleep(duration);
        let woke = Instant::now();
        match woke.checked_duration_since(deadline) {
            Some(late) => me
                .recorder
                .record(me.slot, u64::try_from(late.as_nanos()).unwrap_or(u64::MAX)),
            None => me.counts.early += 1,
        }
        me.counts.sleeps += 1;
        me.tally.add();
    }
    me.counts
}

/// Sleeps on timers of its own until the stop flag, recording the timer → coroutine
/// latency.
fn sleep_on_timers(mut me: Sleeper) -> Counts {
    let ctx = AioContext::current();
    let this = current().expect("sleepers run as coroutines");
    // The callback's stamp (`Clock` time + 1, so that 0 means "has not fired").
    let fired = Arc::new(AtomicU64::new(0));
    while !me.stop.is_set() {
        let deadline = Instant::now() + me.next_duration();
        let callback = {
            let fired = Arc::clone(&fired);
            let this = this.clone();
            let clock = me.clock;
            move || {
                // Release: the sleeper's Acquire swap after it resumes reads the stamp.
                fired.store(clock.now() + 1, Ordering::Release);
                this.wake();
            }
        };
        ctx.add_timer(deadline, callback);
        set_wait_reason("costress timer", None);
        suspend();
        clear_wait_reason();
        let resumed = me.clock.now();
        match fired.swap(0, Ordering::Acquire) {
            0 => me.counts.stray += 1,
            stamp => {
                let fired_at = stamp - 1;
                me.counts.early += u64::from(fired_at < me.clock.stamp(deadline));
                me.recorder
                    .record(me.slot, resumed.saturating_sub(fired_at));
            }
        }
        me.counts.sleeps += 1;
        me.tally.add();
    }
    me.counts
}

impl Part for Running {
    fn finish(self: Box<Self>) -> Result<PartReport, RunError> {
        let mut slept = Counts::default();
        for counts in part::join_all(NAME, self.sleepers)? {
            slept.add(counts);
        }
        let mut timed = Counts::default();
        for counts in part::join_all(NAME, self.timers)? {
            timed.add(counts);
        }
        Ok(PartReport::new(slept.sleeps + timed.sleeps)
            .check(Check::equal(
                "co_sleep calls that returned before their deadline",
                0,
                slept.early,
            ))
            .check(Check::equal(
                "timers that fired before their deadline",
                0,
                timed.early,
            ))
            .check(Check::equal(
                "timer sleepers resumed without their timer (stray wakes)",
                0,
                timed.stray,
            ))
            .histogram(
                "oversleep",
                HistogramKind::Oversleep,
                self.oversleep.merged(),
            )
            .histogram(
                "wake latency (timer)",
                HistogramKind::WakeTimer,
                self.timer_wake.merged(),
            ))
    }
}
