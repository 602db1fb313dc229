//! Coroutines (layer 3, QEMU's `coroutine-core.h`).

use std::fmt;
use std::panic::{Location, resume_unwind};
use std::sync::atomic::Ordering::Acquire;

use super::control::{self, Cancelled, CoInner, CoRef, State};
use super::fiber::Suspend;
use super::join::JoinHandle;
use super::{enter, tls, wake, wake_mark};

/// A handle to a stackful coroutine (QEMU's `Coroutine *`).
///
/// Cheap to clone, `Send + Sync`, equal when it designates the same
/// coroutine. A coroutine runs on its own guard-paged stack: its body can
/// [`suspend`] anywhere in a call chain and be resumed later by
/// [`enter`](Coroutine::enter) or [`wake`](Coroutine::wake).
///
/// # Home context
///
/// The first entry fixes the coroutine's *home* context (the entering
/// thread's [`AioContext`](crate::AioContext)). From then on it only ever runs on that thread:
/// its stack may hold `!Send` values and thread-local references across a
/// suspension, which moving it would break. Waking it from another thread
/// hands it to its home. Coroutines created with the `unsafe`
/// [`CoroutineBuilder::migratable`] opt-in may be moved explicitly.
///
/// # Dropping
///
/// Dropping the last handle of a suspended coroutine means nothing can wake
/// it any more: it is unwound on its home thread (its destructors run there)
/// and its stack goes back to the pool. Handles held by the coroutine itself
/// (for example `current()` stored in a local) keep it alive, like an `Rc`
/// cycle.
///
/// ```
/// use coscheduler::{Coroutine, suspend};
/// use std::sync::{Arc, atomic::{AtomicU32, Ordering}};
///
/// let steps = Arc::new(AtomicU32::new(0));
/// let s = steps.clone();
/// let co = Coroutine::new(move || {
///     s.fetch_add(1, Ordering::SeqCst);
///     suspend();
///     s.fetch_add(1, Ordering::SeqCst);
/// });
/// co.enter();
/// assert_eq!(steps.load(Ordering::SeqCst), 1);
/// co.enter();
/// assert!(co.is_finished());
/// assert_eq!(steps.load(Ordering::SeqCst), 2);
/// ```
#[derive(Clone)]
pub struct Coroutine {
    pub(crate) inner: CoRef,
}

