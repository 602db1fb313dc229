//! Deterministic simulation: run ordinary coroutine code under a seeded
//! scheduler and a virtual clock, and replay any failure.
//!
//! A [`Simulation`] runs N contexts on the calling thread. The code under
//! test is the code a program runs — it spawns with [`AioContext::spawn`],
//! wakes across contexts, locks `coprimitives`' `CoMutex` and `CoRwLock`,
//! waits on a `CoQueue`, sleeps with `co_sleep`, times out with
//! `co_timeout` — with nothing simulation-specific in it. What the
//! simulation controls instead is every *scheduling point*:
//!
//! - which context runs its next ready coroutine (contexts stand for
//!   threads running at arbitrary relative speeds; each context keeps its
//!   own FIFO order, as a real one does);
//! - when a hand-off from another context (a cross-context wake) and a
//!   bottom half are delivered to their context;
//! - when a context's due timers fire;
//! - which waiter gets a lock where a primitive's policy leaves a choice:
//!   `CoMutex`'s default eventual fairness asks [`choose`] whether a waiter
//!   of the unlocker's context overtakes an older one of another context
//!   (within the fairness bound, which is measured in virtual time). The
//!   other primitives' orders are fixed (FIFO), so they ask nothing.
//!
//! Every choice comes from a generator seeded with the run's seed, so the
//! same seed gives the same schedule, step for step ([`Schedule`]), in any
//! process running the same binary — provided the code under test makes
//! no choice of its own from outside the simulation (see below).
//!
//! # Virtual time
//!
//! The contexts' timers run on a virtual clock ([`AioContext::now`] and
//! [`now`]): it does not move while anything can run, and when every
//! coroutine waits on time it jumps to the next deadline. A test that
//! sleeps for ten minutes takes as long as its scheduling steps.
//!
//! # Failures
//!
//! A run fails ([`Failure`]) when a coroutine panics (by default every
//! coroutine's panic counts, including one a `JoinHandle` would report, see
//! [`Simulation::fail_on_any_panic`]), when it deadlocks — nothing can run,
//! nothing waits on time, and `f` has not returned (the failure carries the
//! list of suspended coroutines and what they wait on) — or when it runs
//! past its step limit (a livelock). [`Failure::replay`] gives a simulation
//! that reproduces it step for step; [`check`] explores a range of seeds
//! and returns the first failure ([`check_with`] with another strategy).
//!
//! # Strategies
//!
//! [`Strategy::Random`] picks uniformly among the enabled events.
//! [`Strategy::Pct`] is probabilistic concurrency testing (Burckhardt et
//! al., ASPLOS 2010): contexts get random priorities, the highest-priority
//! context with work always runs, and at `depth − 1` distinct random steps
//! (at most `steps` of them) the running context's priority drops below all
//! others. A bug that needs `d`
//! ordering constraints between contexts is found with probability at least
//! `1 / (n · k^(d−1))` per run for `n` contexts and `k` steps.
//!
//! # What it can and cannot find
//!
//! It explores the *order of events between contexts* — which context
//! runs next, when a hand-off, a bottom half or a context's due timers are
//! delivered — and *virtual time*. So it finds what goes wrong when
//! contexts (threads, in a real program) interleave at coroutine
//! granularity: lost wake-ups, a waiter never woken across contexts, lock
//! orders that deadlock, fairness bugs, timeouts that race their work.
//! Primitives take part unchanged: `CoMutex` does not spin under a
//! simulation (the holder cannot run meanwhile) and decides its fairness
//! bound in virtual time, and `maybe_yield` counts only calls (no virtual
//! time passes while a coroutine runs).
//!
//! It does not see:
//!
//! - **Races between atomic operations inside one step.** A step runs one
//!   coroutine (or one bottom half, or one context's timers) until it
//!   suspends, on one thread, so the atomics of a lock-free protocol never
//!   interleave and weak-memory reorderings never happen. That is loom's
//!   job: the protocols have loom models next to their code (run with
//!   `--cfg loom`; listed in `docs/ARCHITECTURE.md`), e.g. the CoMutex's
//!   `loom_mutex_two_contexts` and `loom_mutex_eventual_within_bound`
//!   (`coprimitives`' `co_mutex/loom_tests.rs`), the mailbox's
//!   `handoff_never_loses_a_wakeup` (`core/home/mailbox.rs`), the wake
//!   mark's `an_absorbed_wake_never_loses_the_condition`
//!   (`core/wake_mark.rs`), the join slot's
//!   `join_completion_races_a_suspending_joiner` (`core/join/slot.rs`) and
//!   the sleep claim's `sleep_claim_timer_vs_waker` (`coprimitives`'
//!   `sleep/claim.rs`).
//! - **The order within one context's ready list.** Each context runs its
//!   ready coroutines in FIFO order, as a real one does; the simulation
//!   only chooses *which context* takes a step.
//! - **Real file descriptors** (sockets, pipes): their readiness comes from
//!   the kernel, which the simulation does not drive, so a coroutine
//!   waiting on one looks blocked forever (reported as a deadlock).
//! - **Code on real threads or a [`Runtime`](crate::Runtime)** (including
//!   the blocking pool): it runs outside the simulation's control, in real
//!   parallel, and such a run is not deterministic.
//! - **Code that reads `Instant::now()` (or `SystemTime`) itself** for a
//!   decision: the simulation cannot move that clock, so the run depends
//!   on real time and is not deterministic. Use [`now`] or
//!   [`AioContext::now`], which are virtual under a simulation.
//! - **State a thread keeps between runs.** A thread-local that the code
//!   under test carries from one run to the next makes a run depend on the
//!   runs before it on that thread. A primitive with such state resets it
//!   in a hook given to [`on_run_start`], as `maybe_yield` does with its
//!   call count.
//!
//! ```
//! use coscheduler::sim::Simulation;
//! use std::time::Duration;
//!
//! let r = Simulation::new(7, 2).run(|ctxs| {
//!     let other = ctxs[1].spawn(|| 40);
//!     other.join().unwrap() + 2
//! });
//! assert_eq!(r.unwrap(), 42);
//! ```

