//! The cross-thread hand-off queue and the sleep gate of a context.
//!
//! # The "hand-off + notify" protocol
//!
//! Any thread may give a coroutine to a context: `aio_co_wake` of a coroutine
//! homed elsewhere, `aio_co_schedule`, a cancellation. Only the context's
//! owner consumes. The owner, when it has nothing to do, sleeps in
//! `epoll_wait`; a producer must then write the context's `mio::Waker`
//! (an eventfd), which costs a system call on both sides (~10 µs round trip on
//! the reference VM). The protocol makes producers pay for that write only
//! when the owner is asleep or committed to sleeping.
//!
//! **Queue.** A Treiber stack of intrusive nodes: producers push with a CAS on
//! `head`; the owner takes the whole stack with one `swap` and reverses it,
//! so nodes come out in push (FIFO) order, like QEMU's `co_schedule_bh_cb`.
//! There is no single-node pop, hence no ABA.
//!
//! **Gate states** (`SleepGate::state`):
//!
//! | state | meaning | set by |
//! |---|---|---|
//! | `AWAKE` | owner is running or busy-polling; producers never write the waker | owner |
//! | `SLEEPING` | owner has committed to sleep and will re-check its queues once more | owner |
//! | `NOTIFIED` | a producer saw `SLEEPING` and is writing (or wrote) the waker | the one producer whose CAS won |
//!
//! **Owner, going to sleep:** store `SLEEPING`; `fence(SeqCst)`; re-check every
//! source (hand-off head, bottom-half flag); if any has work, store `AWAKE` and
//! run it; otherwise block in epoll; on return swap back to `AWAKE`.
//!
//! **Producer:** push (CAS on `head`); `fence(SeqCst)`; load the state; if it
//! is `SLEEPING`, CAS it to `NOTIFIED` and, if that CAS won, wake the owner.
//!
//! **No lost wake-up.** This is the store-buffering (Dekker) pattern: the
//! owner writes `state` then reads `head`; the producer writes `head` then
//! reads `state`, with a SeqCst fence between each write and read. The fences
//! are totally ordered, so at least one side observes the other's write:
//! either the owner's re-check sees the pushed node, or the producer sees
//! `SLEEPING` and wakes it. The CAS to `NOTIFIED` only deduplicates the
//! eventfd write among producers; a spurious eventfd write (the owner found
//! work in its re-check and never slept) only costs one empty epoll return.
//! Modelled in `loom_tests` below.
//!
//! # The mailbox and its "close" protocol
//!
//! [`Mailbox`] puts the hand-off queue, the gate, the bottom-half list,
//! QEMU's `notified` flag and the context's `closed` flag together: every
//! way another thread can give a context work. Closing (the last step of a
//! context's shutdown) must not strand anything posted concurrently:
//!
//! - **poster:** push the node; `fence(SeqCst)`; load `closed`; if set, take
//!   everything queued and give it back to the caller to drop;
//! - **owner, closing:** store `closed`; `fence(SeqCst)`; take everything
//!   queued.
//!
//! Store-buffering again: at least one side sees the other's write, so a
//! node is taken by the owner's final drain or by its own poster (or by
//! another late poster: `take_all` is one swap, so drainers get disjoint
//! nodes). Bottom halves use the same order with the list's mutex instead of
//! the fences: the poster pushes under the mutex and then loads `closed`;
//! the owner stores `closed` before it locks the mutex to drain, so if the
//! drain came first, the poster's later lock synchronizes with it and its
//! load sees the flag. Modelled in `loom_tests::close_*`.

use std::marker::PhantomData;
use std::ptr;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

use crate::sync::{AtomicBool, AtomicPtr, AtomicU8, Mutex, MutexGuard, fence};

/// A node type that carries its own queue link.
pub(crate) trait Linked {
    /// The link field; written only by the pusher before publication.
    fn link(&self) -> &AtomicPtr<Self>
    where
        Self: Sized;
}

/// Multi-producer, single-consumer intrusive queue (push, take-all).
pub(crate) struct HandoffQueue<T: Linked> {
    head: AtomicPtr<T>,
    _owns: PhantomData<*const T>,
}

// SAFETY: the queue only moves node pointers between threads; ownership of
// what a node stands for is the caller's (nodes must be Send).
unsafe impl<T: Linked + Send> Send for HandoffQueue<T> {}
// SAFETY: as above; all shared access is through the atomic head.
unsafe impl<T: Linked + Send> Sync for HandoffQueue<T> {}

impl<T: Linked> HandoffQueue<T> {
    /// An empty queue.
    pub(crate) fn new() -> HandoffQueue<T> {
        HandoffQueue {
            head: AtomicPtr::new(ptr::null_mut()),
            _owns: PhantomData,
        }
    }

