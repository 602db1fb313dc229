//! QEMU's lockless CoMutex protocol (`util/qemu-coroutine-lock.c`, itself
//! after OSv's `core/lfmutex.cc`), independent of how a waiter is suspended.
//!
//! The protocol is generic over a [`Parker`]: in production a waiter is a
//! coroutine that `suspend()`s and is woken with `Coroutine::wake`; under
//! `--cfg loom` it is a loom thread that parks on a token (see
//! `loom_tests.rs`). Nothing else differs, so the model checks the code that
//! runs.
//!
//! # State
//!
//! | field | meaning | written by |
//! |---|---|---|
//! | `locked` | lockers that have *arrived*: 0 = free, 1 = held, n > 1 = held with n − 1 lockers waiting or about to wait | every locker (CAS 0→1 or `fetch_add`), every unlocker (`fetch_sub`) |
//! | `ctx` | context id of the holder, 0 when free or unknown, with [`HANDED`] set while a granted waiter has not resumed yet; only feeds the spin heuristic | the new holder, the granter (`m->ctx = co->ctx`, marked), the unlocker (clears) |
//! | `from_push` | lock-free LIFO of [`WaitRecord`]s, each in its own heap allocation | any locker (push, CAS); the responsible party (take-all, swap) |
//! | `queue` | the records taken in from `from_push`, in arrival order ([`Queue`]) | the responsible party only |
//! | `handoff` | 0, or the sequence number of an offered hand-off | the offering unlocker (swap in, CAS out); a locker (swap out = steal) |
//! | `sequence` | last hand-off number, never 0 | the responsible party only |
//! | `policy` | the hand-over order ([`Policy`]) | construction only |
//!
//! **Responsibility.** Exactly one party at a time may consume the waiter
//! queue (`pop_waiter`) and so decide who gets the lock next:
//!
//! 1. an unlocker whose `fetch_sub` saw other arrivals (`locked > 1`), until it
//!    grants the lock or offers a hand-off;
//! 2. a locker that stole an offered hand-off (swap returned non-zero), until
//!    it has granted the lock (possibly to itself);
//! 3. the offering unlocker again, if it reclaimed its own offer (its CAS
//!    `seq → 0` succeeded, so no locker's swap saw it).
//!
//! A new responsible party can only appear after the current one has granted
//! the lock (case 1 needs a holder to unlock) or offered it (case 2), so
//! `pop_waiter` never runs concurrently with itself, and `queue`/`sequence`
//! are plain cells. Each transfer of responsibility carries a happens-before
//! edge: grant → the record's `state` Release/Acquire; offer → steal through the
//! `handoff` RMWs; fast-path acquisition → the `locked` Release/Acquire chain.
//!
//! # Transitions
//!
//! ```text
//! lock:   CAS locked 0→1 ─ok──────────────────────────────────────▶ holder (fast path)
//!           └─fail: spin while locked == 1 and the holder's ctx ≠ ours (≤ 999 turns,
//!                   ≤ HANDED_SPIN_LIMIT while the holder has not resumed),
//!                   retrying the CAS whenever locked reads 0 ──ok──▶ holder (spun)
//!           fetch_add(locked) == 0 ───────────────────────────────▶ holder (raced)
//!           push record; steal = swap(handoff, 0)
//!             steal ≠ 0: pop oldest; oldest is us ────────────────▶ holder (no suspension)
//!                                  otherwise grant it, then ──┐
//!             steal == 0 ─────────────────────────────────────┴──▶ suspend until granted ─▶ holder
//! unlock: fetch_sub(locked) == 1 ─────────────────────────────────▶ free
//!           loop: pop next (policy) ─some─▶ grant it (the lock passes directly; locked stays > 0)
//!                  └─none (a locker counted itself but has not pushed yet):
//!                    seq = next; swap(handoff, seq)
//!                    no record pushed yet ─────────────────────────▶ leave; that locker will steal
//!                    CAS(handoff, seq → 0) failed ─────────────────▶ leave; a locker stole it
//!                    CAS succeeded: offer reclaimed ───────────────▶ loop (a record is there now)
//! ```
//!
//! # No lost wake-up
//!
//! Invariant: *while `locked > 0` and nobody holds the lock, exactly one party
//! is responsible or an offer is outstanding that a pushed-or-pushing locker
//! will steal.* The dangerous window is an unlocker that finds no record
//! because the locker it counted is between its `fetch_add` and its push. It
//! is closed by a store-buffering (Dekker) pair:
//!
//! - locker: push (RMW on `from_push`) → swap on `handoff` (RMW);
//! - unlocker: swap on `handoff` (RMW) → "is anything pushed?" as an RMW
//!   on `from_push` (`compare_exchange(null, null)`).
//!
//! All four are AcqRel read-modify-writes, so no SeqCst fence is needed: if
//! the unlocker's `from_push` RMW comes first in that location's modification
//! order, the locker's push reads from it (directly or through other pushes,
//! all RMWs) and so happens-after it, hence after the unlocker's offer; the
//! locker's later swap on `handoff` must then read the offer (or a later
//! value). Symmetrically, if the locker's swap comes first on `handoff`, the
//! unlocker's offer happens-after the push and its RMW on `from_push` sees the
//! record. So either the unlocker sees the record (and keeps responsibility),
//! or the locker sees the offer (and takes it); the CAS/swap on `handoff`
//! decides which, when both happen. Modelled in `loom_tests.rs`.
//!
//! **ABA.** An unlocker that offered `seq` and later CASes `seq → 0` must not
//! reclaim a *newer* offer that reuses the value: offers are numbered by the
//! responsible party's `sequence`, which skips 0 and cannot wrap within one
//! round (QEMU's `m->sequence`).
//!
//! # Abandoned waiters
//!
//! A waiter can be unwound while queued (a runtime shutting down cancels
//! every suspended coroutine). It cannot unlink its record: only the
//! responsible party touches the queue, and while the lock is held nobody
//! is. Waiting for a grant instead would deadlock waiters caught in a lock
//! cycle, since each holder is itself a waiter that must unwind first. So
//! the waiter and whoever pops its record race on the record's `state`,
//! one CAS each, and the loser adapts:
//!
//! ```text
//! state:  WAITING ─grant CAS (granter)────▶ GRANTED    waiter owns the lock, frees the record
//!            └─────abandon CAS (waiter)──▶ ABANDONED  waiter leaves without the lock
//! granter finds ABANDONED: frees the record; the lock passed to the leaver, who
//!         "unlocks" it by the granter's hand: fetch_sub(locked), then as in unlock
//! waiter finds GRANTED:    frees the record, then unlock (passing the lock on)
//! ```
//!
//! Records are heap-allocated for this: an abandoned one outlives the frame
//! that queued it. They come from a short per-thread free list (`spare`),
//! so a contended lock does not pay a `malloc` per wait. The count in `locked` still includes the leaver until
//! its record is popped, which keeps the responsibility rule intact: the
//! granter's extra `fetch_sub` is exactly the unlock the leaver would have
//! done. A stealer that pops an abandoned record is counted itself, so that
//! `fetch_sub` never frees the lock and it pops again (at worst its own
//! record). Records still queued when the mutex is dropped can only be
//! abandoned ones (every live waiter borrows the mutex) and are freed there.
//! Modelled in `loom_tests.rs`, including a two-lock cycle.
//!
//! # Hand-over order
//!
//! Which record the responsible party unlinks is the policy of `queue.rs`:
//! strict FIFO ([`Policy::Fifo`], QEMU), or *eventual fairness*
//! ([`Policy::Eventual`]): an unlocker hands the lock to the oldest waiter
//! of its own context, overtaking older waiters of other contexts, unless
//! the oldest waiter has waited longer than the bound, which forces FIFO.
//! This is lock cohorting (Dice, Marathe and Shavit, "Lock Cohorting",
//! PPoPP 2012) applied to contexts, with a time bound instead of a count:
//! with several busy coroutines per context, strict FIFO settles into
//! alternating between contexts, so every hand-over is a cross-thread wake;
//! eventual fairness batches them for up to the bound. It changes only
//! which record is unlinked, so the protocol and its invariants are
//! untouched. The lock side (a stealer granting) serves the oldest.
//!
//! # Spinning only on a running holder
//!
//! A granter marks `ctx` with [`HANDED`]; the granted waiter clears the mark
//! when it resumes. A spinner that sees the mark knows the holder has not
//! run yet: its thread may be parked (a futex wake away) or descheduled by
//! the OS (a busy neighbour), and spinning would only burn the core the
//! holder needs. It spins at most [`HANDED_SPIN_LIMIT`] turns on such a
//! holder, enough to catch a thread that is polling, then queues and parks.
//!
//! Under a deterministic simulation ([`Parker::may_spin`] false) it does not
//! spin at all: every context runs on one thread, one coroutine at a time,
//! so the holder cannot progress while we spin. Not spinning is always a
//! legal outcome of the spin (it may end at any turn), so the protocol is
//! the same.
//!
//! # `has_waiters` quirk (docs/SEMANTICS.md §3.5)
//!
//! QEMU's helper reads `to_pop empty || from_push empty`, which is true in
//! every case the protocol reaches, so its unlocker never takes the early
//! exit and keeps offering and reclaiming until the locker shows up or
//! steals. We use OSv's intended predicate, "a record has been pushed"
//! (our `queue` is always empty at that point, asserted): the unlocker leaves as
//! soon as it has offered a hand-off to a locker that has not pushed yet,
//! instead of spinning on that locker. Both are correct by the argument
//! above; ours does not make an unlocker wait for another thread's progress.
//!
//! On the lock side QEMU reads `handoff` then CASes it `old → 0` if
//! `has_waiters` (always true there). We swap it to 0 directly: a swap that
//! returns 0 changes nothing, and one that returns an offer steals it, which
//! is what the CAS did without the read–CAS window.

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::ptr::{self, NonNull};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

