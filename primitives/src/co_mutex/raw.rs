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
//! | `from_push` | lock-free LIFO of [`WaitRecord`]s; records live on the waiters' stacks | any locker (push, CAS); the responsible party (take-all, swap) |
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
//! edge: grant → `granted` Release/Acquire; offer → steal through the
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

use std::ptr;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

use super::queue::Queue;
pub(crate) use super::queue::{Choice, Policy};
use crate::sync::{AtomicBool, AtomicPtr, AtomicUsize, UnsafeCell, protocol_assert, spin_loop};

/// QEMU spins while `++i < 1000`: at most 999 iterations per `lock()` call.
#[cfg(not(loom))]
pub(crate) const SPIN_LIMIT: u32 = 1000;
/// Under loom two turns show both outcomes of the spin without blowing up
/// the state space.
#[cfg(loom)]
pub(crate) const SPIN_LIMIT: u32 = 3;

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
}

/// A waiting locker, on the waiter's own stack (QEMU's `CoWaitRecord`).
pub(crate) struct WaitRecord<P: Parker> {
    /// Link of `from_push` and of the queue's lists. Written by the pusher
    /// before it publishes the record, then only by the responsible party.
    pub(super) next: UnsafeCell<*const WaitRecord<P>>,
    /// Arrival number, given at intake by the responsible party.
    pub(super) order: UnsafeCell<u64>,
    /// [`Parker::now`] at intake (eventual fairness only), by the
    /// responsible party.
    pub(super) arrived: UnsafeCell<u64>,
    /// Taken (once) by whoever grants the lock to this waiter.
    handle: UnsafeCell<Option<P::Handle>>,
    /// The waiter's context id, for the spin heuristic (`m->ctx = co->ctx`)
    /// and the hand-over policy.
    pub(super) ctx: usize,
    /// 0, or (set by the waiter) 1 to ask the granter for a
    /// [`Parker::stamp`], which replaces it. Written by the granter before
    /// `granted`, read by the waiter after it.
    stamp: UnsafeCell<u64>,
    /// Set by the granter after it is done with the record. Release/Acquire
    /// pair: the granter's store (in `grant`) with the waiter's load (in
    /// `wait_for_grant`); it carries responsibility for the queue along
    /// with the lock. Once the waiter has read `true` the record may be
    /// gone, so the granter never touches it after the store.
    granted: AtomicBool,
}

