//! Helpers shared by the sleep, timeout and io integration tests: a
//! watchdog so that no test can hang, a small runtime, and the fd limit.
#![allow(dead_code, unreachable_pub)]

use std::sync::mpsc;
use std::time::Duration;

use coscheduler::Runtime;

/// Aborts the whole test process if it is still alive after `limit`
/// (dropping the guard disarms it). A hung coroutine test cannot be
/// cancelled from outside, so a loud abort is the only bounded outcome.
pub struct Watchdog(Option<mpsc::Sender<()>>);

pub fn watchdog(name: &'static str, limit: Duration) -> Watchdog {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            // Straight to fd 2: the harness's output capture dies with us.
            let msg = format!("watchdog: test `{name}` still running after {limit:?}; aborting\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
            std::process::abort();
        }
    });
    Watchdog(Some(tx))
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.take();
    }
}

/// A runtime with `threads` unpinned workers (the test machine is shared).
pub fn runtime(threads: usize) -> Runtime {
    Runtime::builder()
        .threads(threads)
        .pin_threads(false)
        .build()
        .expect("runtime")
}

/// Raises the soft fd limit to the hard limit; returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid rlimit out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: a valid rlimit in-pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return raised.rlim_cur;
        }
    }
    lim.rlim_cur
}

/// The median and the maximum of some durations.
pub fn median_max(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], *v.last().expect("non-empty"))
}
