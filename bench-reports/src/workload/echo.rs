//! W8: loopback TCP echo, the same client (`echo/client.rs`) against three servers: a
//! coroutine per connection on coscheduler, a task per connection on tokio, and a thread
//! per connection on std, at pipeline depth 1 (a closed loop) and 16.
//!
//! The client threads share the two cores with the server under test. The coscheduler
//! server runs on the defaults a user gets, as the other rows do, and tokio's on its own
//! defaults (unpinned workers).
//!
//! [`client::CONNECTIONS`] is 32 in both modes, not docs/BENCHMARKS.md's 100: the quick run that
//! CI gates and a full run measure the same workload, and 32 keeps the reference's thread
//! per connection from turning the row into a measurement of the kernel's scheduler on two
//! cores.

mod client;

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use self::client::{CONNECTIONS, io_error};
use super::support::{Placement, row_runtime, row_tokio};
use crate::error::Error;
use crate::timed::Recorder;

/// The servers' read buffer, as in `primitives/benches/echo.rs`.
const SERVER_BUFFER: usize = 4096;

/// W8 on coscheduler: an echo server with one coroutine per connection (`Handle::spawn`
/// from an accepting coroutine, coprimitives' `TcpListener`/`TcpStream`) on the row's
/// two-worker runtime, loaded by the client with `ops` requests at pipeline depth `depth`.
/// Each sample binds a new listener; its acceptor ends after the client's connections, and
/// each connection's coroutine when the client closes it at the end of the sample.
pub(super) fn coscheduler_echo(
    name: &'static str,
    ops: u64,
    depth: usize,
    recorder: &mut Recorder,
) -> Result<f64, Error> {
    let listener = coprimitives::io::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| io_error(name, "binding the listener", &e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| io_error(name, "reading the listener's address", &e))?;
    let rt = row_runtime(name, Placement::Defaults)?;
    let handle = rt.handle();
    drop(rt.spawn(move || {
        for _ in 0..CONNECTIONS {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let _ = stream.set_nodelay(true);
            drop(handle.spawn(move || serve(stream)));
        }
    }));
    drop(rt);
    // If the client gives up before opening every connection, the acceptor stays suspended
    // in `accept` until the row's runtime shuts down and unwinds it.
    client::run(name, addr, ops, depth, recorder)
}

/// W8 on tokio: an echo server with one task per connection (`tokio::spawn` from an
/// accepting task, `tokio::net`, read into a buffer then `write_all`) on the row's 2-worker
/// multi-thread runtime, under the same client and load.
pub(super) fn tokio_echo(
    name: &'static str,
    ops: u64,
    depth: usize,
    recorder: &mut Recorder,
) -> Result<f64, Error> {
    let (listener, addr) = nonblocking_listener(name)?;
    let rt = row_tokio(name)?;
    drop(rt.spawn(async move {
        // `from_std` needs the runtime's reactor, which only a task has at hand.
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
            return;
        };
        for _ in 0..CONNECTIONS {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let _ = stream.set_nodelay(true);
            drop(tokio::spawn(serve_tokio(stream)));
        }
    }));
    drop(rt);
    // A task left in `accept` (the client gave up early) ends at the row's shutdown.
    client::run(name, addr, ops, depth, recorder)
}

/// W8 reference: a std blocking echo server, one thread per connection plus an accepting
/// thread, under the same client and load.
pub(super) fn std_echo_threads(
    name: &'static str,
    ops: u64,
    depth: usize,
    recorder: &mut Recorder,
) -> Result<f64, Error> {
    // Non-blocking accepts, so that the accepting thread can also notice `stop` if the
    // client gives up before opening every connection; once all are accepted (before the
    // client's warm-up can end) it exits and polls no more.
    let (listener, addr) = nonblocking_listener(name)?;
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let (listener, stop) = (&listener, &stop);
        s.spawn(move || {
            let mut accepted = 0;
            // Acquire: pairs with the Release store after the client returns.
            while accepted < CONNECTIONS && !stop.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        accepted += 1;
                        // Accepted sockets do not inherit O_NONBLOCK on Linux; be explicit.
                        if stream.set_nonblocking(false).is_ok() {
                            let _ = stream.set_nodelay(true);
                            s.spawn(move || serve(stream));
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_micros(100));
                    }
                    Err(_) => {}
                }
            }
        });
        let result = client::run(name, addr, ops, depth, recorder);
        // Release: pairs with the Acquire load of the accepting thread. The connection
        // threads end on their clients' EOF: `client::run` has closed every connection.
        stop.store(true, Ordering::Release);
        result
    })
}

/// A std listener on a free loopback port, non-blocking (what tokio's `from_std` needs, and
/// what lets the std server's acceptor poll a stop flag), and its address.
fn nonblocking_listener(name: &str) -> Result<(std::net::TcpListener, SocketAddr), Error> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| io_error(name, "binding the listener", &e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| io_error(name, "reading the listener's address", &e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| io_error(name, "making the listener non-blocking", &e))?;
    Ok((listener, addr))
}

/// Echoes until the peer closes or an error: read into a buffer, write it all back.
fn serve<S: Read + Write>(mut stream: S) {
    let mut buf = [0u8; SERVER_BUFFER];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// [`serve`] as a tokio task.
async fn serve_tokio(mut stream: tokio::net::TcpStream) {
    let mut buf = [0u8; SERVER_BUFFER];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}
