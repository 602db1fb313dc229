//! A *home*: what a thread offers the coroutines homed on it.
//!
//! Every thread that runs coroutines has one (created on first need, or
//! installed by a Runtime worker). It holds what a wake touches, and nothing
//! about how the thread waits:
//!
//! - the **ready list**: coroutines to enter on the next turn (owner-only);
//! - the **mailbox**: hand-offs from other threads, bottom halves, QEMU's
//!   `notified` flag and the `closed` flag, with the sleep gate that decides
//!   whether a poster must wake the owner ([`mailbox`] documents and
//!   model-checks both protocols);
//! - the **registry** of started, unfinished coroutines homed here, for
//!   shutdown and dumps (owner-only);
//! - its **counters** ([`ContextMetrics`]).
//!
//! How the owner waits for work and what else it serves (timers, file
//! descriptors) is an *event loop*, a layer above: it attaches itself to the
//! home through the [`EventLoop`] seam (`AioContext` is the one that ships).
//! The core never names it; it only calls through the trait, to wake a
//! sleeping owner and to block a thread that waits outside any coroutine.
//!
//! # Owner-only, as a type
//!
//! Owner-only operations are methods of [`Owner`], a token that only the
//! owning thread can obtain ([`Home::owner`]) and that cannot leave it (it
//! is `!Send`); it carries the home it stands for, so it cannot be used on
//! another one.

pub(crate) mod mailbox;
pub(crate) mod metrics;
mod registry;
mod shutdown;
mod thread;

use std::any::{Any, TypeId};
use std::cell::{Cell, UnsafeCell};
use std::fmt;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, Location, catch_unwind, resume_unwind};
use std::ptr;
use std::sync::OnceLock;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::time::Instant;

use self::mailbox::{Linked, Mailbox, Taken};
pub use self::metrics::ContextMetrics;
use self::metrics::{Counters, bump};
use self::registry::Registry;
pub use self::shutdown::DEFAULT_SHUTDOWN_TIMEOUT;
pub(crate) use self::thread::{block_until, clone_from_ptr, close_this_thread, current, install};
use super::control::{CoInner, CoRef, LocalList, State, WaitReason};
use super::enter;
use super::tls;
use super::transitions::{self, Delivered};
use crate::sync::AtomicPtr;

/// A bottom half: a one-shot callback run by the owner outside coroutines.
pub(crate) type Bh = Box<dyn FnOnce() + Send + 'static>;

