//! Join handles: the result of a spawned coroutine, delivered once.
//!
//! A spawned body is wrapped so that it records its result (or its panic)
//! in a shared slot and wakes whoever waits: a coroutine (woken with
//! `aio_co_wake`) or a thread driving its own context (notified with
//! `aio_notify`). If the body never runs (its runtime shut down first) or
//! is unwound, the slot says so when the wrapper is dropped.

use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::Ordering::{Acquire, Release};
use std::sync::{Arc, Mutex};

use crate::context::AioContext;
use crate::coroutine::Coroutine;
use crate::coroutine::control::{Cancelled, CoInner, CoRef, Entry, NoStackHook};
use crate::fiber::Fiber;
use crate::sync::AtomicBool;

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

enum Waiter {
    Coroutine(Coroutine),
    Context(AioContext),
}

struct Slot<T> {
    result: Option<Result<T, JoinError>>,
    waiter: Option<Waiter>,
}

/// Shared between the wrapper and the handle.
struct JoinState<T> {
    slot: Mutex<Slot<T>>,
    done: AtomicBool,
}

impl<T> JoinState<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slot<T>> {
        // The slot is only assigned under the lock; a poisoned lock cannot
        // hold a half-written value.
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn complete(&self, result: Result<T, JoinError>) {
        let waiter = {
            let mut slot = self.lock();
            if slot.result.is_some() || self.done.load(Acquire) {
                return;
            }
            slot.result = Some(result);
            // Release: pairs with the Acquire in `is_finished`/`join`.
            self.done.store(true, Release);
            slot.waiter.take()
        };
        match waiter {
            Some(Waiter::Coroutine(co)) => co.wake(),
            Some(Waiter::Context(ctx)) => ctx.notify(),
            None => {}
        }
    }
}

/// Completes the state when the body is dropped without finishing.
struct Completer<T> {
    state: Arc<JoinState<T>>,
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        self.state.complete(Err(JoinError::Cancelled));
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
    let state = Arc::new(JoinState {
        slot: Mutex::new(Slot {
            result: None,
            waiter: None,
        }),
        done: AtomicBool::new(false),
    });
    let completer = Completer {
        state: state.clone(),
    };
    let entry = move || {
        let completer = completer;
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(v) => completer.state.complete(Ok(v)),
            Err(p) if p.is::<Cancelled>() => {
                completer.state.complete(Err(JoinError::Cancelled));
                resume_unwind(p);
            }
            Err(p) => completer.state.complete(Err(JoinError::Panicked(p))),
        }
    };
    let hook: NoStackHook = (fail_join::<T>, Arc::as_ptr(&state).cast());
    let mut inner = CoInner::new(Entry::new(entry), name, class, migratable, fiber);
    inner.paint = paint;
    inner.on_no_stack.set(Some(hook));
    let co = CoRef::new(inner);
    let handle = JoinHandle {
        co: Coroutine { inner: co.clone() },
        state,
    };
    (co, handle)
}

/// Owns the result of a spawned coroutine.
///
/// Dropping it detaches the coroutine, which keeps running.
pub struct JoinHandle<T> {
    co: Coroutine,
    state: Arc<JoinState<T>>,
}

impl<T> JoinHandle<T> {
    /// Waits for the coroutine and returns its value. Inside a coroutine this
    /// suspends; outside, it blocks the thread while driving the thread's own
    /// context (so joining a coroutine homed on this thread cannot deadlock).
    pub fn join(self) -> Result<T, JoinError> {
        if crate::in_coroutine() {
            self.join_in_coroutine()
        } else {
            self.join_blocking()
        }
    }

    fn take(&self) -> Option<Result<T, JoinError>> {
        if !self.state.done.load(Acquire) {
            return None;
        }
        self.state.lock().result.take()
    }

    fn join_in_coroutine(self) -> Result<T, JoinError> {
        let me = crate::current().expect("in a coroutine");
        loop {
            {
                let mut slot = self.state.lock();
                if let Some(r) = slot.result.take() {
                    return r;
                }
                slot.waiter = Some(Waiter::Coroutine(me.clone()));
            }
            crate::raw::set_wait_reason("join", None);
            crate::suspend();
            crate::raw::clear_wait_reason();
        }
    }

    fn join_blocking(self) -> Result<T, JoinError> {
        let ctx = AioContext::current();
        {
            let mut slot = self.state.lock();
            if let Some(r) = slot.result.take() {
                return r;
            }
            slot.waiter = Some(Waiter::Context(ctx.clone()));
        }
        loop {
            if let Some(r) = self.take() {
                return r;
            }
            ctx.poll(true);
        }
    }

    /// True once the coroutine has finished (or will never run).
    pub fn is_finished(&self) -> bool {
        self.state.done.load(Acquire)
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

/// The `NoStackHook` of a spawned coroutine.
///
/// # Safety
/// `state` is the `JoinState<T>` its entry closure holds, still alive.
unsafe fn fail_join<T>(state: *const (), error: std::io::Error) {
    // SAFETY: per the contract.
    let state = unsafe { &*state.cast::<JoinState<T>>() };
    state.complete(Err(JoinError::NoStack(error)));
}

/// Fails an unstarted coroutine that can get no stack: its handle reports
/// the error and its body is dropped unrun.
pub(crate) fn fail_no_stack(co: &CoInner, error: std::io::Error) {
    co.cancel.store(true, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: only the (would-be) executing thread calls this, before start.
    let entry = unsafe { (*co.entry.get()).take() };
    if let Some((fail, state)) = co.on_no_stack.take() {
        // SAFETY: the entry (which keeps `state` alive) is dropped below,
        // after the hook.
        unsafe { fail(state, error) };
    }
    drop(entry);
}
