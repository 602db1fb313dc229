//! Capturing what a stalled worker thread is doing, on that thread.
//!
//! A running coroutine cannot be asked anything: it is not at a suspension
//! point. So the watchdog interrupts its thread with a signal
//! ([`CAPTURE_SIGNAL`]) and the handler, running on that thread, copies the
//! running coroutine's id and name from the thread-local "current coroutine"
//! (as the stack-overflow handler does) and unwinds the interrupted stack
//! into a preallocated slot. Symbolising the frames — which allocates and
//! reads debug info — happens afterwards, on the watchdog's thread
//! ([`Captured::symbolise`]).
//!
//! # The signal
//!
//! `SIGURG`, as Go's preemption uses: its default action is to ignore it,
//! so a late or stray delivery is harmless, and programs rarely use it
//! (only sockets with `F_SETOWN` and out-of-band data raise it). A delivery
//! that is not an answer to our request (see [`handshake`](super::handshake))
//! goes to the previous action. The handler runs with `SA_RESTART` (an
//! interrupted system call resumes, so the stalled code does not see
//! `EINTR`) and on the thread's alternate signal stack: workers get one of
//! [`ALTSTACK_SIZE`] for the unwinder, whatever the coroutine's stack has
//! left.
//!
//! # Async-signal safety
//!
//! The handler reads two thread-local cells, copies bytes, and calls the
//! system unwinder through `backtrace::trace_unsynchronized`
//! (`_Unwind_Backtrace`). The unwinder's one-time initialisation (which may
//! allocate) is done by [`install`], outside any handler. After that, GCC's
//! unwinder (12 and later, with glibc 2.35 or later) finds unwind tables
//! with `_dl_find_object`, which takes no lock and does not allocate; older
//! ones go through `dl_iterate_phdr`, whose loader lock is recursive, so a
//! thread interrupted inside the loader does not deadlock on itself. No
//! lock of ours is taken and nothing is allocated in the handler; `errno`
//! is preserved.

use std::io;
use std::mem;
use std::ptr;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use libc::{c_int, c_void, siginfo_t};

use super::handshake::{Handshake, Poll, Served};
use crate::core::tls;
use crate::stack::GuardedStack;

/// The signal that asks a worker thread what it is running.
pub(crate) const CAPTURE_SIGNAL: c_int = libc::SIGURG;

/// Frames kept from the stalled stack; deeper frames are cut off.
pub(crate) const MAX_FRAMES: usize = 128;

/// Bytes of coroutine name copied in the handler.
const NAME_LIMIT: usize = 256;

/// The alternate signal stack a worker gets while attached: the unwinder
/// walks tens of frames with a few hundred bytes of state each, on top of
/// the kernel's signal frame (several KiB with AVX-512 state).
pub(crate) const ALTSTACK_SIZE: usize = 128 * 1024;

/// How long a capture waits for the thread to answer. A thread that has
/// the signal blocked, or sleeps uninterruptibly in the kernel, does not.
pub(crate) const ANSWER_TIMEOUT: Duration = Duration::from_millis(250);

/// What the handler writes: plain data, no pointers to anything that may
/// go away.
pub(crate) struct Raw {
    in_coroutine: bool,
    id: u64,
    /// `usize::MAX` for an unnamed coroutine.
    name_len: usize,
    name: [u8; NAME_LIMIT],
    /// The interrupted instruction, from the signal context (0 if unknown).
    pc: usize,
    frames: usize,
    ips: [usize; MAX_FRAMES],
}

impl Raw {
    const EMPTY: Raw = Raw {
        in_coroutine: false,
        id: 0,
        name_len: usize::MAX,
        name: [0; NAME_LIMIT],
        pc: 0,
        frames: 0,
        ips: [0; MAX_FRAMES],
    };
}

/// The one capture slot of the process (one request in flight at a time,
/// under [`REQUEST`]).
static SLOT: Handshake<Raw> = Handshake::new(Raw::EMPTY);

/// Serialises requests: every runtime's watchdog and every shutdown probe
/// shares [`SLOT`].
static REQUEST: Mutex<()> = Mutex::new(());

/// The action `CAPTURE_SIGNAL` had before ours, for deliveries that are
/// not answers. Set once, before our action is installed.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

/// The outcome of [`install`], computed once.
static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();

/// How to reach a worker thread with a signal.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ThreadTarget {
    pthread: libc::pthread_t,
    /// The kernel's id of the thread, which the handler compares with its
    /// own.
    tid: u64,
}

impl ThreadTarget {
    /// The kernel's id of the thread.
    pub(crate) fn tid(&self) -> u64 {
        self.tid
    }

