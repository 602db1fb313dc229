//! The running simulation as the code under it sees it, per thread: its
//! virtual time, the choices it makes for primitives, the hooks run at
//! each run's start, and the first panic of its coroutines.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use super::world::World;
use crate::aio::AioContext;
use crate::core::control::CoInner;

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
pub(super) static RUN_START: std::sync::Mutex<Vec<fn()>> = std::sync::Mutex::new(Vec::new());

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
    pub(super) static ACTIVE: Cell<*const World> = const { Cell::new(std::ptr::null()) };
    /// The first panic a coroutine of the running simulation ended with.
    pub(super) static PANICKED: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

/// The panic observer a run installs: keeps the first panic.
pub(super) fn observe_panic(co: &CoInner, payload: &(dyn std::any::Any + Send)) {
    let message = payload_message(payload);
    let who = format!("coroutine {} ({})", co.id, co.display_name());
    PANICKED.with(|p| {
        p.borrow_mut().get_or_insert((who, message));
    });
}

pub(super) fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "<non-string payload>".to_owned())
}
