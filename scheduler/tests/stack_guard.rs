//! Guarded coroutine stacks: the guard page, painting, and the overflow
//! report, checked from outside the crate.
//!
//! The overflow tests must crash a process, so they re-run this test binary as
//! a child (the technique of rayon's `tests/stack_overflow_crash.rs`): the
//! parent sets [`CHILD_ENV`] to a scenario name and runs only the test that
//! asked, and that test, seeing the variable, plays the child's part instead.

use std::hint::black_box;
use std::ops::Range;
use std::os::unix::process::ExitStatusExt;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};

use corosensei::stack::Stack;
use corosensei::{Coroutine, CoroutineResult, Yielder};

use coscheduler::stack::__private::{FaultTarget, install};
use coscheduler::stack::{GuardedStack, MIN_STACK_SIZE};

/// Names the scenario a re-executed child should play.
const CHILD_ENV: &str = "COSCHEDULER_STACK_GUARD_CHILD";

/// The report the overflow child must print.
const OVERFLOW_REPORT: &str = "coroutine 7 (overflow-test) overflowed its 64 KiB stack";

/// One line of /proc/self/maps: its address range and permission string.
struct Mapping {
    /// The mapped addresses, `[start, end)`.
    range: Range<usize>,
    /// The permissions, such as `rw-p` or `---p`.
    perms: String,
}

/// Reads this process's mappings.
fn mappings() -> Vec<Mapping> {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    maps.lines()
        .map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next().expect("address range");
            let perms = fields.next().expect("permissions").to_owned();
            let (start, end) = range.split_once('-').expect("start-end");
            let start = usize::from_str_radix(start, 16).expect("hex start");
            let end = usize::from_str_radix(end, 16).expect("hex end");
            Mapping {
                range: start..end,
                perms,
            }
        })
        .collect()
}

/// The permissions of the mapping that wholly contains `range`, if one does.
///
/// Containment rather than equality: the kernel may merge our region with an
/// adjacent mapping of the same kind.
fn perms_of(range: &Range<usize>) -> Option<String> {
    mappings()
        .into_iter()
        .find(|m| m.range.start <= range.start && range.end <= m.range.end)
        .map(|m| m.perms)
}

/// Whether any mapping overlaps `range`.
fn any_mapped(range: &Range<usize>) -> bool {
    mappings()
        .iter()
        .any(|m| m.range.start < range.end && range.start < m.range.end)
}

/// The host page size.
fn page() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).expect("positive page size")
}

/// The guard page is `PROT_NONE` and the usable part above it read-write.
#[test]
fn guard_page_is_prot_none() {
    let stack = GuardedStack::new(64 * 1024).expect("map a stack");
    let guard = stack.guard_range();
    assert_eq!(guard.len(), page());
    assert_eq!(guard.start, stack.limit().get());
    assert_eq!(
        perms_of(&guard).as_deref(),
        Some("---p"),
        "guard {guard:#x?}"
    );
    let usable = guard.end..stack.base().get();
    assert_eq!(usable.len(), stack.usable_size());
    assert_eq!(
        perms_of(&usable).as_deref(),
        Some("rw-p"),
        "usable {usable:#x?}"
    );
}

/// Requested sizes round up to whole pages, never below the minimum.
#[test]
fn usable_size_rounds_up() {
    let page = page();
    let cases = [
        (0, MIN_STACK_SIZE),
        (1, MIN_STACK_SIZE),
        (MIN_STACK_SIZE, MIN_STACK_SIZE),
        (MIN_STACK_SIZE + 1, MIN_STACK_SIZE + page),
        (100 * 1024 + 1, 100 * 1024 + page),
        (1 << 20, 1 << 20),
    ];
    for (requested, expected) in cases {
        let stack = GuardedStack::new(requested).expect("map a stack");
        assert_eq!(stack.usable_size(), expected, "requested {requested}");
        assert_eq!(
            stack.base().get() - stack.limit().get(),
            expected + page,
            "mapping for {requested} is usable + one guard page"
        );
    }
    let too_big = GuardedStack::new(usize::MAX - 1).expect_err("cannot map ~usize::MAX");
    assert_eq!(too_big.kind(), std::io::ErrorKind::InvalidInput);
}

