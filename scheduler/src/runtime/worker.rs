//! A worker thread: its context's loop plus work stealing.
//!
//! Each turn a worker runs its context (bottom halves, hand-offs, timers,
//! ready coroutines, fd events), then starts stealable coroutines: from its
//! own deque, then a batch from the global injector, then a batch stolen
//! from a random other worker. Stealable means *not yet started* (or, for
//! migratable coroutines, rescheduled through `yield_now`): a started
//! coroutine stays on its home context. With nothing to do it busy-polls
//! for the adaptive window, then parks in epoll (see [`idle`](super::idle)).
//!
//! A coroutine takes its stack when it first runs. When none can be had
//! (the mapping limit), it waits in a local "starved" queue while the worker
//! runs others and stacks come back; if no stack was released for
//! [`STARVATION_LIMIT`] it fails through its `JoinHandle` with the error.

use std::cell::Cell;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::time::{Duration, Instant};

use crossbeam_deque::{Steal, Worker};

use super::Shared;
use crate::aio::AioContext;
use crate::aio::event_loop::IdleHooks;
use crate::core::control::{CoRef, State};
use crate::core::enter;
use crate::core::home::Owner;
use crate::core::home::metrics::bump;

/// How long a stack-starved coroutine waits for any stack to be released
/// before it fails with the allocation error.
pub(crate) const STARVATION_LIMIT: Duration = Duration::from_secs(2);

/// Stealable coroutines started per turn before the context's own queues
/// are looked at again.
const STARTS_PER_TURN: usize = 32;

/// What a coroutine running on a worker can reach: its own deque.
pub(crate) struct WorkerLocal {
    pub(crate) shared: Arc<Shared>,
    pub(crate) index: usize,
    pub(crate) deque: Worker<CoRef>,
}

thread_local! {
    static WORKER: Cell<*const WorkerLocal> = const { Cell::new(std::ptr::null()) };
}

/// The worker running on this thread, if any.
#[inline(never)]
pub(crate) fn current_worker() -> *const WorkerLocal {
    std::hint::black_box(WORKER.with(Cell::get))
}

/// The blocking pool of the runtime whose worker this thread is, if any.
pub(crate) fn current_blocking_pool() -> Option<Arc<crate::blocking::BlockingPool>> {
    let w = current_worker();
    // SAFETY: the worker-local block lives for the worker thread's whole
    // loop (the pointer is cleared before it ends), and we are on that
    // thread.
    unsafe { w.as_ref() }.map(|local| local.shared.blocking.clone())
}

struct Hooks<'a> {
    local: &'a WorkerLocal,
}

impl IdleHooks for Hooks<'_> {
    fn has_work(&self) -> bool {
        let shared = &self.local.shared;
        !self.local.deque.is_empty()
            || !shared.injector.is_empty()
            || shared
                .stealers
                .iter()
                .enumerate()
                .any(|(i, s)| i != self.local.index && !s.is_empty())
            || shared.shutdown.load(Relaxed)
    }
    fn before_sleep(&self) {
        self.local.shared.idle.mark_sleeping(self.local.index);
    }
    fn after_sleep(&self) {
        self.local.shared.idle.mark_awake(self.local.index);
    }
}

/// The worker thread's body.
pub(crate) fn run(
    local: WorkerLocal,
    ctx: AioContext,
    stack_size: usize,
    core: Option<core_affinity::CoreId>,
) {
    if let Some(core) = core {
        // Pinning is an optimisation; where the OS refuses, run unpinned.
        let _ = core_affinity::set_for_current(core);
    }
    crate::stack::overflow::ensure_thread_altstack();
    crate::stackpool::set_thread_default_size(stack_size);
    ctx.install_on_this_thread();
    // SAFETY: just installed on this thread, which owns it until it exits.
    let owner = unsafe { ctx.home.owner_unchecked() };
    let lp = ctx.event_loop();
    let stall_attachment = local.shared.stall.attach(local.index);
    WORKER.with(|w| w.set(&local));
    // Clears the pointer however the loop ends, before `local` goes away.
    struct ClearWorker;
    impl Drop for ClearWorker {
        fn drop(&mut self) {
            WORKER.with(|w| w.set(std::ptr::null()));
        }
    }
    let clear = ClearWorker;
    let mut starved = Starved::default();
    let mut rng = XorShift::new(local.index as u64 + 1);
    let hooks = Hooks { local: &local };
    while !local.shared.shutdown.load(Acquire) {
        // A panic that reaches the worker (a bottom half's or a timer
        // callback's, a raw coroutine's woken here) is reported and the
        // worker goes on: its queues hold other coroutines' work.
        let turn = catch_unwind(AssertUnwindSafe(|| {
            owner.take_notified();
            let mut progress = lp.dispatch_then_wait(owner);
            progress |= starved.retry(owner);
            for _ in 0..STARTS_PER_TURN {
                match find_work(&local, &ctx, &mut rng) {
                    Some(co) => {
                        start(owner, co, &mut starved);
                        progress = true;
                    }
                    None => break,
                }
            }
            progress
        }));
        match turn {
            Ok(true) => {}
            Ok(false) => {
                let limit = starved.next_check();
                lp.wait(owner, limit, &hooks);
            }
            Err(p) => crate::core::home::report_contained_panic(&ctx.home, &*p),
        }
    }
    // From here on a spawn from a destructor goes to the injector, which the
    // shutdown drains, never to our deque.
    drop(clear);
    starved.cancel_all();
    while let Some(co) = local.deque.pop() {
        crate::core::join::cancel_unstarted(&co, crate::core::join::JoinError::Cancelled);
    }
    let timeout = Duration::from_nanos(local.shared.drain_timeout_ns.load(Relaxed));
    let deadline = Instant::now()
        .checked_add(timeout)
        .unwrap_or_else(far_future);
    let leaked = crate::core::home::close_this_thread(deadline);
    let mut stopped = local
        .shared
        .stopped
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    stopped.workers += 1;
    stopped.leaked.extend(leaked);
    drop(stopped);
    drop(stall_attachment);
    local.shared.stopped_cv.notify_all();
}

