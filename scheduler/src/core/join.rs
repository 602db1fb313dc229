//! Join handles: the result of a spawned coroutine, delivered once.
//!
//! A spawned coroutine's control block carries a join slot ([`JoinSlot`]):
//! its body's value, its panic, or why it never ran, plus whoever waits for
//! it — a coroutine (woken with `aio_co_wake`) or a thread driving its own
//! context (notified with `aio_notify`). Keeping the slot in the control
//! block instead of a separate shared allocation saves an allocation and
//! the cache lines a thief would otherwise pull across cores per spawn (W5).
//!
//! Who completes the slot, exactly once:
//! - the body's wrapper, with the value, when it returns;
//! - `finish`, with the panic or the cancellation, when the body unwound
//!   (panics of spawned coroutines never reach the worker that ran them);
//! - whoever drops an unstarted coroutine's entry (shutdown, cancellation)
//!   or fails it for lack of a stack.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;

use super::control::{CoInner, CoRef, Entry, Spec};
use super::coroutine::Coroutine;
use super::fiber::Fiber;
use super::home::{self, Home};
use slot::{Joined, Wake};

/// Why a coroutine produced no value.
#[non_exhaustive]
pub enum JoinError {
    /// The body panicked; the payload is the panic's.
    Panicked(Box<dyn Any + Send>),
    /// The body never ran, or was unwound before finishing, because its
    /// runtime shut down or nothing could wake it any more.
    Cancelled,
    /// No stack could be had for it (for example the mapping limit was
    /// reached and every stack was held by a suspended coroutine).
    NoStack(std::io::Error),
}

impl JoinError {
    /// True for [`JoinError::Panicked`].
    pub fn is_panic(&self) -> bool {
        matches!(self, JoinError::Panicked(_))
    }

    /// The panic payload, for [`JoinError::Panicked`].
    pub fn into_panic(self) -> Option<Box<dyn Any + Send>> {
        match self {
            JoinError::Panicked(p) => Some(p),
            _ => None,
        }
    }

    /// The panic message, when the payload is a string.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            JoinError::Panicked(p) => p
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| p.downcast_ref::<String>().map(String::as_str)),
            _ => None,
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Panicked(_) => {
                write!(
                    f,
                    "Panicked({:?})",
                    self.panic_message().unwrap_or("<non-string payload>")
                )
            }
            JoinError::Cancelled => f.write_str("Cancelled"),
            JoinError::NoStack(e) => f.debug_tuple("NoStack").field(e).finish(),
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Panicked(_) => match self.panic_message() {
                Some(m) => write!(f, "coroutine panicked: {m}"),
                None => f.write_str("coroutine panicked"),
            },
            JoinError::Cancelled => f.write_str("coroutine was cancelled before it finished"),
            JoinError::NoStack(e) => write!(f, "no stack available for coroutine: {e}"),
        }
    }
}

impl std::error::Error for JoinError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JoinError::NoStack(e) => Some(e),
            _ => None,
        }
    }
}

mod poll;
pub(crate) mod slot;

/// Who waits for a join slot.
pub(crate) enum Waiter {
    Coroutine(Coroutine),
    /// A thread blocked outside coroutines, driving its home.
    Home(crate::sync::Arc<Home>),
    /// An async task polling the handle as a `Future` (`join/poll.rs`).
    Task(std::task::Waker),
}

/// How a spawned coroutine ended, type-erased (the handle downcasts).
pub(crate) enum Completion {
    Value(Box<dyn Any + Send>),
    Failed(JoinError),
}

/// The join state of a spawned coroutine, in its control block; its
/// protocol is in `join/slot.rs`.
pub(crate) type JoinSlot = slot::Slot<Completion, Waiter>;

impl Wake for Waiter {
    fn wake(self) {
        match self {
            Waiter::Coroutine(co) => co.wake(),
            Waiter::Home(h) => h.notify(),
            Waiter::Task(waker) => waker.wake(),
        }
    }
}

/// Builds a coroutine whose result goes to the returned handle.
pub(crate) fn joinable<F, T>(
    f: F,
    name: Option<Box<str>>,
    class: usize,
    migratable: bool,
    fiber: Option<Box<Fiber>>,
    paint: bool,
) -> (CoRef, JoinHandle<T>)
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let entry = move || {
        let value = f();
        let me = crate::core::tls::current();
        // SAFETY: the body runs inside its own coroutine, which is alive
        // while it runs. Checked before the value is handed over, so that a
        // leaked lock turns into this coroutine's panic.
        unsafe { crate::core::enter::assert_no_locks_held(me) };
        // SAFETY: as above.
        let me = unsafe { &*me };
        me.join.complete(Completion::Value(Box::new(value)));
    };
    let co = CoRef::new(Spec {
        entry: Entry::new(entry),
        name,
        stack_size: class,
        migratable,
        fiber,
        paint,
        joinable: true,
    });
    let handle = JoinHandle {
        co: Coroutine { inner: co.clone() },
        _value: PhantomData,
    };
    (co, handle)
}

