//! co_send / co_recv / co_sendv / co_recvv: whole transfers through partial
//! reads and writes, QEMU's partial-progress rule on EOF and errors, fds
//! without O_NONBLOCK, and plain-thread use.

mod support_io;

use std::io::{ErrorKind, IoSlice, IoSliceMut, Read, Write};
use std::net::{TcpListener as StdListener, TcpStream as StdTcp};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream as StdUnix;
use std::time::Duration;

use coprimitives::io::{co_recv, co_recvv, co_send, co_sendv};
use coscheduler::AioContext;
use support_io::{runtime, watchdog};

const BIG: usize = 8 << 20;

/// # Safety
/// The fd must stay open while the borrow is used.
unsafe fn borrow(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: the caller's contract.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn eight_mib_through_a_socketpair_on_two_workers() {
    let _w = watchdog(
        "eight_mib_through_a_socketpair_on_two_workers",
        Duration::from_secs(60),
    );
    let rt = runtime(2);
    let (a, b) = StdUnix::pair().unwrap();
    let (fa, fb) = (a.as_raw_fd(), b.as_raw_fd());
    let ctxs = rt.contexts().to_vec();
    let sender = ctxs[0].spawn(move || {
        let data = pattern(BIG);
        // SAFETY: `a` outlives the join.
        co_send(unsafe { borrow(fa) }, &data).map_err(|e| e.kind())
    });
    let receiver = ctxs[1].spawn(move || {
        let mut buf = vec![0u8; BIG];
        // SAFETY: `b` outlives the join.
        let n = co_recv(unsafe { borrow(fb) }, &mut buf).map_err(|e| e.kind());
        (n, buf == pattern(BIG))
    });
    assert_eq!(sender.join().unwrap(), Ok(BIG));
    assert_eq!(receiver.join().unwrap(), (Ok(BIG), true));
    drop((a, b));
    rt.shutdown();
}

#[test]
fn works_on_an_fd_without_o_nonblock() {
    // One worker: if co_recv blocked the thread, the sender coroutine on the
    // same thread could never run and the watchdog would fire.
    let _w = watchdog("works_on_an_fd_without_o_nonblock", Duration::from_secs(30));
    let rt = runtime(1);
    let (a, b) = StdUnix::pair().unwrap(); // blocking sockets
    let (fa, fb) = (a.as_raw_fd(), b.as_raw_fd());
    let r = rt.block_on(move || {
        let ctx = AioContext::current();
        let receiver = ctx.spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            // SAFETY: `b` outlives the join.
            co_recv(unsafe { borrow(fb) }, &mut buf)
                .map(|n| (n, buf == pattern(1 << 20)))
                .map_err(|e| e.kind())
        });
        coprimitives::co_sleep(Duration::from_millis(10));
        // SAFETY: `a` outlives the call.
        let sent = co_send(unsafe { borrow(fa) }, &pattern(1 << 20)).map_err(|e| e.kind());
        (sent, receiver.join().unwrap())
    });
    assert_eq!(r, (Ok(1 << 20), Ok((1 << 20, true))));
    // The fds' flags were left alone.
    // SAFETY: F_GETFL on an open fd.
    let flags = unsafe { libc::fcntl(a.as_raw_fd(), libc::F_GETFL) };
    assert_eq!(flags & libc::O_NONBLOCK, 0);
    rt.shutdown();
}

#[test]
fn vectored_with_an_offset() {
    let _w = watchdog("vectored_with_an_offset", Duration::from_secs(30));
    let rt = runtime(1);
    let (a, b) = StdUnix::pair().unwrap();
    let (fa, fb) = (a.as_raw_fd(), b.as_raw_fd());
    let r = rt.block_on(move || {
        let data = pattern(3 << 20);
        let (x, rest) = data.split_at(1000);
        let (y, z) = rest.split_at(1 << 20);
        let offset = 700;
        let bytes = data.len() - offset - 300;
        let ctx = AioContext::current();
        let receiver = ctx.spawn(move || {
            let mut p = vec![0u8; 5];
            let mut q = vec![0u8; 2 << 20];
            let mut r = vec![0u8; (1 << 20) + 10];
            let mut iov = [
                IoSliceMut::new(&mut p),
                IoSliceMut::new(&mut q),
                IoSliceMut::new(&mut r),
            ];
            // Receive into the buffers starting 3 bytes in.
            // SAFETY: `b` outlives the join.
            let n = co_recvv(unsafe { borrow(fb) }, &mut iov, 3, bytes).unwrap();
            let mut all = p;
            all.extend_from_slice(&q);
            all.extend_from_slice(&r);
            (n, all[3..3 + bytes].to_vec())
        });
        let iov = [IoSlice::new(x), IoSlice::new(y), IoSlice::new(z)];
        // SAFETY: `a` outlives the call.
        let sent = co_sendv(unsafe { borrow(fa) }, &iov, offset, bytes).unwrap();
        let (n, got) = receiver.join().unwrap();
        (sent, n, got == data[offset..offset + bytes])
    });
    assert_eq!(r.0, r.1);
    assert!(r.2, "bytes arrived in order at the right offsets");
    drop((a, b));
    rt.shutdown();
}

#[test]
#[should_panic(expected = "exceeds the buffers")]
fn an_offset_past_the_buffers_panics() {
    let (a, _b) = StdUnix::pair().unwrap();
    let _ = co_sendv(a.as_fd(), &[IoSlice::new(b"abc")], 2, 2);
}