mod rng;
mod schedule;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use self::rng::{Chooser, SplitMix};
pub use self::schedule::{Schedule, Step, StepKind};
use crate::aio::event_loop::{Clock, Loop, VirtualClock};
use crate::aio::{AioContext, ContextSettings};
use crate::core::control::CoInner;
use crate::core::home::{Bh, Owner};
use crate::core::join::JoinHandle;
use crate::core::{control::CoRef, tls};

/// How a [`Simulation`] chooses among enabled events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Uniformly at random.
    Random,
    /// Probabilistic concurrency testing with `depth − 1` priority changes
    /// over an expected `steps` steps (see the module docs).
    Pct {
        /// The bug depth to aim for (at least 1).
        depth: usize,
        /// The expected length of a run, over which the priority change
        /// points are spread.
        steps: usize,
    },
}

/// A seeded, single-threaded run of N contexts (see the module docs).
#[derive(Clone, Debug)]
#[must_use]
pub struct Simulation {
    seed: u64,
    contexts: usize,
    strategy: Strategy,
    max_steps: usize,
    fail_on_panic: bool,
}

/// Why a simulated run failed, with what it takes to reproduce it.
pub struct Failure(Box<FailureInner>);

struct FailureInner {
    sim: Simulation,
    kind: FailureKind,
    schedule: Schedule,
    /// The suspended coroutines when the run stopped, one a line.
    dump: String,
}

#[derive(Debug)]
enum FailureKind {
    Panic { coroutine: String, message: String },
    Deadlock,
    StepLimit,
}

impl Simulation {
    /// A simulation of `contexts` contexts (at least one) whose every
    /// scheduling choice comes from `seed`, with [`Strategy::Random`].
    ///
    /// # Panics
    /// If `contexts` is zero.
    pub fn new(seed: u64, contexts: usize) -> Simulation {
        assert!(contexts > 0, "a simulation needs at least one context");
        Simulation {
            seed,
            contexts,
            strategy: Strategy::Random,
            max_steps: 1_000_000,
            fail_on_panic: true,
        }
    }

