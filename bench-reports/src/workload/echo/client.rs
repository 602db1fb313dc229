//! The W8 client: neither server's code, the same for every server.
//!
//! [`CLIENT_THREADS`] threads, each driving its share of the connections through its own
//! `mio` poll, so that one client thread's speed does not cap the server's figure. Each
//! connection keeps `depth` 64-byte requests in flight (1: a closed loop; 16: pipelined,
//! where the server's own cost shows) and sends as many new ones, in one write, as echoes
//! it has just completed.
//!
//! Besides requests per second it accounts for the CPU time the server spent: the whole
//! process's CPU time over the timed phase (`getrusage`) minus the client threads' own
//! (`RUSAGE_THREAD`). What is left is the server's, since the benchmark thread only waits
//! and the other rows' runtimes idle; a load pass's competitors are other processes and do
//! not count. Reported as [`SERVER_CPU`] ns per request, with [`CLIENT_CPU`], the share of
//! their wall time the client threads were on a CPU: near 1 means the client, not the
//! server, may have been the limit.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};

use super::super::support::{STUCK_AFTER, nanos, workload_error};
use crate::cpu::{Who, cpu_time};
use crate::error::Error;
use crate::timed::{Latencies, Recorder};

/// Client connections in all, each with up to `depth` requests in flight.
pub(in crate::workload) const CONNECTIONS: usize = 32;

/// Client threads; each drives `CONNECTIONS / CLIENT_THREADS` connections.
const CLIENT_THREADS: usize = 2;

/// Bytes per request (and per echo).
const REQUEST_SIZE: usize = 64;

/// The deepest pipeline a row may ask for: its requests fit any socket buffer, so a write
/// of them never comes up short.
pub(in crate::workload) const MAX_DEPTH: usize = 16;

/// Untimed round trips per connection before the timed ones: connections accepted, server
/// coroutines (or threads, or tasks) started, buffers and caches warm.
const WARM_UP_PER_CONNECTION: u64 = 4;

/// Metric: server CPU time per request, in ns.
const SERVER_CPU: &str = "server_cpu_ns_per_request";

/// Metric: client threads' CPU time over their wall time, a fraction.
const CLIENT_CPU: &str = "client_cpu_fraction";

/// One client connection.
struct Conn {
    stream: MioStream,
    /// When each request in flight was sent, oldest first.
    sent_at: VecDeque<Instant>,
    /// Bytes of the oldest request's echo received so far.
    got: usize,
}

/// What one client thread reports: its latencies, its timed phase (timed by itself: the
/// benchmark thread may be descheduled when the barrier releases the clients), and the CPU
/// time it spent in it.
struct Share {
    latencies: Latencies,
    began: Instant,
    finished: Instant,
    cpu: Duration,
}

/// Opens [`CONNECTIONS`] connections to `addr`, warms them up, then completes `requests`
/// timed requests over them at pipeline depth `depth`. Returns requests per second, records
/// each request's latency (sent to echo complete) in ns, and records the [`SERVER_CPU`]
/// and [`CLIENT_CPU`] metrics.
pub(in crate::workload) fn run(
    name: &str,
    addr: SocketAddr,
    requests: u64,
    depth: usize,
    recorder: &mut Recorder,
) -> Result<f64, Error> {
    if !(1..=MAX_DEPTH).contains(&depth) {
        let detail = format!("pipeline depth {depth} is outside 1..={MAX_DEPTH}");
        return Err(workload_error(name, &detail));
    }
    // Connect on this thread, in order, so that the server has seen every connection
    // before any thread sends; each thread then owns its slice.
    let mut streams = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        streams.push(connect(addr).map_err(|e| io_error(name, "connecting", &e))?);
    }
    let per_thread = CONNECTIONS / CLIENT_THREADS;
    let start = Barrier::new(CLIENT_THREADS + 1);
    let (shares, process_cpu) = thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENT_THREADS)
            .map(|t| {
                let mine: Vec<_> = streams.drain(..per_thread).collect();
                // The first thread takes the remainder of an odd split.
                let share = requests / CLIENT_THREADS as u64
                    + u64::from(t == 0) * (requests % CLIENT_THREADS as u64);
                let start = &start;
                s.spawn(move || client_thread(name, mine, share, depth, start))
            })
            .collect();
        // Read before the barrier: once the clients go, this thread may be descheduled
        // for a while, and the server's CPU time from the first request must be in the
        // difference. Between here and the barrier the server has nothing to do.
        let process_before = cpu_time(Who::Process);
        start.wait();
        let shares: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        (shares, cpu_time(Who::Process) - process_before)
    });
    let mut span: Option<(Instant, Instant)> = None;
    let mut client_cpu = Duration::ZERO;
    for share in shares {
        let share = share.map_err(|_| workload_error(name, "a client thread panicked"))??;
        recorder.merge(&share.latencies);
        span = Some(span.map_or((share.began, share.finished), |(b, f)| {
            (b.min(share.began), f.max(share.finished))
        }));
        client_cpu += share.cpu;
    }
    let Some((begin, finished)) = span else {
        return Err(workload_error(name, "no client thread ran"));
    };
    let wall = finished - begin;
    let server_cpu = process_cpu.saturating_sub(client_cpu);
    recorder.metric(SERVER_CPU, server_cpu.as_nanos() as f64 / requests as f64);
    recorder.metric(
        CLIENT_CPU,
        client_cpu.as_secs_f64() / (wall.as_secs_f64() * CLIENT_THREADS as f64),
    );
    Ok(requests as f64 / wall.as_secs_f64())
}

