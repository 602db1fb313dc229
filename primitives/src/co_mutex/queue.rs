//! The CoMutex waiter queue as the responsible party sees it, and the
//! hand-over policy that picks the next holder from it.
//!
//! Records arrive on the lock-free `from_push` stack (`raw.rs`); the
//! responsible party moves them here (`intake`), numbering them in arrival
//! order and stamping them with the time they were taken in. Everything in
//! this file runs only under the responsibility rule of `raw.rs` (one party
//! at a time, handed on with happens-before edges), so it is plain
//! single-threaded code over raw pointers, with no atomics.
//!
//! # Two lists, one order
//!
//! The queue keeps the records of one context, the *batch* context, in
//! `local` and every other record in `remote`, each in arrival order. The
//! oldest waiter overall is the older of the two heads (by `order`). An
//! unlocker of the batch context finds its own context's oldest waiter at
//! the head of `local` in O(1); an unlocker of another context re-batches
//! first (a merge by `order` and a split, O(n), once per change of the
//! serving context).
//!
//! # Policy
//!
//! - [`Policy::Fifo`] (QEMU): the oldest waiter, always. Records are taken
//!   in only when the queue is empty (QEMU's `to_pop` refill), into
//!   `remote`, and `local` stays empty; no clock is read.
//! - [`Policy::Eventual`]: an unlocker prefers the oldest waiter of its own
//!   context — it resumes on the unlocker's thread, without a cross-thread
//!   wake — overtaking older waiters of other contexts, unless the oldest
//!   waiter was taken in more than `bound` nanoseconds ago: then the oldest
//!   is served (FIFO forced). Every waiter is thus served within about the
//!   bound after the responsible party first saw it, plus the hold times of
//!   the waiters older than it. New records are taken in at every pop, so
//!   a local coroutine that queued behind the holder is seen at once.
//!
//!   Under a deterministic simulation the clock is the simulation's virtual
//!   clock ([`Parker::now`]), and where the bound leaves the choice open
//!   (a local waiter may overtake) the simulation picks
//!   ([`Parker::choose`]) between overtaking and serving the oldest: both
//!   happen on a real machine, where the bound is measured in real time,
//!   which the simulation does not model.
//!
//! The lock side (a locker that stole a hand-off offer and must grant the
//! lock) always serves the oldest waiter.

use std::marker::PhantomData;
use std::ptr;

use super::raw::{Parker, WaitRecord};

/// The hand-over order of a mutex (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Policy {
    /// The oldest waiter first, always (QEMU).
    Fifo,
    /// Own context first while the oldest waiter has waited at most this
    /// many nanoseconds.
    Eventual {
        /// The bound, in the [`Parker::now`] clock's nanoseconds.
        bound_ns: u64,
    },
}

/// How the next holder was chosen, for statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Choice {
    /// The oldest waiter, of the unlocker's own context.
    OldestLocal,
    /// The oldest waiter, of another context (or chosen by a stealer, which
    /// has no preference, or by a simulation where a local waiter could
    /// have overtaken it).
    OldestRemote,
    /// A waiter of the unlocker's context that overtook an older waiter of
    /// another context.
    Overtook,
    /// The oldest waiter, of another context, although a waiter of the
    /// unlocker's context was queued: the bound had passed.
    Forced,
}

/// A FIFO of records linked through their `next` fields.
struct List<P: Parker> {
    head: *const WaitRecord<P>,
    tail: *const WaitRecord<P>,
}

impl<P: Parker> List<P> {
    const fn new() -> List<P> {
        List {
            head: ptr::null(),
            tail: ptr::null(),
        }
    }

    fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// Appends `r`.
    ///
    /// # Safety
    /// The caller is the responsible party and `r` is a live record on no
    /// list.
    unsafe fn push_back(&mut self, r: *const WaitRecord<P>) {
        // SAFETY: the caller's contract: we own the links of `r` and of
        // every record on this list.
        unsafe {
            (*r).next.with_mut(|n| *n = ptr::null());
            if self.tail.is_null() {
                self.head = r;
            } else {
                (*self.tail).next.with_mut(|n| *n = r);
            }
        }
        self.tail = r;
    }