use super::queue::Queue;
pub(crate) use super::queue::{Choice, Policy};
use crate::sync::{AtomicPtr, AtomicU8, AtomicUsize, UnsafeCell, protocol_assert};

/// QEMU spins while `++i < 1000`: at most 999 iterations per `lock()` call.
#[cfg(not(loom))]
pub(crate) const SPIN_LIMIT: u32 = 1000;
/// Under loom two turns show both outcomes of the spin without blowing up
/// the state space.
#[cfg(loom)]
pub(crate) const SPIN_LIMIT: u32 = 3;

/// One busy-wait turn of [`RawCoMutex::lock_slow`]'s bounded spin. Under
/// loom it is no yield: a yielding thread is not run again until the others
/// have moved, so every spinner would find the holder gone and no model of
/// two contexts would ever queue. The spin is bounded by [`SPIN_LIMIT`], so
/// loom needs no yield to end it, and each turn's loads are points where it
/// may run the holder or not.
#[inline(always)]
fn spin_pause() {
    #[cfg(not(loom))]
    crate::sync::spin_loop();
}

/// How many turns a locker spins on a holder that was granted the lock but
/// has not resumed yet ([`HANDED`]): about the time a polling thread takes to
/// pick up a wake, far less than a futex wake or a time slice.
#[cfg(not(loom))]
pub(crate) const HANDED_SPIN_LIMIT: u32 = 100;
/// Under loom: one turn on a handed-over holder.
#[cfg(loom)]
pub(crate) const HANDED_SPIN_LIMIT: u32 = 2;

