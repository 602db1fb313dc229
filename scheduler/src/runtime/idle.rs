//! Which workers are asleep, and the "post work, wake one" protocol.
//!
//! # The "searching → parked hand-off" protocol
//!
//! Work that any worker may take (spawns into the injector or into a
//! worker's stealable deque) must not sit unseen while every worker sleeps.
//!
//! **Worker, going to sleep** (inside its context's sleep protocol, after the
//! context's gate is set to sleeping): set its bit in `sleeping`
//! (`fetch_or`), `fence(SeqCst)`, then re-check the injector and every other
//! worker's deque; if anything is there it cancels the sleep. On waking it
//! clears its bit.
//!
//! **Poster:** push the work, `fence(SeqCst)`, load `sleeping`; if a bit is
//! set, clear one (CAS) and notify that worker's context.
//!
//! **No lost wake-up:** the same store-buffering argument as the context's
//! hand-off protocol. The worker writes its bit then reads the queues; the
//! poster writes a queue then reads the bits; with SeqCst fences between,
//! one of them sees the other. A worker whose bit a poster cleared is
//! notified through its context (whose own gate protocol guarantees the
//! wake is not lost); a worker that cancels its sleep clears its own bit.
//! Two posters may pick the same sleeper; the CAS lets only one clear the
//! bit, and the loser looks for another. Modelled in `loom_tests`.
//!
//! Bits live in 64-bit words, so the set scales past 64 workers without a
//! lock; `wake_one` scans words only when the cheap `any` check says so.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};

use crate::sync::{AtomicU64, fence};

/// A bit set of sleeping workers.
pub(crate) struct IdleSet {
    words: Box<[AtomicU64]>,
}

impl IdleSet {
    /// A set for `workers` workers, all awake.
    pub(crate) fn new(workers: usize) -> IdleSet {
        IdleSet {
            words: (0..workers.div_ceil(64).max(1))
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    /// Worker `i` is about to sleep. The caller re-checks every work source
    /// after this returns.
    pub(crate) fn mark_sleeping(&self, i: usize) {
        self.words[i / 64].fetch_or(1 << (i % 64), Relaxed);
        // Pairs with the fence in `wake_one` (store-buffering pattern).
        fence(SeqCst);
    }

    /// Worker `i` is awake (idempotent).
    pub(crate) fn mark_awake(&self, i: usize) {
        let bit = 1u64 << (i % 64);
        if self.words[i / 64].load(Relaxed) & bit != 0 {
            self.words[i / 64].fetch_and(!bit, Relaxed);
        }
    }

    /// After publishing work: picks a sleeping worker, clears its bit and
    /// returns it for the caller to notify.
    pub(crate) fn wake_one(&self) -> Option<usize> {
        // Pairs with the fence in `mark_sleeping`.
        fence(SeqCst);
        for (w, word) in self.words.iter().enumerate() {
            let mut bits = word.load(Relaxed);
            while bits != 0 {
                let bit = bits & bits.wrapping_neg();
                match word.compare_exchange_weak(bits, bits & !bit, Relaxed, Relaxed) {
                    Ok(_) => return Some(w * 64 + bit.trailing_zeros() as usize),
                    Err(actual) => bits = actual,
                }
            }
        }
        None
    }

    /// Sleeping workers right now (for metrics and tests).
    pub(crate) fn count(&self) -> u32 {
        self.words
            .iter()
            .map(|w| w.load(Relaxed).count_ones())
            .sum()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn wake_one_picks_each_sleeper_once() {
        let set = IdleSet::new(130);
        for i in [0, 63, 64, 129] {
            set.mark_sleeping(i);
        }
        assert_eq!(set.count(), 4);
        let mut woken: Vec<usize> = std::iter::from_fn(|| set.wake_one()).collect();
        woken.sort_unstable();
        assert_eq!(woken, vec![0, 63, 64, 129]);
        assert_eq!(set.count(), 0);
        set.mark_awake(5);
        assert_eq!(set.count(), 0);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::core::home::mailbox::{Linked, Mailbox};
    use crate::sync::loom_support::Event;
    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize};
    use loom::thread;

    /// A hand-off node type for the mailboxes (unused: work goes through
    /// the injector here).
    struct Node {
        link: AtomicPtr<Node>,
    }
    impl Linked for Node {
        fn link(&self) -> &AtomicPtr<Node> {
            &self.link
        }
    }

    /// A worker's context, reduced to its real mailbox (sleep gate and
    /// `aio_notify`) and its eventfd.
    struct Worker {
        mailbox: Mailbox<Node, ()>,
        event: Event,
    }

    struct Pool {
        idle: IdleSet,
        /// The injector, reduced to a counter of items.
        queued: AtomicUsize,
        taken: AtomicUsize,
        workers: [Worker; 2],
        stop: AtomicBool,
    }

    impl Pool {
        fn try_take(&self) -> bool {
            let mut n = self.queued.load(Relaxed);
            while n > 0 {
                match self.queued.compare_exchange(n, n - 1, Relaxed, Relaxed) {
                    Ok(_) => {
                        self.taken.fetch_add(1, Relaxed);
                        return true;
                    }
                    Err(a) => n = a,
                }
            }
            false
        }

        /// `AioContext::notify` of worker `i`.
        fn notify(&self, i: usize) {
            let w = &self.workers[i];
            w.mailbox.notify(|| w.event.wake());
        }

        /// A worker's wait, as `Loop::wait` does it with the worker's
        /// hooks: close the gate, mark the worker sleeping, re-check every
        /// source, sleep, reopen.
        fn sleep(&self, i: usize) {
            let w = &self.workers[i];
            w.mailbox.prepare_sleep();
            self.idle.mark_sleeping(i);
            let has_work = self.queued.load(Relaxed) > 0 || self.stop.load(Relaxed);
            if !w.mailbox.has_incoming() && !has_work {
                w.event.wait();
            }
            w.mailbox.finish_sleep();
            self.idle.mark_awake(i);
            w.mailbox.take_notified();
        }
    }

    /// One poster, two workers sleeping through the real sleep gate: the
    /// posted item is always taken; no worker sleeps through it (loom
    /// reports a deadlock otherwise).
    #[test]
    fn posted_work_is_never_stranded() {
        loom::model(|| {
            let pool = Arc::new(Pool {
                idle: IdleSet::new(2),
                queued: AtomicUsize::new(0),
                taken: AtomicUsize::new(0),
                workers: [
                    Worker {
                        mailbox: Mailbox::new(),
                        event: Event::default(),
                    },
                    Worker {
                        mailbox: Mailbox::new(),
                        event: Event::default(),
                    },
                ],
                stop: AtomicBool::new(false),
            });
            let workers: Vec<_> = (0..2)
                .map(|i| {
                    let pool = pool.clone();
                    thread::spawn(move || {
                        while !pool.try_take() && !pool.stop.load(Relaxed) {
                            pool.sleep(i);
                        }
                    })
                })
                .collect();
            // Post one item.
            pool.queued.fetch_add(1, Relaxed);
            if let Some(i) = pool.idle.wake_one() {
                pool.notify(i);
            }
            // Wait until someone took it, then release everybody.
            while pool.taken.load(Relaxed) == 0 {
                thread::yield_now();
            }
            pool.stop.store(true, Relaxed);
            fence(SeqCst);
            for i in 0..2 {
                pool.notify(i);
            }
            for w in workers {
                w.join().unwrap();
            }
            assert_eq!(
                pool.taken.load(Relaxed),
                1,
                "the item was taken exactly once"
            );
            assert_eq!(pool.queued.load(Relaxed), 0);
        });
    }
}
