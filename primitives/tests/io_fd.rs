//! wait_readable / wait_writable and the registrations behind them: every
//! way a wait can end has a defined result, and nothing stays registered.

mod support_io;

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, RawFd};
use std::os::unix::net::UnixStream as StdUnix;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coprimitives::io::{wait_readable, wait_writable};
use coscheduler::fd::{Direction, Registration, registered_count};
use coscheduler::{AioContext, Coroutine};
use support_io::{runtime, watchdog};

/// A raw fd as a BorrowedFd for a coroutine body ('static closures).
///
/// # Safety
/// The fd must stay open while the borrow is used, or the test must expect
/// the EBADF that follows when it does not.
unsafe fn borrow(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: the caller's contract.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

#[test]
fn readable_when_the_peer_writes() {
    let _w = watchdog("readable_when_the_peer_writes", Duration::from_secs(20));
    let rt = runtime(2);
    let (a, mut b) = StdUnix::pair().unwrap();
    let fd = a.as_raw_fd();
    let h = rt.spawn(move || {
        let t = Instant::now();
        // SAFETY: `a` outlives the join below.
        let r = wait_readable(unsafe { borrow(fd) });
        (r.map_err(|e| e.kind()), t.elapsed(), registered_count())
    });
    std::thread::sleep(Duration::from_millis(20));
    b.write_all(b"x").unwrap();
    let (r, took, left) = h.join().unwrap();
    assert_eq!(r, Ok(()));
    assert!(
        took >= Duration::from_millis(15),
        "it waited for the write: {took:?}"
    );
    assert_eq!(left, 0, "the one-shot registration is gone");
    drop(a);
    rt.shutdown();
}

#[test]
fn writable_at_once_on_an_empty_socket() {
    let _w = watchdog(
        "writable_at_once_on_an_empty_socket",
        Duration::from_secs(20),
    );
    let rt = runtime(1);
    let (a, _b) = StdUnix::pair().unwrap();
    let fd = a.as_raw_fd();
    let r = rt.block_on(move || {
        // SAFETY: `a` outlives the call.
        wait_writable(unsafe { borrow(fd) }).map_err(|e| e.kind())
    });
    assert_eq!(r, Ok(()));
    rt.shutdown();
}

#[test]
fn repeated_waits_do_not_leak_registrations() {
    let _w = watchdog(
        "repeated_waits_do_not_leak_registrations",
        Duration::from_secs(30),
    );
    let rt = runtime(2);
    let (a, b) = StdUnix::pair().unwrap();
    let fd = a.as_raw_fd();
    let writer = std::thread::spawn(move || {
        let mut b = b;
        for _ in 0..200 {
            b.write_all(b"y").unwrap();
            std::thread::sleep(Duration::from_micros(300));
        }
    });
    let left = rt.block_on(move || {
        let mut a = a;
        a.set_nonblocking(true).unwrap();
        let mut got = 0;
        let mut buf = [0u8; 16];
        while got < 200 {
            match a.read(&mut buf) {
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    // SAFETY: `a` is alive here.
                    wait_readable(unsafe { borrow(fd) }).unwrap()
                }
                Err(e) => panic!("{e}"),
            }
        }
        registered_count()
    });
    writer.join().unwrap();
    assert_eq!(left, 0);
    rt.shutdown();
}

#[test]
fn a_second_waiter_on_one_fd_is_refused() {
    let _w = watchdog(
        "a_second_waiter_on_one_fd_is_refused",
        Duration::from_secs(20),
    );
    let rt = runtime(1);
    let (a, mut b) = StdUnix::pair().unwrap();
    let fd = a.as_raw_fd();
    let (first, second) = rt.block_on(move || {
        let ctx = AioContext::current();
        // SAFETY: `a` outlives the joins (dropped after block_on).
        let first = ctx.spawn(move || wait_readable(unsafe { borrow(fd) }).map_err(|e| e.kind()));
        coscheduler::yield_now(); // let `first` start waiting
        coscheduler::yield_now();
        // SAFETY: as above.
        let second = wait_readable(unsafe { borrow(fd) }).map_err(|e| e.kind());
        b.write_all(b"z").unwrap();
        (first.join().unwrap(), second)
    });
    assert_eq!(second, Err(ErrorKind::ResourceBusy));
    assert_eq!(first, Ok(()));
    assert_eq!(rt.block_on(registered_count), 0);
    drop(a);
    rt.shutdown();
}

