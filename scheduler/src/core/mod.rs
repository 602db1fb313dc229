//! The coroutine core (layer 3): everything a wake touches, and nothing
//! about how a thread waits for work.
//!
//! | module | concept |
//! |---|---|
//! | [`control`] | the control block (QEMU's `struct Coroutine`): fields and who may touch them |
//! | [`lifecycle`] | its states and the transitions that can race (loom-checked) |
//! | [`blocker`] | what a waiting coroutine waits for, for the deadlock finder |
//! | [`blocks`] | recycling of control-block allocations through batch caches |
//! | [`list`] | an intrusive, thread-local FIFO of coroutine references |
//! | [`refcount`] | its reference count, with resurrection for unwinding (loom-checked) |
//! | [`wake_mark`] | its pending-wake mark and the wake decision (loom-checked) |
//! | [`transitions`] | what the last drop, a shutdown's cancellation and the taking of a delivered coroutine do to those atomics together (loom-checked) |
//! | [`entry`] | a coroutine's entry closure, inline when small |
//! | [`fiber`] | a stack with QEMU's trampoline loop parked on it |
//! | [`stacks`] | the process's pool of fibers |
//! | [`enter`] | the enter loop: claim, start, finish, QEMU's wake order |
//! | [`wake`] | wake routing (`aio_co_wake`) |
//! | [`coroutine`] | the public `Coroutine`, `CoroutineBuilder`, `suspend`, `yield_now` |
//! | [`join`] | join handles and the join slot |
//! | [`future`] | `wait`: a future awaited by a coroutine (loom-checked await state) |
//! | [`home`] | a thread's home: ready list, mailbox (loom-checked), registry, shutdown |
//! | [`unwinding`] | whose unwind a suspension is in: the coroutine's own or a neighbour's |
//! | [`tls`] | the per-thread state, read through `#[inline(never)]` accessors |
//!
//! Dependencies point down only: the core uses the stack pool and stacks,
//! never the event loop above it ([`home::EventLoop`] is the seam the loop
//! plugs into).

pub(crate) mod blocker;
pub(crate) mod blocks;
pub(crate) mod control;
pub(crate) mod coroutine;
pub(crate) mod enter;
pub(crate) mod entry;
pub(crate) mod fiber;
pub(crate) mod future;
pub(crate) mod home;
pub(crate) mod join;
pub(crate) mod lifecycle;
pub(crate) mod list;
pub(crate) mod refcount;
pub(crate) mod stacks;
pub(crate) mod tls;
pub(crate) mod transitions;
pub(crate) mod unwinding;
pub(crate) mod wake;
pub(crate) mod wake_mark;

/// The overflow handler's view of the running coroutine. Runs in a signal
/// handler: reads only plain cells of the current control block.
pub(crate) fn overflow_lookup() -> Option<crate::stack::overflow::FaultTarget> {
    let co = tls::current();
    // SAFETY: the running coroutine is alive; the fields read are written
    // only by this thread, which is interrupted in that coroutine's code.
    let co = unsafe { co.as_ref() }?;
    let (start, end) = co.stack_guard.get();
    if start == end {
        return None;
    }
    Some(crate::stack::overflow::FaultTarget {
        guard: start..end,
        usable_size: co.stack_usable.get(),
        id: co.id,
        name: co.name.as_deref().map(|n| (n.as_ptr(), n.len())),
    })
}