/// What the layer above (the event loop) provides a home. Implemented by
/// `AioContext`'s loop; attached once ([`Home::attach_loop`]).
pub(crate) trait EventLoop: Any + Send + Sync {
    /// Wakes the owner thread if it sleeps in the loop (called by posters
    /// that found the sleep gate closed).
    fn unpark(&self);
    /// One turn of the loop on the owner thread, blocking for work when
    /// `blocking` and nothing was ready (QEMU's `aio_poll`); true if
    /// anything ran.
    fn poll(&self, owner: Owner<'_>, blocking: bool) -> bool;
    /// The loop's share of a home's shutdown (see [`Owner::shut_down`]):
    /// runs its own sources (timers) for one turn; true if anything ran.
    fn shutdown_turn(&self, owner: Owner<'_>) -> bool;
    /// The loop's way to wait during a shutdown, until work arrives or
    /// `until`.
    fn shutdown_wait(&self, owner: Owner<'_>, until: Instant);
    /// The loop's share of closing: drops what it still holds (timers).
    fn close(&self, owner: Owner<'_>);
    /// For the loop's own downcast.
    fn as_any(&self) -> &dyn Any;
}

/// A thread's home. Shared by `Arc`; see the module docs.
pub(crate) struct Home {
    pub(crate) id: u64,
    name: Box<str>,
    /// Usable stack bytes of coroutines placed here without a size.
    pub(crate) stack_size: usize,
    mailbox: Mailbox<CoInner, Bh>,
    pub(crate) counters: Counters,
    event_loop: OnceLock<Box<dyn EventLoop>>,
    /// The attached loop's concrete type and address, so that its owner
    /// layer gets it back without a virtual call ([`Home::loop_as`]).
    loop_typed: OnceLock<(TypeId, usize)>,
    /// The thread that owns the home, once installed: woken when no event
    /// loop sleeps on its behalf (see [`block_until`]).
    owner_thread: OnceLock<std::thread::Thread>,

    // --- owner thread only (through `Owner`) ---
    ready: UnsafeCell<LocalList>,
    registry: UnsafeCell<Registry>,
    /// Shutting down: coroutines that never started are dropped instead of
    /// started (see [`shutdown`]).
    draining: Cell<bool>,
}

// SAFETY: the owner-only fields are reached only through `Owner`, which only
// the owning thread can obtain; everything else is atomic, behind the
// mailbox's own synchronisation, or immutable. The event loop is
// `Send + Sync` by its trait bound.
unsafe impl Sync for Home {}
// SAFETY: a home is created on one thread and may be dropped on another once
// no thread owns it; its owner-only contents (coroutine references) are
// themselves `Send`.
unsafe impl Send for Home {}

impl Linked for CoInner {
    fn link(&self) -> &AtomicPtr<CoInner> {
        &self.handoff_next
    }
}

/// Proof that the calling thread owns `home` (see the module docs).
#[derive(Clone, Copy)]
pub(crate) struct Owner<'a> {
    pub(crate) home: &'a Home,
    _not_send: PhantomData<*const ()>,
}

impl Home {
    /// A new home named `name`, owned by nobody until installed.
    pub(crate) fn new(name: String, stack_size: usize) -> Home {
        crate::core::unwinding::install_hook();
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Home {
            // Relaxed: only uniqueness is needed.
            id: NEXT_ID.fetch_add(1, Relaxed),
            name: name.into_boxed_str(),
            stack_size,
            mailbox: Mailbox::new(),
            counters: Counters::default(),
            event_loop: OnceLock::new(),
            loop_typed: OnceLock::new(),
            owner_thread: OnceLock::new(),
            ready: UnsafeCell::new(LocalList::new()),
            registry: UnsafeCell::new(Registry::default()),
            draining: Cell::new(false),
        }
    }

    /// The home's name (its thread's, or a Runtime worker's).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// True on the owning thread.
    #[inline]
    pub(crate) fn is_owner(&self) -> bool {
        ptr::eq(tls::home(), self)
    }

    /// The owner token, on the owning thread only.
    #[inline]
    pub(crate) fn owner(&self) -> Option<Owner<'_>> {
        // SAFETY: just checked.
        self.is_owner().then(|| unsafe { self.owner_unchecked() })
    }

    /// The owner token without the check.
    ///
    /// # Safety
    /// The calling thread owns `self` (its thread-local home is `self`).
    #[inline]
    pub(crate) unsafe fn owner_unchecked(&self) -> Owner<'_> {
        Owner {
            home: self,
            _not_send: PhantomData,
        }
    }

    /// The owner token, or a panic naming `what` was tried from elsewhere.
    #[track_caller]
    pub(crate) fn expect_owner(&self, what: &str) -> Owner<'_> {
        match self.owner() {
            Some(o) => o,
            None => panic!(
                "AioContext::{what} on context {} ({}) from a thread that does not own it",
                self.id, self.name
            ),
        }
    }

    /// The attached event loop, if any.
    #[inline]
    pub(crate) fn event_loop(&self) -> Option<&dyn EventLoop> {
        self.event_loop.get().map(|l| &**l)
    }

    /// Attaches the event loop made by `make`, unless one is attached
    /// already; returns the attached one.
    pub(crate) fn attach_loop<L: EventLoop>(&self, make: impl FnOnce() -> L) -> &dyn EventLoop {
        let l = &**self.event_loop.get_or_init(|| Box::new(make()));
        let _ = self.loop_typed.get_or_init(|| {
            let any = l.as_any();
            (any.type_id(), any as *const dyn Any as *const () as usize)
        });
        l
    }

    /// The attached event loop as its concrete type `L`, if it is one.
    #[inline]
    pub(crate) fn loop_as<L: EventLoop>(&self) -> Option<&L> {
        let &(tid, addr) = self.loop_typed.get()?;
        // SAFETY: `addr` is the address of the attached loop, boxed in
        // `event_loop` for the home's whole life, and its type is `L`: the
        // type ids match.
        (tid == TypeId::of::<L>()).then(|| unsafe { &*(addr as *const L) })
    }