    /// Pushes a node. The caller must call the gate's `notify` afterwards.
    ///
    /// # Safety
    /// `node` must be valid until the consumer takes it and must not be on
    /// any queue already.
    pub(crate) unsafe fn push(&self, node: *mut T) {
        let mut head = self.head.load(Relaxed);
        loop {
            // SAFETY: `node` is valid and unpublished (caller's contract),
            // so we are the only writer of its link.
            unsafe { (*node).link().store(head, Relaxed) };
            // Release: publishes the node's contents and link to the
            // consumer's Acquire swap in `take_all`.
            match self
                .head
                .compare_exchange_weak(head, node, Release, Relaxed)
            {
                Ok(_) => return,
                Err(actual) => head = actual,
            }
        }
    }

    /// True if nothing is queued (a hint; the owner's re-check after the
    /// gate's fence is what makes it exact).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.head.load(Relaxed).is_null()
    }

    /// Takes everything queued, oldest first.
    pub(crate) fn take_all(&self) -> Taken<T> {
        if self.head.load(Relaxed).is_null() {
            return Taken {
                next: ptr::null_mut(),
            };
        }
        // Acquire: pairs with the Release CAS in `push`.
        let mut node = self.head.swap(ptr::null_mut(), Acquire);
        let mut reversed: *mut T = ptr::null_mut();
        while !node.is_null() {
            // SAFETY: nodes on the queue are valid until taken, and we now
            // own all of them.
            let next = unsafe { (*node).link().load(Relaxed) };
            // SAFETY: as above.
            unsafe { (*node).link().store(reversed, Relaxed) };
            reversed = node;
            node = next;
        }
        Taken { next: reversed }
    }
}

/// Nodes taken from a queue, in push order.
pub(crate) struct Taken<T: Linked> {
    next: *mut T,
}

impl<T: Linked> Iterator for Taken<T> {
    type Item = *mut T;
    fn next(&mut self) -> Option<*mut T> {
        if self.next.is_null() {
            return None;
        }
        let node = self.next;
        // SAFETY: the consumer owns every taken node until it yields it.
        self.next = unsafe { (*node).link().load(Relaxed) };
        Some(node)
    }
}

/// Owner is running or spinning.
pub(crate) const AWAKE: u8 = 0;
/// Owner is about to block or blocked.
pub(crate) const SLEEPING: u8 = 1;
/// A producer is waking the owner.
pub(crate) const NOTIFIED: u8 = 2;

/// QEMU's `notify_me` / `notified` pair, reduced to one word.
pub(crate) struct SleepGate {
    state: AtomicU8,
}

impl SleepGate {
    /// A gate for a running owner.
    pub(crate) fn new() -> SleepGate {
        SleepGate {
            state: AtomicU8::new(AWAKE),
        }
    }

    /// Owner: commit to sleeping. After this returns, re-check every source
    /// of work before blocking.
    pub(crate) fn prepare_sleep(&self) {
        self.state.store(SLEEPING, Relaxed);
        // Pairs with the fence in `notify` (store-buffering pattern).
        fence(SeqCst);
    }

    /// Owner: woke up (or decided not to sleep). Returns true if a producer
    /// had notified.
    pub(crate) fn finish_sleep(&self) -> bool {
        self.state.swap(AWAKE, Relaxed) == NOTIFIED
    }

    /// Producer, after publishing work: wakes the owner if it sleeps.
    /// `wake` runs at most once per sleep.
    #[inline]
    pub(crate) fn notify(&self, wake: impl FnOnce()) {
        // Pairs with the fence in `prepare_sleep`.
        fence(SeqCst);
        if self.state.load(Relaxed) == SLEEPING
            && self
                .state
                .compare_exchange(SLEEPING, NOTIFIED, Relaxed, Relaxed)
                .is_ok()
        {
            wake();
        }
    }
}

/// Everything other threads can post to a context (see "The mailbox and its
/// close protocol" above). `T` is the hand-off node type (a coroutine's
/// control block), `B` a bottom half.
pub(crate) struct Mailbox<T: Linked, B> {
    handoffs: HandoffQueue<T>,
    gate: SleepGate,
    /// QEMU's `notified`: an `aio_notify` not yet consumed by a poll.
    notified: AtomicBool,
    bh_pending: AtomicBool,
    bhs: Mutex<Vec<B>>,
    closed: AtomicBool,
}

impl<T: Linked, B> Mailbox<T, B> {
    /// An open, empty mailbox.
    pub(crate) fn new() -> Mailbox<T, B> {
        Mailbox {
            handoffs: HandoffQueue::new(),
            gate: SleepGate::new(),
            notified: AtomicBool::new(false),
            bh_pending: AtomicBool::new(false),
            bhs: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        }
    }