#[test]
fn a_reader_and_a_writer_share_one_fd() {
    let _w = watchdog(
        "a_reader_and_a_writer_share_one_fd",
        Duration::from_secs(20),
    );
    let rt = runtime(1);
    let (a, b) = StdUnix::pair().unwrap();
    let fd = a.as_raw_fd();
    let r = rt.block_on(move || {
        // SAFETY: `a` outlives the call.
        let fd = unsafe { borrow(fd) };
        let ra = Registration::new(fd).unwrap();
        let rb = Registration::new(fd).unwrap();
        assert_eq!(registered_count(), 2);
        let w = rb.wait(Direction::Write).map_err(|e| e.kind());
        drop(b); // EOF makes it readable
        let r = ra.wait(Direction::Read).map_err(|e| e.kind());
        drop((ra, rb));
        (w, r, registered_count())
    });
    assert_eq!(r, (Ok(()), Ok(()), 0));
    drop(a);
    rt.shutdown();
}

#[test]
fn a_stray_wake_interrupts_the_wait_and_no_late_wake_follows() {
    let _w = watchdog(
        "a_stray_wake_interrupts_the_wait_and_no_late_wake_follows",
        Duration::from_secs(20),
    );
    let rt = runtime(1);
    let (a, b) = StdUnix::pair().unwrap();
    let fd = a.as_raw_fd();
    let b = Arc::new(Mutex::new(b));
    let b2 = b.clone();
    let (r, slept) = rt.block_on(move || {
        let ctx = AioContext::current();
        let me: Arc<Mutex<Option<Coroutine>>> = Arc::default();
        let me2 = me.clone();
        let waiter = ctx.spawn(move || {
            *me2.lock().unwrap() = coscheduler::current();
            // SAFETY: `a` outlives the join.
            let r = wait_readable(unsafe { borrow(fd) }).map_err(|e| e.kind());
            // The fd becomes readable while we sleep: that event must not
            // end this sleep early (it would be a second wake).
            let t = Instant::now();
            coprimitives::co_sleep(Duration::from_millis(40));
            (r, t.elapsed())
        });
        coscheduler::yield_now();
        coscheduler::yield_now();
        me.lock().unwrap().clone().unwrap().wake();
        coprimitives::co_sleep(Duration::from_millis(5));
        b2.lock().unwrap().write_all(b"late").unwrap();
        waiter.join().unwrap()
    });
    assert_eq!(r, Err(ErrorKind::Interrupted));
    assert!(slept >= Duration::from_millis(40), "{slept:?}");
    drop((a, b));
    rt.shutdown();
}

#[test]
fn an_fd_closed_while_waited_on_gives_ebadf() {
    let _w = watchdog(
        "an_fd_closed_while_waited_on_gives_ebadf",
        Duration::from_secs(20),
    );
    let rt = runtime(2);
    let (a, _b) = StdUnix::pair().unwrap();
    let fd = a.into_raw_fd();
    let h = rt.spawn(move || {
        let t = Instant::now();
        // SAFETY: the test closes `fd` on purpose while this waits.
        let r = wait_readable(unsafe { borrow(fd) });
        (
            r.map_err(|e| e.raw_os_error()),
            t.elapsed(),
            registered_count(),
        )
    });
    std::thread::sleep(Duration::from_millis(30));
    // SAFETY: we own `fd` (into_raw_fd above) and close it exactly once.
    unsafe { libc::close(fd) };
    let (r, took, left) = h.join().unwrap();
    assert_eq!(r, Err(Some(libc::EBADF)));
    assert!(
        took < Duration::from_secs(2),
        "found by the validity sweep: {took:?}"
    );
    assert_eq!(left, 0);
    rt.shutdown();
}

#[test]
fn an_fd_number_reused_for_another_file_gives_ebadf() {
    let _w = watchdog(
        "an_fd_number_reused_for_another_file_gives_ebadf",
        Duration::from_secs(20),
    );
    let rt = runtime(1);
    let (a, _b) = StdUnix::pair().unwrap();
    let (c, mut d) = StdUnix::pair().unwrap();
    let fd = a.into_raw_fd();
    let h = rt.spawn(move || {
        // SAFETY: the test replaces `fd` on purpose while this waits.
        wait_readable(unsafe { borrow(fd) }).map_err(|e| e.raw_os_error())
    });
    std::thread::sleep(Duration::from_millis(30));
    // Atomically close `fd` and make the number name `c`'s socket.
    // SAFETY: both fds are open; we own `fd`.
    assert_eq!(unsafe { libc::dup2(c.as_raw_fd(), fd) }, fd);
    // Data on the new file must not be mistaken for the old one's.
    d.write_all(b"new file").unwrap();
    assert_eq!(h.join().unwrap(), Err(Some(libc::EBADF)));
    // SAFETY: `fd` is now our dup of `c`.
    unsafe { libc::close(fd) };
    rt.shutdown();
}

