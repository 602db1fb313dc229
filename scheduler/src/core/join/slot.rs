//! The join slot's protocol: one completion, one result, one wake.
//!
//! A spawned coroutine's outcome travels to its handle through a [`Slot`]:
//! a mutex over the result, the waiter and a `completed` mark, plus a
//! `done` flag that mirrors `completed` for readers that do not take the
//! lock. Generic over the result and the waiter so that the same code runs
//! in the runtime (`join.rs`: a `Completion`, a coroutine, a home or a
//! task waker) and in its loom model here.
//!
//! # Protocol
//!
//! | operation | who | what |
//! |---|---|---|
//! | [`Slot::complete`] | the completer: the body's wrapper, `finish`, or whoever cancels an unstarted coroutine | under the lock: first call wins; stores the result, sets `done` (Release), takes the waiter; wakes it after unlocking |
//! | [`Slot::take_or_register`] | the joiner | under the lock: takes the result, or installs (or keeps) its waiter |
//! | [`Slot::take`] | the blocked joiner, once `done` | under the lock: takes the result |
//! | [`Slot::is_done`] | anyone (`is_finished`, the deadlock finder, the blocked joiner's check) | Acquire load of `done` |
//!
//! **No lost wake-up.** Registration and completion both run under the
//! lock, so one of them comes first: a joiner that comes second finds the
//! result and never waits; a completer that comes second finds the waiter
//! and wakes it. The wake happens after the lock is released (a wake can
//! run arbitrary code: entering a coroutine, dropping a waker), and a wake
//! that arrives before the joiner has actually suspended is kept by the
//! waiter's own protocol (the wake mark, the home's sleep gate), which are
//! modelled where they live.
//!
//! **One wake, one result.** The completer takes the waiter out of the
//! slot, so no second completion can wake it; a second completion finds
//! `completed` and returns before it touches anything, so the first
//! result is the one delivered and the late one is dropped. The joiner
//! takes the result out, so it is delivered once.
//!
//! **`done`.** Set in the same critical section as the result, so a reader
//! that sees it true and then takes the lock finds the result there (the
//! lock orders that on its own); the Release/Acquire pair makes the
//! lock-free readers' answer mean "the result is stored".

use std::sync::atomic::Ordering::{Acquire, Release};

use crate::sync::{AtomicBool, Mutex, MutexGuard};

/// What a slot wakes when it completes.
pub(crate) trait Wake {
    /// Delivers the wake; called once, outside the slot's lock.
    fn wake(self);
}

/// The join state of a spawned coroutine.
pub(crate) struct Slot<R, W> {
    state: Mutex<State<R, W>>,
    done: AtomicBool,
}

struct State<R, W> {
    result: Option<R>,
    waiter: Option<W>,
    /// Completed once; later completions are ignored.
    completed: bool,
}

/// What a joiner found in the slot.
pub(crate) enum Joined<R, W> {
    /// The result, now the joiner's.
    Ready(R),
    /// Not completed yet: the joiner's waiter is installed. Carries the
    /// waiter it replaced, for the caller to drop outside the lock.
    Waiting(Option<W>),
    /// Completed, and the result was already taken.
    Taken,
}

impl<R, W> Default for Slot<R, W> {
    fn default() -> Self {
        Slot {
            state: Mutex::new(State {
                result: None,
                waiter: None,
                completed: false,
            }),
            done: AtomicBool::new(false),
        }
    }
}

impl<R, W: Wake> Slot<R, W> {
    fn lock(&self) -> MutexGuard<'_, State<R, W>> {
        // The state is only assigned under the lock; a poisoned lock cannot
        // hold a half-written value.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the outcome (first call wins) and wakes the waiter.
    pub(crate) fn complete(&self, result: R) {
        let waiter = {
            let mut st = self.lock();
            if st.completed {
                return;
            }
            st.completed = true;
            st.result = Some(result);
            // Release: pairs with the Acquire in `is_done`.
            self.done.store(true, Release);
            st.waiter.take()
        };
        if let Some(w) = waiter {
            w.wake();
        }
    }

    /// Takes the result if there is one; otherwise installs the waiter that
    /// `register` returns, given the current one (`None` from `register`
    /// keeps the current one).
    pub(crate) fn take_or_register(
        &self,
        register: impl FnOnce(Option<&W>) -> Option<W>,
    ) -> Joined<R, W> {
        let mut st = self.lock();
        if let Some(r) = st.result.take() {
            return Joined::Ready(r);
        }
        if st.completed {
            return Joined::Taken;
        }
        match register(st.waiter.as_ref()) {
            Some(w) => Joined::Waiting(st.waiter.replace(w)),
            None => Joined::Waiting(None),
        }
    }

    /// Takes the result, if it is there.
    pub(crate) fn take(&self) -> Option<R> {
        self.lock().result.take()
    }

