//! Helpers shared by the integration tests of every crate in the workspace.
//!
//! Each test binary is a crate of its own, so a helper written in one test
//! file is not visible in another; this crate is where the ones that several
//! files need live, once. It depends on nothing of ours, so that the tests of
//! every crate can use it.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
//!
//! let drops = Arc::new(AtomicUsize::new(0));
//! let guard = testkit::CountDrop(drops.clone());
//! std::thread::spawn(move || drop(guard));
//! testkit::wait_until("the guard to drop", || drops.load(SeqCst) == 1);
//! ```

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// How long [`wait_until`] waits before it fails the test.
pub const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// Polls `f` every millisecond until it is true; panics naming `what` after
/// [`WAIT_LIMIT`], so that a test that would hang fails instead.
///
/// # Panics
/// If `f` is still false after [`WAIT_LIMIT`].
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < WAIT_LIMIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Adds one to its counter when dropped: put one in a coroutine to see that
/// its destructors ran.
pub struct CountDrop(pub Arc<AtomicUsize>);

impl Drop for CountDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// The message of a panic payload (`&str` or `String`), empty for any other
/// payload.
pub fn panic_message(payload: Box<dyn Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// The threads this process has now (entries of `/proc/self/task`).
///
/// # Panics
/// Where `/proc` cannot be read.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("read /proc/self/task")
        .count()
}

/// The thread count once it has dropped to `expected`, or after a second:
/// a joined thread can linger in `/proc/self/task` for a moment after `join`
/// returns.
pub fn settled_thread_count(expected: usize) -> usize {
    settled(expected, thread_count)
}

/// `count()` once it has dropped to `expected`, or its value after a second:
/// for counts the kernel updates a moment after the event (a thread's exit).
pub fn settled(expected: usize, count: impl Fn() -> usize) -> usize {
    let start = Instant::now();
    loop {
        let n = count();
        if n <= expected || start.elapsed() > Duration::from_secs(1) {
            return n;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The memory mappings this process has now (lines of `/proc/self/maps`).
///
/// # Panics
/// Where `/proc` cannot be read.
pub fn mapping_count() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("read /proc/self/maps")
        .lines()
        .count()
}

/// Asserts that the mappings did not grow from `before` by more than the
/// stacks the pool took on meanwhile (`pooled_growth`, two mappings each:
/// stack and guard page) plus a small allowance for the allocator.
///
/// Under a sanitizer (`--cfg coscheduler_asan` or `coscheduler_tsan`) the
/// process maps memory of its own (shadow memory, fake stacks, quarantine,
/// per-fiber state), so the mapping count says nothing about ours there and
/// nothing is asserted.
///
/// # Panics
/// When the mappings grew by more than that, naming the figures.
pub fn assert_mappings_within_pool_growth(before: usize, pooled_growth: usize) {
    if cfg!(any(coscheduler_asan, coscheduler_tsan)) {
        return;
    }
    let after = mapping_count();
    assert!(
        after <= before + 2 * pooled_growth + 8,
        "mappings grew from {before} to {after} ({pooled_growth} more stacks pooled)"
    );
}

/// How long [`run_test_in_child`] lets a child run before it kills it and
/// fails the test.
pub const CHILD_LIMIT: Duration = Duration::from_secs(120);

/// Runs the test `name` of the calling test binary again, alone, in a child
/// process with the environment variable `key` set to `value`, and returns
/// how it ended: its exit status and everything it wrote.
///
/// This is how a test checks what a process prints or how it dies (a stack
/// overflow's message, an abort, a shutdown's stderr line) without ending
/// the test run: the test looks for `key` first and, when set, plays the
/// child's part and returns. The child runs with `--exact --nocapture
/// --test-threads=1`, so no other test's threads run beside it.
///
/// # Panics
/// If the child cannot be started, or is still running after
/// [`CHILD_LIMIT`] (then it is killed first, and its stderr is shown).
pub fn run_test_in_child(name: &str, key: &str, value: &str) -> std::process::Output {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut child = Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(key, value)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the child test");
    // Drained as the child writes, so a chatty child never blocks on a full
    // pipe while we wait for it to exit.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + CHILD_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = stderr.join().unwrap_or_default();
            panic!(
                "child test {name} still running after {CHILD_LIMIT:?}; stderr:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}