    /// The simulation that replays `seed`: the same as [`new`](Self::new)
    /// (a run is a function of its seed), named for readability at the
    /// call site. With a non-default strategy or step limit, use
    /// [`Failure::replay`] or set them again.
    pub fn replay(seed: u64, contexts: usize) -> Simulation {
        Simulation::new(seed, contexts)
    }

    /// Chooses events with `strategy`.
    pub fn strategy(mut self, strategy: Strategy) -> Simulation {
        self.strategy = strategy;
        self
    }

    /// Fails the run after `steps` scheduling steps (default one million).
    pub fn max_steps(mut self, steps: usize) -> Simulation {
        self.max_steps = steps;
        self
    }

    /// Whether a panic of any coroutine fails the run (default true), or
    /// only one that escapes `f` (a panic that a `JoinHandle` reports is
    /// then left to the code that joins it).
    pub fn fail_on_any_panic(mut self, yes: bool) -> Simulation {
        self.fail_on_panic = yes;
        self
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Runs `f` as a coroutine on the first context. The run ends when `f`
    /// has returned and nothing is runnable or waiting on time, or on a
    /// failure. Coroutines still suspended at the end are unwound (their
    /// destructors run) before this returns.
    ///
    /// # Panics
    /// When called from inside a simulation or a coroutine.
    pub fn run<T: 'static>(
        self,
        f: impl FnOnce(&[AioContext]) -> T + 'static,
    ) -> Result<T, Failure> {
        self.run_traced(f).0
    }

    /// Like [`run`](Self::run), also returning the schedule it followed.
    pub fn run_traced<T: 'static>(
        self,
        f: impl FnOnce(&[AioContext]) -> T + 'static,
    ) -> (Result<T, Failure>, Schedule) {
        assert!(
            !crate::in_coroutine(),
            "Simulation::run must not be called inside a coroutine"
        );
        let mut world = World::new(&self);
        let out = world.run(&self, f);
        let schedule = world.schedule.clone();
        world.tear_down();
        match out {
            Ok(v) => (Ok(v), schedule),
            Err((kind, dump)) => (
                Err(Failure(Box::new(FailureInner {
                    sim: self,
                    kind,
                    schedule: schedule.clone(),
                    dump,
                }))),
                schedule,
            ),
        }
    }
}

impl Failure {
    /// The seed of the failing run.
    pub fn seed(&self) -> u64 {
        self.0.sim.seed
    }

    /// True if nothing could run, nothing waited on time, and the
    /// simulation's function had not returned.
    pub fn is_deadlock(&self) -> bool {
        matches!(self.0.kind, FailureKind::Deadlock)
    }

    /// True if a coroutine panicked (an assertion included).
    pub fn is_panic(&self) -> bool {
        matches!(self.0.kind, FailureKind::Panic { .. })
    }

    /// True if the run went past its step limit.
    pub fn is_step_limit(&self) -> bool {
        matches!(self.0.kind, FailureKind::StepLimit)
    }

    /// The panic message, for a panic.
    pub fn panic_message(&self) -> Option<&str> {
        match &self.0.kind {
            FailureKind::Panic { message, .. } => Some(message),
            _ => None,
        }
    }

    /// The schedule up to the failure, step by step.
    pub fn schedule(&self) -> &Schedule {
        &self.0.schedule
    }

    /// The suspended coroutines when the run stopped, one a line (for a
    /// deadlock, the wait-for picture).
    pub fn dump(&self) -> &str {
        &self.0.dump
    }

