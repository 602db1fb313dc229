//! CoRwLock's ticket protocol (QEMU's `CoRwlock`): an owner count and a
//! FIFO of tickets on the waiters' stacks, under an internal mutex.
//!
//! Generic over its [`Host`] (the internal mutex and how a waiter is
//! suspended and woken) so that the same code runs in `CoRwLock`
//! (`co_rwlock.rs`: a `CoMutex`, coroutines) and in its loom model below.
//!
//! # State (under the internal mutex)
//!
//! | `owners` | meaning |
//! |---|---|
//! | `n > 0` | `n` readers hold the lock |
//! | `0` | free |
//! | `-1` | one writer holds the lock |
//!
//! `holders` lists the owners' keys (one per reader share, or the writer),
//! kept in step with `owners` for the deadlock finder.
//!
//! `tickets` is the FIFO of waiters. A ticket is granted by
//! [`maybe_wake_one`], which assigns the ownership *before* the wake (under
//! the mutex), takes the waiter's handle, marks the ticket `granted`,
//! releases the mutex and then wakes the waiter: nobody can sneak in
//! between. A granted ticket's waiter owns the lock whether or not it has
//! run yet.
//!
//! # The `granted` flag
//!
//! Written once, by the granter, under the mutex, as its last access to the
//! ticket (Release). Read by the waiter (Acquire) after each resumption,
//! outside the mutex: a waiter that sees it true may leave its frame, which
//! ends the ticket, because the granter is done with it. A waiter unwound
//! while queued ([`TicketCancel`]) reads it under the mutex, where grants
//! happen, so the answer there is decisive: granted means it owns a share
//! that it must give back, not granted means its ticket is still queued
//! and it dequeues it. Either way it leaves without holding the lock and
//! lets the next ticket in.
//!
//! No lost wake-up: every change that can make the head ticket compatible
//! (unlock, downgrade, an upgrade giving up its read share, a granted reader
//! chain-waking the next, a cancelled waiter leaving) ends in
//! [`maybe_wake_one`].

// Under `--cfg loom` only the model tests use this module, and not all of it
// (upgrade, downgrade and the deadlock finder's view are not modelled).
#![cfg_attr(loom, allow(dead_code))]

use std::collections::VecDeque;
use std::ops::DerefMut;
use std::ptr::NonNull;
use std::sync::atomic::Ordering::{Acquire, Release};

use crate::sync::{AtomicBool, UnsafeCell};

/// What the ticket protocol needs from its surroundings.
pub(crate) trait Host {
    /// A waiter's handle, taken by the granter to wake it.
    type Waiter;
    /// The internal mutex's guard.
    type Guard<'a>: DerefMut<Target = RwState<Self::Waiter>>
    where
        Self: 'a;

    /// Takes the internal mutex for a step that must complete once begun:
    /// the caller owns a share (or a granted ticket) that no guard stands
    /// for yet, so it must not be unwound while it waits for the mutex.
    fn lock_shielded(&self) -> Self::Guard<'_>;

    /// The running waiter's key, recorded in `holders`.
    fn key() -> usize;

    /// The running waiter's handle.
    fn me() -> Option<Self::Waiter>;

    /// Suspends the running waiter until woken; may unwind (cancellation).
    fn suspend();

    /// Wakes a granted waiter, after the mutex is released.
    fn wake(waiter: Self::Waiter);

    /// A ticket was granted (statistics).
    fn handed_over(&self) {}

    /// A queued waiter is being unwound, before it takes the mutex.
    fn withdrawing(&self) {}
}

/// The state under the internal mutex.
pub(crate) struct RwState<W> {
    owners: isize,
    holders: Vec<usize>,
    tickets: VecDeque<TicketRef<W>>,
}

/// A waiter, on its own stack (QEMU's `CoRwTicket`).
pub(crate) struct Ticket<W> {
    read: bool,
    /// The waiter's key, for `holders` and the deadlock finder.
    key: usize,
    /// Taken by the granter, under the internal mutex.
    waiter: UnsafeCell<Option<W>>,
    /// See "The `granted` flag" above.
    granted: AtomicBool,
}

/// A queued ticket. The ticket outlives its queue entry: its waiter does not
/// leave [`wait_ticket`] before the ticket is granted (and dequeued) or,
/// when unwinding, before it has dequeued it itself ([`TicketCancel`]).
struct TicketRef<W>(NonNull<Ticket<W>>);

