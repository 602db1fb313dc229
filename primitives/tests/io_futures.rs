//! `futures-io` traits on coroutine sockets: async code awaited with
//! `coscheduler::wait` inside coroutines moves a mebibyte through an echo
//! server (both sides async, both sides seeing `Pending`); polls outside a
//! coroutine are refused before any system call; EOF, resets and closed fds
//! give the blocking calls' results; a stale waker left by a dropped future
//! does not lock a blocking call out, and a poll while a coroutine blocks in
//! the same direction is refused; a socket moves between contexts.
#![cfg(feature = "futures-io")]

mod support_io;

use std::cell::Cell;
use std::future::poll_fn;
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::time::Duration;

use coprimitives::io::{TcpListener, TcpStream, UnixStream};
use coscheduler::{AioContext, wait};
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use support_io::{runtime, watchdog};

/// The blocking calls, out of reach of the futures extension traits'
/// methods of the same names.
mod blocking {
    use std::io::{self, Read, Write};

    pub(super) fn write_all(mut w: impl Write, data: &[u8]) -> io::Result<()> {
        w.write_all(data)
    }

    pub(super) fn read_exact<const N: usize>(mut r: impl Read) -> io::Result<[u8; N]> {
        let mut buf = [0u8; N];
        r.read_exact(&mut buf).map(|()| buf)
    }

    pub(super) fn read_to_end(mut r: impl Read) -> io::Result<Vec<u8>> {
        let mut all = Vec::new();
        r.read_to_end(&mut all).map(|_| all)
    }

    pub(super) fn read(mut r: impl Read, buf: &mut [u8]) -> io::Result<usize> {
        r.read(buf)
    }
}

/// Counts the `Pending` answers of the socket it wraps.
struct Counting<'a, T> {
    inner: T,
    pending: &'a Cell<usize>,
}

impl<T> Counting<'_, T> {
    fn note<R>(&self, r: Poll<R>) -> Poll<R> {
        if r.is_pending() {
            self.pending.set(self.pending.get() + 1);
        }
        r
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counting<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.note(r)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counting<'_, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// Shrinks a socket's send buffer, so that a mebibyte cannot fit in the
/// kernel while nobody reads.
fn small_send_buffer(fd: &impl AsRawFd) {
    let size: libc::c_int = 16 * 1024;
    // SAFETY: a valid option pointer and length on an open socket.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
}

/// A mebibyte through an async echo server and back, both ends async code
/// in coroutines; returns the client's `Pending` counts (reads, writes).
fn echo_a_mebibyte(threads: usize) -> (usize, usize) {
    let rt = runtime(threads);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = rt.spawn(move || {
        let (s, _) = listener.accept().unwrap();
        wait(async {
            let mut w = &s;
            let n = futures::io::copy(&s, &mut w).await?;
            w.close().await?;
            Ok::<_, std::io::Error>(n)
        })
    });
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let expected = data.clone();
    let (echoed, pending) = rt.block_on(move || {
        let c = TcpStream::connect(addr).unwrap();
        small_send_buffer(&c);
        let (reads, writes) = (Cell::new(0), Cell::new(0));
        let echoed = wait(async {
            let mut r = Counting {
                inner: &c,
                pending: &reads,
            };
            let mut w = Counting {
                inner: &c,
                pending: &writes,
            };
            // The reader is polled first, before anything was sent: its
            // first poll cannot find data.
            let read = async {
                let mut out = Vec::new();
                r.read_to_end(&mut out).await.map(|_| out)
            };
            let write = async {
                w.write_all(&data).await?;
                w.close().await
            };
            let (out, sent) = futures::future::join(read, write).await;
            sent.unwrap();
            out.unwrap()
        });
        (echoed, (reads.get(), writes.get()))
    });
    assert_eq!(echoed.len(), expected.len());
    assert!(echoed == expected, "the echo differs from what was sent");
    assert_eq!(server.join().unwrap().unwrap(), 1 << 20);
    rt.shutdown();
    pending
}

#[test]
fn a_mebibyte_round_trip_through_async_code_on_one_context() {
    let _w = watchdog(
        "a_mebibyte_round_trip_through_async_code_on_one_context",
        Duration::from_secs(60),
    );
    // One worker: the server cannot run while the client polls, so the
    // client's writes fill the socket and must wait.
    let (reads, writes) = echo_a_mebibyte(1);
    assert!(reads > 0, "no read was pending");
    assert!(writes > 0, "no write was pending");
}

#[test]
fn a_mebibyte_round_trip_through_async_code_on_two_workers() {
    let _w = watchdog(
        "a_mebibyte_round_trip_through_async_code_on_two_workers",
        Duration::from_secs(60),
    );
    let (reads, _) = echo_a_mebibyte(2);
    assert!(reads > 0, "no read was pending");
}

/// The documented refusal, and nothing was read by the refused poll.
fn assert_refused(r: std::io::Result<usize>) {
    let e = r.expect_err("a poll outside a coroutine must fail");
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("inside a coroutine"), "{e}");
}

