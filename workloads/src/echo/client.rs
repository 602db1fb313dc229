//! The W8 client: neither server's code, the same for every server.
//!
//! [`Load::threads`] threads, each driving its share of the connections through its own
//! `mio` poll, so that one client thread's speed does not cap the server's figure. Each
//! connection keeps `depth` [`REQUEST_SIZE`]-byte requests in flight (1: a closed loop; 16:
//! pipelined, where the server's own cost shows) and sends as many new ones, in one write,
//! as echoes it has just completed.
//!
//! Besides the rate it accounts for the CPU time spent: the whole process's over the timed
//! phase (`getrusage`) and the client threads' own (`RUSAGE_THREAD`). The difference is
//! the server's where nothing else in the process works meanwhile
//! ([`Outcome::server_cpu`]).

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};

use super::Error;
use crate::cpu::{Who, cpu_time};

/// Bytes per request (and per echo).
pub const REQUEST_SIZE: usize = 64;

/// The deepest pipeline a load may ask for: its requests fit any socket buffer, so a write
/// of them never comes up short.
pub const MAX_DEPTH: usize = 16;

/// Untimed round trips per connection before the timed ones: connections accepted, server
/// coroutines (or threads, or tasks) started, buffers and caches warm.
const WARM_UP_PER_CONNECTION: u64 = 4;

/// How long the client waits without an echo before it calls the server stuck.
pub const STUCK_AFTER: Duration = Duration::from_secs(60);

/// Significant digits of the latency histogram.
const SIGNIFICANT_DIGITS: u8 = 3;

/// What the client sends.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// Connections in all; a multiple of `threads`.
    pub connections: usize,
    /// Client threads; each drives `connections / threads` connections.
    pub threads: usize,
    /// Timed requests in all, after the warm-up.
    pub requests: u64,
    /// Requests in flight on each connection, 1 to [`MAX_DEPTH`].
    pub depth: usize,
}

/// What the client measured over its timed phase.
#[derive(Debug)]
pub struct Outcome {
    /// Timed requests completed: the load's `requests`.
    pub requests: u64,
    /// From the first client thread's start to the last one's end.
    pub wall: Duration,
    /// CPU time of the whole process over the timed phase, read before the client threads
    /// were released and after they were joined.
    pub process_cpu: Duration,
    /// CPU time of the client threads themselves, summed.
    pub client_cpu: Duration,
    /// Each request's latency, sent to echo complete, in ns.
    pub latencies: Histogram<u64>,
    /// Client threads, for [`client_cpu_fraction`](Outcome::client_cpu_fraction).
    threads: usize,
}

impl Outcome {
    /// Requests per second of wall time.
    pub fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.wall.as_secs_f64()
    }

    /// The process's CPU time less the client's: the server's, where nothing else in the
    /// process worked during the timed phase.
    pub fn server_cpu(&self) -> Duration {
        self.process_cpu.saturating_sub(self.client_cpu)
    }

    /// The share of their wall time the client threads were on a CPU: near 1 means the
    /// client, not the server, may have been the limit.
    pub fn client_cpu_fraction(&self) -> f64 {
        self.client_cpu.as_secs_f64() / (self.wall.as_secs_f64() * self.threads as f64)
    }
}

/// One client connection.
struct Conn {
    stream: MioStream,
    /// When each request in flight was sent, oldest first.
    sent_at: VecDeque<Instant>,
    /// Bytes of the oldest request's echo received so far.
    got: usize,
}

/// What one client thread reports: its latencies, its timed phase (timed by itself: the
/// calling thread may be descheduled when the barrier releases the clients), and the CPU
/// time it spent in it.
struct Share {
    latencies: Histogram<u64>,
    began: Instant,
    finished: Instant,
    cpu: Duration,
}