    /// The calling thread.
    pub(crate) fn current() -> ThreadTarget {
        ThreadTarget {
            // SAFETY: pthread_self has no preconditions.
            pthread: unsafe { libc::pthread_self() },
            tid: current_tid(),
        }
    }
}

fn current_tid() -> u64 {
    // SAFETY: gettid has no preconditions and is async-signal-safe.
    let tid = unsafe { libc::gettid() };
    // Thread ids are positive.
    tid as u64
}

/// What the handler found, copied out of the slot.
#[derive(Clone, Debug)]
pub(crate) struct Captured {
    /// `Some((id, name))` if the thread was running a coroutine.
    pub(crate) coroutine: Option<(u64, Option<String>)>,
    pc: usize,
    ips: Vec<usize>,
}

impl Captured {
    /// The frames, innermost first, starting at the interrupted function
    /// (the handler's own frames are dropped), one per line: `name at
    /// file:line`, with inlined functions on lines of their own. Frames
    /// without a symbol show their address.
    pub(crate) fn symbolise(&self) -> String {
        let start = self
            .ips
            .iter()
            .position(|&ip| self.pc != 0 && ip.abs_diff(self.pc) <= 1)
            .unwrap_or(0);
        let mut out = String::new();
        for (i, &ip) in self.ips[start..].iter().enumerate() {
            // A return address points after the call: look up the call
            // itself. The interrupted instruction is exact.
            let lookup = if i == 0 { ip } else { ip.saturating_sub(1) };
            let mut any = false;
            backtrace::resolve(lookup as *mut c_void, |symbol| {
                any = true;
                let name = symbol
                    .name()
                    .map_or_else(|| format!("{ip:#x}"), |n| n.to_string());
                out.push_str(&name);
                if let (Some(file), Some(line)) = (symbol.filename(), symbol.lineno()) {
                    out.push_str(&format!(" at {}:{line}", file.display()));
                }
                out.push('\n');
            });
            if !any {
                out.push_str(&format!("{ip:#x}\n"));
            }
        }
        out
    }
}

/// Installs the capture handler, once per process. Later calls return the
/// first outcome.
pub(crate) fn install() -> Result<(), String> {
    INSTALLED.get_or_init(install_once).clone()
}

#[cold]
fn install_once() -> Result<(), String> {
    // The unwinder initialises itself on first use (and may allocate
    // then): do it here, never first in a handler.
    backtrace::trace(|_| true);
    let mut previous = empty_action();
    // SAFETY: a null new action only queries; `previous` is a valid place
    // for the answer.
    if unsafe { libc::sigaction(CAPTURE_SIGNAL, ptr::null(), &mut previous) } != 0 {
        return Err(format!("sigaction: {}", io::Error::last_os_error()));
    }
    let previous = *PREVIOUS.get_or_init(|| previous);
    let mut action = empty_action();
    action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
    action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
    action.sa_mask = previous.sa_mask;
    // SAFETY: `action` is fully initialised and names a handler with the
    // three-argument signature SA_SIGINFO requires; a null old action is
    // allowed.
    if unsafe { libc::sigaction(CAPTURE_SIGNAL, &action, ptr::null_mut()) } != 0 {
        return Err(format!("sigaction: {}", io::Error::last_os_error()));
    }
    Ok(())
}

/// An all-zero `sigaction`: `SIG_DFL`, no flags, empty mask.
fn empty_action() -> libc::sigaction {
    // SAFETY: `sigaction` is a plain C struct of integers, a signal set and
    // a handler address; all-zero bytes are a valid value of each.
    unsafe { mem::zeroed() }
}