#[test]
fn polls_outside_a_coroutine_are_refused() {
    let _w = watchdog(
        "polls_outside_a_coroutine_are_refused",
        Duration::from_secs(20),
    );
    let (a, b) = UnixStream::pair().unwrap();
    // Data is waiting, so a read would succeed if it were tried: the
    // refusal does not depend on the socket's state.
    blocking::write_all(&b, b"kept").unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut buf = [0u8; 4];
            assert_refused(futures::executor::block_on((&a).read(&mut buf)));
            assert_refused(futures::executor::block_on((&a).write(b"x")));
        });
        s.spawn(|| {
            let tokio = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let mut buf = [0u8; 4];
            assert_refused(tokio.block_on((&a).read(&mut buf)));
        });
        // `coscheduler::wait` outside a coroutine drives the thread's
        // context, but the rule is the coroutine: refused the same way.
        s.spawn(|| {
            let mut buf = [0u8; 4];
            assert_refused(wait((&a).read(&mut buf)));
        });
    });
    // Flushing never waits, so it works anywhere.
    futures::executor::block_on((&a).flush()).unwrap();
    // The refused polls consumed nothing, and the socket still works in a
    // coroutine.
    let h = AioContext::current().spawn(move || {
        let mut buf = [0u8; 4];
        wait((&a).read_exact(&mut buf)).map(|()| buf)
    });
    assert_eq!(&h.join().unwrap().unwrap(), b"kept");
    drop(b);
}

/// Serves `n` connections: even ones get "partial" then EOF, odd ones "abc"
/// then an RST.
fn eof_and_reset_peer(n: usize) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        for i in 0..n {
            let (mut s, _) = listener.accept().unwrap();
            if i % 2 == 0 {
                blocking::write_all(&mut s, b"partial").unwrap();
                continue;
            }
            blocking::write_all(&mut s, b"abc").unwrap();
            // Wait until the client has read the bytes, so that the RST
            // does not discard them.
            blocking::read_exact::<1>(&mut s).unwrap();
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: valid option pointer and length on an open socket.
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
        }
    });
    (addr, peer)
}

type EofAndReset = (Vec<u8>, Vec<u8>, Result<usize, ErrorKind>);

#[test]
fn eof_and_peer_reset_give_the_blocking_calls_results() {
    let _w = watchdog(
        "eof_and_peer_reset_give_the_blocking_calls_results",
        Duration::from_secs(20),
    );
    let rt = runtime(2);
    let (addr, peer) = eof_and_reset_peer(4);
    let (sync, asynchronous): (EofAndReset, EofAndReset) = rt.block_on(move || {
        let blocking = {
            let s = TcpStream::connect(addr).unwrap();
            let all = blocking::read_to_end(&s).unwrap();
            let s = TcpStream::connect(addr).unwrap();
            let abc = blocking::read_exact::<3>(&s).unwrap().to_vec();
            blocking::write_all(&s, b"!").unwrap();
            let reset = blocking::read(&s, &mut [0u8; 16]).map_err(|e| e.kind());
            (all, abc, reset)
        };
        let asynchronous = wait(async {
            let mut s = TcpStream::connect(addr).unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).await.unwrap();
            let mut s = TcpStream::connect(addr).unwrap();
            let mut abc = vec![0u8; 3];
            s.read_exact(&mut abc).await.unwrap();
            s.write_all(b"!").await.unwrap();
            let reset = s.read(&mut [0u8; 16]).await.map_err(|e| e.kind());
            (all, abc, reset)
        });
        (blocking, asynchronous)
    });
    peer.join().unwrap();
    assert_eq!(sync.0, b"partial");
    assert_eq!(sync.1, b"abc");
    assert_eq!(sync.2, Err(ErrorKind::ConnectionReset));
    assert_eq!(asynchronous, sync);
    rt.shutdown();
}

/// Polls `fut` inside `wait`, telling `pending` once its first poll was
/// pending (so the waker is stored with the driver).
async fn tell_when_pending<F: std::future::Future>(fut: F, pending: mpsc::Sender<()>) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut told = false;
    poll_fn(|cx| {
        let r = fut.as_mut().poll(cx);
        if r.is_pending() && !std::mem::replace(&mut told, true) {
            pending.send(()).unwrap();
        }
        r
    })
    .await
}

