//! W8: loopback TCP echo, a coscheduler server and a thread-per-connection std server
//! under the same load from the same client.
//!
//! The client is neither server's code: one thread driving every connection through `mio`,
//! each connection sending a 64-byte request and waiting for its echo before sending the
//! next (a closed loop). It runs on the benchmark thread and shares the two cores with the
//! server under test, which is why the coscheduler workers here are not pinned: a pinned
//! worker could not move away from the client.
//!
//! [`CONNECTIONS`] is 32 in both modes, not WORKLOADS.md's 100: the quick run that CI gates
//! and a full run measure the same workload, and 32 keeps the reference's thread per
//! connection from turning the row into a measurement of the kernel's scheduler on two
//! cores.

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};

use super::support::{STUCK_AFTER, nanos, row_runtime, workload_error};
use crate::error::Error;
use crate::timed::Latencies;

/// Client connections, each with one request in flight at a time.
const CONNECTIONS: usize = 32;

/// Bytes per request (and per echo).
const REQUEST_SIZE: usize = 64;

/// Untimed round trips per connection before the timed ones: connections accepted, server
/// coroutines (or threads) started, buffers and caches warm.
const WARM_UP_PER_CONNECTION: u64 = 4;

/// The server's read buffer, as in `primitives/benches/echo.rs`.
const SERVER_BUFFER: usize = 4096;

/// W8: an echo server with one coroutine per connection (`Handle::spawn` from an accepting
/// coroutine, coprimitives' `TcpListener`/`TcpStream`) on the row's unpinned two-worker
/// runtime, loaded by the client with `ops` requests. Each sample binds a new listener;
/// its acceptor ends after the client's [`CONNECTIONS`] connections, and each connection's
/// coroutine when the client closes it at the end of the sample. Returns requests per second and
/// records each request's latency (send to complete echo) in ns.
pub(super) fn coscheduler_echo(ops: u64, latencies: &mut Latencies) -> Result<f64, Error> {
    const NAME: &str = "w8_echo";
    let listener = coprimitives::io::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| io_error(NAME, "binding the listener", &e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| io_error(NAME, "reading the listener's address", &e))?;
    let rt = row_runtime(NAME, false)?;
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
    client(NAME, addr, ops, latencies)
}

/// W8 reference: a std blocking echo server, one thread per connection plus an accepting
/// thread, loaded by the same client with `ops` requests. Returns requests per second and
/// records each request's latency in ns.
pub(super) fn std_echo_threads(ops: u64, latencies: &mut Latencies) -> Result<f64, Error> {
    const NAME: &str = "std_echo_threads";
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| io_error(NAME, "binding the listener", &e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| io_error(NAME, "reading the listener's address", &e))?;
    // Non-blocking accepts, so that the accepting thread can also notice `stop` if the
    // client gives up before opening every connection; once all are accepted (before the
    // client's warm-up can end) it exits and polls no more.
    listener
        .set_nonblocking(true)
        .map_err(|e| io_error(NAME, "making the listener non-blocking", &e))?;
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
        let result = client(NAME, addr, ops, latencies);
        // Release: pairs with the Acquire load of the accepting thread. The connection
        // threads end on their clients' EOF: `client` has closed every connection.
        stop.store(true, Ordering::Release);
        result
    })
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

/// One client connection.
struct Conn {
    stream: MioStream,
    /// When its request in flight was sent.
    sent_at: Instant,
    /// Bytes of the echo received so far.
    got: usize,
}

/// Opens [`CONNECTIONS`] connections to `addr`, warms them up, then completes `requests`
/// timed requests over them. Returns requests per second.
fn client(
    name: &str,
    addr: SocketAddr,
    requests: u64,
    latencies: &mut Latencies,
) -> Result<f64, Error> {
    let mut poll = Poll::new().map_err(|e| io_error(name, "creating the client's poll", &e))?;
    let mut conns = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        let stream = connect(addr).map_err(|e| io_error(name, "connecting", &e))?;
        let mut stream = MioStream::from_std(stream);
        poll.registry()
            .register(&mut stream, Token(i), Interest::READABLE)
            .map_err(|e| io_error(name, "registering a connection", &e))?;
        conns.push(Conn {
            stream,
            sent_at: Instant::now(),
            got: 0,
        });
    }
    let warm_up = WARM_UP_PER_CONNECTION * CONNECTIONS as u64;
    drive(name, &mut poll, &mut conns, warm_up, &mut Latencies::new())?;
    let begin = Instant::now();
    drive(name, &mut poll, &mut conns, requests, latencies)?;
    Ok(requests as f64 / begin.elapsed().as_secs_f64())
}

fn connect(addr: SocketAddr) -> io::Result<std::net::TcpStream> {
    let stream = std::net::TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    Ok(stream)
}

/// Completes `requests` requests over `conns`, starting with one in flight per connection
/// and sending the next on each completed echo, and records each one's latency. Returns
/// with nothing in flight.
fn drive(
    name: &str,
    poll: &mut Poll,
    conns: &mut [Conn],
    requests: u64,
    latencies: &mut Latencies,
) -> Result<(), Error> {
    let request = [0x5au8; REQUEST_SIZE];
    let mut buf = [0u8; REQUEST_SIZE];
    let mut sent = 0u64;
    let mut done = 0u64;
    for conn in conns
        .iter_mut()
        .take(usize::try_from(requests).unwrap_or(usize::MAX))
    {
        send(name, conn, &request)?;
        sent += 1;
    }
    let mut events = Events::with_capacity(conns.len());
    let mut progress_at = Instant::now();
    while done < requests {
        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .map_err(|e| io_error(name, "polling the client connections", &e))?;
        if events.is_empty() && progress_at.elapsed() > STUCK_AFTER {
            let detail = format!("no echo for {STUCK_AFTER:?}; {done} of {requests} done");
            return Err(workload_error(name, &detail));
        }
        for event in events.iter() {
            let conn = &mut conns[event.token().0];
            // Edge-triggered: read until the socket is drained.
            loop {
                match conn.stream.read(&mut buf[conn.got..]) {
                    Ok(0) => return Err(workload_error(name, "the server closed a connection")),
                    Ok(n) => {
                        conn.got += n;
                        if conn.got < REQUEST_SIZE {
                            continue;
                        }
                        latencies.record(nanos(conn.sent_at.elapsed()));
                        done += 1;
                        conn.got = 0;
                        if sent < requests {
                            send(name, conn, &request)?;
                            sent += 1;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_error(name, "reading an echo", &e)),
                }
            }
            progress_at = Instant::now();
        }
    }
    Ok(())
}

/// Sends one request. Its echo has come back before the next is sent, so the request always
/// fits the empty socket buffer; a short write means something is badly wrong.
fn send(name: &str, conn: &mut Conn, request: &[u8]) -> Result<(), Error> {
    conn.sent_at = Instant::now();
    match conn.stream.write(request) {
        Ok(n) if n == request.len() => Ok(()),
        Ok(n) => Err(workload_error(
            name,
            &format!("short write of a {}-byte request: {n} bytes", request.len()),
        )),
        Err(e) => Err(io_error(name, "sending a request", &e)),
    }
}

fn io_error(name: &str, what: &str, e: &io::Error) -> Error {
    workload_error(name, &format!("{what}: {e}"))
}