    /// Any thread: gives `co` (already marked scheduled) to this home.
    /// After the home closed, the coroutine is dropped here instead (see the
    /// mailbox's close protocol).
    pub(crate) fn push_remote(&self, co: CoRef) {
        let raw = co.into_raw() as *mut CoInner;
        // SAFETY: `raw` carries one reference, is not on any queue (one
        // accepted wake), and is reclaimed by whoever takes it (the owner's
        // `take_handoffs`, or the drain of a closed mailbox).
        if let Some(late) = unsafe { self.mailbox.post_handoff(raw, || self.unpark()) } {
            drop_taken(late);
        }
    }

    /// Wakes the owner if it sleeps: in its event loop, or parked in
    /// [`block_until`]. Both, always: a loop can be attached while the owner
    /// is parked, and a thread unpark that finds nobody parked only leaves a
    /// token that makes one later park return early.
    fn unpark(&self) {
        if let Some(l) = self.event_loop() {
            l.unpark();
        }
        if let Some(t) = self.owner_thread.get() {
            t.unpark();
        }
    }

    /// QEMU's `aio_notify`.
    pub(crate) fn notify(&self) {
        self.mailbox.notify(|| self.unpark());
    }

    /// QEMU's `aio_bh_schedule_oneshot`: `bh` runs on the owner thread, at
    /// its next turn; after the home closed it is dropped unrun.
    pub(crate) fn post_bh(&self, bh: Bh) {
        if let Some(unrun) = self.mailbox.post_bh(bh, || self.unpark()) {
            drop(unrun);
        }
    }

    /// True if a source other than the ready list has work.
    pub(crate) fn has_incoming(&self) -> bool {
        self.mailbox.has_incoming()
    }

    /// True once the home has closed (the end of its shutdown).
    pub(crate) fn is_closed(&self) -> bool {
        self.mailbox.is_closed()
    }
}

impl<'a> Owner<'a> {
    /// Appends to the ready list.
    #[inline]
    pub(crate) fn push_ready(self, co: CoRef) {
        // SAFETY: owner only (the token), and no borrow of `ready` outlives
        // a call of these methods.
        unsafe { (*self.home.ready.get()).push_back(co) };
    }

    /// Appends a whole list to the ready list.
    pub(crate) fn append_ready(self, list: LocalList) {
        // SAFETY: as in `push_ready`.
        unsafe { (*self.home.ready.get()).append(list) };
    }

    /// Takes the whole ready list.
    pub(crate) fn take_ready(self) -> LocalList {
        // SAFETY: as in `push_ready`.
        unsafe { std::mem::replace(&mut *self.home.ready.get(), LocalList::new()) }
    }

    /// True if nothing is ready.
    pub(crate) fn ready_is_empty(self) -> bool {
        // SAFETY: as in `push_ready`.
        unsafe { (*self.home.ready.get()).is_empty() }
    }

    /// Consumes a pending `aio_notify`. Whoever drives the loop calls this
    /// once per turn, before the turn (never inside it: a notification
    /// consumed there could not end the blocking poll it was meant for).
    pub(crate) fn take_notified(self) -> bool {
        self.home.mailbox.take_notified()
    }

    /// Moves the hand-off queue to the ready list; true if any came.
    #[inline]
    pub(crate) fn take_handoffs(self) -> bool {
        if self.home.mailbox.handoffs_empty() {
            return false;
        }
        self.take_handoffs_slow()
    }

    #[inline(never)]
    fn take_handoffs_slow(self) -> bool {
        let mut any = 0;
        for raw in self.home.mailbox.take_handoffs() {
            // SAFETY: each node carries the reference given up in
            // `push_remote`.
            self.push_ready(unsafe { CoRef::from_raw(raw) });
            any += 1;
        }
        bump(&self.home.counters.handoffs_received, any);
        any > 0
    }

    /// Runs the posted bottom halves; true if any ran. A panicking one is
    /// re-raised after the others are put back for the next turn.
    #[inline]
    pub(crate) fn run_bhs(self) -> bool {
        if !self.home.mailbox.bhs_pending() {
            return false;
        }
        self.run_bhs_slow()
    }