    /// Unlinks the head; the list must not be empty.
    ///
    /// # Safety
    /// The caller is the responsible party.
    unsafe fn pop_front(&mut self) -> *const WaitRecord<P> {
        let r = self.head;
        // SAFETY: the caller's contract; `r` is a live record on this list.
        self.head = unsafe { (*r).next.with(|n| *n) };
        if self.head.is_null() {
            self.tail = ptr::null();
        }
        r
    }
}

/// [`Queue::batch`] while no context is the batch: a value no context id
/// takes (ids never have the top bit set, see `raw.rs`'s `HANDED`), so that
/// intake puts every record on `remote`. `Fifo` relies on that: it pops
/// only `remote`, so a record on `local` would make the queue look empty,
/// and the unlocker would offer a hand-off to a locker that has already
/// parked (a lost wake-up). Any real id here would do that to its
/// context's waiters, 0 included (`current_context_id` of a thread with
/// no home).
const NO_BATCH: usize = usize::MAX;

/// The responsible party's view of the waiters (see the module docs).
pub(crate) struct Queue<P: Parker> {
    local: List<P>,
    remote: List<P>,
    /// The context whose records are on `local`; [`NO_BATCH`] before any
    /// re-batch, and always under [`Policy::Fifo`], which never re-batches.
    batch: usize,
    /// The next arrival number.
    order: u64,
    _parker: PhantomData<fn() -> P>,
}

impl<P: Parker> Queue<P> {
    /// An empty queue.
    pub(crate) const fn new() -> Queue<P> {
        Queue {
            local: List::new(),
            remote: List::new(),
            batch: NO_BATCH,
            order: 0,
            _parker: PhantomData,
        }
    }

