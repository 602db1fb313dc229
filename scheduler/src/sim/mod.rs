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
//! - which context takes the next step (contexts stand for threads
//!   running at arbitrary relative speeds);
//! - which of a context's ready coroutines runs next. A lone context runs
//!   its ready list FIFO, but the order coroutines become ready in depends
//!   on other contexts' timing, and a runtime's workers steal unstarted
//!   coroutines, so code that relies on that order is fragile: the
//!   simulation explores every order (code that relies on a lone context's
//!   FIFO order on purpose keeps it with
//!   [`Simulation::explore_ready_order`]`(false)`);
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
//! `1 / (n · k^(d−1))` per run for `n` contexts and `k` steps. Within a
//! context the same holds for its ready coroutines: each gets a random
//! priority when it is first ready beside others, the highest-priority one
//! runs, and at a change point the coroutine that runs drops with its
//! context. Like any PCT scheduler it starves a coroutine that waits by
//! yielding in a loop for a lower-priority one of its own context until a
//! change point (a step-limit failure at worst); use
//! [`Strategy::Random`] for such code.
//!
//! # What it can and cannot find
//!
//! It explores the *order of events between contexts* — which context
//! runs next, when a hand-off, a bottom half or a context's due timers are
//! delivered — the *order of the ready coroutines within a context*, and
//! *virtual time*. So it finds what goes wrong when contexts (threads, in
//! a real program) interleave at coroutine granularity: lost wake-ups, a
//! waiter never woken across contexts, lock orders that deadlock, fairness
//! bugs, timeouts that race their work, code that assumes the coroutine
//! spawned or woken first runs first.
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
//! - **Another order for a coroutine's wakes on its own context.** They go
//!   on its wakeup list and run right after it suspends, in the order they
//!   were issued, within the same step: a guarantee (QEMU's), which the
//!   simulation keeps. Only the ready list's order is explored.
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

mod failure;
mod hooks;
mod rng;
mod schedule;
mod strategy;
mod world;

use std::ops::Range;

pub use self::failure::Failure;
pub use self::hooks::{choose, is_active, now, on_run_start};
pub use self::schedule::{Schedule, Step, StepKind};
pub use self::strategy::Strategy;
use self::world::World;
use crate::aio::AioContext;

/// A seeded, single-threaded run of N contexts (see the module docs).
#[derive(Clone, Debug)]
#[must_use]
pub struct Simulation {
    seed: u64,
    contexts: usize,
    strategy: Strategy,
    max_steps: usize,
    fail_on_panic: bool,
    explore_ready_order: bool,
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
            explore_ready_order: true,
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

    /// Whether the order within a context's ready list is a choice of the
    /// simulation (default true), or kept FIFO as a lone context runs it.
    ///
    /// Exploring it finds code that depends on the order coroutines became
    /// ready in, which other contexts' timing (and a runtime's stealing of
    /// unstarted coroutines) can change. Code that relies on a single
    /// context's FIFO order on purpose — coroutines readied by one
    /// coroutine of the same context, in a known order — turns it off.
    ///
    /// ```
    /// use coscheduler::sim::Simulation;
    /// use std::sync::{Arc, Mutex};
    ///
    /// // Two coroutines spawned on one context in a row run in that order
    /// // when the order is kept FIFO, whatever the seed.
    /// for seed in 0..20 {
    ///     let order = Simulation::new(seed, 1)
    ///         .explore_ready_order(false)
    ///         .run(|ctxs| {
    ///             let log = Arc::new(Mutex::new(Vec::new()));
    ///             let (a, b) = (log.clone(), log.clone());
    ///             let h1 = ctxs[0].spawn(move || a.lock().unwrap().push(1));
    ///             let h2 = ctxs[0].spawn(move || b.lock().unwrap().push(2));
    ///             h1.join().unwrap();
    ///             h2.join().unwrap();
    ///             let v = log.lock().unwrap().clone();
    ///             v
    ///         })
    ///         .unwrap();
    ///     assert_eq!(order, [1, 2]);
    /// }
    /// ```
    pub fn explore_ready_order(mut self, yes: bool) -> Simulation {
        self.explore_ready_order = yes;
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
                Err(Failure::new(self, kind, schedule.clone(), dump)),
                schedule,
            ),
        }
    }
}

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