impl Coroutine {
    /// QEMU's `qemu_coroutine_create`: a coroutine that will run `f`, with a
    /// stack from the pool. Nothing runs until it is entered.
    ///
    /// # Panics
    /// If no stack can be had (the mapping limit is reached); use
    /// [`Coroutine::builder`] and [`CoroutineBuilder::create`] to get the
    /// `io::Error` instead.
    pub fn new<F: FnOnce() + Send + 'static>(f: F) -> Coroutine {
        // The builder's path without the builder: the thread's default
        // stack class, no name, nothing to convert (this is QEMU's
        // `/perf/lifecycle` hot path).
        let class = crate::stackpool::thread_default_class();
        match crate::core::stacks::acquire(class) {
            Ok(fiber) => Coroutine {
                inner: CoRef::new(control::Spec {
                    entry: control::Entry::new(f),
                    name: None,
                    stack_size: class,
                    migratable: false,
                    fiber: Some(fiber),
                    paint: false,
                    joinable: false,
                }),
            },
            Err(e) => panic!("cannot create a coroutine: no stack available: {e}"),
        }
    }

    /// A builder for a named, sized or migratable coroutine.
    pub fn builder() -> CoroutineBuilder {
        CoroutineBuilder::default()
    }

    /// QEMU's `qemu_coroutine_enter`: runs the coroutine on this thread until
    /// it suspends or returns, then runs whatever it woke on this context,
    /// before returning. A panic inside resumes here.
    ///
    /// # Panics
    /// If the coroutine is already running ("coroutine re-entered
    /// recursively"), is scheduled to run, has finished, or is homed on
    /// another thread's context; and with the coroutine's own panic.
    #[track_caller]
    pub fn enter(&self) {
        enter::check_not_scheduled(&self.inner);
        enter::enter_chain(&self.inner);
    }

    /// QEMU's `qemu_coroutine_enter_if_inactive`: enters only if not
    /// already entered.
    #[track_caller]
    pub fn enter_if_inactive(&self) {
        if !self.entered() {
            self.enter();
        }
    }

    /// QEMU's `aio_co_wake`: resumes a suspended coroutine in its home
    /// context. From a coroutine of the same context it runs right after the
    /// waker suspends or returns; from plain code on that thread it runs now;
    /// from another thread it is handed over to its home. A coroutine that
    /// never ran starts on the waker's context.
    ///
    /// A wake from another thread while the coroutine is still running is
    /// legal and takes effect once it has suspended.
    ///
    /// # Panics
    /// If the coroutine was already woken and has not run since (one wake per
    /// suspension); the message says where the first wake came from.
    #[track_caller]
    pub fn wake(&self) {
        wake::wake(&self.inner);
    }

    /// QEMU's `qemu_coroutine_entered`: true from an enter until the next
    /// suspension, including while it has entered another coroutine.
    pub fn entered(&self) -> bool {
        self.inner.state() == State::Running
    }

    /// True once the body has returned, panicked or been unwound.
    pub fn is_finished(&self) -> bool {
        self.inner.state() == State::Finished
    }

    /// A process-unique number.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The name given to the builder.
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// For a coroutine built with [`CoroutineBuilder::paint_stack`], the
    /// deepest stack use in bytes, once it has finished; `None` otherwise.
    pub fn stack_high_water_mark(&self) -> Option<usize> {
        match self.inner.stack_hwm.load(Acquire) {
            usize::MAX => None,
            n => Some(n),
        }
    }

    /// True if created with [`CoroutineBuilder::migratable`].
    pub fn is_migratable(&self) -> bool {
        self.inner.migratable
    }
}

impl PartialEq for Coroutine {
    fn eq(&self, other: &Coroutine) -> bool {
        self.inner.as_ptr() == other.inner.as_ptr()
    }
}
impl Eq for Coroutine {}

impl std::hash::Hash for Coroutine {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.id.hash(state);
    }
}

impl fmt::Debug for Coroutine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.inner.state() {
            State::New => "new",
            State::Running => "running",
            State::Suspended => "suspended",
            _ => "finished",
        };
        f.debug_struct("Coroutine")
            .field("id", &self.inner.id)
            .field("name", &self.name())
            .field("state", &state)
            .finish()
    }
}

/// Configures a coroutine before creating it.
///
/// ```
/// let co = coscheduler::Coroutine::builder()
///     .name("worker")
///     .stack_size(64 * 1024)
///     .create(|| {})
///     .expect("a stack");
/// assert_eq!(co.name(), Some("worker"));
/// ```
#[derive(Debug, Default)]
#[must_use]
pub struct CoroutineBuilder {
    name: Option<String>,
    stack_size: Option<usize>,
    migratable: bool,
    paint: bool,
}

impl CoroutineBuilder {
    /// Names the coroutine (shown in overflow reports and dumps).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Usable stack bytes (rounded up to whole pages, at least 16 KiB).
    /// Default: the thread's default (1 MiB, or the Runtime's `stack_size`).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Allows the coroutine to change context after it started
    /// (`AioContext::schedule` onto another context, [`reschedule_self`],
    /// stealing by idle workers).
    ///
    /// # Safety
    /// The coroutine must never hold thread-bound state across a suspension
    /// point: no `Rc`/`RefCell` borrow or other `!Send` value, no reference to
    /// a thread-local, no lock guard of a thread-affine lock, nothing whose
    /// correctness depends on staying on one OS thread. Moving such a
    /// coroutine is undefined behaviour that Rust cannot detect.
    ///
    /// [`reschedule_self`]: crate::reschedule_self
    pub unsafe fn migratable(mut self) -> Self {
        self.migratable = true;
        self
    }

