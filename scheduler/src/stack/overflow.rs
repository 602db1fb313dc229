//! The stack-overflow reporter: a SIGSEGV/SIGBUS handler that recognises a
//! fault in the running coroutine's guard page.
//!
//! QEMU lets such an overflow crash as a bare segfault (docs/SEMANTICS.md §8). We
//! print `coroutine <id> (<name>) overflowed its <N> KiB stack` and abort
//! instead, so the report names the culprit, the way Rust's std reports an
//! overflowed *thread* stack.
//!
//! # How it fits together
//!
//! - [`install`] runs once per process. It records the previous SIGSEGV and
//!   SIGBUS actions and the runtime's `lookup` function in [`HANDLER`], and
//!   only then installs [`on_fault`] for both signals, so the handler can never
//!   observe a half-initialised state.
//! - [`ensure_thread_altstack`] runs once per thread. A fault in a guard page
//!   means the stack pointer is already in the guard, so the kernel can only
//!   deliver the signal on an alternate stack (`SA_ONSTACK`). Rust's std gives
//!   its own threads one; any other thread gets a mapping of ours, freed at
//!   thread exit.
//! - [`on_fault`] asks `lookup` which coroutine runs on this thread. A
//!   kernel-generated fault whose address lies in that coroutine's guard page
//!   is reported and aborts; every other signal goes to the previous action,
//!   so std's thread-overflow message, a debugger's or a JIT's handler, or the
//!   default core dump all still happen.
//!
//! # Async-signal safety
//!
//! The handler calls only `write(2)`, `sigaction(2)`, `raise(3)` and
//! `abort(3)`, reads [`HANDLER`] with one atomic load, and formats into a
//! fixed buffer on the (alternate) stack: no allocation, no lock. `lookup` must
//! obey the same rules (typically: read a `const`-initialised thread-local).
//!
//! # Why not `SA_NODEFER`
//!
//! The handler leaves its own signal blocked while it runs. If the handler, or
//! the chained one, faults in turn, the kernel finds the signal blocked and
//! kills the process with the default action, instead of recursing down the
//! alternate stack. Chained handlers still run with the signal blocked, as they
//! would have if installed directly without `SA_NODEFER` (which is how std
//! installs its own).

use std::cell::Cell;
use std::io;
use std::mem;
use std::ops::Range;
use std::ptr;
use std::sync::{Mutex, OnceLock, PoisonError};

use libc::{c_int, c_void, siginfo_t};

/// A three-argument (`SA_SIGINFO`) signal handler.
type SigactionFn = extern "C" fn(c_int, *mut siginfo_t, *mut c_void);

use super::GuardedStack;

/// The coroutine running on the current thread, as the fault handler needs to
/// see it.
///
/// `lookup` builds one from the runtime's thread-local "current coroutine"
/// inside the signal handler, so it holds plain addresses and borrowed bytes
/// rather than anything that must be dropped.
#[derive(Debug, Clone)]
pub struct FaultTarget {
    /// The running coroutine's guard page, `[start, end)`: a fault inside it
    /// is this coroutine's overflow.
    pub guard: Range<usize>,
    /// The coroutine's usable stack size in bytes, reported in KiB.
    pub usable_size: usize,
    /// The coroutine's id, as shown in the report.
    pub id: u64,
    /// The coroutine's name as a pointer and byte length, or `None` for an
    /// unnamed coroutine. The bytes must stay readable while the coroutine
    /// runs; they are written out as-is (and truncated if very long).
    pub name: Option<(*const u8, usize)>,
}

/// What the handler needs, published before the handler is installed and
/// never changed afterwards.
struct Installed {
    /// The runtime's "which coroutine runs here?" function (first caller's).
    lookup: fn() -> Option<FaultTarget>,
    /// The SIGSEGV action that was in place before ours.
    prev_segv: libc::sigaction,
    /// The SIGBUS action that was in place before ours.
    prev_bus: libc::sigaction,
}

/// The handler's state. Set once, under [`INSTALL_LOCK`], before either signal
/// action is switched to [`on_fault`]; the handler reads it with one acquire
/// load, which pairs with the release store inside `OnceLock::get_or_init`.
/// (A handler can only run after the `sigaction` call that installed it, and
/// the kernel orders that call before the delivery, so the store is visible.)
static HANDLER: OnceLock<Installed> = OnceLock::new();

