//! One run: the simulated contexts, what was posted to them but not yet
//! delivered, and the scheduling loop that takes one chosen step at a time.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::failure::FailureKind;
use super::hooks::{ACTIVE, PANICKED, RUN_START, is_active, observe_panic, payload_message};
use super::rng::SplitMix;
use super::strategy::Chooser;
use super::{Schedule, Simulation, Step, StepKind};
use crate::aio::event_loop::{Clock, Loop, VirtualClock};
use crate::aio::{AioContext, ContextSettings};
use crate::core::control::CoInner;
use crate::core::home::{Bh, Owner};
use crate::core::join::JoinHandle;
use crate::core::{control::CoRef, tls};

/// One context of a run, with what was posted to it but not delivered yet.
struct SimContext {
    ctx: AioContext,
    in_transit: VecDeque<CoRef>,
    bhs: VecDeque<Bh>,
}

/// The state of one run.
pub(super) struct World {
    contexts: Vec<SimContext>,
    clock: Arc<VirtualClock>,
    pub(super) rng: RefCell<SplitMix>,
    chooser: Chooser,
    /// Whether a Run step picks among the ready coroutines (else the oldest).
    explore_ready_order: bool,
    pub(super) schedule: Schedule,
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
    pub(super) fn new(sim: &Simulation) -> World {
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
            explore_ready_order: sim.explore_ready_order,
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

    pub(super) fn run<T: 'static>(
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
            let coroutine = self.execute(i, kind, step);
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
    fn execute(&mut self, i: usize, kind: StepKind, step: usize) -> Option<u64> {
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
                let co = self.take_chosen_ready(i, step);
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

    /// Takes the ready coroutine of context `i` that the chooser picks at
    /// `step`, leaving the others ready in their order. A real context
    /// would take the oldest; the simulation explores every order, since
    /// the order coroutines become ready in depends on other contexts'
    /// timing (and a runtime's workers steal unstarted ones), unless told
    /// to keep it FIFO.
    fn take_chosen_ready(&mut self, i: usize, step: usize) -> CoRef {
        let (owner, _) = self.enter(i);
        let mut list = owner.take_ready();
        let first = list.pop_front().expect("enabled");
        if list.is_empty() || !self.explore_ready_order {
            owner.append_ready(list);
            return first;
        }
        let mut ready = vec![first];
        while let Some(co) = list.pop_front() {
            ready.push(co);
        }
        let ids: Vec<u64> = ready.iter().map(|co| co.id).collect();
        let pick = self
            .chooser
            .pick_ready(&ids, step, &mut self.rng.borrow_mut());
        let co = ready.remove(pick);
        let (owner, _) = self.enter(i);
        for other in ready {
            owner.push_ready(other);
        }
        co
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
    pub(super) fn tear_down(mut self) {
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