/// Opens `load.connections` connections to `addr`, warms them up, then completes
/// `load.requests` timed requests over them at pipeline depth `load.depth`, and says how it
/// went. Returns with every connection closed.
pub fn run(addr: SocketAddr, load: &Load) -> Result<Outcome, Error> {
    let &Load {
        connections,
        threads,
        requests,
        depth,
    } = load;
    if !(1..=MAX_DEPTH).contains(&depth) {
        let detail = format!("pipeline depth {depth} is outside 1..={MAX_DEPTH}");
        return Err(Error::Broken(detail));
    }
    if threads == 0 || connections == 0 || connections % threads != 0 {
        let detail =
            format!("{connections} connections do not split evenly over {threads} client threads");
        return Err(Error::Broken(detail));
    }
    // Connect on this thread, in order, so that the server has seen every connection
    // before any thread sends; each thread then owns its slice.
    let mut streams = Vec::with_capacity(connections);
    for _ in 0..connections {
        streams.push(connect(addr).map_err(|e| Error::io("connecting", e))?);
    }
    let per_thread = connections / threads;
    let start = Barrier::new(threads + 1);
    let (shares, process_cpu) = thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let mine: Vec<_> = streams.drain(..per_thread).collect();
                // The first thread takes the remainder of an odd split.
                let share =
                    requests / threads as u64 + u64::from(t == 0) * (requests % threads as u64);
                let start = &start;
                s.spawn(move || client_thread(mine, share, depth, start))
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
    let mut latencies = new_histogram();
    let mut span: Option<(Instant, Instant)> = None;
    let mut client_cpu = Duration::ZERO;
    for share in shares {
        let share = share.map_err(|_| Error::Broken("a client thread panicked".into()))??;
        latencies
            .add(&share.latencies)
            .expect("auto-resizing histograms of equal precision add");
        span = Some(span.map_or((share.began, share.finished), |(b, f)| {
            (b.min(share.began), f.max(share.finished))
        }));
        client_cpu += share.cpu;
    }
    let Some((begin, finished)) = span else {
        return Err(Error::Broken("no client thread ran".into()));
    };
    Ok(Outcome {
        requests,
        wall: finished - begin,
        process_cpu,
        client_cpu,
        latencies,
        threads,
    })
}

/// One client thread: registers its connections, warms them up, waits at `start` for the
/// other threads, then completes `requests` timed requests.
fn client_thread(
    streams: Vec<std::net::TcpStream>,
    requests: u64,
    depth: usize,
    start: &Barrier,
) -> Result<Share, Error> {
    let ready = prepare(streams, depth);
    // Every thread reaches the barrier, ready or not, so that none waits forever.
    start.wait();
    let (mut poll, mut conns) = ready?;
    let cpu_before = cpu_time(Who::Thread);
    let began = Instant::now();
    let mut latencies = new_histogram();
    drive(&mut poll, &mut conns, requests, depth, &mut latencies)?;
    Ok(Share {
        latencies,
        began,
        finished: Instant::now(),
        cpu: cpu_time(Who::Thread) - cpu_before,
    })
}

/// Registers `streams` with a fresh poll and runs the warm-up requests over them.
fn prepare(streams: Vec<std::net::TcpStream>, depth: usize) -> Result<(Poll, Vec<Conn>), Error> {
    let mut poll = Poll::new().map_err(|e| Error::io("creating the client's poll", e))?;
    let mut conns = Vec::with_capacity(streams.len());
    for (i, stream) in streams.into_iter().enumerate() {
        let mut stream = MioStream::from_std(stream);
        poll.registry()
            .register(&mut stream, Token(i), Interest::READABLE)
            .map_err(|e| Error::io("registering a connection", e))?;
        conns.push(Conn {
            stream,
            sent_at: VecDeque::with_capacity(depth),
            got: 0,
        });
    }
    let warm_up = WARM_UP_PER_CONNECTION * depth as u64 * conns.len() as u64;
    drive(&mut poll, &mut conns, warm_up, depth, &mut new_histogram())?;
    Ok((poll, conns))
}

fn connect(addr: SocketAddr) -> std::io::Result<std::net::TcpStream> {
    let stream = std::net::TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    Ok(stream)
}

