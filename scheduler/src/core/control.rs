//! The coroutine control block (QEMU's `struct Coroutine`) and its handle.
//!
//! # Fields and who may touch them
//!
//! | field | written by | read by |
//! |---|---|---|
//! | `refs` | any handle owner (atomic RMW) | same |
//! | `id`, `name`, `stack_size`, `migratable` | creator, before sharing | anyone |
//! | `state` | the *executing thread*, claims by CAS ([`lifecycle`](super::lifecycle)) | anyone (`entered()`, `is_finished()`) |
//! | `scheduled` | wakers (CAS null → site), the executing thread (clears) | anyone |
//! | `cancel` | the last-handle drop path, context shutdown | the executing thread |
//! | `home` | first enter (CAS null → context), migration of a migratable coroutine | anyone |
//! | `handoff_next` | the pusher of a hand-off queue, before publishing | the queue's owner |
//! | `await_state` | the executing thread (inside `wait`), wakers (swap) | same; protocol in `future/state.rs` |
//! | every `Cell`/`UnsafeCell` | the executing thread only | the executing thread only |
//!
//! The *executing thread* is the thread of the coroutine's home. For a
//! coroutine that has never run it is whichever thread enters it first (the
//! `New → Running` claim decides a race). A migratable coroutine changes
//! executing thread only while suspended, and the hand-over is ordered by
//! its state word ([`lifecycle`](super::lifecycle) has the states and every
//! transition).
//!
//! `scheduled` is QEMU's `co->scheduled`, generalised to every wake:
//! non-null from the moment a wake is accepted until the coroutine is
//! entered for it, which is what makes a second wake for the same
//! suspension detectable ([`wake_mark`](super::wake_mark)).

use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::panic::Location;
use std::ptr::{self, NonNull};
use std::sync::atomic::Ordering::Relaxed;

use super::fiber::{Fiber, FiberYielder};
use super::home::Home;
use super::lifecycle::AtomicState;
use super::refcount::RefCount;
use super::transitions::{self, Atomics, LastRef};
use super::wake_mark::WakeMark;
use crate::sync::{AtomicBool, AtomicPtr, AtomicUsize};

pub(crate) use super::lifecycle::State;
pub(crate) use super::list::LocalList;

/// The unwind payload used to unwind a cancelled coroutine (nobody can wake
/// it any more, or its runtime is shutting down). Private, so user code can
/// only observe it as an opaque panic payload.
///
/// Dropping the payload inside the coroutine it was raised in means user
/// code caught the cancellation (`catch_unwind`) and threw it away: the
/// coroutine is no longer unwinding, so its next suspension is a
/// cancellation point again (see `suspend_running`).
pub(crate) struct Cancelled {
    pub(crate) id: u64,
}

impl Drop for Cancelled {
    fn drop(&mut self) {
        let co = super::tls::current();
        // SAFETY: the running coroutine is alive while it runs, and
        // `unwinding_cancel` is an executing-thread field of it.
        if let Some(co) = unsafe { co.as_ref() } {
            if co.id == self.id && co.unwinding_cancel.replace(false) {
                co.shields.set(co.shields.get() - 1);
            }
        }
    }
}

/// How a coroutine's body ended.
pub(crate) enum Outcome {
    /// It returned.
    Returned,
    /// It panicked; the payload is re-raised in whoever entered it.
    Panicked(Box<dyn Any + Send>),
    /// It was unwound by the scheduler (dropped or shut down while suspended).
    Cancelled,
}

impl Outcome {
    /// Classifies a payload caught at the trampoline.
    pub(crate) fn from_unwind(payload: Box<dyn Any + Send>) -> Outcome {
        if payload.is::<Cancelled>() {
            Outcome::Cancelled
        } else {
            Outcome::Panicked(payload)
        }
    }
}

/// What a suspended coroutine is waiting for, when a primitive says so.
#[derive(Clone, Debug)]
pub(crate) struct WaitReason {
    pub(crate) what: &'static str,
    pub(crate) detail: Option<std::sync::Arc<str>>,
    /// Set by `deadlock::wait_on`: what the deadlock finder asks.
    pub(crate) blocker: Option<super::blocker::BlockerRef>,
}

