//! `futures_io::AsyncRead`/`AsyncWrite` for the coroutine streams (the
//! `futures-io` feature; the rules are in the `io` module docs, "Async
//! I/O").
//!
//! Each poll tries the system call; on `WouldBlock` it clears the cached
//! readiness and polls the socket's registration with the task's waker
//! (`Registration::poll_ready`), made on or rebound to the polling
//! coroutine's context exactly as a blocking call's would be
//! (`io/readiness.rs`). Outside a coroutine every read and write poll fails
//! with `ErrorKind::Unsupported` before any system call.

/// The `AsyncRead` methods of a stream (or a reference to one) with an
/// `io: CoIo<_>` field.
macro_rules! async_read_methods {
    () => {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.io.poll_read(cx, buf)
        }

        fn poll_read_vectored(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            bufs: &mut [std::io::IoSliceMut<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.io.poll_read_vectored(cx, bufs)
        }
    };
}

/// The `AsyncWrite` methods, as [`async_read_methods`]. Nothing is
/// buffered, so `poll_flush` is always ready; `poll_close` shuts the write
/// side down (the peer reads EOF). Neither waits, so neither needs a
/// coroutine.
macro_rules! async_write_methods {
    () => {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.io.poll_write(cx, buf)
        }

        fn poll_write_vectored(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            bufs: &[std::io::IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.io.poll_write_vectored(cx, bufs)
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(self.shutdown(std::net::Shutdown::Write))
        }
    };
}

/// `AsyncRead` + `AsyncWrite` for a stream type and for references to it,
/// delegating to its `io: CoIo<_>` field; `$example` ends the `AsyncRead`
/// impl's docs (an example naming the type).
macro_rules! impl_async_read_write {
    ($ty:ident, $example:literal) => {
        #[doc = r#"Async reads, for async code polled inside a coroutine: a future
awaited with `coscheduler::wait`, on any context (the `futures-io`
feature).

A read that would block stores the task's waker with the socket's
readiness registration on the polling coroutine's context and returns
`Pending`; that context's event loop wakes the waker when the socket is
readable, and also when the fd is found closed (the next poll fails with
`EBADF`). The results are the blocking `Read`'s: `Ok(0)` at EOF,
`ConnectionReset` after a reset. Polled outside a coroutine (a tokio
worker, `futures::executor::block_on` on a plain thread) every read and
write fails with `ErrorKind::Unsupported`. The socket's read and write
timeouts do not apply. The [`io`](crate::io) module docs ("Async I/O")
say why and list the rest.

"#]
        #[doc = $example]
        impl futures_io::AsyncRead for $ty {
            $crate::io::async_io::async_read_methods!();
        }

        /// As for the owned stream: a reader and a writer task (or the two
        /// halves of a `join`) can share one stream. Two readers on one
        /// context share one waiter slot: only the last to poll is woken.
        impl futures_io::AsyncRead for &$ty {
            $crate::io::async_io::async_read_methods!();
        }

        /// Writes poll like reads (see the `AsyncRead` impl). Nothing is
        /// buffered, so `poll_flush` is always ready; `poll_close` shuts
        /// the write side down (the peer reads EOF) and returns its result.
        /// Neither waits, so neither needs a coroutine.
        impl futures_io::AsyncWrite for $ty {
            $crate::io::async_io::async_write_methods!();
        }

        /// As for the owned stream.
        impl futures_io::AsyncWrite for &$ty {
            $crate::io::async_io::async_write_methods!();
        }
    };
}
pub(crate) use {async_read_methods, async_write_methods, impl_async_read_write};