/// Owns the result of a spawned coroutine.
///
/// Dropping it detaches the coroutine, which keeps running.
pub struct JoinHandle<T> {
    co: Coroutine,
    _value: PhantomData<fn() -> T>,
}

impl<T> JoinHandle<T> {
    /// Waits for the coroutine and returns its value. Inside a coroutine this
    /// suspends; outside, it blocks the thread while driving the thread's own
    /// context (so joining a coroutine homed on this thread cannot deadlock).
    pub fn join(self) -> Result<T, JoinError> {
        let completion = if super::coroutine::in_coroutine() {
            self.join_in_coroutine()
        } else {
            self.join_blocking()
        };
        match completion {
            Completion::Value(v) => {
                // SAFETY: only `joinable::<F, T>`'s wrapper stores a value in
                // this slot, and it boxes a `T`: the same `T` as this handle's.
                Ok(*unsafe { Box::from_raw(Box::into_raw(v).cast::<T>()) })
            }
            Completion::Failed(e) => Err(e),
        }
    }

    /// The handle already returned the result, as a `Future` polled to
    /// completion; `what` is the second use ("polled", "joined").
    #[cold]
    #[track_caller]
    fn already_taken(&self, what: &str) -> ! {
        panic!(
            "JoinHandle of coroutine {} {what} after it returned its result",
            self.co.id()
        )
    }

    fn slot(&self) -> &JoinSlot {
        &self.co.inner.join
    }

    fn join_in_coroutine(&self) -> Completion {
        let me = super::coroutine::current().expect("in a coroutine");
        loop {
            match self
                .slot()
                .take_or_register(|_| Some(Waiter::Coroutine(me.clone())))
            {
                Joined::Ready(r) => return r,
                // Our registration from before a spurious wake, or the waker
                // of an earlier poll: dropped outside the slot's lock.
                Joined::Waiting(replaced) => drop(replaced),
                Joined::Taken => self.already_taken("joined"),
            }
            let joined = JoinBlocker(&self.co.inner);
            crate::core::blocker::wait_on("join", None, &joined, super::coroutine::suspend);
        }
    }

    fn join_blocking(&self) -> Completion {
        match self
            .slot()
            .take_or_register(|_| Some(Waiter::Home(home::current())))
        {
            Joined::Ready(r) => return r,
            Joined::Waiting(replaced) => drop(replaced),
            Joined::Taken => self.already_taken("joined"),
        }
        // `complete` notifies our home after it stored the result.
        home::block_until(|| self.slot().is_done());
        match self.slot().take() {
            Some(r) => r,
            None => unreachable!("a completed join slot holds its result until joined"),
        }
    }
}

/// A join waits for the joined coroutine.
struct JoinBlocker<'a>(&'a CoInner);

impl crate::core::blocker::Blocker for JoinBlocker<'_> {
    fn blocked_by(&self, out: &mut Vec<usize>) {
        if !self.0.join.is_done() {
            out.push(self.0 as *const CoInner as usize);
        }
    }

    fn describe(&self) -> String {
        format!(
            "join of coroutine {} ({})",
            self.0.id,
            self.0.display_name()
        )
    }
}

impl<T> JoinHandle<T> {
    /// True once the coroutine has finished (or will never run).
    pub fn is_finished(&self) -> bool {
        self.co.inner.join.is_done()
    }

    /// The coroutine.
    pub fn coroutine(&self) -> &Coroutine {
        &self.co
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("coroutine", &self.co)
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// Completes the join slot of a coroutine whose body will never return a
/// value (it panicked, was unwound, or never ran).
pub(crate) fn complete_failed(co: &CoInner, error: JoinError) {
    if co.joinable {
        co.join.complete(Completion::Failed(error));
    }
}

/// Drops an unstarted coroutine's body without running it and reports why
/// through its handle.
pub(crate) fn cancel_unstarted(co: &CoInner, error: JoinError) {
    use std::sync::atomic::Ordering::Relaxed;
    // Claim it as a starter would: whoever wins the `New` CAS owns the entry
    // closure. If a racing `enter` won, the coroutine runs and completes its
    // own handle.
    if co
        .state
        .claim_new(super::lifecycle::State::Finished)
        .is_err()
    {
        return;
    }
    co.cancel.store(true, Relaxed);
    // SAFETY: the CAS above made us the only party that may touch the entry
    // of this never-started coroutine.
    let entry = unsafe { (*co.entry.get()).take() };
    drop(entry);
    complete_failed(co, error);
}

/// Fails an unstarted coroutine that can get no stack.
pub(crate) fn fail_no_stack(co: &CoInner, error: std::io::Error) {
    cancel_unstarted(co, JoinError::NoStack(error));
}