/// Set once both signal actions are ours. `install`'s fast path is a single
/// acquire load of this cell, which pairs with the release store of its
/// `set` at the end of `install_slow`.
static INSTALLED: OnceLock<()> = OnceLock::new();

/// Serialises `install_slow`, so that two first callers cannot both read the
/// "previous" actions and one of them record the other's handler as previous
/// (which would make the handler chain to itself forever).
static INSTALL_LOCK: Mutex<()> = Mutex::new(());

/// Extra room on an alternate signal stack that we map ourselves, above the
/// kernel's minimum: the signal frame (which grows with AVX-512 or SVE state),
/// our handler, and whatever handler we chain to all share it.
const ALTSTACK_MARGIN: usize = 64 * 1024;

/// Longest coroutine name written in a report, so that the fixed buffer always
/// has room for the rest of the line.
const NAME_LIMIT: usize = 256;

/// Installs the overflow handler for SIGSEGV and SIGBUS, process-wide, and
/// gives the calling thread an alternate signal stack.
///
/// `lookup` must be async-signal-safe: it runs inside the handler. Only one
/// `lookup` is ever used, the first one recorded (the runtime always passes
/// the same function). Once a call has succeeded, later calls return `Ok(())`
/// after one atomic load; they do *not* set up an alternate stack for their
/// thread, so every thread that runs coroutines must call
/// [`ensure_thread_altstack`] itself.
///
/// # Errors
///
/// The OS error if the calling thread's alternate stack cannot be mapped or a
/// signal action cannot be read or set. A failed call may be retried.
pub fn install(lookup: fn() -> Option<FaultTarget>) -> io::Result<()> {
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    install_slow(lookup)
}

/// The one-time part of [`install`].
#[cold]
#[inline(never)]
fn install_slow(lookup: fn() -> Option<FaultTarget>) -> io::Result<()> {
    try_ensure_thread_altstack()?;
    let _serial = INSTALL_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    // Read the previous actions only once, even across a failed attempt: a
    // retry must not mistake our own handler, installed by the failed
    // attempt, for the previous one.
    let handler = match HANDLER.get() {
        Some(handler) => handler,
        None => {
            let installed = Installed {
                lookup,
                prev_segv: current_action(libc::SIGSEGV)?,
                prev_bus: current_action(libc::SIGBUS)?,
            };
            HANDLER.get_or_init(|| installed)
        }
    };
    set_fault_action(libc::SIGSEGV, &handler.prev_segv)?;
    set_fault_action(libc::SIGBUS, &handler.prev_bus)?;
    // Nobody else sets it: the lock is held and the cell was empty above.
    let _ = INSTALLED.set(());
    Ok(())
}

/// Gives the calling thread an alternate signal stack if it has none, so the
/// overflow handler can run when the thread's coroutine stack is exhausted.
///
/// After the first call on a thread this is a thread-local flag check. A stack
/// the thread already has (Rust's std installs one on the main thread and on
/// threads it spawns) is kept; otherwise one is mapped, with its own guard
/// page, and unmapped at thread exit.
///
/// If the mapping fails the thread goes on without one, and an overflow there
/// is a plain SIGSEGV; the next call tries again. [`install`] reports that
/// error for its own thread.
pub fn ensure_thread_altstack() {
    // Deliberately ignored, as documented: there is no better fallback than
    // the bare fault, and the caller is usually a thread start-up path.
    let _ = try_ensure_thread_altstack();
}

/// The per-thread alternate signal stack state.
struct ThreadAltStack {
    /// Whether this thread is known to have an enabled alternate stack.
    checked: Cell<bool>,
    /// The alternate stack we mapped for this thread, if we had to.
    owned: Cell<Option<GuardedStack>>,
}

thread_local! {
    /// This thread's alternate-stack state; its destructor frees our mapping.
    static ALTSTACK: ThreadAltStack = const {
        ThreadAltStack { checked: Cell::new(false), owned: Cell::new(None) }
    };
}