pub(crate) use super::entry::Entry;

/// The control block. See the module documentation for ownership rules.
pub(crate) struct CoInner {
    refs: RefCount,
    pub(crate) id: u64,
    pub(crate) name: Option<Box<str>>,
    /// Usable stack bytes this coroutine asks for.
    pub(crate) stack_size: usize,
    /// Created with the `unsafe` migratable opt-in.
    pub(crate) migratable: bool,
    pub(crate) state: AtomicState,
    pub(crate) cancel: AtomicBool,
    /// The pending wake, if any (QEMU's `scheduled`; see [`wake_mark`](super::wake_mark)).
    pub(crate) scheduled: WakeMark,
    /// Where the coroutine is in awaiting a future (`future/state.rs`). A
    /// word rather than a byte so that it is laid out among the word-sized
    /// fields that a cross-thread wake touches anyway (`scheduled`, `refs`,
    /// `home`): a byte lands with `state`, which the home thread writes at
    /// every switch, and costs every waker wake one more cache-line
    /// transfer (`layout_tests`).
    pub(crate) await_state: AtomicUsize,
    /// Null before the first enter; otherwise a strong `Arc<Home>`
    /// reference turned into a raw pointer.
    pub(crate) home: AtomicPtr<Home>,
    /// Link of the cross-thread hand-off queue.
    pub(crate) handoff_next: AtomicPtr<CoInner>,

    // --- executing thread only ---
    pub(crate) entry: UnsafeCell<Option<Entry>>,
    pub(crate) fiber: UnsafeCell<Option<Box<Fiber>>>,
    pub(crate) yielder: Cell<*const FiberYielder>,
    /// Link for thread-local lists (wakeup lists, the pending list of an
    /// enter, a context's ready queue). A coroutine is on at most one of them
    /// at a time, because each membership is one accepted wake.
    pub(crate) next: Cell<*const CoInner>,
    pub(crate) wakeup_head: Cell<*const CoInner>,
    pub(crate) wakeup_tail: Cell<*const CoInner>,
    pub(crate) outcome: UnsafeCell<Option<Outcome>>,
    /// Slot in the home context's registry of started coroutines, and the
    /// context that slot belongs to (null when not registered).
    pub(crate) registry_slot: Cell<usize>,
    pub(crate) registry_home: AtomicPtr<Home>,
    pub(crate) wait: UnsafeCell<Option<WaitReason>>,
    pub(crate) locks_held: Cell<u32>,
    /// Spawned with a `JoinHandle`: `join` holds its outcome.
    pub(crate) joinable: bool,
    pub(crate) join: super::join::JoinSlot,
    /// The attached stack's guard page `(start, end)` and usable size, for
    /// the overflow handler (copied here so a signal handler reads plain
    /// cells, never the fiber itself).
    pub(crate) stack_guard: Cell<(usize, usize)>,
    pub(crate) stack_usable: Cell<usize>,
    /// Created with `CoroutineBuilder::paint_stack`.
    pub(crate) paint: bool,
    /// The painted stack's high-water mark, recorded when it finished
    /// (`usize::MAX` until then).
    pub(crate) stack_hwm: AtomicUsize,
    /// A cancellation unwind raised in this coroutine is in progress: its
    /// destructors are running and may suspend (and wait) normally. Counts
    /// as one in `shields` while true.
    pub(crate) unwinding_cancel: Cell<bool>,
    /// Why a suspension now is not a cancellation point: the depth of
    /// `raw::shield` sections, plus one while a cancellation unwinds.
    pub(crate) shields: Cell<u16>,
    /// The current suspension is not a cancellation point (a shield, our
    /// own cancellation unwinding, or a panic unwinding on this thread):
    /// shutdown does not resume it to unwind it, only a real wake does.
    pub(crate) parked_shielded: Cell<bool>,
    /// The thread was already panicking when this coroutine was last
    /// switched in: another coroutine's unwind is in flight (see
    /// `unwinding`).
    pub(crate) resumed_amid_panic: Cell<bool>,
    /// This coroutine raised a panic that may still be unwinding (set by
    /// the panic hook and `unwinding::rethrow`, cleared at a suspension
    /// outside any unwind).
    pub(crate) own_panic: Cell<bool>,
    /// Suspended, cancelled and unreachable: nothing can ever resume it, so
    /// its block and stack are leaked (counted in
    /// [`PoolStats::leaked`](crate::stackpool::PoolStats::leaked)).
    pub(crate) orphaned: AtomicBool,
}