#[test]
fn a_closed_number_registered_again_supersedes_the_stale_slot() {
    let _w = watchdog(
        "a_closed_number_registered_again_supersedes_the_stale_slot",
        Duration::from_secs(20),
    );
    let rt = runtime(1);
    let r = rt.block_on(|| {
        let (a, _b) = StdUnix::pair().unwrap();
        let fd = a.into_raw_fd();
        // SAFETY: `fd` is open here.
        let stale = Registration::new(unsafe { borrow(fd) }).unwrap();
        // Close `fd` and give its number to a new socket in one step: other
        // tests open fds concurrently, so waiting for the kernel to reuse
        // the lowest free number would race with them.
        let (c_orig, mut d) = StdUnix::pair().unwrap();
        // SAFETY: both fds are open; we own `fd`, whose old file (and its
        // registration's epoll entry) goes away; the stale registration is
        // left behind on purpose.
        assert_eq!(unsafe { libc::dup2(c_orig.as_raw_fd(), fd) }, fd);
        drop(c_orig);
        // SAFETY: `fd` now names `c_orig`'s socket, and nothing else owns it.
        let c = unsafe { StdUnix::from_raw_fd(fd) };
        let fresh = Registration::new(c.as_fd()).unwrap();
        let old = stale.wait(Direction::Read).map_err(|e| e.raw_os_error());
        d.write_all(b"!").unwrap();
        let new = fresh.wait(Direction::Read).map_err(|e| e.kind());
        // Dropping the stale registration must not remove the new one.
        drop(stale);
        d.write_all(b"!").unwrap();
        fresh.clear(Direction::Read);
        let again = fresh
            .wait_until(Direction::Read, Instant::now() + Duration::from_secs(5))
            .map_err(|e| e.kind());
        drop(fresh);
        (old, new, again, registered_count())
    });
    assert_eq!(r, (Err(Some(libc::EBADF)), Ok(()), Ok(()), 0));
    rt.shutdown();
}

#[test]
fn wait_until_times_out() {
    let _w = watchdog("wait_until_times_out", Duration::from_secs(20));
    let rt = runtime(1);
    let (a, mut b) = StdUnix::pair().unwrap();
    let fd = a.as_raw_fd();
    let (r, took, after) = rt.block_on(move || {
        // SAFETY: `a` outlives the call.
        let reg = Registration::new(unsafe { borrow(fd) }).unwrap();
        let t = Instant::now();
        let r = reg
            .wait_until(Direction::Read, t + Duration::from_millis(10))
            .map_err(|e| e.kind());
        let took = t.elapsed();
        b.write_all(b"now").unwrap();
        let after = reg.wait(Direction::Read).map_err(|e| e.kind());
        (r, took, after)
    });
    assert_eq!(r, Err(ErrorKind::TimedOut));
    assert!(took >= Duration::from_millis(10), "{took:?}");
    assert_eq!(after, Ok(()));
    drop(a);
    rt.shutdown();
}

#[test]
fn defined_errors_outside_a_coroutine_and_for_regular_files() {
    let _w = watchdog(
        "defined_errors_outside_a_coroutine_and_for_regular_files",
        Duration::from_secs(20),
    );
    let (a, _b) = StdUnix::pair().unwrap();
    assert_eq!(
        wait_readable(a.as_fd()).unwrap_err().kind(),
        ErrorKind::Other
    );
    let f = std::fs::File::open("/proc/self/exe").unwrap();
    let rt = runtime(1);
    let fd = f.as_raw_fd();
    let r = rt.block_on(move || {
        // SAFETY: `f` outlives the call.
        wait_readable(unsafe { borrow(fd) }).map_err(|e| e.raw_os_error())
    });
    assert_eq!(r, Err(Some(libc::EPERM)));
    drop(f);
    rt.shutdown();
}