    fn bh_list(&self) -> MutexGuard<'_, Vec<B>> {
        // The list is only pushed to, taken or spliced under the lock; a
        // poisoned lock cannot hold a half-updated Vec.
        self.bhs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Any thread: hands `node` to the owner, calling `wake` if the owner
    /// sleeps. If the mailbox is closed, returns what was queued — `node`
    /// and possibly other late nodes — for the caller to dispose of.
    ///
    /// # Safety
    /// As [`HandoffQueue::push`].
    pub(crate) unsafe fn post_handoff(
        &self,
        node: *mut T,
        wake: impl FnOnce(),
    ) -> Option<Taken<T>> {
        // SAFETY: the caller's contract.
        unsafe { self.handoffs.push(node) };
        // Pairs with the fence in `close`: push, then check.
        fence(SeqCst);
        if self.closed.load(Relaxed) {
            return Some(self.handoffs.take_all());
        }
        self.gate.notify(wake);
        None
    }

    /// Any thread: queues a bottom half, calling `wake` if the owner sleeps.
    /// If the mailbox is closed, returns the queued bottom halves (this one
    /// among them) for the caller to drop: nobody would run them, and a
    /// bottom half often holds a handle to its own context, a cycle that
    /// would leak the context.
    pub(crate) fn post_bh(&self, bh: B, wake: impl FnOnce()) -> Option<Vec<B>> {
        self.bh_list().push(bh);
        // Release: pairs with the Acquire load in `take_bhs`.
        self.bh_pending.store(true, Release);
        // Ordered against `close` by the list's mutex (module docs).
        if self.closed.load(Relaxed) {
            return Some(std::mem::take(&mut *self.bh_list()));
        }
        self.gate.notify(wake);
        None
    }

    /// Any thread: QEMU's `aio_notify`.
    pub(crate) fn notify(&self, wake: impl FnOnce()) {
        // Release: pairs with the Acquire swap in `take_notified`.
        self.notified.store(true, Release);
        self.gate.notify(wake);
    }

    /// Owner: consumes a pending `aio_notify`.
    pub(crate) fn take_notified(&self) -> bool {
        // Acquire: pairs with the Release store in `notify`, so whatever the
        // notifier published before notifying is visible to the poller.
        self.notified.load(Relaxed) && self.notified.swap(false, Acquire)
    }

    /// True if anything was posted and not taken yet (a hint; the owner's
    /// re-check after `prepare_sleep`'s fence is what makes it exact).
    pub(crate) fn has_incoming(&self) -> bool {
        !self.handoffs.is_empty() || self.bh_pending.load(Relaxed) || self.notified.load(Relaxed)
    }

    /// True if no hand-off is queued (a hint, as `has_incoming`).
    #[inline]
    pub(crate) fn handoffs_empty(&self) -> bool {
        self.handoffs.is_empty()
    }

    /// True if bottom halves were posted (a hint; `take_bhs` decides).
    #[inline]
    pub(crate) fn bhs_pending(&self) -> bool {
        self.bh_pending.load(Relaxed)
    }

    /// Owner: the hand-off queue, oldest first.
    pub(crate) fn take_handoffs(&self) -> Taken<T> {
        self.handoffs.take_all()
    }

    /// Owner: the queued bottom halves, if any were posted.
    pub(crate) fn take_bhs(&self) -> Option<Vec<B>> {
        // Acquire: pairs with the Release store in `post_bh`.
        if !self.bh_pending.load(Acquire) {
            return None;
        }
        self.bh_pending.store(false, Relaxed);
        Some(std::mem::take(&mut *self.bh_list()))
    }

    /// Owner: puts back bottom halves it took but did not run, ahead of any
    /// posted since.
    pub(crate) fn requeue_bhs(&self, rest: Vec<B>) {
        if rest.is_empty() {
            return;
        }
        self.bh_list().splice(0..0, rest);
        // Release: as in `post_bh`.
        self.bh_pending.store(true, Release);
    }

    /// Owner: commits to sleeping (see the protocol above); re-check
    /// [`has_incoming`](Mailbox::has_incoming) before blocking.
    pub(crate) fn prepare_sleep(&self) {
        self.gate.prepare_sleep();
    }

    /// Owner: woke up, or decided not to sleep.
    pub(crate) fn finish_sleep(&self) -> bool {
        self.gate.finish_sleep()
    }