/// The mark on `ctx` of a holder that was granted the lock but has not run
/// since (see "Spinning only on a running holder"). Context ids are
/// addresses of user-space objects, so the top bit is free.
pub(crate) const HANDED: usize = 1 << (usize::BITS - 1);

/// How the protocol suspends "the current waiter" and resumes another one:
/// the testing seam between the lock-free protocol and the coroutine switch.
pub(crate) trait Parker {
    /// Resumes one suspended waiter (a `Coroutine` in production).
    type Handle: Send;

    /// A handle to the calling waiter.
    fn handle() -> Self::Handle;

    /// Suspends the calling waiter until its handle is unparked. One unpark
    /// resumes exactly one park: an unpark that comes first makes the next
    /// park return at once (the coroutine rule "a cross-thread wake issued
    /// while the target is still running takes effect after it suspends").
    /// A return without an unpark is possible only when the waiter is being
    /// cancelled (production) and is handled by the caller.
    fn park();

    /// Resumes the waiter behind `handle`. Called exactly once per park.
    fn unpark(handle: Self::Handle);

    /// A timestamp, read by a granter only for a waiter that asked for one
    /// (statistics: the moment the lock passed to it). Opaque to the
    /// protocol.
    fn stamp() -> u64;

    /// The caller's context id (for eventual fairness).
    fn context() -> usize;

    /// A monotonic clock in nanoseconds (for the eventual-fairness bound).
    fn now() -> u64;

    /// A choice among `n` options (`0..n`) that the hand-over policy leaves
    /// open (`queue.rs`); 0 is the policy's default. Production asks a
    /// running simulation (`coscheduler::sim::choose`), so that it explores
    /// every option and replays the same way.
    #[inline]
    fn choose(n: usize) -> usize {
        let _ = n;
        0
    }

    /// Whether a contended locker may busy-wait on a holder of another
    /// context (step 1 of [`RawCoMutex::lock_slow`]). Production says no
    /// under a simulation, where the holder cannot run while we spin. The
    /// spin is only ever an optimisation: skipping it changes no outcome
    /// the protocol allows, only which of them is likely.
    #[inline]
    fn may_spin() -> bool {
        true
    }

    /// Whether the contended unlock skips its hand-off, a bug planted on
    /// purpose by the tests that show the simulation catches it
    /// (`coprimitives::__mutation`). Never true in real use.
    #[inline]
    fn skip_unlock_handoff() -> bool {
        false
    }
}

/// [`WaitRecord::state`]: queued, nobody has decided about it yet.
const WAITING: u8 = 0;
/// [`WaitRecord::state`]: the lock passed to the waiter; set by the granter
/// as its last access to the record, which the waiter then owns again.
const GRANTED: u8 = 1;
/// [`WaitRecord::state`]: the waiter was unwound before any grant and left;
/// the record belongs to the queue, and whoever pops it frees it.
const ABANDONED: u8 = 2;

/// A waiting locker (QEMU's `CoWaitRecord`), in its own heap allocation so
/// that a waiter unwound while queued can leave without taking the lock: its
/// record stays linked and valid after the frame that made it is gone (see
/// "Abandoned waiters").
pub(crate) struct WaitRecord<P: Parker> {
    /// Link of `from_push` and of the queue's lists. Written by the pusher
    /// before it publishes the record, then only by the responsible party.
    pub(super) next: UnsafeCell<*const WaitRecord<P>>,
    /// Arrival number, given at intake by the responsible party.
    pub(super) order: UnsafeCell<u64>,
    /// [`Parker::now`] at intake (eventual fairness only), by the
    /// responsible party.
    pub(super) arrived: UnsafeCell<u64>,
    /// Taken (once) by whoever pops the record to grant it the lock.
    handle: UnsafeCell<Option<P::Handle>>,
    /// The waiter's context id, for the spin heuristic (`m->ctx = co->ctx`)
    /// and the hand-over policy.
    pub(super) ctx: usize,
    /// 0, or (set by the waiter) 1 to ask the granter for a
    /// [`Parker::stamp`], which replaces it. Written by the granter before
    /// it decides `state`, read by the waiter after it saw [`GRANTED`].
    stamp: UnsafeCell<u64>,
    /// [`WAITING`], then exactly one of [`GRANTED`] (by the granter's CAS)
    /// or [`ABANDONED`] (by the waiter's CAS): the CAS that wins decides
    /// whether the lock passed to the waiter and who frees the record.
    /// Release/Acquire both ways: a granted waiter sees the stamp and
    /// inherits responsibility for the queue along with the lock; a granter
    /// that finds the record abandoned frees it after the waiter's last
    /// access.
    state: AtomicU8,
}

impl<P: Parker> WaitRecord<P> {
    /// A new record of the calling waiter, owned by the caller until it is
    /// pushed.
    fn allocate(ctx: usize, want_stamp: bool) -> *const WaitRecord<P> {
        let record = WaitRecord {
            next: UnsafeCell::new(ptr::null()),
            order: UnsafeCell::new(0),
            arrived: UnsafeCell::new(0),
            handle: UnsafeCell::new(Some(P::handle())),
            ctx,
            stamp: UnsafeCell::new(u64::from(want_stamp)),
            state: AtomicU8::new(WAITING),
        };
        let layout = Layout::new::<WaitRecord<P>>();
        let memory = spare::take(layout).unwrap_or_else(|| {
            // SAFETY: the layout is a record's, never zero-sized.
            let fresh = unsafe { alloc(layout) };
            if fresh.is_null() {
                handle_alloc_error(layout);
            }
            fresh
        });
        let memory = memory.cast::<WaitRecord<P>>();
        // SAFETY: `memory` is unused, writable and laid out for a record.
        unsafe { memory.write(record) };
        memory
    }

