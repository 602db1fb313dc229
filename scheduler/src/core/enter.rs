//! QEMU's `qemu_aio_coroutine_enter`: the enter loop.
//!
//! Entering a coroutine runs it until it suspends or finishes, then runs
//! every coroutine it woke on this context (its wakeup list), depth-first:
//! the wakeups of the coroutine that just ran go in front of what was still
//! pending, each list in FIFO order. The loop is iterative, so a long chain
//! of coroutines waking each other does not grow the stack.

use std::any::Any;
use std::panic::Location;
use std::ptr;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};

use super::control::{CoInner, CoRef, LocalList, Outcome, State};
use super::fiber::Suspend;
use super::home::metrics::bump;
use super::home::{self, Home};
use super::tls::{self, ThreadState};
use super::transitions::{self, Delivered};
use crate::sync::Arc;

/// Enters `first` on this thread's context, then its transitive wakeups.
///
/// The caller either took `first` from a queue and cleared its scheduled
/// mark, or checked with [`check_not_scheduled`] that none is set (a direct
/// enter).
///
/// A panic of any coroutine run here is re-raised once the loop is done
/// (the first one, if several panic).
#[inline]
pub(crate) fn enter_chain(first: &CoInner) {
    let ts = tls::thread_state();
    // Null until this thread's home exists: `claim` creates it on its slow
    // path, which a null home always takes.
    // SAFETY: this thread's state, on this thread.
    let mut ctx = unsafe { (*ts).home.get() };
    // SAFETY: `ts` is this thread's state and `ctx` its context (or null);
    // both stay valid for this whole call, because the thread running an
    // enter loop is itself running (never suspended) until the loop
    // returns. `first` is kept alive by the caller. Nothing is pending yet,
    // so a misuse panic of this first run loses no wakeup.
    let panic = unsafe { run_one(ts, &mut ctx, first) };
    if panic.is_none() && !first.has_wakeups() {
        // The common case (nothing woken, no panic): no list, no loop.
        return;
    }
    // SAFETY: as above.
    unsafe { enter_rest(ts, ctx, first.take_wakeups(), panic) };
}

/// The rest of [`enter_chain`]: the coroutines the first one woke, and
/// theirs, depth-first; then the first panic, if any.
///
/// # Safety
/// As [`run_one`], with `ctx` not null.
#[cold]
#[inline(never)]
unsafe fn enter_rest(
    ts: *const ThreadState,
    mut ctx: *const Home,
    mut pending: LocalList,
    mut panic: Option<Box<dyn Any + Send>>,
) {
    {
        let guard = PendingGuard {
            pending: &mut pending,
            ctx,
        };
        while let Some(co) = guard.pending.pop_front() {
            // The site recorded by a requeue is this loop: the wake that
            // led here was consumed.
            match transitions::taken(co.atomics(), Location::caller()) {
                Delivered::Enter => {}
                Delivered::Skip => continue,
                Delivered::Requeue => {
                    // SAFETY: `ctx` is this thread's home.
                    unsafe { (*ctx).owner_unchecked() }.push_ready(co);
                    continue;
                }
            }
            // SAFETY: the caller's contract; `co` is owned by this loop.
            if let Some(p) = unsafe { run_one(ts, &mut ctx, &co) } {
                // The first panic is re-raised; later ones are dropped.
                panic.get_or_insert(p);
            }
            guard.pending.prepend(co.take_wakeups());
        }
    }
    if let Some(p) = panic {
        super::unwinding::rethrow(p);
    }
}

/// Keeps an enter loop's pending wakeups if the loop unwinds (a misuse
/// panic such as "re-entered recursively", or no stack for a raw coroutine):
/// they move to the context's ready queue, where their wakes still count,
/// instead of being dropped while still marked scheduled.
struct PendingGuard<'a> {
    pending: &'a mut LocalList,
    ctx: *const Home,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        let rest = std::mem::replace(self.pending, LocalList::new());
        if !rest.is_empty() {
            // SAFETY: `ctx` is this thread's live home.
            unsafe { (*self.ctx).owner_unchecked() }.append_ready(rest);
        }
    }
}

/// This thread's home, created on first use.
fn ensure_context(ts: *const ThreadState) -> *const Home {
    // SAFETY: this thread's state, on this thread.
    let ctx = unsafe { (*ts).home.get() };
    if !ctx.is_null() {
        return ctx;
    }
    // Kept alive by the thread's home slot.
    Arc::as_ptr(&home::current())
}

