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
