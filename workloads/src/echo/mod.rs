//! W8: loopback TCP echo. The servers (a coroutine per connection on coscheduler, a task per
//! connection on tokio) and the client ([`client`]) that loads them.
//!
//! A server echoes bytes, not requests: it reads whatever has arrived into a
//! [`SERVER_BUFFER`]-byte buffer and writes it all back, so that a pipelined client's
//! requests cost one read and one write per batch. [`serve_observed`] shows each batch to a
//! hook first, for a caller (costress) that checks and times the requests inside the bytes.

pub mod client;
mod error;

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use coprimitives::io::{TcpListener, TcpStream};

pub use self::error::Error;

/// The servers' read buffer, in bytes.
pub const SERVER_BUFFER: usize = 4096;

/// Accepts connections on `listener` until `limit` of them (for ever with `None`), sets
/// `TCP_NODELAY` on each and hands it to `serve` with its index, counted from 0; `serve`
/// decides where its coroutine runs. Returns the first error of `accept`, or `Ok` after the
/// `limit`-th connection.
pub fn accept(
    listener: &TcpListener,
    limit: Option<usize>,
    mut serve: impl FnMut(usize, TcpStream),
) -> io::Result<()> {
    let mut accepted = 0;
    while limit.is_none_or(|limit| accepted < limit) {
        let (stream, _) = listener.accept()?;
        // Latency, not throughput, is the point: no Nagle delay on the echoes.
        let _ = stream.set_nodelay(true);
        serve(accepted, stream);
        accepted += 1;
    }
    Ok(())
}

/// Echoes until the peer closes (`Ok`) or an error: read into a buffer, write it all back.
/// Generic, so that the std reference server (a thread per connection) runs the same loop.
pub fn serve<S: Read + Write>(stream: S) -> io::Result<()> {
    serve_observed(stream, |_| {})
}

/// [`serve`], showing each batch of bytes read to `seen` before echoing it.
#[inline]
pub fn serve_observed<S: Read + Write>(
    mut stream: S,
    mut seen: impl FnMut(&[u8]),
) -> io::Result<()> {
    let mut buf = [0u8; SERVER_BUFFER];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                seen(&buf[..n]);
                stream.write_all(&buf[..n])?;
            }
            // Coroutine sockets absorb `Interrupted`; any error ends the connection.
            Err(e) => return Err(e),
        }
    }
}

/// A std listener on a free loopback port, non-blocking (what tokio's `from_std` needs, and
/// what lets a std acceptor poll a stop flag), and its address.
pub fn nonblocking_listener() -> Result<(std::net::TcpListener, SocketAddr), Error> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::io("binding the listener", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("reading the listener's address", e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("making the listener non-blocking", e))?;
    Ok((listener, addr))
}

/// The tokio twin of [`accept`] with [`serve_tokio`]: a task that accepts `limit`
/// connections (for ever with `None`) on `listener`, a non-blocking std listener such as
/// [`nonblocking_listener`]'s, and spawns a task per connection. Must run inside the tokio
/// runtime: `from_std` needs its reactor, which only a task has at hand.
#[cfg(feature = "tokio")]
pub async fn accept_tokio(listener: std::net::TcpListener, limit: Option<usize>) -> io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let mut accepted = 0;
    while limit.is_none_or(|limit| accepted < limit) {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        drop(tokio::spawn(serve_tokio(stream)));
        accepted += 1;
    }
    Ok(())
}

/// [`serve`] as a tokio task.
#[cfg(feature = "tokio")]
pub async fn serve_tokio(mut stream: tokio::net::TcpStream) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; SERVER_BUFFER];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => return Ok(()),
            Ok(n) => stream.write_all(&buf[..n]).await?,
            Err(e) => return Err(e),
        }
    }
}