// SAFETY: a ticket is only touched under the internal mutex (or by its own
// waiter after `granted`), and what crosses threads through it is the
// waiter's handle, `W`, which must be `Send`.
unsafe impl<W: Send> Send for TicketRef<W> {}

impl<W> RwState<W> {
    /// A free lock with nobody queued.
    pub(crate) const fn new() -> RwState<W> {
        RwState {
            owners: 0,
            holders: Vec::new(),
            tickets: VecDeque::new(),
        }
    }

    /// Whom `ticket`'s waiter waits for: the owners when it is at the head
    /// of the queue, otherwise the waiter just ahead of it (strict FIFO: it
    /// cannot be granted before that one); nobody once granted or withdrawn.
    pub(crate) fn blockers_of(&self, ticket: &Ticket<W>, out: &mut Vec<usize>) {
        let me = NonNull::from(ticket);
        match self.tickets.iter().position(|t| t.0 == me) {
            Some(0) => out.extend_from_slice(&self.holders),
            Some(i) => {
                // SAFETY: queued tickets are alive (see `TicketRef`); read
                // under the mutex (`self` is behind its guard).
                out.push(unsafe { self.tickets[i - 1].0.as_ref() }.key);
            }
            None => {}
        }
    }

    /// Free, with nobody queued and no holder recorded.
    #[cfg(all(test, loom))]
    fn is_idle(&self) -> bool {
        self.owners == 0 && self.holders.is_empty() && self.tickets.is_empty()
    }
}

impl<W> Ticket<W> {
    /// Resumes the waiter until its ticket is granted.
    fn wait_granted<H: Host<Waiter = W> + ?Sized>(&self) {
        loop {
            H::suspend();
            // Acquire: pairs with the Release store in `maybe_wake_one`.
            if self.granted.load(Acquire) {
                break;
            }
        }
    }
}

/// Gives up one share, `holder`'s: a reader's, or the writer's.
fn release_share<W>(st: &mut RwState<W>, holder: usize) {
    if let Some(i) = st.holders.iter().position(|&h| h == holder) {
        st.holders.swap_remove(i);
    }
    if st.owners > 0 {
        st.owners -= 1;
    } else {
        assert_eq!(
            st.owners, -1,
            "CoRwLock released while not held; owners = {}",
            st.owners
        );
        st.owners = 0;
    }
}

/// QEMU's `qemu_co_rwlock_rdlock`, from the internal mutex's guard `st`:
/// takes a share at once if no writer holds the lock and nobody is queued
/// (returns `None`), otherwise queues and waits through `wait` (see
/// [`wait_ticket`]) and returns what `wait` returned.
pub(crate) fn read<H: Host + ?Sized, R>(
    host: &H,
    mut st: H::Guard<'_>,
    wait: impl FnOnce(&Ticket<H::Waiter>, &mut dyn FnMut()) -> R,
) -> Option<R> {
    if st.owners == 0 || (st.owners > 0 && st.tickets.is_empty()) {
        st.owners += 1;
        st.holders.push(H::key());
        return None;
    }
    let waited = wait_ticket(host, st, true, false, wait);
    // Possibly admit the next reader, which admits the one after.
    maybe_wake_one(host, host.lock_shielded());
    Some(waited)
}

/// QEMU's `qemu_co_rwlock_wrlock`, from the internal mutex's guard `st`:
/// takes the lock at once if it is free (returns `None`), otherwise queues
/// and waits as [`read`].
pub(crate) fn write<H: Host + ?Sized, R>(
    host: &H,
    mut st: H::Guard<'_>,
    wait: impl FnOnce(&Ticket<H::Waiter>, &mut dyn FnMut()) -> R,
) -> Option<R> {
    if st.owners == 0 {
        st.owners = -1;
        st.holders.push(H::key());
        return None;
    }
    Some(wait_ticket(host, st, false, false, wait))
}

/// QEMU's `qemu_co_rwlock_unlock` (either kind).
pub(crate) fn unlock<H: Host + ?Sized>(host: &H) {
    let mut st = host.lock_shielded();
    release_share(&mut st, H::key());
    maybe_wake_one(host, st);
}

