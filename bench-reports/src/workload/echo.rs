//! W8: loopback TCP echo, the same client (`workloads::echo::client`) against three servers: a
//! coroutine per connection on coscheduler, a task per connection on tokio, and a thread
//! per connection on std, at pipeline depth 1 (a closed loop) and 16.
//!
//! The client threads share the two cores with the server under test. The coscheduler
//! server runs on the defaults a user gets, as the other rows do, and tokio's on its own
//! defaults (unpinned workers).
//!
//! [`CONNECTIONS`] is 32 in both modes, not docs/BENCHMARKS.md's 100: the quick run that
//! CI gates and a full run measure the same workload, and 32 keeps the reference's thread
//! per connection from turning the row into a measurement of the kernel's scheduler on two
//! cores.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use workloads::echo::{self, client};

use super::support::{Placement, row_runtime, row_tokio, workload_error};
use crate::error::Error;
use crate::timed::{Latencies, Recorder};

/// Client connections in all, each with up to `depth` requests in flight.
const CONNECTIONS: usize = 32;

/// Client threads; each drives `CONNECTIONS / CLIENT_THREADS` connections.
const CLIENT_THREADS: usize = 2;

/// Metric: server CPU time per request, in ns.
const SERVER_CPU: &str = "server_cpu_ns_per_request";

/// Metric: client threads' CPU time over their wall time, a fraction.
const CLIENT_CPU: &str = "client_cpu_fraction";

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
        let _ = echo::accept(&listener, Some(CONNECTIONS), |_, stream| {
            drop(handle.spawn(move || echo::serve(stream)));
        });
    }));
    drop(rt);
    // If the client gives up before opening every connection, the acceptor stays suspended
    // in `accept` until the row's runtime shuts down and unwinds it.
    load(name, addr, ops, depth, recorder)
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
    let (listener, addr) = echo::nonblocking_listener().map_err(|e| echo_error(name, &e))?;
    let rt = row_tokio(name)?;
    drop(rt.spawn(echo::accept_tokio(listener, Some(CONNECTIONS))));
    drop(rt);
    // A task left in `accept` (the client gave up early) ends at the row's shutdown.
    load(name, addr, ops, depth, recorder)
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
    let (listener, addr) = echo::nonblocking_listener().map_err(|e| echo_error(name, &e))?;
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
                            s.spawn(move || echo::serve(stream));
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_micros(100));
                    }
                    Err(_) => {}
                }
            }
        });
        let result = load(name, addr, ops, depth, recorder);
        // Release: pairs with the Acquire load of the accepting thread. The connection
        // threads end on their clients' EOF: the client has closed every connection.
        stop.store(true, Ordering::Release);
        result
    })
}

/// Runs the client against `addr`: [`CONNECTIONS`] connections over [`CLIENT_THREADS`]
/// threads, `requests` timed requests at pipeline depth `depth`. Returns requests per
/// second, records each request's latency in ns, and records the [`SERVER_CPU`] and
/// [`CLIENT_CPU`] metrics. The server's CPU time is the process's less the client
/// threads': the benchmark thread only waits and the other rows' runtimes idle; a load
/// pass's competitors are other processes and do not count.
fn load(
    name: &str,
    addr: SocketAddr,
    requests: u64,
    depth: usize,
    recorder: &mut Recorder,
) -> Result<f64, Error> {
    let load = client::Load {
        connections: CONNECTIONS,
        threads: CLIENT_THREADS,
        requests,
        depth,
    };
    let outcome = client::run(addr, &load).map_err(|e| echo_error(name, &e))?;
    let per_second = outcome.requests_per_second();
    recorder.metric(
        SERVER_CPU,
        outcome.server_cpu().as_nanos() as f64 / requests as f64,
    );
    recorder.metric(CLIENT_CPU, outcome.client_cpu_fraction());
    recorder.merge(&Latencies::from(outcome.latencies));
    Ok(per_second)
}

fn io_error(name: &str, what: &str, e: &std::io::Error) -> Error {
    workload_error(name, &format!("{what}: {e}"))
}

fn echo_error(name: &str, e: &echo::Error) -> Error {
    workload_error(name, &e.to_string())
}