    /// Frees a record made by [`allocate`](Self::allocate).
    ///
    /// # Safety
    /// The caller owns the record (its waiter after a grant or before the
    /// push, or whoever popped or drained it abandoned) and nothing links to
    /// it any more.
    unsafe fn free(record: *const WaitRecord<P>) {
        let memory = record.cast_mut();
        // SAFETY: the caller's contract: the record is initialised (written
        // by `allocate`) and nobody else will read it.
        unsafe { ptr::drop_in_place(memory) };
        let layout = Layout::new::<WaitRecord<P>>();
        // SAFETY: records come from `allocate`, never null.
        let memory = unsafe { NonNull::new_unchecked(memory.cast::<u8>()) };
        if let Some(unkept) = spare::give(memory, layout) {
            // SAFETY: from `alloc` with this layout, in `allocate`.
            unsafe { dealloc(unkept.as_ptr(), layout) };
        }
    }
}

/// Spare record allocations, kept per thread.
///
/// Every queued wait needs a record that can outlive its waiter's frame
/// (see "Abandoned waiters"), so a contended lock would otherwise pay a
/// `malloc` and a `free` per wait: about a tenth of W4's contended
/// throughput. A waiter almost always frees its own record on the thread
/// that made it, so a short free list per thread serves nearly every wait;
/// it holds up to [`KEPT`](spare::KEPT) blocks of one layout (one per
/// coroutine of the thread that can be queued at once, up to that many).
mod spare {
    use std::alloc::{Layout, dealloc};
    use std::cell::Cell;
    use std::ptr::{self, NonNull};

    /// At most this many blocks are kept per thread (a few KiB).
    pub(super) const KEPT: usize = 64;

    /// The thread's free list: each kept block's first word links the next.
    struct Spares {
        head: Cell<*mut u8>,
        count: Cell<usize>,
        /// The layout of every kept block (records of different
        /// [`Parker`](super::Parker)s differ; only the first one seen is
        /// kept).
        layout: Cell<Option<Layout>>,
    }

    impl Drop for Spares {
        fn drop(&mut self) {
            let Some(layout) = self.layout.get() else {
                return;
            };
            let mut block = self.head.replace(ptr::null_mut());
            while !block.is_null() {
                // SAFETY: a kept block: from `alloc` with `layout`, at least
                // a word large and word-aligned (a record holds pointers),
                // its first word written by `give`; nobody else has it.
                unsafe {
                    let next = block.cast::<*mut u8>().read();
                    dealloc(block, layout);
                    block = next;
                }
            }
        }
    }

    thread_local! {
        static SPARES: Spares = const {
            Spares {
                head: Cell::new(ptr::null_mut()),
                count: Cell::new(0),
                layout: Cell::new(None),
            }
        };
    }

    /// A kept block of `layout`, if the thread has one.
    pub(super) fn take(layout: Layout) -> Option<*mut u8> {
        SPARES
            .try_with(|spares| {
                let block = spares.head.get();
                if block.is_null() || spares.layout.get() != Some(layout) {
                    return None;
                }
                // SAFETY: a kept block (see `Drop`): its first word links
                // the next one.
                spares.head.set(unsafe { block.cast::<*mut u8>().read() });
                spares.count.set(spares.count.get() - 1);
                Some(block)
            })
            .ok()
            .flatten()
    }

    /// Keeps `block` (of `layout`, free) for a later [`take`]; gives it back
    /// when the thread keeps enough, keeps another layout, or is exiting.
    pub(super) fn give(block: NonNull<u8>, layout: Layout) -> Option<NonNull<u8>> {
        debug_assert!(
            layout.size() >= size_of::<*mut u8>() && layout.align() >= align_of::<*mut u8>(),
            "a kept block must hold its link"
        );
        SPARES
            .try_with(|spares| {
                match spares.layout.get() {
                    None => spares.layout.set(Some(layout)),
                    Some(kept) if kept != layout => return Some(block),
                    Some(_) => {}
                }
                if spares.count.get() >= KEPT {
                    return Some(block);
                }
                // SAFETY: the block is free and ours, and at least a word
                // large and word-aligned (a record holds pointers).
                unsafe { block.as_ptr().cast::<*mut u8>().write(spares.head.get()) };
                spares.head.set(block.as_ptr());
                spares.count.set(spares.count.get() + 1);
                None
            })
            .unwrap_or(Some(block))
    }
}

/// How a contended `lock` got the lock, for statistics.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// Won the fast-path CAS while spinning on a holder of another context.
    Spun {
        /// Busy-wait pauses taken.
        spins: u32,
        /// Claims (CAS on `locked` or `from_push`) that failed and were
        /// retried.
        retries: u32,
    },
    /// Counted itself in and found the lock free meanwhile (`fetch_add`
    /// returned 0).
    Raced {
        /// Busy-wait pauses taken before counting in.
        spins: u32,
        /// As for `Spun`.
        retries: u32,
    },
    /// Queued a wait record and got the lock from the queue.
    Queued {
        /// Busy-wait pauses taken before counting in.
        spins: u32,
        /// As for `Spun`.
        retries: u32,
        /// This locker picked up an unlocker's hand-off offer.
        took_handoff: bool,
        /// It actually suspended (false: it stole the offer and was itself
        /// the oldest waiter).
        suspended: bool,
        /// The granter's [`Parker::stamp`] if one was asked for and the
        /// locker suspended; 0 otherwise.
        stamp: u64,
    },
}