/// QEMU's `qemu_co_rwlock_upgrade`: immediate if the caller is the only
/// reader and nobody is queued (returns `None`); otherwise gives up its
/// share and queues as a writer at the tail, waiting as [`read`].
pub(crate) fn upgrade<H: Host + ?Sized, R>(
    host: &H,
    wait: impl FnOnce(&Ticket<H::Waiter>, &mut dyn FnMut()) -> R,
) -> Option<R> {
    let mut st = host.lock_shielded();
    assert!(
        st.owners > 0,
        "upgrade of a read lock that is not held; owners = {}",
        st.owners
    );
    if st.owners == 1 && st.tickets.is_empty() {
        st.owners = -1;
        return None;
    }
    st.owners -= 1;
    let me = H::key();
    if let Some(i) = st.holders.iter().position(|&h| h == me) {
        st.holders.swap_remove(i);
    }
    Some(wait_ticket(host, st, false, true, wait))
}

/// QEMU's `qemu_co_rwlock_downgrade`: the writer becomes a reader without
/// waiting and admits the readers queued at the head.
pub(crate) fn downgrade<H: Host + ?Sized>(host: &H) {
    let mut st = host.lock_shielded();
    assert_eq!(
        st.owners, -1,
        "downgrade of a write lock that is not held; owners = {}",
        st.owners
    );
    st.owners = 1;
    maybe_wake_one(host, st);
}

/// Queues a ticket (the internal mutex is held through `st`), releases the
/// mutex — through [`maybe_wake_one`] if `wake_one` — and waits until the
/// ticket is granted: `wait` is given the ticket and the wait itself, which
/// it must run (it may wrap it, e.g. in a deadlock-finder description).
fn wait_ticket<H: Host + ?Sized, R>(
    host: &H,
    mut st: H::Guard<'_>,
    read: bool,
    wake_one: bool,
    wait: impl FnOnce(&Ticket<H::Waiter>, &mut dyn FnMut()) -> R,
) -> R {
    let ticket = Ticket {
        read,
        key: H::key(),
        waiter: UnsafeCell::new(H::me()),
        granted: AtomicBool::new(false),
    };
    st.tickets.push_back(TicketRef(NonNull::from(&ticket)));
    if wake_one {
        maybe_wake_one(host, st);
    } else {
        drop(st);
    }
    let cancel = TicketCancel {
        host,
        ticket: &ticket,
    };
    let waited = wait(&ticket, &mut || ticket.wait_granted::<H>());
    // Acquire: as in `wait_granted`. A `wait` that returned without waiting
    // panics here, and the unwind withdraws the ticket (`TicketCancel`)
    // before the frame that holds it ends.
    assert!(
        ticket.granted.load(Acquire),
        "CoRwLock: a wait returned before its ticket was granted"
    );
    std::mem::forget(cancel);
    waited
}

/// QEMU's `qemu_co_rwlock_maybe_wake_one`: grants the head ticket if it is
/// compatible with the current owners, then releases the internal mutex,
/// then wakes the grantee (in that order, as QEMU).
pub(crate) fn maybe_wake_one<H: Host + ?Sized>(host: &H, mut st: H::Guard<'_>) {
    // SAFETY: queued tickets are alive (see `TicketRef`); read under the
    // mutex.
    let head_reads = st.tickets.front().map(|t| unsafe { t.0.as_ref() }.read);
    let grant = match head_reads {
        Some(true) if st.owners >= 0 => {
            st.owners += 1;
            true
        }
        Some(false) if st.owners == 0 => {
            st.owners = -1;
            true
        }
        _ => false,
    };
    if !grant {
        return;
    }
    let Some(t) = st.tickets.pop_front() else {
        unreachable!("the head ticket vanished")
    };
    // SAFETY: dequeued under the mutex, not yet granted: alive, and we are
    // its only user besides its waiter, which does not touch it before it
    // sees `granted`.
    let ticket = unsafe { t.0.as_ref() };
    st.holders.push(ticket.key);
    // SAFETY: as above; `waiter` is touched only by the granter until the
    // ticket ends.
    let waiter = ticket.waiter.with_mut(|w| unsafe { (*w).take() });
    // Release: pairs with the Acquire loads in `wait_granted`, `wait_ticket`
    // and `TicketCancel`. Last access to the ticket.
    ticket.granted.store(true, Release);
    drop(st);
    host.handed_over();
    if let Some(w) = waiter {
        H::wake(w);
    }
}

/// Keeps a queued ticket valid if its waiter is unwound (cancelled) while
/// suspended: dequeues it, or — if it was granted meanwhile — releases the
/// ownership it was given, then lets the next ticket in.
struct TicketCancel<'a, H: Host + ?Sized> {
    host: &'a H,
    ticket: &'a Ticket<H::Waiter>,
}