// SAFETY: the atomics are shared freely; every `Cell`/`UnsafeCell` field is
// touched only by the coroutine's executing thread (module docs), and the hand
// over of that role between threads is ordered by the `state` and `home`
// atomics. The entry closure is `Send`, and the fiber is `Send` by its own
// argument (see `fiber.rs`).
unsafe impl Sync for CoInner {}
// SAFETY: as above: nothing thread-bound is reachable from a control block
// that is not guarded by the executing-thread rule.
unsafe impl Send for CoInner {}

/// What a new control block is made of.
pub(crate) struct Spec {
    pub(crate) entry: Entry,
    pub(crate) name: Option<Box<str>>,
    pub(crate) stack_size: usize,
    pub(crate) migratable: bool,
    pub(crate) fiber: Option<Box<Fiber>>,
    pub(crate) paint: bool,
    pub(crate) joinable: bool,
}

impl CoInner {
    /// Writes a fresh control block (state `State::New`, one reference) at `p`.
    ///
    /// Field by field, on purpose: building the struct as a value and moving
    /// it into place costs a 300-byte `memcpy` per coroutine created, a tenth
    /// of the lifecycle cost, and one that varies with the CPU's memcpy.
    ///
    /// # Safety
    /// `p` is valid for writes of a `CoInner` and holds no value.
    #[inline(always)]
    unsafe fn init_at(p: *mut CoInner, spec: Spec) {
        let (stack_guard, stack_usable) = spec.fiber.as_ref().map_or(((0, 0), 0), |f| {
            let g = f.guard();
            ((g.start, g.end), f.usable_size())
        });
        macro_rules! put {
            ($($field:ident: $value:expr),* $(,)?) => {
                // SAFETY: `p` is valid for writes (the caller's contract),
                // and each field is written exactly once.
                unsafe { $( (&raw mut (*p).$field).write($value); )* }
            };
        }
        put! {
            refs: RefCount::new(),
            id: next_id(),
            name: spec.name,
            stack_size: spec.stack_size,
            migratable: spec.migratable,
            state: AtomicState::new(),
            cancel: AtomicBool::new(false),
            scheduled: WakeMark::new(),
            home: AtomicPtr::new(ptr::null_mut()),
            handoff_next: AtomicPtr::new(ptr::null_mut()),
            await_state: AtomicUsize::new(super::future::state::IDLE),
            entry: UnsafeCell::new(Some(spec.entry)),
            fiber: UnsafeCell::new(spec.fiber),
            yielder: Cell::new(ptr::null()),
            next: Cell::new(ptr::null()),
            wakeup_head: Cell::new(ptr::null()),
            wakeup_tail: Cell::new(ptr::null()),
            outcome: UnsafeCell::new(None),
            registry_slot: Cell::new(usize::MAX),
            registry_home: AtomicPtr::new(ptr::null_mut()),
            wait: UnsafeCell::new(None),
            locks_held: Cell::new(0),
            stack_guard: Cell::new(stack_guard),
            stack_usable: Cell::new(stack_usable),
            paint: spec.paint,
            stack_hwm: AtomicUsize::new(usize::MAX),
            joinable: spec.joinable,
            join: super::join::JoinSlot::default(),
            unwinding_cancel: Cell::new(false),
            shields: Cell::new(0),
            parked_shielded: Cell::new(false),
            resumed_amid_panic: Cell::new(false),
            own_panic: Cell::new(false),
            orphaned: AtomicBool::new(false),
        }
    }