/// One client thread: registers its connections, warms them up, waits at `start` for the
/// other threads, then completes `requests` timed requests.
fn client_thread(
    name: &str,
    streams: Vec<std::net::TcpStream>,
    requests: u64,
    depth: usize,
    start: &Barrier,
) -> Result<Share, Error> {
    let ready = prepare(name, streams, depth);
    // Every thread reaches the barrier, ready or not, so that none waits forever.
    start.wait();
    let (mut poll, mut conns) = ready?;
    let cpu_before = cpu_time(Who::Thread);
    let began = Instant::now();
    let mut latencies = Latencies::new();
    drive(name, &mut poll, &mut conns, requests, depth, &mut latencies)?;
    Ok(Share {
        latencies,
        began,
        finished: Instant::now(),
        cpu: cpu_time(Who::Thread) - cpu_before,
    })
}

/// Registers `streams` with a fresh poll and runs the warm-up requests over them.
fn prepare(
    name: &str,
    streams: Vec<std::net::TcpStream>,
    depth: usize,
) -> Result<(Poll, Vec<Conn>), Error> {
    let mut poll = Poll::new().map_err(|e| io_error(name, "creating the client's poll", &e))?;
    let mut conns = Vec::with_capacity(streams.len());
    for (i, stream) in streams.into_iter().enumerate() {
        let mut stream = MioStream::from_std(stream);
        poll.registry()
            .register(&mut stream, Token(i), Interest::READABLE)
            .map_err(|e| io_error(name, "registering a connection", &e))?;
        conns.push(Conn {
            stream,
            sent_at: VecDeque::with_capacity(depth),
            got: 0,
        });
    }
    let warm_up = WARM_UP_PER_CONNECTION * depth as u64 * conns.len() as u64;
    drive(
        name,
        &mut poll,
        &mut conns,
        warm_up,
        depth,
        &mut Latencies::new(),
    )?;
    Ok((poll, conns))
}

fn connect(addr: SocketAddr) -> io::Result<std::net::TcpStream> {
    let stream = std::net::TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    Ok(stream)
}

/// Completes `requests` requests over `conns` with up to `depth` in flight on each,
/// replacing each completed request with a new one while any remain to be sent, and
/// records each one's latency. Returns with nothing in flight.
fn drive(
    name: &str,
    poll: &mut Poll,
    conns: &mut [Conn],
    requests: u64,
    depth: usize,
    latencies: &mut Latencies,
) -> Result<(), Error> {
    let mut buf = [0u8; 4096];
    let mut sent = 0u64;
    let mut done = 0u64;
    for conn in conns.iter_mut() {
        sent += send(name, conn, depth as u64, requests - sent)?;
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
            let completed = receive(name, conn, &mut buf, latencies)?;
            done += completed;
            sent += send(name, conn, completed, requests - sent)?;
            progress_at = Instant::now();
        }
    }
    Ok(())
}

/// Reads everything `conn` has (edge-triggered: until the socket is drained), completing
/// its oldest requests as their echoes fill up; returns how many completed.
fn receive(
    name: &str,
    conn: &mut Conn,
    buf: &mut [u8],
    latencies: &mut Latencies,
) -> Result<u64, Error> {
    let mut completed = 0;
    loop {
        match conn.stream.read(buf) {
            Ok(0) => return Err(workload_error(name, "the server closed a connection")),
            Ok(n) => {
                conn.got += n;
                while conn.got >= REQUEST_SIZE {
                    let Some(sent_at) = conn.sent_at.pop_front() else {
                        return Err(workload_error(name, "more echo bytes than requests sent"));
                    };
                    latencies.record(nanos(sent_at.elapsed()));
                    conn.got -= REQUEST_SIZE;
                    completed += 1;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(completed),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(name, "reading an echo", &e)),
        }
    }
}

/// Sends `min(wanted, left)` requests on `conn` in one write and returns how many. At most
/// [`MAX_DEPTH`] are ever in flight, so they always fit the socket buffer; a short write
/// means something is badly wrong.
fn send(name: &str, conn: &mut Conn, wanted: u64, left: u64) -> Result<u64, Error> {
    const BATCH: [u8; REQUEST_SIZE * MAX_DEPTH] = [0x5a; REQUEST_SIZE * MAX_DEPTH];
    let count = wanted.min(left);
    if count == 0 {
        return Ok(0);
    }
    debug_assert!(
        count as usize <= MAX_DEPTH,
        "more than a pipeline of requests at once; count = {count}"
    );
    let bytes = &BATCH[..REQUEST_SIZE * count as usize];
    let now = Instant::now();
    match conn.stream.write(bytes) {
        Ok(n) if n == bytes.len() => {
            conn.sent_at
                .extend(std::iter::repeat_n(now, count as usize));
            Ok(count)
        }
        Ok(n) => Err(workload_error(
            name,
            &format!("short write of {} request bytes: {n}", bytes.len()),
        )),
        Err(e) => Err(io_error(name, "sending requests", &e)),
    }
}

pub(in crate::workload) fn io_error(name: &str, what: &str, e: &io::Error) -> Error {
    workload_error(name, &format!("{what}: {e}"))
}