    /// Paints the coroutine's stack so that
    /// [`Coroutine::stack_high_water_mark`] can report how deep it went
    /// (QEMU's `CONFIG_DEBUG_STACK_USAGE`). A painted coroutine gets a fresh
    /// stack whose every page is written up front, and the stack is unmapped
    /// rather than pooled when it finishes: a sizing aid, not for production.
    pub fn paint_stack(mut self) -> Self {
        self.paint = true;
        self
    }

    fn acquire(&self, class: usize) -> std::io::Result<Box<crate::core::fiber::Fiber>> {
        if self.paint {
            crate::core::fiber::allocate_painted(class).map(Box::new)
        } else {
            crate::core::stacks::acquire(class)
        }
    }

    fn stack_class(&self) -> std::io::Result<usize> {
        crate::stackpool::class_for(
            self.stack_size
                .unwrap_or_else(crate::stackpool::thread_default_size),
        )
    }

    fn into_parts(self) -> (Option<Box<str>>, Option<usize>, bool) {
        (
            self.name.map(String::into_boxed_str),
            self.stack_size,
            self.migratable,
        )
    }

    /// QEMU's `qemu_coroutine_create`, fallible: takes a stack from the pool
    /// (or maps one) now, and returns the OS error if none can be had.
    pub fn create<F: FnOnce() + Send + 'static>(self, f: F) -> std::io::Result<Coroutine> {
        let class = self.stack_class()?;
        let fiber = self.acquire(class)?;
        let paint = self.paint;
        let (name, _, migratable) = self.into_parts();
        let inner = CoRef::new(control::Spec {
            entry: control::Entry::new(f),
            name,
            stack_size: class,
            migratable,
            fiber: Some(fiber),
            paint,
            joinable: false,
        });
        Ok(Coroutine { inner })
    }

    /// A joinable coroutine running `f` with its stack taken now; without
    /// an explicit size, `default_size` (the target context's). For
    /// `spawn_on`.
    pub(crate) fn build_with_stack<F, T>(
        self,
        default_size: usize,
        f: F,
    ) -> std::io::Result<(CoRef, JoinHandle<T>)>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let size = self.stack_size.unwrap_or(default_size);
        let class = crate::stackpool::class_for(size)?;
        let fiber = self.acquire(class)?;
        let paint = self.paint;
        let (name, _, migratable) = self.into_parts();
        Ok(crate::core::join::joinable(
            f,
            name,
            class,
            migratable,
            Some(fiber),
            paint,
        ))
    }

    /// Creates a coroutine whose stack is taken at its first entry (for the
    /// Runtime's spawns).
    pub(crate) fn build_lazy<F, T>(self, f: F) -> (CoRef, JoinHandle<T>)
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (name, size, migratable) = self.into_parts();
        let class = size
            .and_then(|s| crate::stackpool::class_for(s).ok())
            .unwrap_or(0);
        crate::core::join::joinable(f, name, class, migratable, None, false)
    }
}

/// QEMU's `qemu_coroutine_self`: the running coroutine, or `None` on a
/// thread's own stack.
pub fn current() -> Option<Coroutine> {
    let p = tls::current();
    if p.is_null() {
        return None;
    }
    // SAFETY: the running coroutine is alive: whoever entered it holds a
    // reference until it suspends.
    let inner = unsafe { CoRef::clone_from_ptr(p) };
    Some(Coroutine { inner })
}

/// QEMU's `qemu_in_coroutine`.
pub fn in_coroutine() -> bool {
    !tls::current().is_null()
}