/// Runs one coroutine until it suspends or finishes, and returns the panic
/// it finished with when that panic is its enterer's (a coroutine nobody
/// joins). What it woke stays on its wakeup list for the caller to take.
///
/// # Safety
/// `ts` is this thread's state and `ctx` its home, or null when it has none
/// yet (then this creates it, and `ctx` is not null after the call); `co`
/// stays alive for the call.
#[inline(always)]
unsafe fn run_one(
    ts: *const ThreadState,
    ctx: &mut *const Home,
    co: &CoInner,
) -> Option<Box<dyn Any + Send>> {
    if let Claim::Skip = claim(co, ts, ctx) {
        return None;
    }
    // SAFETY: `claim` leaves `ctx` at this thread's live home.
    let ctx_ref = unsafe { &**ctx };
    // SAFETY: this thread's state, on this thread (caller's contract).
    let ts = unsafe { &*ts };
    let prev = ts.current.replace(co);
    // SAFETY: we hold the running claim, so we are the executing thread and
    // the only user of the fiber; `claim` attached one.
    let fiber = unsafe { (*co.fiber.get()).as_mut().unwrap_unchecked() };
    // SAFETY: `co` is alive (caller's contract) and owns this fiber.
    let why = unsafe { fiber.resume(co) };
    ts.current.set(prev);
    // SAFETY: a coroutine that entered `co` is alive and running again.
    if let Some(enterer) = unsafe { prev.as_ref() } {
        super::unwinding::resumed(enterer);
    }
    bump(&ctx_ref.counters.switches, 1);
    match why {
        // Release: the last write of this thread to the coroutine's
        // executing-thread fields; pairs with the Acquire in `claim` on the
        // thread that enters it next (which differs only after a migration).
        Suspend::Yielded => {
            if co.registry_home.load(Relaxed).is_null() {
                // SAFETY: `ctx` is this thread's home (our contract).
                register_at_first_suspension(co, unsafe { ctx_ref.owner_unchecked() });
            }
            co.state.suspended();
            None
        }
        Suspend::Finished => finish(co, ctx_ref),
    }
}

/// A coroutine suspends for the first time: from now on its home's
/// shutdown and dumps must be able to find it.
#[cold]
#[inline(never)]
fn register_at_first_suspension(co: &CoInner, owner: super::home::Owner<'_>) {
    owner.register(co);
}

/// Whether a claimed coroutine is to be resumed.
enum Claim {
    Run,
    /// It could not start (no stack, or its context is shutting down);
    /// its handle was told.
    Skip,
}

/// Checks that `co` may run here and marks it running.
///
/// Every transition into `State::Running` that can race is a CAS: a coroutine that
/// never ran can be reached by several threads (a racing `enter`, a
/// cancellation at shutdown), and a migratable one by its old and new home.
/// Only a started, non-migratable coroutine is claimed with a plain store:
/// its home thread is the only thread that ever runs it.
///
/// `ctx` is this thread's home, or null when it has none yet; it is this
/// thread's home when this returns.
#[inline(always)]
fn claim(co: &CoInner, ts: *const ThreadState, ctx: &mut *const Home) -> Claim {
    // The hot case: a started coroutine of this home, not migratable. The
    // state load is an Acquire (see `lifecycle`). A started coroutine's
    // home is never null, so a null `ctx` always takes the slow path.
    if co.state.load() == State::Suspended && !co.migratable && ptr::eq(co.home.load(Relaxed), *ctx)
    {
        co.state.enter_at_home();
        return Claim::Run;
    }
    *ctx = ensure_context(ts);
    // SAFETY: `ensure_context` returns this thread's home, which lives for
    // as long as the thread's home slot holds it (the whole enter loop).
    claim_slow(co, unsafe { &**ctx })
}

/// Every other case of [`claim`].
#[cold]
#[inline(never)]
fn claim_slow(co: &CoInner, ctx: &Home) -> Claim {
    // An Acquire load (see `lifecycle`), which also pairs with the Release
    // of the home pointer in `rehome`.
    match co.state.load() {
        State::Suspended => {
            let home = co.home.load(Acquire);
            if !ptr::eq(home, ctx) {
                wrong_home(co, home, ctx);
            }
            if co.migratable {
                // Claim first: only the winner may touch the executing-thread
                // fields (the registry link among them).
                if co.state.claim_migratable().is_err() {
                    reentered(co);
                }
                move_registration(co, ctx);
            } else {
                co.state.enter_at_home();
            }
            Claim::Run
        }
        // SAFETY: `ctx` is this thread's home (`run_one`'s contract).
        State::New if unsafe { ctx.owner_unchecked() }.draining() => {
            // The context is shutting down: nothing new starts here.
            crate::core::join::cancel_unstarted(co, crate::core::join::JoinError::Cancelled);
            Claim::Skip
        }
        State::New => {
            if let Err(found) = co.state.claim_new(State::Running) {
                // Started or cancelled by another thread meanwhile.
                match found {
                    State::Finished => finished(co),
                    _ => reentered(co),
                }
            }
            start(co, ctx)
        }
        State::Running => reentered(co),
        _ => finished(co),
    }
}

