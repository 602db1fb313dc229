//! The scheduler's per-thread state, reached only through `#[inline(never)]`
//! accessors.
//!
//! docs/ARCHITECTURE.md's soundness rule: a migratable coroutine may suspend on one
//! thread and resume on another, and LLVM is free to compute a thread-local's
//! address once and reuse it across what looks like an ordinary call
//! (`suspend()`). QEMU hit exactly this (`coroutine-tls.h`). Every read of our
//! thread-locals therefore goes through a function the optimiser cannot inline
//! or prove pure, and the pointer it returns is documented as valid only until
//! the next switch.

use std::cell::Cell;
use std::ptr;
use std::sync::atomic::AtomicPtr;
use std::sync::atomic::Ordering::Relaxed;

use super::control::CoInner;
use super::home::Home;

/// What a simulation is told when a coroutine ends with a panic.
pub(crate) type PanicObserver = fn(&CoInner, &(dyn std::any::Any + Send));

/// Per-thread scheduler state. Only the owning thread writes it; a signal
/// handler on that thread may read `current`, and so may a Runtime's stall
/// watchdog from its own thread (see [`CurrentCell`]).
pub(crate) struct ThreadState {
    /// The innermost running coroutine on this thread, null on the thread's
    /// own stack (QEMU's `current`, with null standing for the leader).
    pub(crate) current: CurrentCell,
    /// This thread's home, null until one is created or installed. The
    /// owning `Arc` lives in `home::THREAD_HOME` (or in the simulation that
    /// runs several homes on this thread and switches between them).
    pub(crate) home: Cell<*const Home>,
    /// Told about every panic a coroutine of this thread ends with, before
    /// it goes to its join handle or enterer (a simulation fails its run on
    /// them). Empty outside simulations.
    pub(crate) panic_observer: Cell<Option<PanicObserver>>,
}

thread_local! {
    static STATE: ThreadState = const {
        ThreadState {
            current: CurrentCell::new(),
            home: Cell::new(ptr::null()),
            panic_observer: Cell::new(None),
        }
    };
}

/// This thread's state.
///
/// The pointer is valid for as long as the calling code stays on this thread:
/// never keep it across a call that may suspend the current coroutine.
#[inline(never)]
pub(crate) fn thread_state() -> *const ThreadState {
    launder(STATE.with(|s| s as *const ThreadState))
}

/// The innermost running coroutine on this thread, or null.
#[inline(never)]
pub(crate) fn current() -> *const CoInner {
    launder(STATE.with(|s| s.current.get()))
}

/// This thread's home, or null when none has been created yet.
#[inline(never)]
pub(crate) fn home() -> *const Home {
    launder(STATE.with(|s| s.home.get()))
}

/// The panic observer of this thread, if a simulation set one.
pub(crate) fn panic_observer() -> Option<PanicObserver> {
    STATE.with(|s| s.panic_observer.get())
}

/// Sets (or clears) this thread's panic observer.
pub(crate) fn set_panic_observer(f: Option<PanicObserver>) {
    STATE.with(|s| s.panic_observer.set(f));
}

/// Installs (or, with null, removes) this thread's home pointer.
pub(crate) fn set_home(home: *const Home) {
    STATE.with(|s| s.home.set(home));
}

/// Hides a value's provenance from the optimiser, like QEMU's
/// `asm volatile("" : "+rm"(ptr))` in its CO_TLS accessors: the compiler
/// must assume the value may have changed, so it cannot reuse a thread-local
/// address computed before a switch. Cheaper than `black_box`, which goes
/// through memory.
#[inline(always)]
// The pointer only passes through a register; the asm never dereferences it.
#[allow(clippy::pointers_in_nomem_asm_block)]
fn launder<T>(mut p: *const T) -> *const T {
    // SAFETY: an empty assembly block that only claims to modify a register
    // holding `p`; it touches no memory, stack or flags.
    unsafe { std::arch::asm!("/* {0} */", inout(reg) p, options(nomem, nostack, preserves_flags)) };
    p
}

/// The `current` cell: a `Cell` that another thread may read.
///
/// The stall watchdog compares a worker's current coroutine between two
/// samples (identity only: it never dereferences the pointer), so the cell
/// is atomic. Every access is Relaxed, which compiles to the same plain
/// loads and stores as a `Cell` would: the only writer is the owning
/// thread, so `replace` needs no read-modify-write, and the watchdog needs
/// no ordering with anything else (a value read late only delays a report
/// by one sample).
pub(crate) struct CurrentCell(AtomicPtr<CoInner>);

impl CurrentCell {
    const fn new() -> CurrentCell {
        CurrentCell(AtomicPtr::new(ptr::null_mut()))
    }

    /// The innermost running coroutine (from any thread: a snapshot).
    #[inline(always)]
    pub(crate) fn get(&self) -> *const CoInner {
        self.0.load(Relaxed)
    }

    /// Owning thread only.
    #[inline(always)]
    pub(crate) fn set(&self, co: *const CoInner) {
        self.0.store(co as *mut CoInner, Relaxed);
    }

    /// Owning thread only: sets `co` and returns the previous value.
    #[inline(always)]
    pub(crate) fn replace(&self, co: *const CoInner) -> *const CoInner {
        let previous = self.get();
        self.set(co);
        previous
    }
}