/// QEMU's `qemu_coroutine_yield`: returns control to whoever entered the
/// current coroutine; returns when it is entered again.
///
/// # Cancellation
///
/// `suspend` — and so every wait built on it: a lock, a sleep, a join, a
/// read — is where a cancelled coroutine is unwound. A coroutine is
/// cancelled when its runtime shuts down ([`Runtime::shutdown`] or dropping
/// the runtime) or its last handle is dropped while it is suspended. When it
/// is resumed cancelled, `suspend` does not return: it raises a private
/// panic payload that unwinds the coroutine, so its destructors run on its
/// home thread, its locks are released, its stack goes back to the pool,
/// and its [`JoinHandle`](crate::JoinHandle) reports
/// [`JoinError::Cancelled`](crate::JoinError::Cancelled). No panic hook
/// runs for it. Suspensions inside destructors run by that unwind, and
/// inside [`raw::shield`](crate::raw::shield), wait normally instead.
///
/// `std::panic::catch_unwind` around `suspend` (or around any call that
/// suspends) catches that payload, but it cannot undo the cancellation:
/// once the payload is dropped, the coroutine's next `suspend` raises it
/// again, every time, so it can never suspend normally again. Code that
/// goes on after catching it either reaches another suspension and is
/// unwound there, or returns: the coroutine ends either way and nothing is
/// leaked. Code that catches panics around suspending calls should pass on
/// payloads it does not recognise ([`raw::rethrow`](crate::raw::rethrow)
/// or `std::panic::resume_unwind`).
///
/// ```
/// use std::panic::catch_unwind;
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU32, Ordering};
///
/// let caught = Arc::new(AtomicU32::new(0));
/// let c = caught.clone();
/// let rt = coscheduler::Runtime::builder().threads(1).build().unwrap();
/// let h = rt.spawn(move || {
///     // The first catch swallows the cancellation...
///     if catch_unwind(coscheduler::suspend).is_err() {
///         c.fetch_add(1, Ordering::SeqCst);
///     }
///     // ...and the next suspension raises it again.
///     coscheduler::suspend();
///     unreachable!("a cancelled coroutine does not get past suspend()");
/// });
/// while h.coroutine().context().is_none() {
///     std::thread::yield_now();
/// }
/// rt.shutdown();
/// assert_eq!(caught.load(Ordering::SeqCst), 1);
/// assert!(matches!(h.join(), Err(coscheduler::JoinError::Cancelled)));
/// ```
///
/// [`Runtime::shutdown`]: crate::Runtime::shutdown
///
/// # Panics
/// Outside a coroutine (QEMU: "Co-routine is yielding to no one").
#[inline]
pub fn suspend() {
    let co = tls::current();
    if co.is_null() {
        no_coroutine("suspend");
    }
    // SAFETY: `co` is the running coroutine of this thread.
    unsafe { suspend_running(co) };
}

