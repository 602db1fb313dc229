//! Coroutine TCP sockets: `std::net`'s API, where blocking suspends the
//! coroutine instead of the thread (QEMU's coroutine channel sockets,
//! `io/channel-socket.c` with `qio_channel_yield`).

use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use coscheduler::fd::Direction;

#[cfg(feature = "futures-io")]
use super::async_io::impl_async_read_write;
use super::readiness::deadline_after;
use super::stream::{CoIo, impl_read_write};

/// Pending connections a listener queues (the kernel caps it at
/// `net.core.somaxconn`). std and mio use 128, which drops SYNs when a
/// thousand clients connect at once.
const LISTEN_BACKLOG: libc::c_int = 1024;

/// A TCP listening socket whose [`accept`](TcpListener::accept) suspends the
/// calling coroutine until a connection arrives.
///
/// `Send + Sync`. Outside a coroutine, `accept` blocks the thread.
///
/// ```
/// use std::io::{Read, Write};
/// use coprimitives::io::{TcpListener, TcpStream};
///
/// let rt = coscheduler::Runtime::builder().threads(2).build().unwrap();
/// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
/// let addr = listener.local_addr().unwrap();
/// let server = rt.spawn(move || {
///     let (mut s, _) = listener.accept().unwrap();
///     let mut buf = [0; 5];
///     s.read_exact(&mut buf).unwrap();
///     s.write_all(&buf).unwrap();
/// });
/// let echoed = rt.block_on(move || {
///     let mut c = TcpStream::connect(addr).unwrap();
///     c.write_all(b"hello").unwrap();
///     let mut buf = [0; 5];
///     c.read_exact(&mut buf).unwrap();
///     buf
/// });
/// assert_eq!(&echoed, b"hello");
/// server.join().unwrap();
/// ```
pub struct TcpListener {
    io: CoIo<mio::net::TcpListener>,
}

impl TcpListener {
    /// Binds to the first address of `addr` that works, with
    /// `SO_REUSEADDR`, non-blocking, with a backlog of 1024.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        each_addr(addr, bind_one)
    }

    /// Wraps a std listener (made non-blocking).
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        Ok(TcpListener {
            io: CoIo::new(mio::net::TcpListener::from_std(listener)),
        })
    }

    /// Accepts a connection, suspending the coroutine until one arrives. The
    /// stream is non-blocking and not yet registered anywhere: it binds to
    /// the context of the first coroutine that waits on it.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, addr) = self
            .io
            .io(Direction::Read, None, || self.io.inner.accept())?;
        Ok((TcpStream::from_mio(stream), addr))
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.inner.local_addr()
    }

    /// Takes the socket's pending error (`SO_ERROR`).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.inner.take_error()
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("addr", &self.local_addr().ok())
            .field("fd", &self.io.fd())
            .finish()
    }
}

impl std::os::fd::AsFd for TcpListener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.io.fd()
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.io.fd().as_raw_fd()
    }
}

/// A TCP connection whose blocking reads and writes suspend the calling
/// coroutine (std's `TcpStream` API; `Read` and `Write` also for
/// `&TcpStream`, so a reader and a writer coroutine can share one).
///
/// `Send + Sync`: it may be accepted on one worker and used on another (its
/// readiness registration follows the coroutine that uses it; see
/// `io/readiness.rs`). Two coroutines reading at once on one context get
/// `ErrorKind::ResourceBusy` for the second. A stray wake of a coroutine
/// waiting in a call is absorbed: the call retries and waits again.
/// Outside a coroutine, the calls block the thread.
///
/// For a deadline, use [`set_read_timeout`](TcpStream::set_read_timeout) /
/// [`set_write_timeout`](TcpStream::set_write_timeout) (the call fails with
/// `ErrorKind::TimedOut`) or wrap the call in [`co_timeout`](crate::co_timeout).
pub struct TcpStream {
    io: CoIo<mio::net::TcpStream>,
}

