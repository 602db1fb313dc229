//! Coroutine Unix-domain stream sockets (`std::os::unix::net`'s API, with
//! blocking calls suspending the coroutine).

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use coscheduler::fd::Direction;

#[cfg(feature = "futures-io")]
use super::async_io::impl_async_read_write;
use super::stream::{CoIo, impl_read_write};

/// A Unix stream socket whose blocking reads and writes suspend the calling
/// coroutine; `Read` and `Write` also for `&UnixStream`.
///
/// `Send + Sync`, rebinding to the context that uses it, like
/// [`TcpStream`](super::TcpStream) (whose docs describe the details).
///
/// ```
/// use std::io::{Read, Write};
/// let ctx = coscheduler::AioContext::current();
/// let h = ctx.spawn(|| {
///     let (a, b) = coprimitives::io::UnixStream::pair().unwrap();
///     let reader = coscheduler::AioContext::current().spawn(move || {
///         let mut buf = String::new();
///         (&b).read_to_string(&mut buf).unwrap();
///         buf
///     });
///     (&a).write_all(b"over the socketpair").unwrap();
///     drop(a);
///     reader.join().unwrap()
/// });
/// assert_eq!(h.join().unwrap(), "over the socketpair");
/// ```
pub struct UnixStream {
    io: CoIo<mio::net::UnixStream>,
}

impl UnixStream {
    /// A connected pair (`socketpair(2)`), both non-blocking.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = mio::net::UnixStream::pair()?;
        Ok((UnixStream::from_mio(a), UnixStream::from_mio(b)))
    }

    /// Connects to the socket at `path`. A Unix connect completes at once
    /// or fails; with the listener's backlog full it fails with
    /// `ErrorKind::WouldBlock`.
    pub fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        Ok(UnixStream::from_mio(mio::net::UnixStream::connect(path)?))
    }

    /// Wraps a connected std stream (made non-blocking).
    pub fn from_std(stream: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        stream.set_nonblocking(true)?;
        Ok(UnixStream::from_mio(mio::net::UnixStream::from_std(stream)))
    }

    fn from_mio(stream: mio::net::UnixStream) -> UnixStream {
        UnixStream {
            io: CoIo::new(stream),
        }
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.inner.local_addr()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.inner.peer_addr()
    }

    /// Shuts down one or both directions.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.io.inner.shutdown(how)
    }

    /// Takes the socket's pending error (`SO_ERROR`).
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.inner.take_error()
    }

    /// A read that waits longer than `timeout` fails with
    /// `ErrorKind::TimedOut` (`None`: wait forever; zero is refused).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.io.set_timeout(Direction::Read, timeout)
    }

    /// Like [`set_read_timeout`](UnixStream::set_read_timeout), for writes.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.io.set_timeout(Direction::Write, timeout)
    }
}

impl_read_write!(UnixStream);
#[cfg(feature = "futures-io")]
impl_async_read_write!(
    UnixStream,
    r#"```
use futures::io::{AsyncReadExt, AsyncWriteExt};

let h = coscheduler::AioContext::current().spawn(|| {
    let (mut a, mut b) = coprimitives::io::UnixStream::pair().unwrap();
    coscheduler::wait(async move {
        a.write_all(b"ping").await?;
        let mut buf = [0; 4];
        b.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    })
});
assert_eq!(&h.join().unwrap().unwrap(), b"ping");
```
"#
);

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixStream")
            .field("fd", &self.io.fd().as_raw_fd())
            .finish()
    }
}

/// A Unix listening socket whose [`accept`](UnixListener::accept) suspends
/// the calling coroutine.
pub struct UnixListener {
    io: CoIo<mio::net::UnixListener>,
}

impl UnixListener {
    /// Binds to `path` (which must not exist).
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        Ok(UnixListener {
            io: CoIo::new(mio::net::UnixListener::bind(path)?),
        })
    }

    /// Accepts a connection, suspending until one arrives.
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (s, addr) = self
            .io
            .io(Direction::Read, None, || self.io.inner.accept())?;
        Ok((UnixStream::from_mio(s), addr))
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.inner.local_addr()
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener")
            .field("fd", &self.io.fd().as_raw_fd())
            .finish()
    }
}