/// Suspends the running coroutine `co`.
///
/// # Cancellation points
///
/// A suspension is where a cancelled coroutine (its last handle dropped,
/// or its runtime shutting down) is unwound: when it is resumed with its
/// `cancel` flag set, `suspend` raises a private panic payload instead of
/// returning, and the coroutine's destructors run. Not every suspension may
/// do that. A suspension is *shielded* — resumed normally, and only by a
/// real wake — when
/// - it happens inside [`raw::shield`](crate::raw::shield);
/// - the coroutine's own cancellation is already unwinding (a destructor
///   that waits for a lock, a sleep, a join): it waits and goes on
///   unwinding;
/// - the coroutine is unwinding an ordinary panic of its own: it may be
///   running destructors, and raising a second unwind out of a destructor
///   aborts the process. std counts panics per thread, so "its own" is
///   worked out per coroutine (see `core::unwinding`): a coroutine that
///   merely runs while another one is suspended mid-unwind is still
///   cancellable. The one panic it cannot attribute is a payload re-raised
///   with `std::panic::resume_unwind` (which runs no panic hook) after the
///   application replaced the panic hook, by a coroutine resumed while
///   another is suspended mid-unwind; cancelling that one aborts.
///
/// User code that catches the cancellation (`catch_unwind` around a call
/// that suspends) and discards it is cancelled again at its next
/// suspension: a cancelled coroutine cannot suspend normally any more.
///
/// A cancelled coroutine may also return from a shielded suspension without
/// the wake it waited for (shutdown resumes what it can); every wait in this
/// workspace re-checks its condition in a loop.
///
/// # Safety
/// `co` must be this thread's running coroutine.
#[inline]
pub(crate) unsafe fn suspend_running(co: *const CoInner) {
    // SAFETY: the coroutine is alive while it runs; these are its
    // executing-thread fields and we are on that thread.
    let shielded = unsafe {
        let inner = &*co;
        let shielded = inner.shields.get() != 0 || super::unwinding::in_own_unwind(inner);
        inner.parked_shielded.set(shielded);
        shielded
    };
    // SAFETY: the running coroutine's yielder was attached by its trampoline
    // and stays valid while the fiber is attached; `co` runs on this thread
    // on the fiber in its slot (the sanitizer hooks' contract).
    unsafe {
        crate::core::fiber::leaving_fiber(co);
        let yielder = (*co).yielder.get();
        let _ = (*yielder).suspend(Suspend::Yielded);
        crate::core::fiber::arrived_on_fiber(co);
    }
    // From here on we may be on another thread (migratable coroutines):
    // nothing read from thread-locals before the switch is reused.
    // SAFETY: the coroutine is alive while it runs.
    let inner = unsafe { &*co };
    super::unwinding::resumed(inner);
    // A wake that found this coroutine already scheduled and was absorbed
    // published its condition first; `resumed_cancelled`'s fence makes the
    // caller's re-check after we return see it (see `wake_mark`).
    if wake_mark::resumed_cancelled(&inner.cancel) && !shielded {
        inner.unwinding_cancel.set(true);
        inner.shields.set(inner.shields.get() + 1);
        resume_unwind(Box::new(Cancelled { id: inner.id }));
    }
}

/// Reschedules the current coroutine at the back of its context's ready
/// queue and suspends: other ready coroutines run first.
///
/// # Panics
/// Outside a coroutine.
#[track_caller]
pub fn yield_now() {
    let p = tls::current();
    if p.is_null() {
        no_coroutine("yield_now");
    }
    // SAFETY: the running coroutine is alive.
    let me = unsafe { CoRef::clone_from_ptr(p) };
    if control::try_schedule(&me, Location::caller()).is_ok() {
        // SAFETY: a running coroutine is on its home thread, whose home
        // exists and is installed there.
        unsafe { (*tls::home()).owner_unchecked() }.push_ready(me);
    }
    // Otherwise another thread already woke us: its hand-off resumes us.
    // SAFETY: `p` is this thread's running coroutine.
    unsafe { suspend_running(p) };
}

#[cold]
#[track_caller]
fn no_coroutine(what: &str) -> ! {
    panic!("{what}() called outside a coroutine (QEMU: Co-routine is yielding to no one)")
}

/// Records what the current coroutine is about to wait on (shown by
/// `Runtime::dump`). `what` names the kind of wait ("CoMutex", "sleep");
/// `detail` the object (a lock's name).
pub fn set_wait_reason(what: &'static str, detail: Option<std::sync::Arc<str>>) {
    let co = tls::current();
    // SAFETY: executing-thread field of the running coroutine.
    if let Some(co) = unsafe { co.as_ref() } {
        // SAFETY: only the executing thread touches `wait`, and no reference
        // to it is live.
        unsafe {
            *co.wait.get() = Some(control::WaitReason {
                what,
                detail,
                blocker: None,
            })
        };
    }
}

/// Clears the wait description after the wait.
pub fn clear_wait_reason() {
    let co = tls::current();
    // SAFETY: executing-thread field of the running coroutine.
    if let Some(co) = unsafe { co.as_ref() } {
        // SAFETY: as in `set_wait_reason`.
        unsafe { *co.wait.get() = None };
    }
}