/// First entry, after winning the `New` → `Running` CAS: claims the home and
/// attaches a stack. The coroutine is registered with its home only when it
/// first suspends: one that runs to its end at once never needs to be found
/// by a shutdown or a dump.
#[cold]
fn start(co: &CoInner, ctx: &Home) -> Claim {
    let home = co.home.load(Acquire);
    if home.is_null() {
        // SAFETY: `ctx` lives in an Arc owned by this thread's context slot;
        // the count we take is owned by `co.home` from here on.
        unsafe { Arc::increment_strong_count(ctx) };
        let mine = ctx as *const Home as *mut Home;
        if let Err(other) = co
            .home
            .compare_exchange(ptr::null_mut(), mine, AcqRel, Acquire)
        {
            // SAFETY: giving back the count taken above.
            unsafe { Arc::decrement_strong_count(ctx) };
            if !ptr::eq(other, ctx) {
                wrong_home(co, other, ctx);
            }
        }
    } else if !ptr::eq(home, ctx) {
        wrong_home(co, home, ctx);
    }
    // SAFETY: having won the start, this thread is the executing thread.
    let has_fiber = unsafe { (*co.fiber.get()).is_some() };
    if !has_fiber {
        if let Err(e) = attach_fiber(co) {
            // Give the coroutine back unstarted, so that it can be started
            // (or cancelled) later.
            co.state.give_back();
            if co.joinable {
                crate::core::join::fail_no_stack(co, e);
                return Claim::Skip;
            }
            panic!(
                "coroutine {} ({}) cannot start: no stack available: {e}",
                co.id,
                co.display_name()
            );
        }
    }
    bump(&ctx.counters.coroutines_started, 1);
    Claim::Run
}

/// Gives a not-yet-started coroutine its stack, from the pool.
pub(crate) fn attach_fiber(co: &CoInner) -> std::io::Result<()> {
    // `stack_size == 0` is `build_lazy`'s "no size asked": the starting
    // thread's default (the Runtime's `stack_size`), not the 16 KiB minimum
    // that `class_for(0)` would round up to. (Fix by the io/sleep engineer:
    // a panic in a `Runtime::spawn`ed coroutine overflowed its 16 KiB.)
    let size = if co.stack_size == 0 {
        crate::stackpool::thread_default_size()
    } else {
        co.stack_size
    };
    let class = crate::stackpool::class_for(size)?;
    let fiber = if co.paint {
        Box::new(crate::core::fiber::allocate_painted(class)?)
    } else {
        crate::core::stacks::acquire(class)?
    };
    co.note_stack(&fiber);
    // SAFETY: called by the (future) executing thread before the first
    // entry; nobody else touches the fiber slot of an unstarted coroutine.
    unsafe { *co.fiber.get() = Some(fiber) };
    Ok(())
}

/// The body is done: release the stack, keep the outcome. Returns the
/// panic that goes to the enterer, if any.
fn finish(co: &CoInner, ctx: &Home) -> Option<Box<dyn Any + Send>> {
    // SAFETY: executing thread; the fiber is parked at its loop's top.
    let (fiber, outcome) = unsafe { ((*co.fiber.get()).take(), (*co.outcome.get()).take()) };
    co.yielder.set(ptr::null());
    if ptr::eq(co.registry_home.load(Relaxed), ctx) {
        // SAFETY: `ctx` is this thread's home (`run_one`'s contract).
        unsafe { ctx.owner_unchecked() }.unregister(co);
    }
    co.state.finished();
    if let Some(f) = fiber {
        if co.paint {
            // SAFETY: painted at allocation; parked, so nothing runs on it.
            co.stack_hwm.store(unsafe { f.high_water_mark() }, Relaxed);
            // A painted stack is a sizing aid: not reused, so the next
            // measurement starts from a clean paint.
            drop(f);
        } else {
            crate::core::stacks::release(f);
        }
    }
    if let Some(Outcome::Panicked(p)) = &outcome {
        if let Some(observe) = tls::panic_observer() {
            observe(co, &**p);
        }
    }
    match outcome {
        // A spawned coroutine's panic belongs to its JoinHandle, never to
        // the worker (or whoever) that happened to run it.
        Some(Outcome::Panicked(p)) if co.joinable => {
            crate::core::join::complete_failed(co, crate::core::join::JoinError::Panicked(p));
            None
        }
        Some(Outcome::Cancelled) => {
            crate::core::join::complete_failed(co, crate::core::join::JoinError::Cancelled);
            None
        }
        Some(Outcome::Panicked(p)) => Some(p),
        _ => None,
    }
}