#[test]
fn waiting_from_another_context_is_refused() {
    let _w = watchdog(
        "waiting_from_another_context_is_refused",
        Duration::from_secs(20),
    );
    let rt = runtime(2);
    let (a, _b) = StdUnix::pair().unwrap();
    let fd = a.as_raw_fd();
    let ctxs = rt.contexts().to_vec();
    let reg = ctxs[0]
        .spawn(move || {
            // SAFETY: `a` outlives the joins.
            Registration::new(unsafe { borrow(fd) }).unwrap()
        })
        .join()
        .unwrap();
    let reg = Arc::new(reg);
    let r2 = reg.clone();
    let r = ctxs[1]
        .spawn(move || r2.wait(Direction::Read).map_err(|e| e.kind()))
        .join()
        .unwrap();
    assert_eq!(r, Err(ErrorKind::Other));
    drop(reg); // deregistered on context 0 by a bottom half
    let left = ctxs[0].spawn(|| {
        coprimitives::co_sleep(Duration::from_millis(5));
        registered_count()
    });
    assert_eq!(left.join().unwrap(), 0);
    drop(a);
    rt.shutdown();
}

/// A waker that counts its wakes.
#[derive(Default)]
struct CountingWaker(std::sync::atomic::AtomicUsize);

impl std::task::Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl CountingWaker {
    fn count(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// One `poll_ready` with `waker`; true if it was pending.
fn poll_pending(reg: &Registration, waker: &Arc<CountingWaker>) -> std::io::Result<bool> {
    let waker = std::task::Waker::from(waker.clone());
    let mut cx = std::task::Context::from_waker(&waker);
    match reg.poll_ready(Direction::Read, &mut cx) {
        std::task::Poll::Ready(r) => r.map(|()| false),
        std::task::Poll::Pending => Ok(true),
    }
}

#[test]
fn poll_ready_wakes_only_the_last_polls_waker() {
    let _w = watchdog(
        "poll_ready_wakes_only_the_last_polls_waker",
        Duration::from_secs(20),
    );
    let rt = runtime(1);
    let (a, b) = StdUnix::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let h = rt.spawn(move || {
        let reg = Registration::new(a.as_fd()).unwrap();
        let (first, last) = (Arc::default(), Arc::default());
        assert!(poll_pending(&reg, &first).unwrap());
        assert!(poll_pending(&reg, &last).unwrap());
        let mut b = b;
        b.write_all(b"x").unwrap();
        // Until the context applies the event (no deadline: the watchdog).
        while CountingWaker::count(&last) == 0 {
            coprimitives::co_sleep(Duration::from_millis(1));
        }
        // Ready now, from the cache, without storing a waker.
        let ready = poll_pending(&reg, &Arc::default()).unwrap();
        (first.count(), last.count(), ready)
    });
    assert_eq!(h.join().unwrap(), (0, 1, false));
    rt.shutdown();
}

#[test]
fn a_stored_waker_is_woken_by_a_coroutine_wait_and_by_deregistration() {
    let _w = watchdog(
        "a_stored_waker_is_woken_by_a_coroutine_wait_and_by_deregistration",
        Duration::from_secs(20),
    );
    let rt = runtime(1);
    let (a, b) = StdUnix::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let h = rt.spawn(move || {
        let reg = Registration::new(a.as_fd()).unwrap();
        let displaced = Arc::default();
        assert!(poll_pending(&reg, &displaced).unwrap());
        let writer = AioContext::current().spawn(move || {
            let mut b = b;
            b.write_all(b"x").unwrap();
            b
        });
        // The coroutine's wait takes the direction over, waking the waker
        // at once, and then gets the event itself.
        let waited = reg.wait(Direction::Read).map_err(|e| e.kind());
        let on_displace = CountingWaker::count(&displaced);
        let b = writer.join().unwrap();
        (&a).read_exact(&mut [0u8; 1]).unwrap();
        reg.clear(Direction::Read);
        // (A poll never displaces a waiting coroutine: io_futures.rs.)
        let dropped = Arc::default();
        assert!(poll_pending(&reg, &dropped).unwrap());
        drop(reg);
        drop(b);
        (waited, on_displace, dropped.count(), registered_count())
    });
    assert_eq!(h.join().unwrap(), (Ok(()), 1, 1, 0));
    rt.shutdown();
}

#[test]
fn poll_ready_from_another_thread_is_refused() {
    let _w = watchdog(
        "poll_ready_from_another_thread_is_refused",
        Duration::from_secs(20),
    );
    let rt = runtime(1);
    let (a, _b) = StdUnix::pair().unwrap();
    let fd = a.as_raw_fd();
    let reg = rt
        .spawn(move || {
            // SAFETY: `a` outlives the registration.
            Registration::new(unsafe { borrow(fd) }).unwrap()
        })
        .join()
        .unwrap();
    // This thread does not own the registration's context.
    let e = poll_pending(&reg, &Arc::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Other, "{e}");
    assert!(e.to_string().contains("another thread"), "{e}");
    drop(reg);
    drop(a);
    rt.shutdown();
}