    /// True if no record is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.local.is_empty() && self.remote.is_empty()
    }

    /// Takes in a stack of records detached from `from_push` (newest
    /// first), appending them oldest first, numbered and stamped `now`.
    ///
    /// # Safety
    /// The caller is the responsible party and has acquired the records
    /// (the Acquire swap that detached them).
    pub(crate) unsafe fn intake(&mut self, mut stack: *const WaitRecord<P>, now: u64) {
        // Reverse into arrival order first.
        let mut oldest_first: *const WaitRecord<P> = ptr::null();
        while !stack.is_null() {
            // SAFETY: the caller's contract: detached records are ours.
            unsafe {
                let below = (*stack).next.with(|n| *n);
                (*stack).next.with_mut(|n| *n = oldest_first);
                oldest_first = stack;
                stack = below;
            }
        }
        while !oldest_first.is_null() {
            let r = oldest_first;
            // SAFETY: as above; `push_back` rewrites the link we read first.
            unsafe {
                oldest_first = (*r).next.with(|n| *n);
                (*r).order.with_mut(|o| *o = self.order);
                (*r).arrived.with_mut(|a| *a = now);
                self.order += 1;
                if (*r).ctx == self.batch {
                    self.local.push_back(r);
                } else {
                    self.remote.push_back(r);
                }
            }
        }
    }

    /// Unlinks any record (the mutex's `Drop` frees what is left), or
    /// returns null when the queue is empty.
    ///
    /// # Safety
    /// The caller is the responsible party.
    pub(crate) unsafe fn pop_any(&mut self) -> *const WaitRecord<P> {
        for list in [&mut self.local, &mut self.remote] {
            if !list.is_empty() {
                // SAFETY: the caller's contract; the list is not empty.
                return unsafe { list.pop_front() };
            }
        }
        ptr::null()
    }

    /// Re-batches for context `ctx`: merges both lists by arrival order,
    /// then splits them into `ctx`'s records and the others.
    ///
    /// # Safety
    /// The caller is the responsible party.
    unsafe fn rebatch(&mut self, ctx: usize) {
        let (mut a, mut b) = (
            std::mem::replace(&mut self.local, List::new()),
            std::mem::replace(&mut self.remote, List::new()),
        );
        self.batch = ctx;
        loop {
            let from_a = match (a.is_empty(), b.is_empty()) {
                (true, true) => return,
                (false, true) => true,
                (true, false) => false,
                // SAFETY: the caller's contract: we own every record on
                // both lists, and both heads are live.
                (false, false) => unsafe { older(a.head, b.head) },
            };
            // SAFETY: as above; the list chosen is not empty.
            unsafe {
                let r = if from_a { a.pop_front() } else { b.pop_front() };
                if (*r).ctx == ctx {
                    self.local.push_back(r);
                } else {
                    self.remote.push_back(r);
                }
            }
        }
    }

    /// Chooses and unlinks the next holder, or returns null if no record
    /// is queued. `from_push` detaches the records pushed since the last
    /// call (null if none), if the policy wants them now: called at most
    /// once, only when it returns them to be taken in.
    ///
    /// `here` is the unlocker's context, `None` for a stealer (which serves
    /// the oldest).
    ///
    /// # Safety
    /// The caller is the responsible party, and `from_push` returns a stack
    /// of records the caller has acquired.
    pub(crate) unsafe fn pop(
        &mut self,
        policy: Policy,
        here: Option<usize>,
        from_push: impl FnOnce() -> *const WaitRecord<P>,
    ) -> (*const WaitRecord<P>, Choice) {
        let bound_ns = match policy {
            Policy::Fifo => {
                if self.remote.is_empty() {
                    // SAFETY: the caller's contract.
                    unsafe { self.intake(from_push(), 0) };
                }
                if self.remote.is_empty() {
                    return (ptr::null(), Choice::OldestRemote);
                }
                // SAFETY: responsible party; the list is not empty.
                let r = unsafe { self.remote.pop_front() };
                // SAFETY: `r` is a live record we just unlinked.
                let local = here == Some(unsafe { (*r).ctx });
                let choice = if local {
                    Choice::OldestLocal
                } else {
                    Choice::OldestRemote
                };
                return (r, choice);
            }
            Policy::Eventual { bound_ns } => bound_ns,
        };

        // Eventual: take in whatever arrived, so that a local waiter that
        // queued behind us is a candidate.
        let stack = from_push();
        let mut now = None;
        if !stack.is_null() {
            let t = P::now();
            now = Some(t);
            // SAFETY: the caller's contract.
            unsafe { self.intake(stack, t) };
        }
        if self.is_empty() {
            return (ptr::null(), Choice::OldestRemote);
        }
        if let Some(h) = here.filter(|&h| h != self.batch) {
            // SAFETY: responsible party.
            unsafe { self.rebatch(h) };
        }
        let oldest_is_local = match (self.local.is_empty(), self.remote.is_empty()) {
            (false, true) => true,
            (true, false) => false,
            // SAFETY: responsible party; both lists are non-empty (the
            // queue is not empty), so both heads are live records we own.
            _ => unsafe { older(self.local.head, self.remote.head) },
        };
        if oldest_is_local {
            // SAFETY: responsible party; `oldest_is_local` implies `local`
            // is not empty.
            let r = unsafe { self.local.pop_front() };
            // `local` holds `here`'s records only when `here` is set (a
            // stealer does not re-batch).
            let choice = if here == Some(self.batch) {
                Choice::OldestLocal
            } else {
                Choice::OldestRemote
            };
            return (r, choice);
        }
        // From here the oldest is on `remote`, which is therefore not
        // empty.
        if here.is_none() || self.local.is_empty() {
            // SAFETY: responsible party; `remote` is not empty.
            return (unsafe { self.remote.pop_front() }, Choice::OldestRemote);
        }
        // A local waiter could overtake the oldest: only within the bound.
        let now = now.unwrap_or_else(P::now);
        // SAFETY: the head of a non-empty list is a live record we own.
        let arrived = unsafe { (*self.remote.head).arrived.with(|a| *a) };
        if now.saturating_sub(arrived) > bound_ns {
            // SAFETY: responsible party; `remote` is not empty.
            (unsafe { self.remote.pop_front() }, Choice::Forced)
        } else if P::choose(2) == 1 {
            // A simulation's pick: the oldest, as if the bound had passed
            // (on a real machine it may have, however little time the
            // simulation says went by).
            // SAFETY: responsible party; `remote` is not empty.
            (unsafe { self.remote.pop_front() }, Choice::OldestRemote)
        } else {
            // SAFETY: responsible party; `local` is not empty (tested above).
            (unsafe { self.local.pop_front() }, Choice::Overtook)
        }
    }
}

/// True if `a` arrived before `b`.
///
/// # Safety
/// Both are live records owned by the caller, the responsible party.
unsafe fn older<P: Parker>(a: *const WaitRecord<P>, b: *const WaitRecord<P>) -> bool {
    // SAFETY: the caller's contract.
    unsafe { (*a).order.with(|o| *o) < (*b).order.with(|o| *o) }
}