impl TcpStream {
    /// Connects to the first address of `addr` that accepts, suspending the
    /// coroutine while the handshake runs. Name resolution (if `addr` is a
    /// host name) blocks the thread, as in std.
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        each_addr(addr, |a| connect_one(a, None))
    }

    /// Connects to `addr`, failing with `ErrorKind::TimedOut` after
    /// `timeout`.
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        connect_one(*addr, Some(timeout))
    }

    /// Wraps a connected std stream (made non-blocking).
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        stream.set_nonblocking(true)?;
        Ok(TcpStream::from_mio(mio::net::TcpStream::from_std(stream)))
    }

    fn from_mio(stream: mio::net::TcpStream) -> TcpStream {
        TcpStream {
            io: CoIo::new(stream),
        }
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.inner.peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.inner.local_addr()
    }

    /// Shuts down the read side, the write side or both; a coroutine waiting
    /// to read then sees EOF.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.io.inner.shutdown(how)
    }

    /// Sets `TCP_NODELAY` (turns off Nagle's algorithm).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.io.inner.set_nodelay(nodelay)
    }

    /// Reads `TCP_NODELAY`.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.io.inner.nodelay()
    }

    /// Takes the socket's pending error (`SO_ERROR`).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.inner.take_error()
    }

    /// A read that waits longer than `timeout` fails with
    /// `ErrorKind::TimedOut` (`None`: wait forever). A zero duration is
    /// refused, as in std.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.io.set_timeout(Direction::Read, timeout)
    }

    /// Like [`set_read_timeout`](TcpStream::set_read_timeout), for writes.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.io.set_timeout(Direction::Write, timeout)
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.io.timeout(Direction::Read))
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.io.timeout(Direction::Write))
    }
}

impl_read_write!(TcpStream);
#[cfg(feature = "futures-io")]
impl_async_read_write!(
    TcpStream,
    r#"```
use futures::io::{AsyncReadExt, AsyncWriteExt};
use coprimitives::io::{TcpListener, TcpStream};

let rt = coscheduler::Runtime::builder().threads(2).build().unwrap();
let listener = TcpListener::bind("127.0.0.1:0").unwrap();
let addr = listener.local_addr().unwrap();
let server = rt.spawn(move || {
    let (s, _) = listener.accept().unwrap();
    // Async code on a coroutine socket, awaited by this coroutine.
    coscheduler::wait(async {
        let mut w = &s;
        futures::io::copy(&s, &mut w).await
    })
});
let reply = rt.block_on(move || {
    let mut c = TcpStream::connect(addr).unwrap();
    coscheduler::wait(async {
        c.write_all(b"hello").await?;
        c.close().await?; // the server's copy sees EOF
        let mut buf = Vec::new();
        c.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    })
});
assert_eq!(reply.unwrap(), b"hello");
assert_eq!(server.join().unwrap().unwrap(), 5);
```
"#
);

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("local", &self.local_addr().ok())
            .field("peer", &self.peer_addr().ok())
            .field("fd", &self.io.fd())
            .finish()
    }
}

/// std's rule: try each address, return the first success or the last error.
fn each_addr<T>(
    addr: impl ToSocketAddrs,
    mut f: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        match f(a) {
            Ok(t) => return Ok(t),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any addresses",
        )
    }))
}

/// A non-blocking connect, then a wait for writability and `SO_ERROR`.
fn connect_one(addr: SocketAddr, timeout: Option<Duration>) -> io::Result<TcpStream> {
    let stream = TcpStream::from_mio(mio::net::TcpStream::connect(addr)?);
    let deadline = deadline_after(timeout);
    stream.io.io(Direction::Write, deadline, || {
        if let Some(e) = stream.io.inner.take_error()? {
            return Err(e);
        }
        match stream.io.inner.peer_addr() {
            Ok(_) => Ok(()),
            // Still connecting: wait for writability.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                Err(io::ErrorKind::WouldBlock.into())
            }
            Err(e) => Err(e),
        }
    })?;
    Ok(stream)
}

/// socket + SO_REUSEADDR + bind + listen(LISTEN_BACKLOG), non-blocking.
fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket nobody else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    let (storage, len) = sockaddr(&addr);
    // SAFETY: valid option pointer and length; `storage` holds a sockaddr
    // of `len` bytes for `family`.
    let ok = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
            && libc::bind(fd, (&storage as *const libc::sockaddr_storage).cast(), len) == 0
            && libc::listen(fd, LISTEN_BACKLOG) == 0
    };
    if !ok {
        return Err(io::Error::last_os_error());
    }
    TcpListener::from_std(std::net::TcpListener::from(owned))
}

/// A `SocketAddr` as a C `sockaddr_storage` and its length.
fn sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for
            // sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}