#[test]
fn eof_mid_transfer_returns_the_bytes_received() {
    let _w = watchdog(
        "eof_mid_transfer_returns_the_bytes_received",
        Duration::from_secs(20),
    );
    let rt = runtime(2);
    let (a, b) = StdUnix::pair().unwrap();
    let fb = b.as_raw_fd();
    let h = rt.spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        // SAFETY: `b` outlives the join.
        let r = co_recv(unsafe { borrow(fb) }, &mut buf).map_err(|e| e.kind());
        // A second call at EOF returns 0.
        // SAFETY: as above.
        let again = co_recv(unsafe { borrow(fb) }, &mut buf).map_err(|e| e.kind());
        (r, again)
    });
    let mut a = a;
    a.write_all(&[1u8; 3000]).unwrap();
    std::thread::sleep(Duration::from_millis(10));
    a.write_all(&[2u8; 500]).unwrap();
    drop(a);
    assert_eq!(h.join().unwrap(), (Ok(3500), Ok(0)));
    drop(b);
    rt.shutdown();
}

/// A TCP pair whose server end is `(stream, fd)`.
fn tcp_pair() -> (StdTcp, StdTcp) {
    let l = StdListener::bind("127.0.0.1:0").unwrap();
    let c = StdTcp::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, s)
}

/// Closes `s` with an RST instead of a FIN.
fn reset(s: StdTcp) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid option pointer and length on an open socket.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(s);
}

#[test]
fn peer_reset_mid_receive() {
    let _w = watchdog("peer_reset_mid_receive", Duration::from_secs(20));
    let rt = runtime(2);
    let (c, mut s) = tcp_pair();
    let fc = c.as_raw_fd();
    let h = rt.spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        // SAFETY: `c` outlives the join.
        let first = co_recv(unsafe { borrow(fc) }, &mut buf).map_err(|e| e.kind());
        // SAFETY: as above.
        let second = co_recv(unsafe { borrow(fc) }, &mut buf).map_err(|e| e.kind());
        (first, second)
    });
    s.write_all(&[9u8; 1000]).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    reset(s);
    let (first, second) = h.join().unwrap();
    // Progress, then the reset: the bytes done (QEMU's rule). Linux reports
    // a socket error once, and the first call consumed it, so the next call
    // sees the dead connection as EOF.
    assert_eq!(first, Ok(1000));
    assert_eq!(second, Ok(0));
    drop(c);
    rt.shutdown();
}

#[test]
fn peer_reset_before_any_progress_is_an_error() {
    let _w = watchdog(
        "peer_reset_before_any_progress_is_an_error",
        Duration::from_secs(20),
    );
    let rt = runtime(2);
    let (c, mut s) = tcp_pair();
    let fc = c.as_raw_fd();
    let h = rt.spawn(move || {
        let mut buf = vec![0u8; 100];
        // SAFETY: `c` outlives the join.
        let whole = co_recv(unsafe { borrow(fc) }, &mut buf).map_err(|e| e.kind());
        // SAFETY: as above.
        let reset = co_recv(unsafe { borrow(fc) }, &mut buf).map_err(|e| e.kind());
        (whole, reset)
    });
    s.write_all(&[1u8; 100]).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    reset(s);
    assert_eq!(
        h.join().unwrap(),
        (Ok(100), Err(ErrorKind::ConnectionReset))
    );
    drop(c);
    rt.shutdown();
}

#[test]
fn peer_reset_mid_send_returns_the_bytes_sent() {
    let _w = watchdog(
        "peer_reset_mid_send_returns_the_bytes_sent",
        Duration::from_secs(20),
    );
    let rt = runtime(2);
    let (c, mut s) = tcp_pair();
    let fc = c.as_raw_fd();
    let h = rt.spawn(move || {
        let data = vec![5u8; 64 << 20];
        // SAFETY: `c` outlives the join.
        let r = co_send(unsafe { borrow(fc) }, &data).map_err(|e| e.kind());
        // SAFETY: as above.
        let after = co_send(unsafe { borrow(fc) }, &data[..10]).map_err(|e| e.kind());
        (r, after)
    });
    let mut buf = vec![0u8; 64 << 10];
    s.read_exact(&mut buf).unwrap();
    reset(s);
    let (r, after) = h.join().unwrap();
    let sent = r.expect("progress before the reset is returned as a count");
    assert!((64 << 10..64 << 20).contains(&sent), "sent {sent}");
    assert!(
        matches!(
            after,
            Err(ErrorKind::ConnectionReset | ErrorKind::BrokenPipe)
        ),
        "{after:?}"
    );
    drop(c);
    rt.shutdown();
}

#[test]
fn plain_threads_block_instead() {
    let _w = watchdog("plain_threads_block_instead", Duration::from_secs(20));
    let (a, b) = StdUnix::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    let t = std::thread::spawn(move || {
        let mut buf = vec![0u8; 4 << 20];
        co_recv(b.as_fd(), &mut buf).map(|n| (n, buf == pattern(4 << 20)))
    });
    assert_eq!(co_send(a.as_fd(), &pattern(4 << 20)).unwrap(), 4 << 20);
    assert_eq!(t.join().unwrap().unwrap(), (4 << 20, true));
}

#[test]
fn errors_before_progress_are_returned() {
    let _w = watchdog(
        "errors_before_progress_are_returned",
        Duration::from_secs(20),
    );
    let f = std::fs::File::open("/proc/self/exe").unwrap();
    assert_eq!(
        co_send(f.as_fd(), b"x").unwrap_err().raw_os_error(),
        Some(libc::ENOTSOCK)
    );
    let (a, b) = StdUnix::pair().unwrap();
    drop(b);
    assert_eq!(
        co_send(a.as_fd(), b"x").unwrap_err().kind(),
        ErrorKind::BrokenPipe,
        "EPIPE, not SIGPIPE"
    );
    let mut buf = [0u8; 4];
    assert_eq!(co_recv(a.as_fd(), &mut buf).unwrap(), 0, "EOF");
}
