//! Which home a thread has: installing one (a Runtime worker), creating one
//! on first use (a plain thread), shutting it down when the thread exits,
//! and blocking the thread outside coroutines while its home runs.

use std::ptr;
use std::time::Instant;

use super::{DEFAULT_SHUTDOWN_TIMEOUT, Home, SuspendedInfo};
use crate::core::tls;
use crate::sync::Arc;

/// Owns this thread's home and shuts it down when the thread exits.
struct ThreadHome(Option<Arc<Home>>);

impl Drop for ThreadHome {
    fn drop(&mut self) {
        if let Some(home) = self.0.take() {
            // A plain thread is exiting: there is nobody to return an error
            // to, so what could not be unwound is reported here (and
            // counted in `pool::stats().leaked`).
            // SAFETY: this thread owns `home`: it is still installed.
            let owner = unsafe { home.owner_unchecked() };
            for s in owner.shut_down(Instant::now() + DEFAULT_SHUTDOWN_TIMEOUT) {
                eprintln!(
                    "coscheduler: thread context {} ({}) exited with {s} still suspended; leaked",
                    home.id, home.name
                );
            }
            tls::set_home(ptr::null());
        }
    }
}

thread_local! {
    static THREAD_HOME: std::cell::RefCell<ThreadHome> =
        const { std::cell::RefCell::new(ThreadHome(None)) };
}

/// Makes `home` this thread's home; panics if the thread has one.
pub(crate) fn install(home: &Arc<Home>) {
    let installed = THREAD_HOME.with(|t| {
        let mut t = t.borrow_mut();
        if t.0.is_some() {
            return false;
        }
        t.0 = Some(home.clone());
        true
    });
    assert!(installed, "this thread already has an AioContext");
    let _ = home.owner_thread.set(std::thread::current());
    // Every thread that runs coroutines has a home: this is where the
    // overflow reporter learns about it.
    if let Err(e) = crate::stack::overflow::install(crate::core::overflow_lookup) {
        eprintln!("coscheduler: stack overflow reports unavailable: {e}");
    }
    crate::stack::overflow::ensure_thread_altstack();
    tls::set_home(Arc::as_ptr(home));
}

/// This thread's home, created (without an event loop) on first use.
pub(crate) fn current() -> Arc<Home> {
    let p = tls::home();
    if !p.is_null() {
        // SAFETY: the thread's home stays alive while installed.
        return unsafe { clone_from_ptr(p) };
    }
    let name = std::thread::current().name().unwrap_or("thread").to_owned();
    let home = Arc::new(Home::new(name, crate::stackpool::thread_default_size()));
    install(&home);
    home
}

/// A new `Arc` from a raw pointer to a live home.
///
/// # Safety
/// `p` must point into a live `Arc<Home>`.
pub(crate) unsafe fn clone_from_ptr(p: *const Home) -> Arc<Home> {
    // SAFETY: live Arc allocation per the contract; the count taken is owned
    // by the returned Arc.
    unsafe {
        Arc::increment_strong_count(p);
        Arc::from_raw(p)
    }
}

/// Blocks the calling thread, outside any coroutine, until `done()`,
/// running its home meanwhile: through its event loop when one is attached,
/// otherwise by turns of the home itself, parking the thread in between.
/// Whoever makes `done()` true must then [`notify`](Home::notify) the home
/// (a notification ends a blocking turn, or the next one).
pub(crate) fn block_until(done: impl Fn() -> bool) {
    let home = current();
    // SAFETY: `current` installed it on this thread.
    let owner = unsafe { home.owner_unchecked() };
    while !done() {
        if let Some(l) = home.event_loop() {
            l.poll(owner, true);
            continue;
        }
        owner.take_notified();
        if owner.turn() {
            continue;
        }
        // The sleep gate's protocol, with the thread parker as the sleep:
        // a post or notify after `prepare_sleep` unparks us.
        owner.prepare_sleep();
        if home.has_incoming() || done() {
            owner.finish_sleep();
            continue;
        }
        std::thread::park();
        owner.finish_sleep();
    }
}

/// Shuts down and uninstalls this thread's home (a Runtime worker's last
/// act); returns the coroutines still suspended at `deadline` (leaked).
pub(crate) fn close_this_thread(deadline: Instant) -> Vec<SuspendedInfo> {
    let home = THREAD_HOME.with(|t| t.borrow().0.clone());
    let Some(home) = home else {
        return Vec::new();
    };
    // Still installed while it drains: the coroutines it unwinds run here
    // and see it as their home.
    // SAFETY: installed on this thread.
    let stuck = unsafe { home.owner_unchecked() }.shut_down(deadline);
    let installed = THREAD_HOME.with(|t| t.borrow_mut().0.take());
    drop(installed);
    tls::set_home(ptr::null());
    stuck
}