/// A deadline that never comes, for a timeout too long to add.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

/// Local deque, then the injector, then a random victim.
fn find_work(local: &WorkerLocal, ctx: &AioContext, rng: &mut XorShift) -> Option<CoRef> {
    if let Some(co) = local.deque.pop() {
        return Some(co);
    }
    let shared = &local.shared;
    let counters = &ctx.home.counters;
    loop {
        match shared.injector.steal_batch_and_pop(&local.deque) {
            Steal::Success(co) => return Some(co),
            Steal::Retry => continue,
            Steal::Empty => break,
        }
    }
    let n = shared.stealers.len();
    if n <= 1 {
        return None;
    }
    let start = rng.next() as usize % n;
    let mut retry = true;
    while retry {
        retry = false;
        for k in 0..n {
            let victim = (start + k) % n;
            if victim == local.index || shared.stealers[victim].is_empty() {
                continue;
            }
            bump(&counters.steal_attempts, 1);
            match shared.stealers[victim].steal_batch_and_pop(&local.deque) {
                Steal::Success(co) => {
                    bump(&counters.steal_successes, 1);
                    return Some(co);
                }
                Steal::Retry => retry = true,
                Steal::Empty => {}
            }
        }
    }
    None
}

/// Runs a stealable coroutine here (its first entry, or a migratable one's
/// next entry after it was stolen).
fn start(owner: Owner<'_>, co: CoRef, starved: &mut Starved) {
    if co.state() == State::New && !co.cancel.load(Relaxed) {
        // SAFETY: before its first entry only the thread that starts a
        // coroutine touches its fiber slot, and it came to us alone.
        let has_fiber = unsafe { (*co.fiber.get()).is_some() };
        if !has_fiber {
            if let Err(e) = enter::attach_fiber(&co) {
                starved.push(co, e);
                return;
            }
        }
    } else if co.migratable && co.state() != State::New {
        enter::rehome(&co, owner.home);
    }
    owner.run_scheduled(co);
}

/// Coroutines waiting for a stack.
#[derive(Default)]
struct Starved {
    queue: VecDeque<CoRef>,
    last_error: Option<std::io::Error>,
    /// Pool releases seen when we last looked, and when that count last
    /// moved.
    seen_freed: u64,
    since: Option<Instant>,
}

impl Starved {
    fn push(&mut self, co: CoRef, e: std::io::Error) {
        if self.queue.is_empty() {
            self.since = Some(Instant::now());
            self.seen_freed = releases();
        }
        self.queue.push_back(co);
        self.last_error = Some(e);
    }

    /// When to look again (a timeout for the context's sleep).
    fn next_check(&self) -> Option<Instant> {
        (!self.queue.is_empty()).then(|| Instant::now() + Duration::from_millis(10))
    }

    /// Tries to give the starved their stacks; fails them after the limit.
    fn retry(&mut self, owner: Owner<'_>) -> bool {
        if self.queue.is_empty() {
            return false;
        }
        let freed = releases();
        if freed != self.seen_freed {
            self.seen_freed = freed;
            self.since = Some(Instant::now());
        }
        let mut progress = false;
        while let Some(co) = self.queue.pop_front() {
            match enter::attach_fiber(&co) {
                Ok(()) => {
                    owner.run_scheduled(co);
                    progress = true;
                }
                Err(e) => {
                    self.queue.push_front(co);
                    self.last_error = Some(e);
                    break;
                }
            }
        }
        if self
            .since
            .is_some_and(|t| t.elapsed() >= super::worker::STARVATION_LIMIT)
        {
            let kind = self
                .last_error
                .as_ref()
                .map_or(std::io::ErrorKind::OutOfMemory, |e| e.kind());
            let msg = self
                .last_error
                .as_ref()
                .map_or_else(String::new, ToString::to_string);
            for co in self.queue.drain(..) {
                crate::core::control::clear_scheduled(&co);
                crate::core::join::fail_no_stack(&co, std::io::Error::new(kind, msg.clone()));
            }
            progress = true;
        }
        progress
    }

    fn cancel_all(&mut self) {
        for co in self.queue.drain(..) {
            crate::core::join::cancel_unstarted(&co, crate::core::join::JoinError::Cancelled);
        }
    }
}

/// Stacks returned to pools or unmapped, process-wide: any movement means a
/// stack may be available.
fn releases() -> u64 {
    let s = crate::core::stacks::stats();
    s.freed + s.hits + s.pooled as u64
}

/// A small, fast generator for victim selection.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}