    /// True once completed.
    pub(crate) fn is_done(&self) -> bool {
        // Acquire: pairs with the Release in `complete`.
        self.done.load(Acquire)
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! A joiner is a loom thread; its wake is `unpark` (whose permit stands
    //! for the wake mark or the sleep gate: a wake before the joiner parks
    //! is kept). Each wake is counted, so "exactly once" is checked, and a
    //! joiner that is never woken parks forever, which loom reports as a
    //! deadlock.

    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicUsize;
    use loom::thread;
    use std::sync::atomic::Ordering::Relaxed;

    /// A joiner's wake: unparks its thread and counts.
    struct Waker {
        thread: thread::Thread,
        wakes: Arc<AtomicUsize>,
    }

    impl Wake for Waker {
        fn wake(self) {
            self.wakes.fetch_add(1, Relaxed);
            self.thread.unpark();
        }
    }

    type TestSlot = Slot<usize, Waker>;

    /// `join_in_coroutine`: take the result or register, suspend, retry.
    /// Returns the result and whether the joiner waited.
    fn join_suspending(slot: &TestSlot, wakes: &Arc<AtomicUsize>) -> (usize, bool) {
        let mut waited = false;
        loop {
            let joined = slot.take_or_register(|_| {
                Some(Waker {
                    thread: thread::current(),
                    wakes: wakes.clone(),
                })
            });
            match joined {
                Joined::Ready(r) => return (r, waited),
                Joined::Waiting(replaced) => {
                    assert!(replaced.is_none(), "a joiner registered twice");
                    waited = true;
                    thread::park();
                }
                Joined::Taken => panic!("the result was taken by someone else"),
            }
        }
    }

    /// `join_blocking`: take the result or register once, then sleep until
    /// `done`, then take the result, which must be there. Returns the
    /// result and whether the joiner registered.
    fn join_blocking(slot: &TestSlot, wakes: &Arc<AtomicUsize>) -> (usize, bool) {
        let joined = slot.take_or_register(|_| {
            Some(Waker {
                thread: thread::current(),
                wakes: wakes.clone(),
            })
        });
        match joined {
            Joined::Ready(r) => (r, false),
            Joined::Waiting(_) => {
                while !slot.is_done() {
                    thread::park();
                }
                (slot.take().expect("a done slot holds its result"), true)
            }
            Joined::Taken => panic!("the result was taken by someone else"),
        }
    }

    /// The coroutine completes its slot on one thread while the joiner, on
    /// another, takes the result or registers and suspends: the joiner gets
    /// the result, and is woken exactly once if it registered, never if it
    /// found the result at once.
    #[test]
    fn join_completion_races_a_suspending_joiner() {
        completion_races(join_suspending);
    }

    /// One completion of 7 on a thread of its own against `join` here:
    /// the joiner gets 7, is woken once if it waited and never otherwise,
    /// and the result is delivered once.
    fn completion_races(join: fn(&TestSlot, &Arc<AtomicUsize>) -> (usize, bool)) {
        loom::model(move || {
            let slot = Arc::new(TestSlot::default());
            let wakes = Arc::new(AtomicUsize::new(0));
            let completer = {
                let slot = slot.clone();
                thread::spawn(move || slot.complete(7))
            };
            let (got, waited) = join(&slot, &wakes);
            completer.join().unwrap();
            assert_eq!(got, 7, "the joiner gets the result");
            assert_eq!(wakes.load(Relaxed), usize::from(waited), "wakes");
            assert!(slot.is_done());
            assert!(slot.take().is_none(), "the result is delivered once");
        });
    }

    /// The same race with a thread that blocks outside coroutines: it
    /// sleeps until `done` and then must find the result in the slot.
    #[test]
    fn join_completion_races_a_blocked_joiner() {
        completion_races(join_blocking);
    }

    /// Two completions race (the body's value against a cancellation) with
    /// a joiner: exactly one result is delivered, the first stored, and a
    /// joiner that registered is woken exactly once.
    #[test]
    fn join_two_completions_deliver_one_result_and_one_wake() {
        loom::model(|| {
            let slot = Arc::new(TestSlot::default());
            let wakes = Arc::new(AtomicUsize::new(0));
            let completers: Vec<_> = [1, 2]
                .into_iter()
                .map(|v| {
                    let slot = slot.clone();
                    thread::spawn(move || slot.complete(v))
                })
                .collect();
            let (got, waited) = join_suspending(&slot, &wakes);
            for c in completers {
                c.join().unwrap();
            }
            assert!(got == 1 || got == 2, "the joiner gets a stored result");
            assert_eq!(wakes.load(Relaxed), usize::from(waited), "wakes");
            assert!(slot.take().is_none(), "the losing result is not kept");
        });
    }
}