#[test]
fn an_fd_closed_under_a_pending_read_gives_ebadf() {
    let _w = watchdog(
        "an_fd_closed_under_a_pending_read_gives_ebadf",
        Duration::from_secs(20),
    );
    let rt = runtime(1);
    let (a, _b) = UnixStream::pair().unwrap();
    let fd = a.as_raw_fd();
    let (tx, rx) = mpsc::channel();
    let h = rt.spawn(move || {
        let mut buf = [0u8; 16];
        let r = wait(tell_when_pending((&a).read(&mut buf), tx)).map_err(|e| e.raw_os_error());
        // Dropping `a` closes the number, which the test made name its
        // replacement socket: still ours to close.
        drop(a);
        r
    });
    rx.recv().unwrap();
    // Close the socket under the pending read: atomically, by making the
    // number name another (non-blocking, silent) socket, so that no other
    // test can get the number meanwhile.
    let (c, _d) = std::os::unix::net::UnixStream::pair().unwrap();
    c.set_nonblocking(true).unwrap();
    // SAFETY: both fds are open; `fd` is `a`'s, replaced on purpose.
    assert_eq!(unsafe { libc::dup2(c.as_raw_fd(), fd) }, fd);
    // Found by the driver's validity sweep, which wakes the stored waker.
    assert_eq!(h.join().unwrap(), Err(Some(libc::EBADF)));
    rt.shutdown();
}

#[test]
fn a_stale_waker_does_not_lock_out_a_blocking_read() {
    let _w = watchdog(
        "a_stale_waker_does_not_lock_out_a_blocking_read",
        Duration::from_secs(20),
    );
    let rt = runtime(1);
    let (a, b) = UnixStream::pair().unwrap();
    let (tx, rx) = mpsc::channel();
    let h = rt.spawn(move || {
        // One poll, pending, then the future is dropped: its waker stays
        // stored with the driver (async code cannot withdraw it).
        let mut buf = [0u8; 5];
        let mut ra = &a;
        let mut read = ra.read(&mut buf);
        let first = wait(poll_fn(|cx| {
            Poll::Ready(Pin::new(&mut read).poll(cx).is_pending())
        }));
        drop(read);
        tx.send(()).unwrap();
        // The blocking read takes the direction over and gets the data.
        let r = blocking::read_exact::<5>(&a);
        (first, r.map_err(|e| e.kind()))
    });
    rx.recv().unwrap();
    blocking::write_all(&b, b"later").unwrap();
    let (first_pending, r) = h.join().unwrap();
    assert!(first_pending);
    assert_eq!(r, Ok(*b"later"));
    rt.shutdown();
}

#[test]
fn a_poll_while_a_coroutine_blocks_in_the_same_direction_is_busy() {
    let _w = watchdog(
        "a_poll_while_a_coroutine_blocks_in_the_same_direction_is_busy",
        Duration::from_secs(20),
    );
    let rt = runtime(1);
    let (a, b) = UnixStream::pair().unwrap();
    let a = std::sync::Arc::new(a);
    let (tx, rx) = mpsc::channel();
    let h = rt.spawn(move || {
        let a2 = a.clone();
        // Queued on this context, so it polls while (or just before) the
        // blocking read below waits: either way it finds the direction
        // taken by a coroutine (a waker it stored first is displaced and
        // woken, and its next poll finds the coroutine).
        let poller = AioContext::current().spawn(move || {
            let mut buf = [0u8; 4];
            let r = wait((&*a2).read(&mut buf)).map_err(|e| e.kind());
            tx.send(()).unwrap();
            r
        });
        let blocked = blocking::read_exact::<4>(&*a);
        (poller.join().unwrap(), blocked.map_err(|e| e.kind()))
    });
    rx.recv().unwrap();
    blocking::write_all(&b, b"data").unwrap();
    let (polled, blocked) = h.join().unwrap();
    assert_eq!(polled, Err(ErrorKind::ResourceBusy));
    assert_eq!(blocked, Ok(*b"data"));
    rt.shutdown();
}

#[test]
fn a_socket_polled_on_one_context_then_another_rebinds() {
    let _w = watchdog(
        "a_socket_polled_on_one_context_then_another_rebinds",
        Duration::from_secs(20),
    );
    let (a, b) = UnixStream::pair().unwrap();
    let (pending_tx, pending_rx) = mpsc::channel();
    // Each half on a plain thread's own context, in a coroutine there.
    let first = std::thread::spawn(move || {
        AioContext::current()
            .spawn(move || {
                let mut buf = [0u8; 3];
                let r = wait(tell_when_pending((&a).read_exact(&mut buf), pending_tx));
                r.map(|()| (buf, a))
            })
            .join()
            .unwrap()
    });
    pending_rx.recv().unwrap();
    blocking::write_all(&b, b"one").unwrap();
    let (one, a) = first.join().unwrap().unwrap();
    let (pending_tx, pending_rx) = mpsc::channel();
    let second = std::thread::spawn(move || {
        AioContext::current()
            .spawn(move || {
                let mut buf = [0u8; 3];
                wait(tell_when_pending((&a).read_exact(&mut buf), pending_tx)).map(|()| buf)
            })
            .join()
            .unwrap()
    });
    pending_rx.recv().unwrap();
    blocking::write_all(&b, b"two").unwrap();
    assert_eq!(&one, b"one");
    assert_eq!(&second.join().unwrap().unwrap(), b"two");
}