/// QEMU's `assert(co->locks_held == 0)` when a coroutine terminates: a body
/// that returns holding a lock (a guard leaked with `mem::forget`, or moved
/// to another coroutine) panics *inside the coroutine*, so the panic is the
/// coroutine's own — its `JoinHandle` reports it, or, for a coroutine
/// entered directly, its enterer — and never the worker's that ran it.
///
/// # Safety
/// `co` is the running coroutine of this thread.
pub(crate) unsafe fn assert_no_locks_held(co: *const CoInner) {
    // SAFETY: running, so alive; `locks_held` is an executing-thread field.
    let co = unsafe { &*co };
    let locks = co.locks_held.get();
    if locks != 0 {
        panic!(
            "coroutine {} ({}) finished while holding {locks} lock(s)",
            co.id,
            co.display_name()
        );
    }
}

/// A migratable coroutine entered on a new home: move its registry entry.
#[cold]
fn move_registration(co: &CoInner, ctx: &Home) {
    let old = co.registry_home.load(Acquire);
    if ptr::eq(old, ctx) {
        return;
    }
    let slot = co.registry_slot.get();
    co.registry_home.store(ptr::null_mut(), Relaxed);
    if !old.is_null() {
        // SAFETY: the registry pointer of a migrated coroutine owns one count
        // on its old home (transferred from `home` by `rehome`).
        let old = unsafe { Arc::from_raw(old) };
        // SAFETY: `co` is alive (the caller holds it) and is a CoRef block.
        let keep = unsafe { CoRef::clone_from_ptr(co) };
        let target = old.clone();
        old.post_bh(Box::new(move || {
            // Bottom halves run on their home's owner thread.
            if let Some(owner) = target.owner() {
                owner.unregister_slot(slot, keep.as_ptr());
            }
            drop(keep);
            drop(target);
        }));
    }
    // SAFETY: `ctx` is this thread's home (the caller is `claim`).
    unsafe { ctx.owner_unchecked() }.register(co);
}

/// Moves a migratable, scheduled coroutine's home to `new` (the caller owns
/// its wake). The old home's count is kept for the registry entry there.
pub(crate) fn rehome(co: &CoInner, new: &Home) {
    // SAFETY: `new` is a live context in an Arc; the count taken is owned by
    // `co.home`.
    unsafe { Arc::increment_strong_count(new) };
    let old = co.home.swap(new as *const Home as *mut Home, AcqRel);
    if !old.is_null() && !ptr::eq(co.registry_home.load(Acquire), old) {
        // SAFETY: dropping the count `home` held on the old context.
        unsafe { Arc::decrement_strong_count(old) };
    }
}

/// A direct enter's precondition: `co` is not scheduled to run (QEMU's
/// "Co-routine was already scheduled" abort).
#[inline]
#[track_caller]
pub(crate) fn check_not_scheduled(co: &CoInner) {
    if let Some(site) = co.scheduled.pending() {
        already_scheduled(co, site);
    }
}

#[cold]
#[track_caller]
fn already_scheduled(co: &CoInner, site: &'static Location<'static>) -> ! {
    panic!(
        "coroutine {} ({}) was entered while already scheduled (at {}:{}:{}); \
         QEMU: Co-routine was already scheduled",
        co.id,
        co.display_name(),
        site.file(),
        site.line(),
        site.column()
    )
}

#[cold]
fn reentered(co: &CoInner) -> ! {
    panic!(
        "coroutine re-entered recursively: coroutine {} ({}) is already running",
        co.id,
        co.display_name()
    )
}

#[cold]
fn finished(co: &CoInner) -> ! {
    panic!(
        "coroutine {} ({}) was entered after it finished",
        co.id,
        co.display_name()
    )
}

#[cold]
fn wrong_home(co: &CoInner, home: *const Home, here: &Home) -> ! {
    // SAFETY: a non-null home is a live context (the coroutine holds a count).
    let (hid, hname) = unsafe { home.as_ref() }.map_or((0, "none"), |h| (h.id, h.name()));
    panic!(
        "coroutine {} ({}) is homed on context {hid} ({hname}) and cannot be entered on context {} ({}): \
         started coroutines run only on their home thread (wake them instead)",
        co.id,
        co.display_name(),
        here.id,
        here.name()
    )
}