/// Dropping a stack unmaps both its guard page and its usable part.
///
/// Checked in a child process: in this one, any other thread (another test's,
/// the test harness's, a sanitizer's allocator) may map memory into the freed
/// range between the drop and the check.
#[test]
fn drop_unmaps() {
    if child_scenario().is_none() {
        let output = run_child("drop_unmaps", "drop-unmaps");
        assert!(
            output.status.success(),
            "child ended with {:?}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        return;
    }
    let stack = GuardedStack::new(256 * 1024).expect("map a stack");
    let whole = stack.limit().get()..stack.base().get();
    assert!(any_mapped(&whole));
    drop(stack);
    assert!(!any_mapped(&whole), "{whole:#x?} still mapped after drop");
}

/// Recurses `depth` times with about 1 KiB of written locals per frame, so
/// stack use grows linearly with `depth`.
#[inline(never)]
fn recurse(depth: usize) -> usize {
    let mut frame = [0u8; 1024];
    black_box(&mut frame);
    if depth == 0 {
        return usize::from(frame[0]);
    }
    // Not a tail call: the addition keeps this frame alive under the next.
    recurse(black_box(depth - 1)) + usize::from(black_box(frame[1]))
}

/// Paints `stack`, runs `recurse(depth)` on it in a coroutine, and returns the
/// stack with its high-water mark.
fn mark_after(mut stack: GuardedStack, depth: usize) -> (GuardedStack, usize) {
    stack.paint();
    let mut co = Coroutine::with_stack(stack, |_: &Yielder<usize, ()>, depth| recurse(depth));
    match co.resume(depth) {
        CoroutineResult::Return(sum) => assert_eq!(sum, 0),
        CoroutineResult::Yield(()) => panic!("recursion does not yield"),
    }
    let stack = co.into_stack();
    let mark = stack.high_water_mark().expect("painted");
    (stack, mark)
}

/// The high-water mark grows with recursion depth, by at least the frames'
/// locals, and never exceeds the usable size.
#[test]
fn high_water_mark_tracks_depth() {
    let mut stack = GuardedStack::new(512 * 1024).expect("map a stack");
    assert_eq!(stack.high_water_mark(), None, "never painted");
    stack.paint();
    assert_eq!(stack.high_water_mark(), Some(0), "painted, never run");

    let mut marks = Vec::new();
    for depth in [8, 64, 256] {
        let (back, mark) = mark_after(stack, depth);
        stack = back;
        assert!(
            mark >= depth * 1024,
            "depth {depth}: mark {mark} below the locals"
        );
        assert!(
            mark <= stack.usable_size(),
            "depth {depth}: mark {mark} too large"
        );
        marks.push(mark);
    }
    assert!(
        marks.windows(2).all(|w| w[0] < w[1]),
        "marks {marks:?} do not grow"
    );
    // Equal depths measure the same once the stack is repainted.
    let (_, again) = mark_after(stack, 64);
    assert_eq!(again, marks[1]);
}

/// Runs the test called `name` in a child copy of this binary, playing
/// `scenario`, and returns how it ended. A handler that neither reports nor
/// chains would re-run the faulting instruction forever; the child's time
/// limit turns that into a failure.
fn run_child(name: &str, scenario: &str) -> Output {
    testkit::run_test_in_child(name, CHILD_ENV, scenario)
}

/// The scenario this process should play, if it is a child.
fn child_scenario() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// Turns off core dumps, so that the deliberate crashes below are quick and
/// leave nothing behind.
fn no_core_dumps() {
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `none` is a valid rlimit; lowering RLIMIT_CORE affects only this
    // (child) process.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
    assert_eq!(rc, 0, "setrlimit(RLIMIT_CORE)");
}

/// The child's running coroutine: its guard page start and end, and usable
/// size. Zero start means "no coroutine running".
static GUARD_START: AtomicUsize = AtomicUsize::new(0);
/// See [`GUARD_START`].
static GUARD_END: AtomicUsize = AtomicUsize::new(0);
/// See [`GUARD_START`].
static USABLE: AtomicUsize = AtomicUsize::new(0);

/// The running coroutine's name.
const NAME: &str = "overflow-test";

/// The child's `lookup`: async-signal-safe, it only loads atomics.
fn lookup() -> Option<FaultTarget> {
    // Relaxed: the statics are stored by this same thread before the fault.
    let start = GUARD_START.load(Ordering::Relaxed);
    (start != 0).then(|| FaultTarget {
        guard: start..GUARD_END.load(Ordering::Relaxed),
        usable_size: USABLE.load(Ordering::Relaxed),
        id: 7,
        name: Some((NAME.as_ptr(), NAME.len())),
    })
}

/// Publishes `stack` as the running coroutine's stack for [`lookup`].
fn publish(stack: &GuardedStack) {
    let guard = stack.guard_range();
    GUARD_END.store(guard.end, Ordering::Relaxed);
    USABLE.store(stack.usable_size(), Ordering::Relaxed);
    GUARD_START.store(guard.start, Ordering::Relaxed);
}

/// Recurses until something stops it: here, the guard page.
#[inline(never)]
fn recurse_without_bound(depth: usize) -> usize {
    let mut frame = [0u8; 512];
    black_box(&mut frame);
    if black_box(depth) == usize::MAX {
        return 0;
    }
    recurse_without_bound(depth + 1) + usize::from(black_box(frame[1]))
}

/// Child: overflows a 64 KiB coroutine stack under the handler.
fn overflow_child() -> ! {
    no_core_dumps();
    install(lookup).expect("install the overflow handler");
    let stack = GuardedStack::new(64 * 1024).expect("map a stack");
    publish(&stack);
    let mut co = Coroutine::with_stack(stack, |_: &Yielder<(), ()>, ()| recurse_without_bound(0));
    let _ = co.resume(());
    // Reaching this line means the overflow went unnoticed.
    std::process::exit(3)
}

/// Child: faults outside the running coroutine's guard page, either at a
/// low unmapped address or in the guard page of a stack nobody runs on.
fn stray_fault_child(scenario: &str) -> ! {
    no_core_dumps();
    match scenario {
        "chain-siginfo" => set_previous_handler(previous_siginfo as *const (), libc::SA_SIGINFO),
        "chain-plain" => set_previous_handler(previous_plain as *const (), 0),
        _ => {}
    }
    install(lookup).expect("install the overflow handler");
    let running = GuardedStack::new(64 * 1024).expect("map a stack");
    publish(&running);
    let idle = GuardedStack::new(64 * 1024).expect("map a stack");
    let target: *mut u8 = match scenario {
        // Not null: that would trip the standard library's debug check
        // (a SIGABRT) before any fault. Page zero is never mapped.
        "low-address" | "chain-siginfo" | "chain-plain" => {
            std::ptr::without_provenance_mut(STRAY_ADDRESS)
        }
        "other-guard" => std::ptr::without_provenance_mut(idle.guard_range().start + 64),
        other => panic!("unknown child scenario {other}"),
    };
    // SAFETY: deliberately broken: the address is not mapped writable, and
    // this write exists to fault. It is non-null and aligned for u8, so the
    // fault, not a debug check, is what stops it, and the process never
    // continues past it.
    unsafe { std::ptr::write_volatile(black_box(target), 1) };
    std::process::exit(3)
}

/// The unmapped address the stray-fault children write to.
const STRAY_ADDRESS: usize = 16;

/// What the previous handlers print before exiting with
/// [`PREVIOUS_HANDLER_EXIT`].
const PREVIOUS_HANDLER_MARK: &[u8] = b"previous handler ran\n";

/// The exit code of a child whose previous handler received the fault.
const PREVIOUS_HANDLER_EXIT: i32 = 42;

/// Installs `handler` for SIGSEGV with `flags`, as another library would have
/// before the runtime started.
fn set_previous_handler(handler: *const (), flags: libc::c_int) {
    // SAFETY: all-zero bytes are a valid `sigaction` (SIG_DFL, no flags, an
    // empty mask).
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handler as libc::sighandler_t;
    action.sa_flags = flags;
    // SAFETY: `handler` is an `extern "C"` function of the signature that
    // `flags` announces (three arguments with SA_SIGINFO, one without); a null
    // old-action pointer is allowed.
    let rc = unsafe { libc::sigaction(libc::SIGSEGV, &action, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "install the previous handler");
}

/// Prints the mark and exits at once, from inside a signal handler.
fn previous_handler_exit(code: i32) -> ! {
    // SAFETY: write(2) and _exit(2) are async-signal-safe, and the mark is a
    // live static buffer of the given length.
    unsafe {
        libc::write(
            libc::STDERR_FILENO,
            PREVIOUS_HANDLER_MARK.as_ptr().cast(),
            PREVIOUS_HANDLER_MARK.len(),
        );
        libc::_exit(code)
    }
}

/// A previous SA_SIGINFO handler: it must get the fault's own siginfo.
extern "C" fn previous_siginfo(
    _signum: libc::c_int,
    info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    // SAFETY: the overflow handler passes on the kernel's siginfo, valid for
    // the duration of this call.
    let addr = unsafe { (*info).si_addr() } as usize;
    previous_handler_exit(if addr == STRAY_ADDRESS {
        PREVIOUS_HANDLER_EXIT
    } else {
        43
    })
}

/// A previous one-argument handler.
extern "C" fn previous_plain(signum: libc::c_int) {
    previous_handler_exit(if signum == libc::SIGSEGV {
        PREVIOUS_HANDLER_EXIT
    } else {
        44
    })
}

/// The exit signal, or a panic describing how the child ended otherwise.
fn death_signal(output: &Output) -> i32 {
    output.status.signal().unwrap_or_else(|| {
        panic!(
            "child exited with {:?} instead of dying by a signal\nstdout:\n{}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        )
    })
}

/// An overflow into the running coroutine's guard page prints the report
/// naming the coroutine and aborts.
#[test]
fn overflow_in_guard_page_is_reported() {
    if child_scenario().is_some() {
        overflow_child();
    }
    let output = run_child("overflow_in_guard_page_is_reported", "overflow");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(OVERFLOW_REPORT),
        "no report in stderr:\n{stderr}"
    );
    assert_eq!(death_signal(&output), libc::SIGABRT, "stderr:\n{stderr}");
}

/// A fault at an address unrelated to any coroutine goes to the previous
/// handler and ends the process with SIGSEGV, without a coroutine report.
#[test]
fn stray_fault_is_chained_to_sigsegv() {
    check_stray_fault("stray_fault_is_chained_to_sigsegv", "low-address");
}

/// A fault in the guard page of a stack other than the running coroutine's
/// is not reported as that coroutine's overflow.
#[test]
fn fault_in_another_guard_is_chained() {
    check_stray_fault("fault_in_another_guard_is_chained", "other-guard");
}

/// A fault that is not an overflow reaches a previous `SA_SIGINFO` handler,
/// with the kernel's siginfo.
#[test]
fn stray_fault_reaches_previous_siginfo_handler() {
    check_previous_handler(
        "stray_fault_reaches_previous_siginfo_handler",
        "chain-siginfo",
    );
}

/// A fault that is not an overflow reaches a previous one-argument handler.
#[test]
fn stray_fault_reaches_previous_plain_handler() {
    check_previous_handler("stray_fault_reaches_previous_plain_handler", "chain-plain");
}

/// Plays a chaining child, or runs one and checks that the previous handler
/// got the fault.
fn check_previous_handler(name: &str, scenario: &str) {
    if let Some(scenario) = child_scenario() {
        stray_fault_child(&scenario);
    }
    let output = run_child(name, scenario);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(PREVIOUS_HANDLER_EXIT),
        "stderr:\n{stderr}"
    );
    assert!(stderr.contains("previous handler ran"), "stderr:\n{stderr}");
    assert!(
        !stderr.contains("overflowed its"),
        "unexpected report:\n{stderr}"
    );
}

/// Plays a stray-fault child, or runs one and checks that it died by SIGSEGV
/// without printing the coroutine report.
fn check_stray_fault(name: &str, scenario: &str) {
    if let Some(scenario) = child_scenario() {
        stray_fault_child(&scenario);
    }
    let output = run_child(name, scenario);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(death_signal(&output), libc::SIGSEGV, "stderr:\n{stderr}");
    assert!(
        !stderr.contains("overflowed its"),
        "unexpected report:\n{stderr}"
    );
}