impl<H: Host + ?Sized> Drop for TicketCancel<'_, H> {
    #[cold]
    fn drop(&mut self) {
        self.host.withdrawing();
        let mut st = self.host.lock_shielded();
        // Acquire: pairs with the Release store in `maybe_wake_one`;
        // decisive under the mutex, where grants happen.
        if self.ticket.granted.load(Acquire) {
            release_share(&mut st, self.ticket.key);
        } else {
            let me = NonNull::from(self.ticket);
            st.tickets.retain(|t| t.0 != me);
        }
        maybe_wake_one(self.host, st);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! A "coroutine" is CoMutex's stand-in (`co_mutex/loom_tests.rs`): a
    //! loom thread with a wake token, which a cancellation sets with a
    //! cancel mark, so that its next suspension unwinds (as a shutdown
    //! does). The internal mutex is CoMutex's protocol (`RawCoMutex`) with
    //! that stand-in, as in the runtime, and the waits for it that the
    //! runtime shields (`lock_shielded`) are shielded here too. (A loom
    //! mutex cannot stand in: loom runs its threads on one OS thread, so a
    //! guard dropped while another model thread unwinds poisons it.) Each
    //! model checks:
    //!
    //! - **exclusion**: the protected value is a loom `UnsafeCell`, so a
    //!   reader or writer overlapping a writer is reported as a race;
    //! - **nobody stranded**: a waiter parked forever makes loom report a
    //!   deadlock;
    //! - **consistency**: at the end the lock is free, nobody is queued and
    //!   no holder is recorded, so a cancelled waiter left without a share.

    use super::*;
    use crate::co_mutex::raw::loom_tests::{Cancelled, LoomParker, ME, Slot, cancel, shielded};
    use crate::co_mutex::raw::{Parker, Policy, RawCoMutex};
    use loom::cell::MutPtr;
    use loom::sync::Arc;
    use loom::thread;
    use std::ops::Deref;

    type State = RwState<Arc<Slot>>;

    struct Model {
        mutex: RawCoMutex<LoomParker>,
        state: loom::cell::UnsafeCell<State>,
        value: loom::cell::UnsafeCell<usize>,
    }

    /// The internal mutex's guard; loom tracks the access to the state for
    /// as long as it lives.
    struct Guard<'a> {
        mutex: &'a RawCoMutex<LoomParker>,
        state: Option<MutPtr<State>>,
    }

    impl Deref for Guard<'_> {
        type Target = State;
        fn deref(&self) -> &State {
            match &self.state {
                // SAFETY: the guard holds the mutex, so this is the only
                // access to the state; loom checks that.
                Some(p) => unsafe { p.deref() },
                None => unreachable!("the state is tracked until the drop"),
            }
        }
    }

    impl DerefMut for Guard<'_> {
        fn deref_mut(&mut self) -> &mut State {
            match &self.state {
                // SAFETY: as in `deref`, through the guard's exclusive
                // borrow.
                Some(p) => unsafe { p.deref() },
                None => unreachable!("the state is tracked until the drop"),
            }
        }
    }

    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            // The access ends before the next holder's begins.
            self.state = None;
            let _ = self.mutex.unlock();
        }
    }

    // SAFETY: `state` is only accessed under the internal mutex and `value`
    // under the lock the model checks (a write under the write lock, reads
    // under read shares); loom reports any access that is not ordered after
    // the last write. What crosses threads in `state` (`Arc<Slot>`) is
    // `Send`.
    unsafe impl Sync for Model {}

    impl Host for Model {
        type Waiter = Arc<Slot>;
        type Guard<'a> = Guard<'a>;

        fn lock_shielded(&self) -> Self::Guard<'_> {
            shielded(|| self.lock())
        }

        fn key() -> usize {
            ME.with(|me| Arc::as_ptr(me) as usize)
        }

        fn me() -> Option<Arc<Slot>> {
            Some(LoomParker::handle())
        }

        fn suspend() {
            LoomParker::park();
        }

        fn wake(waiter: Arc<Slot>) {
            LoomParker::unpark(waiter);
        }
    }

    impl Model {
        /// Takes the internal mutex (every "coroutine" of the models runs in
        /// context 0).
        fn lock(&self) -> Guard<'_> {
            if let Err(waiters) = self.mutex.try_lock_fast(0) {
                let _ = self.mutex.lock_slow(0, waiters, false);
            }
            Guard {
                mutex: &self.mutex,
                state: Some(self.state.get_mut()),
            }
        }

        fn new() -> Arc<Model> {
            Arc::new(Model {
                mutex: RawCoMutex::new(Policy::Fifo),
                state: loom::cell::UnsafeCell::new(RwState::new()),
                value: loom::cell::UnsafeCell::new(0),
            })
        }

        /// Takes the write lock; true if it had to wait.
        fn write(&self) -> bool {
            write(self, self.lock(), |_, run| run()).is_some()
        }

        /// Takes a read share; true if it had to wait.
        fn read(&self) -> bool {
            read(self, self.lock(), |_, run| run()).is_some()
        }

        /// A write section: write lock, value += 1, unlock.
        fn write_section(&self) {
            self.write();
            // SAFETY: we hold the write lock; loom reports a race if not.
            self.value.with_mut(|v| unsafe { *v += 1 });
            unlock(self);
        }

        /// A read section: read share, read the value, unlock.
        fn read_section(&self) -> usize {
            self.read();
            // SAFETY: we hold a read share; loom reports a race with a
            // writer if not.
            let v = self.value.with(|v| unsafe { *v });
            unlock(self);
            v
        }

        /// Free, nobody queued, no holder recorded.
        fn assert_idle(&self) {
            assert!(
                self.lock().is_idle(),
                "the lock is held, or a ticket or a holder is left over"
            );
        }
    }

    /// Runs `section` as a "coroutine" that a shutdown may cancel: spawns
    /// it and returns its thread (which yields `Some` with the section's
    /// result, or `None` if it was unwound) and its coroutine slot.
    fn cancellable<T: Send + 'static>(
        section: impl FnOnce() -> T + Send + 'static,
    ) -> (thread::JoinHandle<Option<T>>, Arc<Slot>) {
        let (tx, rx) = loom::sync::mpsc::channel();
        let t = thread::spawn(move || {
            tx.send(ME.with(Arc::clone)).unwrap();
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(section)) {
                Ok(v) => Some(v),
                Err(p) => {
                    assert!(p.is::<Cancelled>(), "only the cancellation unwinds");
                    None
                }
            }
        });
        (t, rx.recv().unwrap())
    }

    /// A writer holds the lock, a reader queues behind it, and a shutdown
    /// cancels the reader while the writer unlocks: whether the reader is
    /// unwound before or after its ticket is granted, it leaves without a
    /// share (dequeuing its ticket or giving the granted share back), no
    /// wake is lost or doubled, and the lock ends free. A reader that was
    /// not unwound saw the writer's value.
    #[test]
    fn loom_rwlock_waiter_cancelled_at_shutdown() {
        loom::model(|| {
            let m = Model::new();
            assert!(!m.write(), "uncontended");
            let (reader, slot) = {
                let m = m.clone();
                cancellable(move || m.read_section())
            };
            let canceller = thread::spawn(move || cancel(&slot));
            // SAFETY: we hold the write lock.
            m.value.with_mut(|v| unsafe { *v += 1 });
            unlock(&*m);
            canceller.join().unwrap();
            if let Some(seen) = reader.join().unwrap() {
                assert_eq!(seen, 1, "a reader admitted before the writer left");
            }
            m.assert_idle();
        });
    }

    /// A writer holds the lock with a reader and a writer queued; the
    /// reader is cancelled while the holder unlocks: the queued writer
    /// still gets the lock (from the unlock, from the granted reader giving
    /// its share back, or from the reader's own unlock), and the lock ends
    /// free.
    #[test]
    fn loom_rwlock_cancelled_waiter_passes_the_lock_on() {
        loom::model(|| {
            let m = Model::new();
            assert!(!m.write(), "uncontended");
            let (doomed, slot) = {
                let m = m.clone();
                cancellable(move || m.read_section())
            };
            let other = {
                let m = m.clone();
                thread::spawn(move || m.write_section())
            };
            cancel(&slot);
            // SAFETY: we hold the write lock.
            m.value.with_mut(|v| unsafe { *v += 1 });
            unlock(&*m);
            other.join().unwrap();
            doomed.join().unwrap();
            // SAFETY: every thread has been joined.
            let writes = m.value.with(|v| unsafe { *v });
            assert_eq!(writes, 2, "each write section exactly once");
            m.assert_idle();
        });
    }
}