/// What an `unlock` did, for statistics.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Released {
    /// Nobody else had arrived: the lock is free.
    Free,
    /// The lock went directly to a waiter, chosen as the [`Choice`] says.
    HandedOver(Choice),
    /// A locker had counted itself in but not queued: the unlocker offered a
    /// hand-off and left (the locker takes the offer).
    Offered,
}

/// The lock word, waiter queue and hand-off token of a CoMutex.
pub(crate) struct RawCoMutex<P: Parker> {
    locked: AtomicUsize,
    ctx: AtomicUsize,
    from_push: AtomicPtr<WaitRecord<P>>,
    queue: UnsafeCell<Queue<P>>,
    handoff: AtomicUsize,
    sequence: UnsafeCell<usize>,
    policy: Policy,
}

// SAFETY: the records reachable from the queue are only dereferenced by the
// responsible party (module docs), and the only thing that moves between
// threads through them is a `P::Handle`, which is `Send`. The cells are
// accessed under the responsibility rule, which orders them.
unsafe impl<P: Parker> Send for RawCoMutex<P> {}
// SAFETY: as above; all concurrent access goes through the atomics.
unsafe impl<P: Parker> Sync for RawCoMutex<P> {}

impl<P: Parker> RawCoMutex<P> {
    /// A free mutex (QEMU's `qemu_co_mutex_init`: all zero) handing over by
    /// `policy` (see "Hand-over order").
    #[cfg(not(loom))]
    pub(crate) const fn new(policy: Policy) -> RawCoMutex<P> {
        RawCoMutex {
            locked: AtomicUsize::new(0),
            ctx: AtomicUsize::new(0),
            from_push: AtomicPtr::new(ptr::null_mut()),
            queue: UnsafeCell::new(Queue::new()),
            handoff: AtomicUsize::new(0),
            sequence: UnsafeCell::new(0),
            policy,
        }
    }

    /// As above (loom's atomics have no `const fn new`).
    #[cfg(loom)]
    pub(crate) fn new(policy: Policy) -> RawCoMutex<P> {
        RawCoMutex {
            locked: AtomicUsize::new(0),
            ctx: AtomicUsize::new(0),
            from_push: AtomicPtr::new(ptr::null_mut()),
            queue: UnsafeCell::new(Queue::new()),
            handoff: AtomicUsize::new(0),
            sequence: UnsafeCell::new(0),
            policy,
        }
    }

    /// The uncontended lock: one CAS. On failure returns the current count
    /// for [`lock_slow`](Self::lock_slow).
    #[inline]
    pub(crate) fn try_lock_fast(&self, ctx: usize) -> Result<(), usize> {
        // Acquire: pairs with the Release `fetch_sub` in `unlock` that freed
        // the lock (the critical section before it happens-before ours).
        match self.locked.compare_exchange(0, 1, Acquire, Relaxed) {
            Ok(_) => {
                // Relaxed: `ctx` is a hint for spinners, never a guarantee.
                self.ctx.store(ctx, Relaxed);
                Ok(())
            }
            Err(waiters) => Err(waiters),
        }
    }

    /// True while held or handed over (some locker has arrived).
    #[inline]
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn is_locked(&self) -> bool {
        self.locked.load(Relaxed) != 0
    }

    /// QEMU's `qemu_co_mutex_lock` after a failed fast path (`waiters` is
    /// what the CAS saw): spin, count in, queue, suspend. Returns owning the
    /// lock. With `want_stamp`, whoever grants the lock to this locker
    /// records a [`Parker::stamp`] for it.
    ///
    /// The whole lock protocol is kept in this one function, step by step.
    #[cold]
    #[inline(never)]
    pub(crate) fn lock_slow(&self, ctx: usize, mut waiters: usize, want_stamp: bool) -> Acquired {
        // Step 1: bounded spinning, only while exactly one locker (the
        // holder) exists. If the holder runs on our context it cannot make
        // progress while we spin, so stop at once; if it was granted the
        // lock and has not resumed yet (`HANDED`), its thread may be parked
        // or descheduled, so spin only a little ("Spinning only on a running
        // holder"). `spins` is never reset, as in QEMU (at most
        // SPIN_LIMIT − 1 turns per call). `spins` counts the busy-wait
        // pauses actually taken, `retries` the failed claims, for
        // statistics.
        let (mut turn, mut spins, mut retries) = (0u32, 0u32, 0u32);
        if waiters == 1 && !P::may_spin() {
            // A simulation: the holder cannot run while we spin.
            turn = SPIN_LIMIT;
        }
        'spin: while waiters == 1 {
            turn += 1;
            if turn >= SPIN_LIMIT {
                break;
            }
            // Relaxed: a stale holder context only makes the heuristic guess
            // wrong; correctness never depends on it.
            let holder = self.ctx.load(Relaxed);
            if holder & !HANDED == ctx || (holder & HANDED != 0 && turn >= HANDED_SPIN_LIMIT) {
                break;
            }
            if self.locked.load(Relaxed) == 0 {
                // Acquire: as in `try_lock_fast`.
                match self.locked.compare_exchange(0, 1, Acquire, Relaxed) {
                    Ok(_) => {
                        self.ctx.store(ctx, Relaxed);
                        return Acquired::Spun { spins, retries };
                    }
                    Err(now) => {
                        retries += 1;
                        waiters = now;
                        continue 'spin;
                    }
                }
            }
            spin_pause();
            spins += 1;
        }

        // Step 2: count ourselves in. From here an unlocker knows someone is
        // coming, even before our record is queued: this opens the window
        // the hand-off closes. Acquire: if the count was 0 the lock was
        // freed meanwhile and we own it; pairs with the Release `fetch_sub`
        // in `unlock`.
        if self.locked.fetch_add(1, Acquire) == 0 {
            self.ctx.store(ctx, Relaxed);
            return Acquired::Raced { spins, retries };
        }