/// [`ensure_thread_altstack`], with the error.
fn try_ensure_thread_altstack() -> io::Result<()> {
    ALTSTACK
        .try_with(|alt| {
            if alt.checked.get() {
                return Ok(());
            }
            ensure_altstack_slow(alt)
        })
        // The thread-local is already destroyed: the thread is exiting and
        // runs no more coroutines.
        .unwrap_or(Ok(()))
}

/// Checks for an existing alternate stack and maps one if there is none.
#[cold]
#[inline(never)]
fn ensure_altstack_slow(alt: &ThreadAltStack) -> io::Result<()> {
    if current_altstack()?.ss_flags & libc::SS_DISABLE == 0 {
        alt.checked.set(true);
        return Ok(());
    }
    // A GuardedStack is exactly what an alternate stack wants: a mapping with
    // a guard page below it, so a handler that overflows faults at once.
    let stack = GuardedStack::new(altstack_size())?;
    let new = libc::stack_t {
        ss_sp: stack.guard_range().end as *mut c_void,
        ss_flags: 0,
        ss_size: stack.usable_size(),
    };
    // SAFETY: `new` describes the usable part of `stack`, which stays mapped
    // until `ThreadAltStack::drop` has disabled it again; a null old-stack
    // pointer is allowed.
    if unsafe { libc::sigaltstack(&new, ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    alt.owned.set(Some(stack));
    alt.checked.set(true);
    Ok(())
}

impl Drop for ThreadAltStack {
    fn drop(&mut self) {
        let Some(stack) = self.owned.take() else {
            return;
        };
        let ours = stack.guard_range().end;
        let still_ours = current_altstack()
            .is_ok_and(|cur| cur.ss_flags & libc::SS_DISABLE == 0 && cur.ss_sp as usize == ours);
        if still_ours && disable_altstack(stack.usable_size()).is_err() {
            // EPERM: we are running on it (a thread ending inside a signal
            // handler). Leaking one small mapping beats unmapping the stack
            // under our feet.
            mem::forget(stack);
        }
        // Otherwise `stack` drops here, unmapping memory that no signal can
        // be delivered on any more.
    }
}

/// Turns off the calling thread's alternate signal stack.
fn disable_altstack(size: usize) -> io::Result<()> {
    let disable = libc::stack_t {
        ss_sp: ptr::null_mut(),
        ss_flags: libc::SS_DISABLE,
        // Ignored by Linux when disabling, but some systems check it against
        // MINSIGSTKSZ even then.
        ss_size: size,
    };
    // SAFETY: disabling takes no memory; a null old-stack pointer is allowed.
    if unsafe { libc::sigaltstack(&disable, ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The size we give an alternate stack we map: the larger of the compile-time
/// `SIGSTKSZ` and the kernel's run-time minimum (which grows with the CPU's
/// register state), plus [`ALTSTACK_MARGIN`].
fn altstack_size() -> usize {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let minimum = {
        // SAFETY: getauxval only reads the auxiliary vector; it returns 0 for
        // an entry the kernel did not supply.
        let kernel = unsafe { libc::getauxval(libc::AT_MINSIGSTKSZ) };
        usize::try_from(kernel).unwrap_or(0).max(libc::SIGSTKSZ)
    };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let minimum = libc::SIGSTKSZ;
    minimum + ALTSTACK_MARGIN
}

/// The calling thread's current alternate signal stack.
fn current_altstack() -> io::Result<libc::stack_t> {
    let mut current = libc::stack_t {
        ss_sp: ptr::null_mut(),
        ss_flags: 0,
        ss_size: 0,
    };
    // SAFETY: a null new-stack pointer only queries; `current` is a valid
    // place for the kernel to write the answer.
    if unsafe { libc::sigaltstack(ptr::null(), &mut current) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(current)
}

/// An all-zero `sigaction`, which is `SIG_DFL` with no flags and no mask.
fn empty_action() -> libc::sigaction {
    // SAFETY: `sigaction` is a plain C struct of integers, a signal set and
    // (on Linux) an `Option` of a function pointer; all-zero bytes are a
    // valid value of each.
    unsafe { mem::zeroed() }
}

/// Reads `signum`'s current action.
fn current_action(signum: c_int) -> io::Result<libc::sigaction> {
    let mut action = empty_action();
    // SAFETY: a null new action only queries; `action` is a valid place for
    // the old one.
    if unsafe { libc::sigaction(signum, ptr::null(), &mut action) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(action)
}

/// Makes [`on_fault`] the action for `signum`, running on the alternate stack
/// with the signal mask the previous handler asked for.
fn set_fault_action(signum: c_int, prev: &libc::sigaction) -> io::Result<()> {
    let mut action = empty_action();
    action.sa_sigaction = on_fault_address();
    action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
    // A chained handler then runs with the mask it was installed with.
    action.sa_mask = prev.sa_mask;
    // SAFETY: `action` is fully initialised and names a handler with the
    // three-argument signature that SA_SIGINFO requires; a null old-action
    // pointer is allowed.
    if unsafe { libc::sigaction(signum, &action, ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// [`on_fault`] as the integer that `sigaction`'s handler field holds.
fn on_fault_address() -> libc::sighandler_t {
    on_fault as *const () as libc::sighandler_t
}

/// The SIGSEGV/SIGBUS handler (see the module documentation).
extern "C" fn on_fault(signum: c_int, info: *mut siginfo_t, context: *mut c_void) {
    let (code, addr) = if info.is_null() {
        (0, 0)
    } else {
        // SAFETY: for an SA_SIGINFO handler the kernel passes a valid
        // siginfo; `si_addr` is meaningful for SIGSEGV and SIGBUS, the only
        // signals this handler is installed for.
        unsafe { ((*info).si_code, (*info).si_addr() as usize) }
    };
    let Some(handler) = HANDLER.get() else {
        // Unreachable: HANDLER is published before this function is
        // installed. Fall back to what the kernel would have done.
        restore_and_return(signum, &empty_action(), code);
        return;
    };
    // A positive si_code means the kernel raised the signal for a fault at
    // `addr`; a kill(2) or raise(3) carries no fault address worth checking.
    if code > 0 {
        if let Some(target) = (handler.lookup)() {
            if target.guard.contains(&addr) {
                report_overflow(&target);
            }
        }
    }
    let prev = if signum == libc::SIGBUS {
        &handler.prev_bus
    } else {
        &handler.prev_segv
    };
    // SAFETY: `signum`, `info` and `context` are the kernel's arguments to
    // this handler, passed on unchanged, as a directly installed `prev` would
    // have received them.
    unsafe { chain(prev, signum, info, context, code) }
}

/// Hands a fault that is not a coroutine overflow to the previous action.
///
/// # Safety
///
/// Must be called from a signal handler for `signum`, with the `info` and
/// `context` the kernel passed to it, and `prev` must be an action read from
/// the kernel (so its handler field is `SIG_DFL`, `SIG_IGN` or a function of
/// the kind its `SA_SIGINFO` flag says).
unsafe fn chain(
    prev: &libc::sigaction,
    signum: c_int,
    info: *mut siginfo_t,
    context: *mut c_void,
    code: c_int,
) {
    if prev.sa_flags & libc::SA_RESETHAND != 0 {
        // A one-shot handler: the kernel would have reset the action to the
        // default before calling it, so do the same on its behalf.
        // SAFETY: the all-zero action is SIG_DFL, which needs no function; a
        // null old-action pointer is allowed. sigaction is
        // async-signal-safe.
        unsafe { libc::sigaction(signum, &empty_action(), ptr::null_mut()) };
    }
    match prev.sa_sigaction {
        libc::SIG_DFL | libc::SIG_IGN => restore_and_return(signum, prev, code),
        function if prev.sa_flags & libc::SA_SIGINFO != 0 => {
            // SAFETY: with SA_SIGINFO, a handler that is neither SIG_DFL nor
            // SIG_IGN is the address of the three-argument function that was
            // installed (the caller guarantees `prev` came from the kernel);
            // it is non-zero, since zero is SIG_DFL, matched above.
            let function: SigactionFn = unsafe { mem::transmute(function) };
            function(signum, info, context);
        }
        function => {
            // SAFETY: without SA_SIGINFO, the handler field holds the
            // non-zero address of a one-argument `sa_handler` function (same
            // caller guarantee and reasoning as above).
            let function: extern "C" fn(c_int) = unsafe { mem::transmute(function) };
            function(signum);
        }
    }
}

/// Puts back a `SIG_DFL` or `SIG_IGN` action and lets it take effect.
///
/// For a fault (`code > 0`) returning is enough: the faulting instruction runs
/// again and the kernel applies the restored action; a synchronous fault that
/// is ignored is still fatal. A sent signal does not repeat, so under
/// `SIG_DFL` it is raised again; it stays pending (blocked while this handler
/// runs) and is delivered, with the default action, once we return.
fn restore_and_return(signum: c_int, prev: &libc::sigaction, code: c_int) {
    // SAFETY: `prev` is a fully initialised action whose handler is SIG_DFL
    // or SIG_IGN, which need no function; a null old-action pointer is
    // allowed. sigaction is async-signal-safe.
    unsafe { libc::sigaction(signum, prev, ptr::null_mut()) };
    if code <= 0 && prev.sa_sigaction == libc::SIG_DFL {
        // SAFETY: raise has no memory preconditions and is async-signal-safe.
        unsafe { libc::raise(signum) };
    }
}

/// Writes the overflow report with a single `write(2)` and aborts.
fn report_overflow(target: &FaultTarget) -> ! {
    let mut line = LineBuf::new();
    let name = match target.name {
        Some((bytes, len)) if !bytes.is_null() => {
            // SAFETY: `FaultTarget::name` promises `len` readable bytes at
            // `bytes` while the coroutine runs, and it is running.
            unsafe { std::slice::from_raw_parts(bytes, len.min(NAME_LIMIT)) }
        }
        _ => b"unnamed",
    };
    format_report(&mut line, target.id, name, target.usable_size);
    let bytes = line.as_bytes();
    // SAFETY: `bytes` is a live buffer of `bytes.len()` bytes; write is
    // async-signal-safe. Its result is ignored: there is nothing left to do
    // about a failed report but abort anyway.
    let _ = unsafe { libc::write(libc::STDERR_FILENO, bytes.as_ptr().cast(), bytes.len()) };
    std::process::abort()
}

/// Formats `coroutine <id> (<name>) overflowed its <N> KiB stack\n`.
fn format_report(line: &mut LineBuf, id: u64, name: &[u8], usable_size: usize) {
    line.push(b"coroutine ");
    line.push_decimal(id);
    line.push(b" (");
    line.push(name);
    line.push(b") overflowed its ");
    // usize is at most 64 bits on every target Rust supports.
    line.push_decimal((usable_size / 1024) as u64);
    line.push(b" KiB stack\n");
}

/// A fixed-size, allocation-free line buffer for use inside a signal handler.
struct LineBuf {
    /// The bytes written so far, then unused space.
    bytes: [u8; LineBuf::CAPACITY],
    /// How many bytes of `bytes` are written.
    len: usize,
}

impl LineBuf {
    /// Room for the fixed text, two 20-digit numbers and a [`NAME_LIMIT`]
    /// name, with slack.
    const CAPACITY: usize = 384;

    /// An empty buffer.
    fn new() -> LineBuf {
        LineBuf {
            bytes: [0; LineBuf::CAPACITY],
            len: 0,
        }
    }

    /// Appends as much of `text` as fits; the rest is cut off.
    fn push(&mut self, text: &[u8]) {
        let room = &mut self.bytes[self.len..];
        let n = text.len().min(room.len());
        room[..n].copy_from_slice(&text[..n]);
        self.len += n;
    }

    /// Appends `value` in decimal.
    fn push_decimal(&mut self, mut value: u64) {
        // u64::MAX has 20 decimal digits.
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            // `value % 10` is below 10, so the cast keeps it exactly.
            digits[start] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        self.push(&digits[start..]);
    }

    /// The bytes written so far.
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Formats a report into a fresh buffer and returns it as a string.
    fn report(id: u64, name: &[u8], usable_size: usize) -> String {
        let mut line = LineBuf::new();
        format_report(&mut line, id, name, usable_size);
        String::from_utf8(line.as_bytes().to_vec()).expect("ASCII report")
    }

    /// The report has exactly the documented shape.
    #[test]
    fn report_format() {
        assert_eq!(
            report(7, b"overflow-test", 64 * 1024),
            "coroutine 7 (overflow-test) overflowed its 64 KiB stack\n"
        );
        assert_eq!(
            report(0, b"unnamed", 1 << 20),
            "coroutine 0 (unnamed) overflowed its 1024 KiB stack\n"
        );
        assert_eq!(
            report(u64::MAX, b"x", 1023),
            "coroutine 18446744073709551615 (x) overflowed its 0 KiB stack\n"
        );
    }

    /// The longest name the handler passes still leaves room for the end of
    /// the line.
    #[test]
    fn longest_name_fits() {
        let name = vec![b'n'; NAME_LIMIT];
        let line = report(u64::MAX, &name, usize::MAX);
        assert!(line.ends_with(" KiB stack\n"), "truncated: {line:?}");
    }

    /// Pushing past the capacity truncates instead of panicking.
    #[test]
    fn line_buffer_truncates() {
        let mut line = LineBuf::new();
        line.push(&[b'a'; LineBuf::CAPACITY + 10]);
        line.push_decimal(42);
        assert_eq!(line.as_bytes().len(), LineBuf::CAPACITY);
    }

    /// The current thread's alternate stack, which must be enabled.
    fn enabled_altstack() -> libc::stack_t {
        let current = current_altstack().expect("query sigaltstack");
        assert_eq!(current.ss_flags & libc::SS_DISABLE, 0, "no alternate stack");
        current
    }

    /// Whether any mapping in /proc/self/maps overlaps `range`.
    fn mapped(range: Range<usize>) -> bool {
        let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
        maps.lines().any(|line| {
            let (start, end) = line
                .split_whitespace()
                .next()
                .and_then(|r| r.split_once('-'))
                .expect("maps line starts with a range");
            let start = usize::from_str_radix(start, 16).expect("hex start");
            let end = usize::from_str_radix(end, 16).expect("hex end");
            start < range.end && range.start < end
        })
    }

    /// A thread without an alternate stack gets one of ours, big enough, and
    /// it is unmapped when the thread exits.
    #[test]
    fn altstack_is_mapped_and_freed() {
        let range = std::thread::spawn(|| {
            // Drop whatever std gave this thread so that ours is needed.
            // std's mapping stays mapped until its own clean-up, which only
            // disables the current alternate stack and unmaps its own.
            disable_altstack(libc::SIGSTKSZ).expect("disable sigaltstack");
            ensure_thread_altstack();
            let ours = enabled_altstack();
            assert!(ours.ss_size >= altstack_size(), "size {}", ours.ss_size);
            // The second call keeps the same stack.
            ensure_thread_altstack();
            assert_eq!(enabled_altstack().ss_sp, ours.ss_sp);
            let start = ours.ss_sp as usize;
            let range = start..start + ours.ss_size;
            assert!(mapped(range.clone()));
            range
        })
        .join()
        .expect("altstack thread");
        // Other tests run in parallel and may map something new over the
        // freed addresses, so look for our exact mapping, not any overlap.
        let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
        let ours = format!("{:x}-{:x} ", range.start, range.end);
        assert!(
            !maps.lines().any(|l| l.starts_with(&ours)),
            "alternate stack {range:#x?} not unmapped"
        );
    }

    /// A thread that already has an alternate stack keeps it.
    #[test]
    fn existing_altstack_is_kept() {
        std::thread::spawn(|| {
            let before = enabled_altstack();
            ensure_thread_altstack();
            let after = enabled_altstack();
            assert_eq!((before.ss_sp, before.ss_size), (after.ss_sp, after.ss_size));
            ALTSTACK.with(|alt| assert!(alt.checked.get()));
        })
        .join()
        .expect("altstack thread");
    }

    /// Installing twice is harmless, and afterwards both signals run our
    /// handler on the alternate stack.
    #[test]
    fn install_is_idempotent() {
        fn nobody() -> Option<FaultTarget> {
            None
        }
        install(nobody).expect("first install");
        install(nobody).expect("second install");
        for signum in [libc::SIGSEGV, libc::SIGBUS] {
            let action = current_action(signum).expect("read action");
            assert_eq!(action.sa_sigaction, on_fault_address());
            assert_ne!(action.sa_flags & libc::SA_ONSTACK, 0);
            assert_ne!(action.sa_flags & libc::SA_SIGINFO, 0);
        }
        let handler = HANDLER.get().expect("state published");
        assert_ne!(handler.prev_segv.sa_sigaction, on_fault_address());
    }
}