    /// Records the yielder of the fiber now running this coroutine.
    #[inline]
    pub(crate) fn attach_yielder(&self, y: &FiberYielder) {
        self.yielder.set(y);
    }

    /// Takes the entry closure for the trampoline.
    ///
    /// # Safety
    /// Executing thread only (the trampoline, inside a resume).
    #[inline]
    pub(crate) unsafe fn take_entry(&self) -> Entry {
        // SAFETY: executing thread only, per the caller's contract; no other
        // reference to `entry` exists while the trampoline runs.
        let entry = unsafe { (*self.entry.get()).take() };
        entry.unwrap_or_else(|| Entry::new(|| {}))
    }

    /// Stores how the body ended.
    ///
    /// # Safety
    /// Executing thread only.
    #[inline]
    pub(crate) unsafe fn set_outcome(&self, outcome: Outcome) {
        // SAFETY: executing thread only, per the caller's contract.
        unsafe { *self.outcome.get() = Some(outcome) };
    }

    /// Current lifecycle state.
    #[inline]
    pub(crate) fn state(&self) -> State {
        self.state.load()
    }

    /// The atomics that the cross-thread transitions read
    /// ([`transitions`](super::transitions)).
    #[inline]
    pub(crate) fn atomics(&self) -> Atomics<'_> {
        Atomics {
            state: &self.state,
            refs: &self.refs,
            scheduled: &self.scheduled,
            cancel: &self.cancel,
            migratable: self.migratable,
        }
    }

    /// The name, or `unnamed`.
    pub(crate) fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or("unnamed")
    }

    /// Queues `co` to run right after this coroutine suspends or finishes
    /// (QEMU's `co_queue_wakeup`), FIFO.
    ///
    /// # Safety
    /// Executing thread of `self`, which must be the running coroutine.
    pub(crate) unsafe fn push_wakeup(&self, co: CoRef) {
        let raw = co.into_raw();
        // SAFETY: `raw` is a live control block we own a reference to; its
        // `next` link is free because it holds exactly one accepted wake.
        unsafe { (*raw).next.set(ptr::null()) };
        let tail = self.wakeup_tail.get();
        if tail.is_null() {
            self.wakeup_head.set(raw);
        } else {
            // SAFETY: `tail` is on this list, which owns a reference to it.
            unsafe { (*tail).next.set(raw) };
        }
        self.wakeup_tail.set(raw);
    }

    /// Records the stack geometry of a newly attached fiber.
    pub(crate) fn note_stack(&self, fiber: &Fiber) {
        let g = fiber.guard();
        self.stack_guard.set((g.start, g.end));
        self.stack_usable.set(fiber.usable_size());
    }

    /// Whether this coroutine's wakeup list holds anything.
    #[inline]
    pub(crate) fn has_wakeups(&self) -> bool {
        !self.wakeup_head.get().is_null()
    }

    /// Detaches this coroutine's wakeup list.
    pub(crate) fn take_wakeups(&self) -> LocalList {
        // SAFETY: the wakeup list is a chain of owned references linked
        // through `next` (built by `push_wakeup`), handed over whole.
        let list = unsafe { LocalList::from_parts(self.wakeup_head.get(), self.wakeup_tail.get()) };
        self.wakeup_head.set(ptr::null());
        self.wakeup_tail.set(ptr::null());
        list
    }
}

impl Drop for CoInner {
    fn drop(&mut self) {
        let home = *self.home.get_mut();
        if !home.is_null() {
            // SAFETY: `home` holds one strong count taken when it was set.
            unsafe { drop(crate::sync::Arc::from_raw(home)) };
        }
        if let Some(fiber) = self.fiber.get_mut().take() {
            // Only a coroutine that never started (or finished) gets here:
            // a suspended one is either unwound or leaked by
            // `last_ref_dropped`, so its fiber is parked and reusable.
            debug_assert_ne!(self.state.get_mut(), State::Suspended);
            super::stacks::release(fiber);
        }
    }
}