        // Step 3: queue our record. It is ours until pushed; from then on
        // it is freed by us once granted, or by whoever pops it if we leave
        // it abandoned (see `CancelGuard`).
        let me = WaitRecord::<P>::allocate(ctx, want_stamp);
        let mut head = self.from_push.load(Relaxed);
        loop {
            // SAFETY: the record is not published yet; we are its only user.
            unsafe { (*me).next.with_mut(|next| *next = head) };
            // AcqRel: Release publishes `next` (and the record) to the
            // responsible party's take-all swap in `pop_waiter` (Acquire);
            // both halves make this RMW one side of the Dekker pair with
            // `unlock_slow`'s `from_push` RMW (module docs).
            match self
                .from_push
                .compare_exchange_weak(head, me.cast_mut(), AcqRel, Relaxed)
            {
                Ok(_) => break,
                Err(now) => {
                    retries += 1;
                    head = now;
                }
            }
        }

        // Step 4: the other side of the Dekker pair. An unlocker that found
        // no record may have offered a hand-off; swapping it out makes us
        // responsible for waking the next waiter. AcqRel: Acquire pairs with
        // the offer's Release swap in `unlock_slow` (we inherit the queue
        // state and `sequence`); RMW for the Dekker argument.
        let took_handoff = self.handoff.swap(0, AcqRel) != 0;
        if took_handoff {
            loop {
                // SAFETY: we hold responsibility (we stole the only
                // outstanding offer); nobody else pops until we grant the
                // lock. Our own record is queued, so the pop finds one.
                let (oldest, _) = unsafe { self.pop_waiter(None) };
                protocol_assert!(!oldest.is_null(), "a stolen hand-off with an empty queue");
                if ptr::eq(oldest, me) {
                    // We are first in line: the lock is ours without a
                    // switch. SAFETY: popped, never granted: ours again.
                    unsafe { WaitRecord::free(me) };
                    self.ctx.store(ctx, Relaxed);
                    return Acquired::Queued {
                        spins,
                        retries,
                        took_handoff,
                        suspended: false,
                        stamp: 0,
                    };
                }
                // SAFETY: `oldest` was just popped by us, the responsible
                // party, and has not been granted.
                if unsafe { self.grant(oldest) } {
                    break;
                }
                // Its waiter had left: the lock passed to it and comes
                // straight back. Our own arrival is still counted, so the
                // count stays above one and we stay responsible (Release:
                // as in `unlock`).
                self.locked.fetch_sub(1, Release);
            }
        }