/// Asks a thread what it runs and waits (at most [`ANSWER_TIMEOUT`]) for
/// the answer. `None` if the handler cannot be installed, `pick` finds no
/// thread, or the thread did not answer.
///
/// The thread is `pick(&registration)`, read under the `registration`
/// lock, which is held while the signal is sent: whoever registered the
/// thread clears the registration under that lock before the thread exits,
/// so the `pthread_t` signalled is always a live thread's.
pub(crate) fn capture<T>(
    registration: &Mutex<T>,
    pick: impl FnOnce(&T) -> Option<ThreadTarget>,
) -> Option<Captured> {
    install().ok()?;
    let _one = REQUEST.lock().unwrap_or_else(PoisonError::into_inner);
    {
        let registered = registration.lock().unwrap_or_else(PoisonError::into_inner);
        let target = pick(&registered)?;
        SLOT.request(target.tid);
        // SAFETY: the registration lock keeps the thread from exiting (see
        // above), so its pthread_t is valid; pthread_kill has no other
        // precondition.
        let sent = unsafe { libc::pthread_kill(target.pthread, CAPTURE_SIGNAL) } == 0;
        // Only a stray delivery of the signal could have claimed the
        // request meanwhile; then its answer is taken below as usual.
        if !sent && SLOT.abandon() == Poll::Pending {
            return None;
        }
    }
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    loop {
        match SLOT.poll() {
            Poll::Done => break,
            Poll::Capturing => std::thread::yield_now(),
            Poll::Pending if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_micros(50));
            }
            Poll::Pending => match SLOT.abandon() {
                Poll::Pending => return None,
                Poll::Capturing | Poll::Done => {}
            },
        }
    }
    Some(SLOT.take(|raw| Captured {
        coroutine: raw.in_coroutine.then(|| {
            let name = (raw.name_len != usize::MAX)
                .then(|| String::from_utf8_lossy(&raw.name[..raw.name_len]).into_owned());
            (raw.id, name)
        }),
        pc: raw.pc,
        ips: raw.ips[..raw.frames].to_vec(),
    }))
}

/// The capture handler (module docs).
extern "C" fn on_signal(signum: c_int, info: *mut siginfo_t, context: *mut c_void) {
    // SAFETY: __errno_location returns this thread's errno cell.
    let errno = unsafe { *libc::__errno_location() };
    let served = SLOT.serve(current_tid(), |raw| fill(raw, context));
    if served == Served::NotOurs {
        // SAFETY: forwarding the kernel's own arguments from inside the
        // handler for `signum`.
        unsafe { chain(signum, info, context) };
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Fills the slot on the interrupted thread. Async-signal-safe (module
/// docs).
fn fill(raw: &mut Raw, context: *mut c_void) {
    raw.pc = interrupted_pc(context);
    let co = tls::current();
    // SAFETY: the running coroutine is alive while this thread runs it, and
    // it is interrupted, not finished; `id` and `name` are never written
    // after creation.
    match unsafe { co.as_ref() } {
        Some(co) => {
            raw.in_coroutine = true;
            raw.id = co.id;
            match co.name.as_deref() {
                Some(name) => {
                    let n = name.len().min(NAME_LIMIT);
                    raw.name[..n].copy_from_slice(&name.as_bytes()[..n]);
                    raw.name_len = n;
                }
                None => raw.name_len = usize::MAX,
            }
        }
        None => {
            raw.in_coroutine = false;
            raw.name_len = usize::MAX;
        }
    }
    raw.frames = 0;
    // SAFETY: `trace_unsynchronized` requires that no other trace runs
    // concurrently in a way that could race on the unwinder's state; the
    // system unwinder (`_Unwind_Backtrace`) is reentrant and was initialised
    // by `install`, and the closure only stores integers.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            if raw.frames == MAX_FRAMES {
                return false;
            }
            raw.ips[raw.frames] = frame.ip() as usize;
            raw.frames += 1;
            true
        });
    }
}

/// The program counter the signal interrupted, from the kernel's context.
fn interrupted_pc(context: *mut c_void) -> usize {
    if context.is_null() {
        return 0;
    }
    let uc = context.cast::<libc::ucontext_t>();
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: for an SA_SIGINFO handler the third argument is the
        // kernel's `ucontext_t`, valid during the handler.
        unsafe { (*uc).uc_mcontext.gregs[libc::REG_RIP as usize] as usize }
    }
    #[cfg(target_arch = "aarch64")]
    {
        // SAFETY: as above.
        unsafe { (*uc).uc_mcontext.pc as usize }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = uc;
        0
    }
}

/// Hands a delivery that was not an answer to the previous action.
///
/// # Safety
/// Called from the handler for `signum`, with the kernel's arguments.
unsafe fn chain(signum: c_int, info: *mut siginfo_t, context: *mut c_void) {
    let Some(previous) = PREVIOUS.get() else {
        return;
    };
    match previous.sa_sigaction {
        // SIGURG's default action is to ignore it, like SIG_IGN.
        libc::SIG_DFL | libc::SIG_IGN => {}
        function if previous.sa_flags & libc::SA_SIGINFO != 0 => {
            // SAFETY: with SA_SIGINFO, a handler that is neither SIG_DFL
            // nor SIG_IGN is the address of a three-argument function, read
            // from the kernel by `install_once`.
            let function: extern "C" fn(c_int, *mut siginfo_t, *mut c_void) =
                unsafe { mem::transmute(function) };
            function(signum, info, context);
        }
        function => {
            // SAFETY: without SA_SIGINFO the field holds a one-argument
            // handler (same provenance as above).
            let function: extern "C" fn(c_int) = unsafe { mem::transmute(function) };
            function(signum);
        }
    }
}