    #[inline(never)]
    fn run_bhs_slow(self) -> bool {
        let Some(bhs) = self.home.mailbox.take_bhs() else {
            return false;
        };
        let n = bhs.len();
        let mut bhs = bhs.into_iter();
        while let Some(bh) = bhs.next() {
            if let Err(p) = catch_unwind(AssertUnwindSafe(bh)) {
                self.home.mailbox.requeue_bhs(bhs.collect());
                resume_unwind(p);
            }
            bump(&self.home.counters.bottom_halves, 1);
        }
        n > 0
    }

    /// Enters everything that was ready at the start of the call; true if
    /// anything was. A raw coroutine's panic is re-raised after the
    /// coroutines behind it are put back.
    pub(crate) fn run_ready(self) -> bool {
        let mut batch = self.take_ready();
        if batch.is_empty() {
            return false;
        }
        while let Some(co) = batch.pop_front() {
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| self.run_scheduled(co))) {
                let later = self.take_ready();
                self.append_ready(batch);
                self.append_ready(later);
                resume_unwind(p);
            }
        }
        true
    }

    /// Enters a coroutine taken from a queue (its wake is consumed).
    pub(crate) fn run_scheduled(self, co: CoRef) {
        match transitions::taken(co.atomics(), Location::caller()) {
            Delivered::Enter => enter::enter_chain(&co),
            Delivered::Requeue => self.push_ready(co),
            Delivered::Skip => {}
        }
    }

    /// One turn of what the home itself holds: bottom halves, hand-offs,
    /// the ready list. True if anything ran.
    pub(crate) fn turn(self) -> bool {
        let mut progress = self.run_bhs();
        progress |= self.take_handoffs();
        progress |= self.run_ready();
        progress
    }

    /// Takes what the mailbox holds for this home, without running it: the
    /// hand-offs and the bottom halves, each oldest first (a simulation
    /// delivers them one at a time).
    pub(crate) fn take_mail(self) -> (Vec<CoRef>, Vec<Bh>) {
        let handoffs = self
            .home
            .mailbox
            .take_handoffs()
            // SAFETY: each node carries the reference given up in
            // `push_remote`.
            .map(|raw| unsafe { CoRef::from_raw(raw) })
            .collect();
        let bhs = self.home.mailbox.take_bhs().unwrap_or_default();
        (handoffs, bhs)
    }

    /// Registers a started coroutine.
    pub(crate) fn register(self, co: &CoInner) {
        // SAFETY: owner only (the token), short borrow.
        let slot = unsafe { (*self.home.registry.get()).insert(co) };
        co.registry_slot.set(slot);
        co.registry_home
            .store(self.home as *const Home as *mut Home, Relaxed);
    }

    /// Removes a finished coroutine.
    pub(crate) fn unregister(self, co: &CoInner) {
        // SAFETY: owner only, short borrow.
        unsafe { (*self.home.registry.get()).remove(co.registry_slot.get(), co) };
        co.registry_home.store(ptr::null_mut(), Relaxed);
    }

    /// Removes a stale entry left by a coroutine that migrated away.
    pub(crate) fn unregister_slot(self, slot: usize, co: *const CoInner) {
        // SAFETY: owner only, short borrow.
        unsafe { (*self.home.registry.get()).remove(slot, co) };
    }

    /// Started coroutines registered here.
    pub(crate) fn registered(self) -> usize {
        // SAFETY: owner only, short borrow.
        unsafe { (*self.home.registry.get()).len() }
    }

    /// A copy of the registry's entries (see `Registry::snapshot`).
    fn registry_snapshot(self) -> Vec<*const CoInner> {
        // SAFETY: owner only, short borrow.
        unsafe { (*self.home.registry.get()).snapshot() }
    }

    /// True while the home shuts down.
    #[inline]
    pub(crate) fn draining(self) -> bool {
        self.home.draining.get()
    }

    /// Suspended coroutines homed here, for `Runtime::dump`.
    pub(crate) fn describe_suspended(self) -> Vec<SuspendedInfo> {
        self.registry_snapshot()
            .into_iter()
            .filter_map(|p| {
                // SAFETY: registered blocks are alive: a coroutine
                // unregisters before it is freed, on this thread.
                let co = unsafe { &*p };
                if co.state() != State::Suspended || !ptr::eq(co.home.load(Acquire), self.home) {
                    return None;
                }
                Some(self.describe(co))
            })
            .collect()
    }

    /// One suspended coroutine homed here.
    fn describe(self, co: &CoInner) -> SuspendedInfo {
        // SAFETY: executing-thread field, and we are its home thread while
        // it is suspended.
        let wait = unsafe { (*co.wait.get()).clone() };
        // SAFETY: a blocker is stored only for the length of the wait it
        // describes, and `co` is suspended in it (it is homed here and
        // suspended), on this thread.
        let blocked = wait
            .as_ref()
            .and_then(|w| w.blocker)
            .map(|b| unsafe { b.read() });
        let (blocked_by, blocker) = match blocked {
            Some((keys, described)) => (keys, Some(described)),
            None => (Vec::new(), None),
        };
        SuspendedInfo {
            id: co.id,
            name: co.name.as_deref().map(str::to_owned),
            context: self.home.id,
            waiting_on: wait.map(describe_wait),
            scheduled: co.scheduled.pending().is_some(),
            key: co as *const CoInner as usize,
            blocker,
            blocked_by,
        }
    }

    /// Commits to sleeping (the mailbox's gate); re-check
    /// [`Home::has_incoming`] before blocking.
    pub(crate) fn prepare_sleep(self) {
        self.home.mailbox.prepare_sleep();
    }

    /// Woke up, or decided not to sleep.
    pub(crate) fn finish_sleep(self) -> bool {
        self.home.mailbox.finish_sleep()
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        // Coroutines still queued hold references that would otherwise leak.
        drop_taken(self.mailbox.take_handoffs());
    }
}