        // Step 5: suspend until someone grants us the lock.
        // SAFETY: our record stays valid until we free it below or abandon
        // it in `CancelGuard`.
        let record = unsafe { &*me };
        let cancel = CancelGuard {
            mutex: self,
            record: me,
        };
        wait_for_grant(record);
        std::mem::forget(cancel);
        // We run: clear the granter's `HANDED` mark (Relaxed: a hint, as
        // everywhere for `ctx`).
        self.ctx.store(ctx, Relaxed);
        // SAFETY: granted: the granter wrote the stamp before its Release
        // CAS of `state`, which we have Acquired, and is done with the
        // record, which is ours to free.
        let stamp = record.stamp.with(|s| unsafe { *s });
        // SAFETY: as above; `record` is not used after this.
        unsafe { WaitRecord::free(me) };
        Acquired::Queued {
            spins,
            retries,
            took_handoff,
            suspended: true,
            stamp,
        }
    }

    /// QEMU's `qemu_co_mutex_unlock`, the uncontended part: one RMW.
    ///
    /// The caller must hold the lock.
    #[inline]
    pub(crate) fn unlock(&self) -> Released {
        protocol_assert!(
            self.locked.load(Relaxed) != 0,
            "CoMutex unlocked while not locked"
        );
        // Relaxed: hint only (QEMU clears `m->ctx` first thing in unlock).
        self.ctx.store(0, Relaxed);
        // Release: pairs with the Acquire CAS/`fetch_add` of the next
        // acquirer, publishing the critical section. No Acquire needed when
        // others are waiting: what we then read (records, `queue`,
        // `sequence`) is ordered by `pop_waiter`'s Acquire swap and by the
        // responsibility chain (module docs).
        if self.locked.fetch_sub(1, Release) == 1 {
            return Released::Free;
        }
        self.unlock_slow()
    }

    /// The rest of `qemu_co_mutex_unlock`: others have arrived; hand the
    /// lock to the oldest, or offer a hand-off if it has not queued yet.
    #[cold]
    #[inline(never)]
    fn unlock_slow(&self) -> Released {
        if P::skip_unlock_handoff() {
            // The planted bug: the lock passes to nobody and nobody is
            // responsible for the queue, so its waiters are never woken.
            return Released::Free;
        }
        let here = Some(P::context());
        loop {
            // SAFETY: responsible party: our `fetch_sub` saw others arrive,
            // or we reclaimed our own offer on the previous turn.
            let (next, choice) = unsafe { self.pop_waiter(here) };
            if !next.is_null() {
                // SAFETY: popped by us while responsible, not granted yet.
                if unsafe { self.grant(next) } {
                    return Released::HandedOver(choice);
                }
                // Its waiter had left: the lock passed to it, and it unlocks
                // at once, by our hand. Release: as in `unlock`.
                if self.locked.fetch_sub(1, Release) == 1 {
                    return Released::Free;
                }
                continue;
            }

            // Nobody queued yet: a locker is between its `fetch_add` and its
            // push. Offer the hand-off under a fresh, non-zero number.
            self.queue.with(|q| {
                // SAFETY: responsible party only (module docs).
                let empty = unsafe { (*q).is_empty() };
                protocol_assert!(empty, "the queue refilled by someone else");
            });
            // SAFETY: responsible party only (module docs).
            let seq = self.sequence.with_mut(|s| unsafe {
                *s = (*s).wrapping_add(1).max(1);
                *s
            });
            // AcqRel: Release publishes `queue`/`sequence` to the stealer's
            // Acquire swap in `lock_slow`; RMW for the Dekker pair.
            let previous = self.handoff.swap(seq, AcqRel);
            protocol_assert!(
                previous == 0,
                "two hand-off offers outstanding: {previous} and {seq}"
            );

            // The other side of the Dekker pair: has the locker pushed? An
            // RMW (a CAS writing null over null) when it reads null; a failed
            // CAS means a record is there. AcqRel: see the module docs.
            let pushed = self
                .from_push
                .compare_exchange(ptr::null_mut(), ptr::null_mut(), AcqRel, Acquire)
                .is_err();
            if !pushed {
                // The locker will see the offer after it pushes.
                return Released::Offered;
            }
            // Reclaim the offer. AcqRel: on success we are responsible again
            // (Acquire orders the pushed records we are about to pop, via the
            // swap in `pop_waiter`); on failure a locker's swap took it and
            // is responsible now, and we must not touch the queue.
            if self
                .handoff
                .compare_exchange(seq, 0, AcqRel, Relaxed)
                .is_err()
            {
                return Released::Offered;
            }
        }
    }

    /// Pops the next waiter by the mutex's policy (`queue.rs`), taking in
    /// the records pushed on `from_push` when the policy asks for them.
    /// `here` is the unlocker's context; `None` for a stealer, which serves
    /// the oldest waiter.
    ///
    /// # Safety
    /// The caller is the responsible party (module docs).
    unsafe fn pop_waiter(&self, here: Option<usize>) -> (*const WaitRecord<P>, Choice) {
        let from_push = || {
            // Relaxed: an empty stack read stale only sends the caller to the
            // hand-off offer, whose Dekker pair finds the record. Acquire on
            // the swap: pairs with the pushers' Release CAS, so their records
            // and `next` links are visible.
            if self.from_push.load(Relaxed).is_null() {
                return ptr::null();
            }
            self.from_push.swap(ptr::null_mut(), Acquire).cast_const()
        };
        self.queue.with_mut(|queue| {
            // SAFETY: responsible party: exclusive access to the queue and
            // the links of every record on it or taken in by `from_push`,
            // whose records we acquire.
            unsafe { (*queue).pop(self.policy, here, from_push) }
        })
    }

    /// QEMU's `qemu_co_mutex_wake`: passes the lock to the waiter of
    /// `record` (with a stamp if it asked for one) and resumes it. Returns
    /// false if the waiter had abandoned the record (it was unwound while
    /// queued): the record is freed and the lock is still the caller's to
    /// pass on.
    ///
    /// # Safety
    /// `record` was popped by the caller, the responsible party, and has not
    /// been granted yet.
    unsafe fn grant(&self, record: *const WaitRecord<P>) -> bool {
        // SAFETY: a popped, ungranted record is alive: its waiter frees it
        // only after a grant, and an abandoned one is ours to free.
        let r = unsafe { &*record };
        // Everything the waiter reads after the grant is written before the
        // CAS that decides it: once `state` says GRANTED the record may be
        // gone ("design for the wake that frees"). The waiter never touches
        // these fields while waiting, so writing them first is harmless if
        // the CAS then finds it abandoned.
        // SAFETY: the granter is the record's only user of `handle`.
        let handle = r.handle.with_mut(|h| unsafe { (*h).take() });
        let Some(handle) = handle else {
            unreachable!("a CoMutex wait record was granted twice");
        };
        // SAFETY: as for `handle`.
        r.stamp.with_mut(|s| unsafe {
            if *s != 0 {
                *s = P::stamp();
            }
        });
        let holder = r.ctx;
        // Release on success: pairs with the Acquire load in
        // `wait_for_grant` (or the failed CAS in `CancelGuard`). Acquire on
        // failure: pairs with the abandoning CAS, so freeing the record
        // comes after the waiter's last access.
        match r.state.compare_exchange(WAITING, GRANTED, Release, Acquire) {
            Ok(_) => {
                // Relaxed: a hint; the waiter clears `HANDED` when it runs.
                self.ctx.store(holder | HANDED, Relaxed);
                P::unpark(handle);
                true
            }
            Err(state) => {
                protocol_assert!(state == ABANDONED, "a wait record in state {state}");
                drop(handle);
                // SAFETY: abandoned and unlinked by our pop: ours to free.
                unsafe { WaitRecord::free(record) };
                false
            }
        }
    }
}

impl<P: Parker> Drop for RawCoMutex<P> {
    /// Frees the records of waiters that left while the mutex stayed held:
    /// nothing else links to them. Every other waiter borrows the mutex, so
    /// none can be queued here.
    fn drop(&mut self) {
        let mut stack = self.from_push.load(Relaxed).cast_const();
        while !stack.is_null() {
            // SAFETY: `&mut self`: no locker or granter is left, and every
            // record still linked was abandoned (module docs).
            unsafe {
                let below = (*stack).next.with(|n| *n);
                WaitRecord::free(stack);
                stack = below;
            }
        }
        self.queue.with_mut(|queue| {
            loop {
                // SAFETY: as above.
                let r = unsafe { (*queue).pop_any() };
                if r.is_null() {
                    break;
                }
                // SAFETY: as above.
                unsafe { WaitRecord::free(r) };
            }
        });
    }
}