    /// True once [`close`](Mailbox::close) has run.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    /// Owner: closes the mailbox and returns everything still queued. From
    /// here on posters dispose of what they post themselves.
    pub(crate) fn close(&self) -> (Taken<T>, Vec<B>) {
        self.closed.store(true, Relaxed);
        // Pairs with the fence in `post_handoff`.
        fence(SeqCst);
        let bhs = std::mem::take(&mut *self.bh_list());
        (self.handoffs.take_all(), bhs)
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::loom_support::Event;
    use loom::sync::Arc;
    use loom::thread;

    struct Node {
        value: usize,
        link: AtomicPtr<Node>,
    }
    impl Linked for Node {
        fn link(&self) -> &AtomicPtr<Node> {
            &self.link
        }
    }

    struct Ctx {
        queue: HandoffQueue<Node>,
        gate: SleepGate,
        event: Event,
    }

    /// Two producers each hand one node to a sleeping owner: the owner never
    /// sleeps forever (loom reports a deadlock otherwise) and receives each
    /// node exactly once.
    #[test]
    fn handoff_never_loses_a_wakeup() {
        loom::model(|| {
            let ctx = Arc::new(Ctx {
                queue: HandoffQueue::new(),
                gate: SleepGate::new(),
                event: Event::default(),
            });
            let producers: Vec<_> = (1..=2)
                .map(|v| {
                    let ctx = ctx.clone();
                    thread::spawn(move || {
                        let node = Box::into_raw(Box::new(Node {
                            value: v,
                            link: AtomicPtr::new(ptr::null_mut()),
                        }));
                        // SAFETY: fresh node, consumed exactly once below.
                        unsafe { ctx.queue.push(node) };
                        ctx.gate.notify(|| ctx.event.wake());
                    })
                })
                .collect();
            let mut seen = Vec::new();
            while seen.len() < 2 {
                let mut got = false;
                for node in ctx.queue.take_all() {
                    // SAFETY: taken nodes are ours.
                    seen.push(unsafe { Box::from_raw(node) }.value);
                    got = true;
                }
                if got {
                    continue;
                }
                ctx.gate.prepare_sleep();
                if ctx.queue.is_empty() {
                    ctx.event.wait();
                }
                ctx.gate.finish_sleep();
            }
            for p in producers {
                p.join().unwrap();
            }
            seen.sort_unstable();
            assert_eq!(seen, vec![1, 2], "each node exactly once");
        });
    }

    fn node(value: usize) -> *mut Node {
        Box::into_raw(Box::new(Node {
            value,
            link: AtomicPtr::new(ptr::null_mut()),
        }))
    }

    fn values(taken: Taken<Node>) -> Vec<usize> {
        // SAFETY: taken nodes are owned by whoever took them.
        taken.map(|n| unsafe { Box::from_raw(n) }.value).collect()
    }

    /// The owner closes while two threads post hand-offs: every node is
    /// disposed of exactly once, by the owner's last turn, by its close, or
    /// by a poster that saw the flag; nothing is stranded in the queue.
    #[test]
    fn close_strands_no_handoff() {
        loom::model(|| {
            let mb: Arc<Mailbox<Node, usize>> = Arc::new(Mailbox::new());
            let posters: Vec<_> = (1..=2)
                .map(|v| {
                    let mb = mb.clone();
                    thread::spawn(move || {
                        // SAFETY: a fresh node, disposed of once below.
                        let back = unsafe { mb.post_handoff(node(v), || {}) };
                        back.map(values).unwrap_or_default()
                    })
                })
                .collect();
            let mut seen = values(mb.take_handoffs());
            let (rest, bhs) = mb.close();
            assert!(bhs.is_empty());
            seen.extend(values(rest));
            for p in posters {
                seen.extend(p.join().unwrap());
            }
            assert!(mb.take_handoffs().next().is_none(), "nothing stranded");
            seen.sort_unstable();
            assert_eq!(seen, vec![1, 2], "each node exactly once");
        });
    }

    /// The same for bottom halves, ordered by the list's mutex.
    #[test]
    fn close_strands_no_bottom_half() {
        loom::model(|| {
            let mb: Arc<Mailbox<Node, usize>> = Arc::new(Mailbox::new());
            let posters: Vec<_> = (1..=2)
                .map(|v| {
                    let mb = mb.clone();
                    thread::spawn(move || mb.post_bh(v, || {}).unwrap_or_default())
                })
                .collect();
            let mut seen = mb.take_bhs().unwrap_or_default();
            let (rest, bhs) = mb.close();
            assert!(rest.count() == 0);
            seen.extend(bhs);
            for p in posters {
                seen.extend(p.join().unwrap());
            }
            assert!(mb.bh_list().is_empty(), "nothing stranded");
            seen.sort_unstable();
            assert_eq!(seen, vec![1, 2], "each bottom half exactly once");
        });
    }
}
