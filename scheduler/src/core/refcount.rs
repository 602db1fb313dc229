//! A control block's reference count: `Arc`'s, plus the two things a
//! coroutine needs on top.
//!
//! # Protocol
//!
//! | operation | who | ordering |
//! |---|---|---|
//! | `inc` | a holder making a new reference | Relaxed (the holder's own reference keeps the block alive, as in `Arc::clone`) |
//! | `dec` | a holder giving its reference up | Release; the one that reaches zero then loads the count with Acquire (pairs with every earlier Release, through the release sequence) before it touches the block, as `Arc`'s drop does under ThreadSanitizer |
//! | `try_inc` | a context's registry walk (shutdown, dumps), which holds only a raw pointer | CAS `n → n + 1` for `n > 0`, Acquire on success (pairs with `resurrect`); fails at zero |
//! | `resurrect` | whoever saw the count reach zero on a *suspended* coroutine | Release store of 1: a walk that reads it sees what the dropper did before it (`transitions::last_ref`: the wake mark claimed, `cancel` set) |
//!
//! **Resurrection.** The last handle of a suspended coroutine going away
//! means nothing can wake it any more; it must still be unwound (its
//! destructors run on its home thread), so the dropper puts one reference
//! back and sends that home instead of freeing. Between the drop to zero and
//! the store of one the block belongs to the dropper alone, which is exactly
//! what `try_inc` respects: a walk that reads zero leaves the block alone
//! ("its cancellation is on its way", `Weak::upgrade`'s rule), and a walk
//! that reads the resurrected one holds a normal reference.
//!
//! **Why a walk never touches a freed block.** A block is freed only when
//! its count reaches zero on a coroutine that is not suspended (finished or
//! never started), and a finished coroutine leaves its context's registry on
//! its home thread, before it is marked finished — the same thread that
//! walks the registry. So every block a walk can see is suspended (or
//! running), and its count reaching zero resurrects it (or leaks it as an
//! orphan) rather than freeing it. Modelled in `loom_tests`.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use crate::sync::AtomicUsize;

/// The reference count of one control block.
pub(crate) struct RefCount {
    refs: AtomicUsize,
}

impl RefCount {
    /// One reference (the creator's).
    pub(crate) fn new() -> RefCount {
        RefCount {
            refs: AtomicUsize::new(1),
        }
    }

    /// A new reference, made from an existing one.
    #[inline]
    pub(crate) fn inc(&self) {
        // Relaxed: see the table in the module docs.
        self.refs.fetch_add(1, Relaxed);
    }

    /// Gives a reference up; true if it was the last one (the caller now
    /// owns the block alone).
    #[inline]
    pub(crate) fn dec(&self) -> bool {
        // Release: our uses of the block happen before its teardown.
        if self.refs.fetch_sub(1, Release) != 1 {
            return false;
        }
        // Pairs with the Release of every other `dec` (they form one
        // release sequence ending at the zero this load reads). A load
        // rather than `fence(Acquire)`: the same cost on x86, and
        // ThreadSanitizer, which does not model fences, sees the edge.
        self.refs.load(Acquire);
        true
    }

    /// A new reference from a non-owning pointer, unless the count is zero
    /// (the last reference's owner is dealing with the block).
    #[inline]
    pub(crate) fn try_inc(&self) -> bool {
        let mut n = self.refs.load(Relaxed);
        loop {
            if n == 0 {
                return false;
            }
            // Acquire on success: pairs with the Release of `resurrect`, so
            // a walk that reads a resurrected count sees the wake mark the
            // dropper claimed before it (`transitions`). Otherwise Relaxed,
            // as `inc`: the walker's thread synchronises with the
            // coroutine's state through `state` itself.
            match self.refs.compare_exchange_weak(n, n + 1, Acquire, Relaxed) {
                Ok(_) => return true,
                Err(actual) => n = actual,
            }
        }
    }

    /// Puts one reference back after [`dec`](RefCount::dec) returned true.
    #[inline]
    pub(crate) fn resurrect(&self) {
        // Release: pairs with the Acquire of a successful `try_inc` (see
        // the table in the module docs). The reference itself is published
        // by whatever hands it over (a hand-off queue's Release push).
        self.refs.store(1, Release);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicBool;
    use loom::thread;

    /// A control block reduced to what the protocol touches.
    struct Block {
        refs: RefCount,
        /// Suspended (true) or finished (false). Written by the home
        /// thread only.
        suspended: AtomicBool,
        /// Torn down: any access after this is a use after free.
        body: UnsafeCell<bool>,
        freed: AtomicBool,
    }

    impl Block {
        fn touch(&self) {
            // SAFETY: loom checks the access for races with the teardown.
            self.body
                .with(|b| assert!(!unsafe { *b }, "use after free"));
        }

        /// What `CoRef::drop` does; `home` receives a resurrected reference.
        fn release(&self, home: &loom::sync::mpsc::Sender<()>) {
            if !self.refs.dec() {
                return;
            }
            if self.suspended.load(Acquire) {
                self.refs.resurrect();
                home.send(()).unwrap();
                return;
            }
            // SAFETY: we own the block alone; loom checks it.
            self.body.with_mut(|b| unsafe { *b = true });
            assert!(!self.freed.swap(true, Relaxed), "freed twice");
        }
    }

    /// The last handle of a suspended coroutine is dropped on one thread
    /// while its home thread walks the registry (shutdown). The walk either
    /// gets a reference or leaves the block to the dropper; the resurrected
    /// reference reaches home, where the coroutine is unwound (finishes) and
    /// the block is freed exactly once, after every reference is gone.
    #[test]
    fn last_drop_races_a_registry_walk() {
        loom::model(|| {
            let block = Arc::new(Block {
                refs: RefCount::new(),
                suspended: AtomicBool::new(true),
                body: UnsafeCell::new(false),
                freed: AtomicBool::new(false),
            });
            let (home_tx, home_rx) = loom::sync::mpsc::channel();
            let dropper = {
                let (block, home_tx) = (block.clone(), home_tx.clone());
                thread::spawn(move || block.release(&home_tx))
            };
            // The home thread: a registry walk...
            let walked = block.refs.try_inc();
            if walked {
                block.touch();
            }
            // ... then, if the reference came home, unwinding finishes the
            // coroutine (on this thread) and drops that reference.
            dropper.join().unwrap();
            if home_rx.try_recv().is_ok() {
                block.touch();
                block.suspended.store(false, Release);
                block.release(&home_tx);
            }
            if walked {
                block.suspended.store(false, Release);
                block.release(&home_tx);
            }
            assert!(
                home_rx.try_recv().is_err(),
                "a finished coroutine is never resurrected"
            );
            assert!(
                block.freed.load(Relaxed),
                "freed once all references are gone"
            );
        });
    }
}