/// Suspends until our record is granted. Always parks at least once: the
/// granter's unpark is owed to exactly one park, even when it raced ahead of
/// us (a coroutine must suspend to consume a wake that was already issued).
fn wait_for_grant<P: Parker>(record: &WaitRecord<P>) {
    loop {
        P::park();
        // Acquire: pairs with the Release CAS in `grant`.
        if record.state.load(Acquire) == GRANTED {
            return;
        }
    }
}

/// Leaves the queue consistently if the waiter is unwound while suspended
/// (a runtime shutting down cancels suspended coroutines by unwinding them
/// from `suspend()`).
///
/// The waiter and the granter race on the record's `state` with one CAS
/// each. If the waiter wins, it marks the record [`ABANDONED`] and unwinds
/// at once, without the lock: the record stays linked (it is on the heap)
/// and the granter that later pops it frees it and passes the lock on as if
/// the waiter had unlocked it. If the granter won, the waiter owns the lock
/// and releases it, passing it on. Either way the unwind never waits for
/// anyone, so waiters stuck in a lock cycle can all be unwound.
struct CancelGuard<'a, P: Parker> {
    mutex: &'a RawCoMutex<P>,
    /// A pointer, not a reference: once abandoned, the record may be freed
    /// by a granter while the guard still exists.
    record: *const WaitRecord<P>,
}

impl<P: Parker> Drop for CancelGuard<'_, P> {
    #[cold]
    fn drop(&mut self) {
        let record = self.record;
        // Release on success: our last access to the record happens-before
        // the granter frees it. Acquire on failure: pairs with the grant's
        // Release, so we own the lock and the queue's responsibility.
        // SAFETY: not abandoned yet, so not freed: only we free a record
        // that was not abandoned.
        let state = unsafe { &(*record).state };
        if state
            .compare_exchange(WAITING, ABANDONED, Release, Acquire)
            .is_ok()
        {
            return;
        }
        // Granted meanwhile: the record is ours again, and so is the lock
        // (no guard was made, no `locks_held` taken): free it and pass the
        // lock on.
        // SAFETY: granted, so the granter is done with it and nothing links
        // to it.
        unsafe { WaitRecord::free(record) };
        let _ = self.mutex.unlock();
    }
}

// The coroutine stand-in of these models is shared with CoRwLock's.
#[cfg(all(test, loom))]
#[path = "loom_tests.rs"]
pub(crate) mod loom_tests;

#[cfg(all(test, not(loom)))]
mod thread_tests {
    //! The protocol on real threads (a waiter is an OS thread that parks):
    //! exercises true parallelism and weak-memory hardware that loom's
    //! bounded exploration does not reach, independently of the scheduler.
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::thread;

    struct Slot {
        thread: thread::Thread,
        token: AtomicBool,
    }

    thread_local! {
        static ME: Arc<Slot> = Arc::new(Slot { thread: thread::current(), token: AtomicBool::new(false) });
        static CTX: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    struct ThreadParker;

    impl Parker for ThreadParker {
        type Handle = Arc<Slot>;
        fn handle() -> Arc<Slot> {
            ME.with(Arc::clone)
        }
        fn park() {
            // Acquire: pairs with the Release swap in `unpark`.
            ME.with(|me| {
                while !me.token.swap(false, Acquire) {
                    thread::park();
                }
            });
        }
        fn unpark(h: Arc<Slot>) {
            // Release: pairs with the Acquire swap in `park`.
            assert!(!h.token.swap(true, Release), "double wake");
            h.thread.unpark();
        }
        fn stamp() -> u64 {
            7
        }
        fn context() -> usize {
            CTX.with(std::cell::Cell::get)
        }
        fn now() -> u64 {
            crate::stats::now()
        }
    }

    struct Shared {
        mutex: RawCoMutex<ThreadParker>,
        counter: UnsafeCell<u64>,
    }
    // SAFETY: `counter` is only touched under `mutex`.
    unsafe impl Sync for Shared {}

    fn hammer(policy: Policy) {
        const THREADS: u64 = 4;
        const ITERS: u64 = 20_000;
        let s = Arc::new(Shared {
            mutex: RawCoMutex::new(policy),
            counter: UnsafeCell::new(0),
        });
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                let s = s.clone();
                thread::spawn(move || {
                    let ctx = (i % 2 + 1) as usize;
                    CTX.with(|c| c.set(ctx));
                    for _ in 0..ITERS {
                        if let Err(w) = s.mutex.try_lock_fast(ctx) {
                            if let Acquired::Queued {
                                suspended: true,
                                stamp,
                                ..
                            } = s.mutex.lock_slow(ctx, w, true)
                            {
                                assert_eq!(stamp, 7, "a granted waiter that asked gets a stamp");
                            }
                        }
                        // SAFETY: we hold the mutex.
                        s.counter.with_mut(|c| unsafe { *c += 1 });
                        let _ = s.mutex.unlock();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        // SAFETY: all threads joined.
        assert_eq!(s.counter.with(|c| unsafe { *c }), THREADS * ITERS);
        assert!(!s.mutex.is_locked());
        assert_eq!(s.mutex.handoff.load(Relaxed), 0);
    }

    /// Four threads (two "contexts") hammer the lock; the count is exact and
    /// the mutex ends idle. Exercises spinning, queuing and hand-offs.
    #[test]
    fn threads_increment_exactly() {
        hammer(Policy::Fifo);
    }

    /// The same with eventual fairness, with a bound long enough to batch
    /// and one so short that FIFO is forced at almost every hand-over.
    #[test]
    fn threads_increment_exactly_eventual() {
        hammer(Policy::Eventual {
            bound_ns: 1_000_000,
        });
        hammer(Policy::Eventual { bound_ns: 1 });
    }
}