impl<P: Parker> WaitRecord<P> {
    fn new(ctx: usize, want_stamp: bool) -> WaitRecord<P> {
        WaitRecord {
            next: UnsafeCell::new(ptr::null()),
            order: UnsafeCell::new(0),
            arrived: UnsafeCell::new(0),
            handle: UnsafeCell::new(Some(P::handle())),
            ctx,
            stamp: UnsafeCell::new(u64::from(want_stamp)),
            granted: AtomicBool::new(false),
        }
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
            spin_loop();
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

        // Step 3: queue our record (on this stack frame; it stays alive
        // until `granted`, see `wait_for_grant` and `CancelGuard`).
        let record = WaitRecord::<P>::new(ctx, want_stamp);
        let me: *const WaitRecord<P> = &record;
        let mut head = self.from_push.load(Relaxed);
        loop {
            // SAFETY: the record is not published yet; we are its only user.
            record.next.with_mut(|next| unsafe { *next = head });
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
            // SAFETY: we hold responsibility (we stole the only outstanding
            // offer); nobody else pops until we grant the lock.
            let (oldest, _) = unsafe { self.pop_waiter(None) };
            protocol_assert!(!oldest.is_null(), "a stolen hand-off with an empty queue");
            if ptr::eq(oldest, me) {
                // We are first in line: the lock is ours without a switch.
                self.ctx.store(ctx, Relaxed);
                return Acquired::Queued {
                    spins,
                    retries,
                    took_handoff,
                    suspended: false,
                    stamp: 0,
                };
            }
            // SAFETY: `oldest` was just popped by us, the responsible party;
            // its waiter is parked (or about to park) until granted.
            unsafe { self.grant(oldest) };
        }

        // Step 5: suspend until someone grants us the lock.
        let cancel = CancelGuard {
            mutex: self,
            record: &record,
        };
        wait_for_grant(&record);
        std::mem::forget(cancel);
        // We run: clear the granter's `HANDED` mark (Relaxed: a hint, as
        // everywhere for `ctx`).
        self.ctx.store(ctx, Relaxed);
        // SAFETY: granted: the granter wrote the stamp before its Release
        // store of `granted`, which we have Acquired, and is done with the
        // record.
        let stamp = record.stamp.with(|s| unsafe { *s });
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
        let here = Some(P::context());
        loop {
            // SAFETY: responsible party: our `fetch_sub` saw others arrive,
            // or we reclaimed our own offer on the previous turn.
            let (next, choice) = unsafe { self.pop_waiter(here) };
            if !next.is_null() {
                // SAFETY: popped by us while responsible; its waiter waits
                // for the grant.
                unsafe { self.grant(next) };
                return Released::HandedOver(choice);
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
    /// `record` (with a stamp if it asked for one) and resumes it.
    ///
    /// # Safety
    /// `record` was popped by the caller, the responsible party, and has not
    /// been granted yet.
    unsafe fn grant(&self, record: *const WaitRecord<P>) {
        // SAFETY: a popped, ungranted record is alive: its waiter does not
        // return before `granted` (see `wait_for_grant`, `CancelGuard`).
        let record = unsafe { &*record };
        // Relaxed: a hint; the waiter clears `HANDED` when it runs.
        self.ctx.store(record.ctx | HANDED, Relaxed);
        // SAFETY: the granter is the record's only user now.
        let handle = record.handle.with_mut(|h| unsafe { (*h).take() });
        let Some(handle) = handle else {
            unreachable!("a CoMutex wait record was granted twice");
        };
        // SAFETY: as for `handle`.
        record.stamp.with_mut(|s| unsafe {
            if *s != 0 {
                *s = P::stamp();
            }
        });
        // Release: pairs with the Acquire load in `wait_for_grant`; the
        // record may be freed as soon as the waiter sees it, so this is our
        // last access to it ("design for the wake that frees").
        record.granted.store(true, Release);
        P::unpark(handle);
    }
}

/// Suspends until our record is granted. Always parks at least once: the
/// granter's unpark is owed to exactly one park, even when it raced ahead of
/// us (a coroutine must suspend to consume a wake that was already issued).
fn wait_for_grant<P: Parker>(record: &WaitRecord<P>) {
    loop {
        P::park();
        // Acquire: pairs with the Release store in `grant`.
        if record.granted.load(Acquire) {
            return;
        }
    }
}

/// Keeps a queued record alive if the waiter is unwound while suspended
/// (a runtime shutting down cancels suspended coroutines by unwinding them
/// from `suspend()`).
///
/// The record is linked into the mutex's queue and lives in the frame being
/// unwound, so the unwind must not pass until it is granted; the lock is then
/// released at once, passing it on. Suspending again while unwinding is
/// allowed by the scheduler. If the grant never comes (the mutex is never
/// unlocked again), the coroutine stays suspended and its stack is leaked,
/// never reused: a leak, not a dangling record.
struct CancelGuard<'a, P: Parker> {
    mutex: &'a RawCoMutex<P>,
    record: &'a WaitRecord<P>,
}

impl<P: Parker> Drop for CancelGuard<'_, P> {
    #[cold]
    fn drop(&mut self) {
        // Acquire: pairs with the Release store in `grant`.
        while !self.record.granted.load(Acquire) {
            P::park();
        }
        // We own the lock now (no guard was made, no `locks_held` taken):
        // pass it on.
        let _ = self.mutex.unlock();
    }
}

#[cfg(all(test, loom))]
#[path = "loom_tests.rs"]
mod loom_tests;

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