    /// A simulation that reproduces this failure step for step: the same
    /// seed, number of contexts, strategy and limits.
    pub fn replay(&self) -> Simulation {
        self.0.sim.clone()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "simulation with seed {} failed after {} steps: ",
            self.0.sim.seed,
            self.0.schedule.len()
        )?;
        match &self.0.kind {
            FailureKind::Panic { coroutine, message } => {
                write!(f, "{coroutine} panicked: {message}")?
            }
            FailureKind::Deadlock => write!(
                f,
                "deadlock: nothing can run, nothing waits on time, and the simulation's function has not returned"
            )?,
            FailureKind::StepLimit => {
                write!(f, "ran past {} steps (a livelock?)", self.0.sim.max_steps)?
            }
        }
        write!(
            f,
            "\nreplay it with Simulation::replay({}, {})",
            self.0.sim.seed, self.0.sim.contexts
        )?;
        if self.0.sim.strategy != Strategy::Random {
            write!(f, ".strategy({:?})", self.0.sim.strategy)?;
        }
        if !self.0.dump.is_empty() {
            write!(f, "\nsuspended coroutines:\n{}", self.0.dump)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Failure {}

/// Runs `f` under seeds `seeds` (each a fresh [`Simulation::new`] with
/// `contexts` contexts) and returns the first failure, if any.
///
/// ```
/// // A correct program survives every seed.
/// let r = coscheduler::sim::check(0..50, 2, |ctxs| {
///     let h = ctxs[1].spawn(|| 1);
///     assert_eq!(h.join().unwrap(), 1);
/// });
/// assert!(r.is_ok());
/// ```
pub fn check(
    seeds: Range<u64>,
    contexts: usize,
    f: impl Fn(&[AioContext]) + Clone + 'static,
) -> Result<(), Failure> {
    check_with(Strategy::Random, seeds, contexts, f)
}

/// [`check`] with another [`Strategy`]: runs `f` under each seed of
/// `seeds` with `strategy` and returns the first failure, whose
/// [`replay`](Failure::replay) uses the same strategy.
///
/// ```
/// use coscheduler::sim::{self, Strategy};
///
/// let pct = Strategy::Pct { depth: 2, steps: 20 };
/// let r = sim::check_with(pct, 0..50, 2, |ctxs| {
///     let h = ctxs[1].spawn(|| 1);
///     assert_eq!(h.join().unwrap(), 1);
/// });
/// assert!(r.is_ok());
/// ```
pub fn check_with(
    strategy: Strategy,
    seeds: Range<u64>,
    contexts: usize,
    f: impl Fn(&[AioContext]) + Clone + 'static,
) -> Result<(), Failure> {
    for seed in seeds {
        let g = f.clone();
        Simulation::new(seed, contexts)
            .strategy(strategy)
            .run(move |ctxs| g(ctxs))?;
    }
    Ok(())
}

/// Virtual time since the simulation running the caller began.
///
/// # Panics
/// Outside a simulation.
pub fn now() -> Duration {
    let ctx = AioContext::current();
    match ctx.event_loop().virtual_clock() {
        Some(c) => c.elapsed(),
        None => panic!("coscheduler::sim::now() called outside a simulation"),
    }
}

/// Functions every run calls on its thread before it starts (see
/// [`on_run_start`]).
static RUN_START: std::sync::Mutex<Vec<fn()>> = std::sync::Mutex::new(Vec::new());

/// Registers `hook` to be called on the simulation's thread at the start of
/// every later run, before any of its coroutines: for per-thread state a
/// primitive keeps across calls (its own counters), which must start each
/// run the same way for a seed to replay exactly. Register once per hook
/// (a `std::sync::Once` does); each registration is called.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
/// static RUNS: AtomicU32 = AtomicU32::new(0);
/// coscheduler::sim::on_run_start(|| {
///     RUNS.fetch_add(1, SeqCst);
/// });
/// coscheduler::sim::Simulation::new(1, 1).run(|_| ()).unwrap();
/// coscheduler::sim::Simulation::new(2, 1).run(|_| ()).unwrap();
/// assert_eq!(RUNS.load(SeqCst), 2);
/// ```
pub fn on_run_start(hook: fn()) {
    RUN_START
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(hook);
}

/// True while the calling thread runs a simulation.
#[inline]
pub fn is_active() -> bool {
    ACTIVE.with(|a| !a.get().is_null())
}

/// A choice among `n` options (`0..n`) that a primitive's policy leaves
/// open — which waiter a wake reaches, whether a local or a remote waiter
/// gets a lock — made by the running simulation's generator, so that runs
/// explore both and replay the same way. Outside a simulation it is 0 (the
/// primitive's own default).
#[inline]
pub fn choose(n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    ACTIVE.with(|a| {
        let p = a.get();
        // SAFETY: set by `World::run` for the duration of a run on this
        // thread, to a world that outlives it; cleared before it goes.
        match unsafe { p.as_ref() } {
            Some(world) => world.rng.borrow_mut().below(n as u64) as usize,
            None => 0,
        }
    })
}

thread_local! {
    /// The world of the simulation running on this thread.
    static ACTIVE: Cell<*const World> = const { Cell::new(std::ptr::null()) };
    /// The first panic a coroutine of the running simulation ended with.
    static PANICKED: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

/// One context of a run, with what was posted to it but not delivered yet.
struct SimContext {
    ctx: AioContext,
    in_transit: VecDeque<CoRef>,
    bhs: VecDeque<Bh>,
}

/// The state of one run.
struct World {
    contexts: Vec<SimContext>,
    clock: Arc<VirtualClock>,
    rng: RefCell<SplitMix>,
    chooser: Chooser,
    schedule: Schedule,
    /// Simulation-local coroutine numbers, in order of first appearance
    /// (process-wide ids differ between runs).
    local_ids: HashMap<u64, u64>,
    /// The thread's own home pointer, put back when the run ends.
    saved_home: *const crate::core::home::Home,
}

/// Lets a closure that is not `Send` run as a coroutine of the simulation.
struct AssertSend<F>(F);

// SAFETY: every context of a simulation runs on the thread that called
// `Simulation::run`, and the run (teardown included) ends before `run`
// returns, so the closure is created, run and dropped on that one thread.
unsafe impl<F> Send for AssertSend<F> {}

impl World {
    fn new(sim: &Simulation) -> World {
        let clock = Arc::new(VirtualClock::new());
        let contexts = (0..sim.contexts)
            .map(|i| SimContext {
                ctx: AioContext::with_clock(
                    ContextSettings {
                        name: format!("sim-{i}"),
                        poll_max: Duration::ZERO,
                        stack_size: crate::stackpool::thread_default_size(),
                    },
                    Clock::Virtual(clock.clone()),
                ),
                in_transit: VecDeque::new(),
                bhs: VecDeque::new(),
            })
            .collect();
        let mut rng = SplitMix::new(sim.seed);
        let chooser = Chooser::new(sim.strategy, sim.contexts, &mut rng);
        World {
            contexts,
            clock,
            rng: RefCell::new(rng),
            chooser,
            schedule: Schedule::default(),
            local_ids: HashMap::new(),
            saved_home: tls::home(),
        }
    }

    /// Makes context `i` the thread's current one and returns its owner
    /// token and loop.
    fn enter(&self, i: usize) -> (Owner<'_>, &Loop) {
        let ctx = &self.contexts[i].ctx;
        tls::set_home(Arc::as_ptr(&ctx.home));
        // SAFETY: just made this thread's home.
        let owner = unsafe { ctx.home.owner_unchecked() };
        (owner, ctx.event_loop())
    }

    fn local_id(&mut self, co: &CoInner) -> u64 {
        let next = self.local_ids.len() as u64;
        *self.local_ids.entry(co.id).or_insert(next)
    }

    fn run<T: 'static>(
        &mut self,
        sim: &Simulation,
        f: impl FnOnce(&[AioContext]) -> T + 'static,
    ) -> Result<T, (FailureKind, String)> {
        assert!(!is_active(), "simulations cannot nest");
        // Copied out: a hook may register another.
        let hooks = RUN_START
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        hooks.iter().for_each(|hook| hook());
        ACTIVE.with(|a| a.set(self as *const World));
        PANICKED.with(|p| p.borrow_mut().take());
        if sim.fail_on_panic {
            tls::set_panic_observer(Some(observe_panic));
        }
        let ctxs: Vec<AioContext> = self.contexts.iter().map(|c| c.ctx.clone()).collect();
        let slot: Rc<RefCell<Option<T>>> = Rc::new(RefCell::new(None));
        let body = AssertSend({
            let slot = slot.clone();
            move || {
                let v = f(&ctxs);
                *slot.borrow_mut() = Some(v);
            }
        });
        self.enter(0);
        let main: JoinHandle<()> = self.contexts[0].ctx.spawn(move || {
            let body = body;
            (body.0)()
        });
        let out = self.drive(sim, &main);
        tls::set_panic_observer(None);
        ACTIVE.with(|a| a.set(std::ptr::null()));
        let out = out.and_then(|()| match main.join() {
            Ok(()) => Ok(()),
            Err(e) => Err((
                FailureKind::Panic {
                    coroutine: "the simulation's function".to_owned(),
                    message: e.to_string(),
                },
                String::new(),
            )),
        });
        out.map(|()| slot.borrow_mut().take().expect("the function returned"))
    }

    /// The scheduling loop.
    fn drive(
        &mut self,
        sim: &Simulation,
        main: &JoinHandle<()>,
    ) -> Result<(), (FailureKind, String)> {
        let mut events = Vec::new();
        loop {
            if let Some((coroutine, message)) = PANICKED.with(|p| p.borrow_mut().take()) {
                return Err((FailureKind::Panic { coroutine, message }, self.dump()));
            }
            self.collect_mail();
            self.enabled(&mut events);
            if events.is_empty() {
                match self.next_deadline() {
                    Some(t) => {
                        self.clock.advance_to(t);
                        self.schedule.push(Step {
                            context: 0,
                            kind: StepKind::Advance(self.clock.elapsed()),
                            coroutine: None,
                        });
                        continue;
                    }
                    None if main.is_finished() => return Ok(()),
                    None => return Err((FailureKind::Deadlock, self.dump())),
                }
            }
            if self.schedule.len() >= sim.max_steps {
                return Err((FailureKind::StepLimit, self.dump()));
            }
            let step = self.schedule.len();
            let (i, kind) = {
                let mut rng = self.rng.borrow_mut();
                self.chooser.pick(&events, step, &mut rng)
            };
            let coroutine = self.execute(i, kind);
            self.schedule.push(Step {
                context: i,
                kind,
                coroutine,
            });
        }
    }

    /// Moves everything posted to each context's mailbox into the
    /// simulation's view of it, to be delivered one at a time.
    fn collect_mail(&mut self) {
        for i in 0..self.contexts.len() {
            let (owner, _) = self.enter(i);
            let (handoffs, bhs) = owner.take_mail();
            let c = &mut self.contexts[i];
            c.in_transit.extend(handoffs);
            c.bhs.extend(bhs);
        }
    }

    /// The events that can happen now, as (context, kind).
    fn enabled(&self, out: &mut Vec<(usize, StepKind)>) {
        out.clear();
        let now = self.clock.now();
        for (i, c) in self.contexts.iter().enumerate() {
            let (owner, lp) = self.enter(i);
            if !c.bhs.is_empty() {
                out.push((i, StepKind::BottomHalf));
            }
            if !c.in_transit.is_empty() {
                out.push((i, StepKind::Deliver));
            }
            if !owner.ready_is_empty() {
                out.push((i, StepKind::Run));
            }
            if lp.next_deadline(owner).is_some_and(|d| d <= now) {
                out.push((i, StepKind::Timers));
            }
        }
    }

    /// The earliest timer of any context.
    fn next_deadline(&self) -> Option<std::time::Instant> {
        (0..self.contexts.len())
            .filter_map(|i| {
                let (owner, lp) = self.enter(i);
                lp.next_deadline(owner)
            })
            .min()
    }

    /// Carries out one event; returns the coroutine it ran, if any.
    fn execute(&mut self, i: usize, kind: StepKind) -> Option<u64> {
        let result = match kind {
            StepKind::Deliver => {
                let co = self.contexts[i].in_transit.pop_front().expect("enabled");
                let id = self.local_id(&co);
                let (owner, _) = self.enter(i);
                owner.push_ready(co);
                Ok(Some(id))
            }
            StepKind::BottomHalf => {
                let bh = self.contexts[i].bhs.pop_front().expect("enabled");
                self.enter(i);
                catch_unwind(AssertUnwindSafe(bh)).map(|()| None)
            }
            StepKind::Run => {
                let (owner, _) = self.enter(i);
                let mut ready = owner.take_ready();
                let co = ready.pop_front().expect("enabled");
                owner.append_ready(ready);
                let id = self.local_id(&co);
                let (owner, _) = self.enter(i);
                catch_unwind(AssertUnwindSafe(|| owner.run_scheduled(co))).map(|()| Some(id))
            }
            StepKind::Timers => {
                let (owner, lp) = self.enter(i);
                catch_unwind(AssertUnwindSafe(|| lp.run_timers(owner))).map(|_| None)
            }
            StepKind::Advance(_) => unreachable!("not chosen among events"),
        };
        match result {
            Ok(id) => id,
            Err(p) => {
                // A raw coroutine's or a callback's panic, re-raised to the
                // loop: the run fails on it like on any other panic.
                let message = payload_message(&*p);
                PANICKED.with(|slot| {
                    slot.borrow_mut()
                        .get_or_insert_with(|| (format!("an event of context {i}"), message));
                });
                None
            }
        }
    }

    /// The suspended coroutines of every context, one a line.
    fn dump(&self) -> String {
        let mut out = String::new();
        for i in 0..self.contexts.len() {
            let (owner, _) = self.enter(i);
            for s in owner.describe_suspended() {
                out.push_str(&format!("  context sim-{i}: {s}\n"));
            }
        }
        out
    }

    /// Unwinds every coroutine left, round-robin over the contexts (one
    /// context's unwinding coroutine may wait for another's), then closes
    /// them and gives the thread its own home back.
    fn tear_down(mut self) {
        for c in &mut self.contexts {
            // Undelivered hand-offs and bottom halves go back to the
            // mailbox so that the shutdown handles them as usual.
            for co in c.in_transit.drain(..) {
                c.ctx.home.push_remote(co);
            }
            for bh in c.bhs.drain(..) {
                c.ctx.home.post_bh(bh);
            }
        }
        for i in 0..self.contexts.len() {
            self.enter(i).0.begin_shutdown();
        }
        for _round in 0..10_000 {
            let mut remaining = 0;
            let mut progress = false;
            for i in 0..self.contexts.len() {
                let (owner, _) = self.enter(i);
                let turn = owner.drain_turn();
                remaining += turn.remaining;
                progress |= turn.progress;
            }
            if remaining == 0 {
                break;
            }
            if !progress {
                // Waiting on virtual time, or stuck for good.
                match self.next_deadline() {
                    Some(t) => self.clock.advance_to(t),
                    None => break,
                }
            }
        }
        for i in 0..self.contexts.len() {
            let (owner, _) = self.enter(i);
            for s in owner.end_shutdown() {
                eprintln!("coscheduler: simulation context sim-{i} left {s} suspended; leaked");
            }
        }
        tls::set_home(self.saved_home);
    }
}

/// The panic observer a run installs: keeps the first panic.
fn observe_panic(co: &CoInner, payload: &(dyn std::any::Any + Send)) {
    let message = payload_message(payload);
    let who = format!("coroutine {} ({})", co.id, co.display_name());
    PANICKED.with(|p| {
        p.borrow_mut().get_or_insert((who, message));
    });
}

fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "<non-string payload>".to_owned())
}
