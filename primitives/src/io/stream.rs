//! What the coroutine sockets share: a non-blocking `mio` socket, its
//! [`Readiness`] binding, and std-style read/write timeouts.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use coscheduler::fd::Direction;

use super::readiness::Readiness;

/// A non-blocking socket whose `WouldBlock` suspends the coroutine.
///
/// Field order matters: the registration is dropped before the socket is
/// closed, so that on the owning thread the `EPOLL_CTL_DEL` sees a valid fd.
pub(crate) struct CoIo<S> {
    readiness: Readiness,
    /// Read / write timeouts in nanoseconds, 0 = none.
    read_timeout: AtomicU64,
    write_timeout: AtomicU64,
    pub(crate) inner: S,
}

impl<S: AsFd> CoIo<S> {
    /// Wraps a socket that is already non-blocking.
    pub(crate) fn new(inner: S) -> CoIo<S> {
        CoIo {
            readiness: Readiness::new(),
            read_timeout: AtomicU64::new(0),
            write_timeout: AtomicU64::new(0),
            inner,
        }
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }

    /// Runs `op` until it does not block, waiting for `dir` in between.
    #[inline]
    pub(crate) fn io<R>(
        &self,
        dir: Direction,
        deadline: Option<Instant>,
        op: impl FnMut() -> io::Result<R>,
    ) -> io::Result<R> {
        self.readiness.io(self.inner.as_fd(), dir, deadline, op)
    }

    fn deadline(&self, timeout: &AtomicU64) -> Option<Instant> {
        // Relaxed: a plain setting; a racing change applies to the next call.
        match timeout.load(Relaxed) {
            0 => None,
            ns => Instant::now().checked_add(Duration::from_nanos(ns)),
        }
    }

    pub(crate) fn set_timeout(&self, dir: Direction, timeout: Option<Duration>) -> io::Result<()> {
        let ns = match timeout {
            None => 0,
            Some(d) if d.is_zero() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "cannot set a 0 duration timeout",
                ));
            }
            Some(d) => u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
        };
        let slot = if dir == Direction::Read {
            &self.read_timeout
        } else {
            &self.write_timeout
        };
        // Relaxed: see `deadline`.
        slot.store(ns, Relaxed);
        Ok(())
    }

    pub(crate) fn timeout(&self, dir: Direction) -> Option<Duration> {
        let slot = if dir == Direction::Read {
            &self.read_timeout
        } else {
            &self.write_timeout
        };
        // Relaxed: see `deadline`.
        match slot.load(Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }
}

impl<S: AsFd> CoIo<S>
where
    for<'a> &'a S: Read + Write,
{
    #[inline]
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let deadline = self.deadline(&self.read_timeout);
        let want = buf.len();
        self.transfer(Direction::Read, deadline, want, || (&self.inner).read(buf))
    }

    pub(crate) fn read_vectored(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let deadline = self.deadline(&self.read_timeout);
        let want = bufs.iter().map(|b| b.len()).sum();
        self.transfer(Direction::Read, deadline, want, || {
            (&self.inner).read_vectored(bufs)
        })
    }

    #[inline]
    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        let deadline = self.deadline(&self.write_timeout);
        self.transfer(Direction::Write, deadline, buf.len(), || {
            (&self.inner).write(buf)
        })
    }

    pub(crate) fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let deadline = self.deadline(&self.write_timeout);
        let want = bufs.iter().map(|b| b.len()).sum();
        self.transfer(Direction::Write, deadline, want, || {
            (&self.inner).write_vectored(bufs)
        })
    }

    /// A transfer with the short-transfer rule (`io/readiness.rs`).
    #[inline]
    fn transfer(
        &self,
        dir: Direction,
        deadline: Option<Instant>,
        want: usize,
        op: impl FnMut() -> io::Result<usize>,
    ) -> io::Result<usize> {
        self.readiness
            .transfer(self.inner.as_fd(), dir, deadline, want, op)
    }
}

/// The async transfers (`io/async_io.rs`): one try each, then a poll of the
/// registration instead of a suspension. No timeouts: deadlines are the
/// executor's.
#[cfg(feature = "futures-io")]
impl<S: AsFd> CoIo<S>
where
    for<'a> &'a S: Read + Write,
{
    pub(crate) fn poll_read(
        &self,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<io::Result<usize>> {
        self.readiness
            .poll_io(self.inner.as_fd(), Direction::Read, cx, || {
                (&self.inner).read(buf)
            })
    }

    pub(crate) fn poll_read_vectored(
        &self,
        cx: &mut std::task::Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        self.readiness
            .poll_io(self.inner.as_fd(), Direction::Read, cx, || {
                (&self.inner).read_vectored(bufs)
            })
    }

    pub(crate) fn poll_write(
        &self,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        self.readiness
            .poll_io(self.inner.as_fd(), Direction::Write, cx, || {
                (&self.inner).write(buf)
            })
    }

    pub(crate) fn poll_write_vectored(
        &self,
        cx: &mut std::task::Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        self.readiness
            .poll_io(self.inner.as_fd(), Direction::Write, cx, || {
                (&self.inner).write_vectored(bufs)
            })
    }
}

/// `Read` + `Write` for a socket type and for references to it, delegating
/// to its `io: CoIo<_>` field.
macro_rules! impl_read_write {
    ($ty:ty) => {
        impl std::io::Read for &$ty {
            #[inline]
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.io.read(buf)
            }
            fn read_vectored(
                &mut self,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::io::Result<usize> {
                self.io.read_vectored(bufs)
            }
        }
        impl std::io::Write for &$ty {
            #[inline]
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.io.write(buf)
            }
            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                self.io.write_vectored(bufs)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        impl std::io::Read for $ty {
            #[inline]
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.io.read(buf)
            }
            fn read_vectored(
                &mut self,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::io::Result<usize> {
                self.io.read_vectored(bufs)
            }
        }
        impl std::io::Write for $ty {
            #[inline]
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.io.write(buf)
            }
            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                self.io.write_vectored(bufs)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        impl std::os::fd::AsFd for $ty {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                self.io.fd()
            }
        }
        impl std::os::fd::AsRawFd for $ty {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                std::os::fd::AsRawFd::as_raw_fd(&self.io.fd())
            }
        }
    };
}
pub(crate) use impl_read_write;