/// A counted reference to a control block (an `Arc` whose last drop can
/// resurrect a suspended coroutine to unwind it on its home thread).
pub(crate) struct CoRef(NonNull<CoInner>);

// SAFETY: CoInner is Send + Sync (argued above); CoRef is a counted pointer.
unsafe impl Send for CoRef {}
// SAFETY: as above.
unsafe impl Sync for CoRef {}

impl CoRef {
    /// Allocates a control block (recycling a freed one of this thread's
    /// when it can: see [`blocks`](super::blocks)).
    #[inline(always)]
    pub(crate) fn new(spec: Spec) -> CoRef {
        let p = super::blocks::alloc();
        // SAFETY: `alloc` returns memory sized and aligned for a CoInner,
        // owned by us and uninitialised.
        unsafe { CoInner::init_at(p.as_ptr(), spec) };
        CoRef(p)
    }

    /// Gives up this reference as a raw pointer (for intrusive lists).
    #[inline]
    pub(crate) fn into_raw(self) -> *const CoInner {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }

    /// Takes back a reference given up by [`CoRef::into_raw`].
    ///
    /// # Safety
    /// `p` must come from `into_raw` and its reference not be reused.
    #[inline]
    pub(crate) unsafe fn from_raw(p: *const CoInner) -> CoRef {
        // SAFETY: `into_raw` produced a non-null pointer.
        CoRef(unsafe { NonNull::new_unchecked(p as *mut CoInner) })
    }

    /// A new counted reference to the block behind `p`.
    ///
    /// # Safety
    /// `p` must point to a live control block.
    #[inline]
    pub(crate) unsafe fn clone_from_ptr(p: *const CoInner) -> CoRef {
        // SAFETY: live per the contract.
        unsafe { (*p).refs.inc() };
        // SAFETY: non-null: it points to a live block.
        CoRef(unsafe { NonNull::new_unchecked(p as *mut CoInner) })
    }

    /// A new counted reference from a non-owning pointer (a context's
    /// registry entry), unless the count already dropped to zero: then the
    /// last handle's owner is turning the coroutine over for cancellation
    /// and will deliver it home itself (`Weak::upgrade`'s rule).
    ///
    /// # Safety
    /// `p` must point to a control block that is not freed, which holds for
    /// registered blocks: a registered block is never freed (see
    /// `last_ref_dropped`).
    pub(crate) unsafe fn try_upgrade(p: *const CoInner) -> Option<CoRef> {
        // SAFETY: not freed, per the contract.
        let upgraded = unsafe { (*p).refs.try_inc() };
        // SAFETY: non-null, and we now own one count.
        upgraded.then(|| CoRef(unsafe { NonNull::new_unchecked(p as *mut CoInner) }))
    }

    /// The raw pointer, still owned by `self`.
    #[inline]
    pub(crate) fn as_ptr(&self) -> *const CoInner {
        self.0.as_ptr()
    }
}

impl std::ops::Deref for CoRef {
    type Target = CoInner;
    #[inline]
    fn deref(&self) -> &CoInner {
        // SAFETY: a CoRef keeps its block alive.
        unsafe { self.0.as_ref() }
    }
}

impl Clone for CoRef {
    #[inline]
    fn clone(&self) -> CoRef {
        self.refs.inc();
        CoRef(self.0)
    }
}

impl Drop for CoRef {
    #[inline]
    fn drop(&mut self) {
        if self.refs.dec() {
            last_ref_dropped(self.0);
        }
    }
}