/// An empty, auto-resizing latency histogram.
fn new_histogram() -> Histogram<u64> {
    // `new` with auto-resize only fails for significant digits outside 0..=5.
    Histogram::new(SIGNIFICANT_DIGITS).expect("3 significant digits are valid")
}

/// Completes `requests` requests over `conns` with up to `depth` in flight on each,
/// replacing each completed request with a new one while any remain to be sent, and
/// records each one's latency. Returns with nothing in flight.
fn drive(
    poll: &mut Poll,
    conns: &mut [Conn],
    requests: u64,
    depth: usize,
    latencies: &mut Histogram<u64>,
) -> Result<(), Error> {
    let mut buf = [0u8; 4096];
    let mut sent = 0u64;
    let mut done = 0u64;
    for conn in conns.iter_mut() {
        sent += send(conn, depth as u64, requests - sent)?;
    }
    let mut events = Events::with_capacity(conns.len());
    let mut progress_at = Instant::now();
    while done < requests {
        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .map_err(|e| Error::io("polling the client connections", e))?;
        if events.is_empty() && progress_at.elapsed() > STUCK_AFTER {
            let detail = format!("no echo for {STUCK_AFTER:?}; {done} of {requests} done");
            return Err(Error::Broken(detail));
        }
        for event in events.iter() {
            let conn = &mut conns[event.token().0];
            let completed = receive(conn, &mut buf, latencies)?;
            done += completed;
            sent += send(conn, completed, requests - sent)?;
            progress_at = Instant::now();
        }
    }
    Ok(())
}

/// Reads everything `conn` has (edge-triggered: until the socket is drained), completing
/// its oldest requests as their echoes fill up; returns how many completed.
fn receive(conn: &mut Conn, buf: &mut [u8], latencies: &mut Histogram<u64>) -> Result<u64, Error> {
    let mut completed = 0;
    loop {
        match conn.stream.read(buf) {
            Ok(0) => return Err(Error::Broken("the server closed a connection".into())),
            Ok(n) => {
                conn.got += n;
                while conn.got >= REQUEST_SIZE {
                    let Some(sent_at) = conn.sent_at.pop_front() else {
                        return Err(Error::Broken("more echo bytes than requests sent".into()));
                    };
                    record(latencies, sent_at.elapsed());
                    conn.got -= REQUEST_SIZE;
                    completed += 1;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(completed),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("reading an echo", e)),
        }
    }
}

/// Records `latency` in ns; a histogram that cannot grow any further clamps it rather than
/// losing it.
#[inline]
fn record(latencies: &mut Histogram<u64>, latency: Duration) {
    let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
    if latencies.record(ns).is_err() {
        latencies.saturating_record(ns);
    }
}

/// Sends `min(wanted, left)` requests on `conn` in one write and returns how many. At most
/// [`MAX_DEPTH`] are ever in flight, so they always fit the socket buffer; a short write
/// means something is badly wrong.
fn send(conn: &mut Conn, wanted: u64, left: u64) -> Result<u64, Error> {
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
        Ok(n) => Err(Error::Broken(format!(
            "short write of {} request bytes: {n}",
            bytes.len()
        ))),
        Err(e) => Err(Error::io("sending requests", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_that_does_not_split_is_refused_before_connecting() {
        // Nothing listens on port 1; a refused load never gets as far as connecting.
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        for load in [
            Load {
                connections: 3,
                threads: 2,
                requests: 1,
                depth: 1,
            },
            Load {
                connections: 2,
                threads: 0,
                requests: 1,
                depth: 1,
            },
            Load {
                connections: 2,
                threads: 1,
                requests: 1,
                depth: 0,
            },
            Load {
                connections: 2,
                threads: 1,
                requests: 1,
                depth: MAX_DEPTH + 1,
            },
        ] {
            let err = run(addr, &load).unwrap_err();
            assert!(matches!(err, Error::Broken(_)), "{load:?}: {err}");
        }
    }
}