/// Drops hand-offs taken from a closed (or dropped) mailbox.
pub(crate) fn drop_taken(taken: Taken<CoInner>) {
    for raw in taken {
        // SAFETY: reclaiming the reference `push_remote` gave up.
        drop_queued(unsafe { CoRef::from_raw(raw) });
    }
}

/// Drops a queue's reference to a coroutine that will never run there. An
/// unstarted one is cancelled first, so that its `JoinHandle` (which may
/// keep the block alive) does not wait forever.
pub(crate) fn drop_queued(co: CoRef) {
    if co.state() == State::New {
        super::join::cancel_unstarted(&co, super::join::JoinError::Cancelled);
    }
    drop(co);
}

fn describe_wait(w: WaitReason) -> String {
    match w.detail {
        Some(d) => format!("{} {d}", w.what),
        None => w.what.to_owned(),
    }
}

/// One suspended coroutine, as listed by `Runtime::dump` and in a
/// `ShutdownError`.
#[derive(Clone, Debug)]
pub(crate) struct SuspendedInfo {
    pub(crate) id: u64,
    pub(crate) name: Option<String>,
    pub(crate) context: u64,
    pub(crate) waiting_on: Option<String>,
    pub(crate) scheduled: bool,
    /// The control block's address: the coroutine's key in wait-for graphs.
    pub(crate) key: usize,
    /// What its wait's blocker calls the awaited resource, if it has one.
    pub(crate) blocker: Option<String>,
    /// The keys of the coroutines its wait needs (`deadlock`).
    pub(crate) blocked_by: Vec<usize>,
}

impl fmt::Display for SuspendedInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "coroutine {} ({}) on context {}: {}",
            self.id,
            self.name.as_deref().unwrap_or("unnamed"),
            self.context,
            match (&self.waiting_on, self.scheduled) {
                (_, true) => "woken, waiting to run".to_owned(),
                (Some(w), false) => format!("waiting on {w}"),
                (None, false) => "suspended (reason unknown)".to_owned(),
            }
        )
    }
}

/// A panic reached a loop and was contained there (a bottom half's, a timer
/// callback's, a raw coroutine's): says so, since a payload raised again
/// with `resume_unwind` never went through the panic hook.
#[cold]
pub(crate) fn report_contained_panic(home: &Home, payload: &(dyn Any + Send)) {
    bump(&home.counters.panics_contained, 1);
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "<non-string payload>".to_owned());
    eprintln!(
        "coscheduler: context {} ({}): a panic reached the event loop and was contained: {msg}",
        home.id, home.name
    );
}