/// The last reference is gone. A suspended coroutine can never be woken
/// again: resurrect it with one reference and send it home to be unwound
/// (its destructors must run on its home thread). Anything else is freed.
/// The decision is [`transitions::last_ref`].
#[cold]
#[inline(never)]
fn last_ref_dropped(p: NonNull<CoInner>) {
    // SAFETY: we held the last reference, so nobody else can reach the block.
    let inner = unsafe { p.as_ref() };
    match transitions::last_ref(inner.atomics(), Location::caller()) {
        // On its home thread outside a coroutine it is unwound now; inside
        // a coroutine of that thread, right after that coroutine suspends;
        // from another thread, through the home's mailbox. The scheduler
        // never drops a coroutine reference while it holds a borrow of its
        // own state (timer slots, the fd table), so unwinding inline is
        // safe.
        LastRef::SendHome => super::wake::deliver_woken(CoRef(p)),
        LastRef::Orphaned => orphan(inner),
        LastRef::Free => {
            // SAFETY: initialised by `CoRef::new`, unreachable now, dropped once.
            unsafe { std::ptr::drop_in_place(p.as_ptr()) };
            // SAFETY: the memory came from `blocks::alloc` and holds no value now.
            unsafe { super::blocks::free(p) };
        }
    }
}

/// Cancelled, suspended again inside its own unwinding (a destructor that
/// waits), and now unreachable: nothing can ever resume it. Its stack holds
/// live frames that must not be skipped and its home registry still points
/// here, so the block and its stack are kept for good: counted, and
/// skipped by its context's shutdown.
fn orphan(inner: &CoInner) {
    if !inner.orphaned.swap(true, Relaxed) {
        crate::core::stacks::note_leaked();
        eprintln!(
            "coscheduler: coroutine {} ({}) suspended inside its own unwinding and can never be \
             resumed; its stack is leaked (counted in pool::stats().leaked)",
            inner.id,
            inner.display_name()
        );
    }
}

/// Process-unique ids, handed out in blocks so that creating a coroutine does
/// not bounce one counter's cache line between cores.
fn next_id() -> u64 {
    use std::sync::atomic::AtomicU64;
    const BLOCK: u64 = 1024;
    static NEXT_BLOCK: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static RANGE: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }
    RANGE.with(|r| {
        let (mut next, mut end) = r.get();
        if next == end {
            // Relaxed: only uniqueness matters, which the RMW gives.
            next = NEXT_BLOCK.fetch_add(BLOCK, Relaxed);
            end = next + BLOCK;
        }
        r.set((next + 1, end));
        next
    })
}

/// Marks `co` scheduled from `site`; on a second wake for the same suspension
/// returns where the first one came from.
#[inline]
pub(crate) fn try_schedule(
    co: &CoInner,
    site: &'static Location<'static>,
) -> Result<(), &'static Location<'static>> {
    co.scheduled.claim(site)
}

/// Clears the scheduled mark just before the coroutine is entered for it.
#[inline]
pub(crate) fn clear_scheduled(co: &CoInner) {
    co.scheduled.clear();
}

/// Panics for a second wake of one suspension (QEMU aborts with "already
/// scheduled").
#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn double_wake(co: &CoInner, first: &'static Location<'static>) -> ! {
    panic!(
        "coroutine {} ({}) was already scheduled at {}:{}:{} and has not run since; \
         one wake per suspension",
        co.id,
        co.display_name(),
        first.file(),
        first.line(),
        first.column()
    )
}

#[cfg(test)]
mod size_tests {
    /// A queued, unstarted coroutine costs its control block (W5 queues a
    /// million of them): keep it within six cache lines.
    #[test]
    fn control_block_stays_small() {
        let size = std::mem::size_of::<super::CoInner>();
        assert!(size <= 384, "CoInner grew to {size} bytes");
    }
}

#[cfg(test)]
mod layout_tests {
    use super::CoInner;
    use std::mem::offset_of;

    /// A waker's wake from another thread touches `await_state`,
    /// `scheduled` and `refs`; on one cache line that is one transfer.
    /// (The compiler chooses the layout; this fails if it stops grouping
    /// them, which the `wait` benchmark's cross-thread figure would show.)
    #[test]
    fn a_cross_thread_wake_touches_one_cache_line() {
        let line = |off: usize| off / 64;
        let (a, s, r) = (
            offset_of!(CoInner, await_state),
            offset_of!(CoInner, scheduled),
            offset_of!(CoInner, refs),
        );
        assert_eq!(line(a), line(s), "await_state at {a}, scheduled at {s}");
        assert_eq!(line(s), line(r), "scheduled at {s}, refs at {r}");
    }
}