/// A worker thread's larger alternate signal stack, installed while the
/// worker runs and replaced by the previous one when dropped (on the same
/// thread, before it exits).
pub(crate) struct AltStack {
    stack: Option<GuardedStack>,
    previous: libc::stack_t,
}

impl AltStack {
    /// Gives the calling thread an alternate stack of at least
    /// [`ALTSTACK_SIZE`], keeping the one it had for later. Where mapping
    /// fails the thread keeps what it had.
    pub(crate) fn install() -> AltStack {
        let mut previous = libc::stack_t {
            ss_sp: ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: a null new stack only queries; `previous` is a valid place
        // for the answer.
        let queried = unsafe { libc::sigaltstack(ptr::null(), &mut previous) } == 0;
        let enough = previous.ss_flags & libc::SS_DISABLE == 0 && previous.ss_size >= ALTSTACK_SIZE;
        if !queried || enough {
            return AltStack {
                stack: None,
                previous,
            };
        }
        let Ok(stack) = GuardedStack::new(ALTSTACK_SIZE) else {
            return AltStack {
                stack: None,
                previous,
            };
        };
        let new = libc::stack_t {
            ss_sp: stack.guard_range().end as *mut c_void,
            ss_flags: 0,
            ss_size: stack.usable_size(),
        };
        // SAFETY: `new` describes the usable part of `stack`, which stays
        // mapped until `drop` has put the previous stack back.
        if unsafe { libc::sigaltstack(&new, ptr::null_mut()) } != 0 {
            return AltStack {
                stack: None,
                previous,
            };
        }
        AltStack {
            stack: Some(stack),
            previous,
        }
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        let Some(stack) = self.stack.take() else {
            return;
        };
        // SAFETY: `previous` was read from the kernel for this thread, and
        // its memory (if enabled) is still owned by whoever installed it;
        // a null old-stack pointer is allowed.
        if unsafe { libc::sigaltstack(&self.previous, ptr::null_mut()) } != 0 {
            // Still ours (EPERM: running on it, which a worker's exit path
            // never does): leak the mapping rather than unmap it under the
            // kernel's feet.
            mem::forget(stack);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    use std::sync::{Arc, mpsc};

    #[inline(never)]
    fn capture_spin_target(spinning: &AtomicBool, stop: &AtomicBool) {
        spinning.store(true, Relaxed);
        while !stop.load(Relaxed) {
            std::hint::spin_loop();
        }
    }

    /// A spinning plain thread answers with its own frames, and is not in a
    /// coroutine.
    #[test]
    fn a_spinning_thread_answers_with_its_frames() {
        let stop = Arc::new(AtomicBool::new(false));
        let spinning = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let (s, sp) = (stop.clone(), spinning.clone());
        let t = std::thread::spawn(move || {
            let _alt = AltStack::install();
            tx.send(ThreadTarget::current()).unwrap();
            capture_spin_target(&sp, &s);
        });
        let target = rx.recv().unwrap();
        // Signalled before it reaches the loop, it would answer with the
        // frames of `send`.
        while !spinning.load(Relaxed) {
            std::thread::yield_now();
        }
        let captured = capture(&Mutex::new(target), |t| Some(*t)).expect("the thread answers");
        stop.store(true, Relaxed);
        t.join().unwrap();
        assert!(captured.coroutine.is_none());
        let text = captured.symbolise();
        assert!(text.contains("capture_spin_target"), "{text}");
        assert!(
            !text.contains("on_signal"),
            "handler frames are dropped: {text}"
        );
    }

    /// A thread that blocks the signal does not answer; the request is
    /// withdrawn and the slot serves the next one.
    #[test]
    fn a_thread_that_blocks_the_signal_times_out() {
        let (tx, rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            // SAFETY: plain signal-set manipulation on local values.
            unsafe {
                let mut set: libc::sigset_t = mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, CAPTURE_SIGNAL);
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, ptr::null_mut());
            }
            tx.send(ThreadTarget::current()).unwrap();
            let _ = done_rx.recv();
        });
        let target = rx.recv().unwrap();
        assert!(capture(&Mutex::new(target), |t| Some(*t)).is_none());
        drop(done_tx);
        t.join().unwrap();
        let me = ThreadTarget::current();
        assert!(
            capture(&Mutex::new(me), |t| Some(*t)).is_some(),
            "the slot is usable again"
        );
    }
}
