//! `echo`: request/response over loopback TCP (docs/BENCHMARKS.md W8).
//!
//! An acceptor coroutine accepts one connection per client and starts a server coroutine
//! for each, spread over the contexts; acceptor and server are cobench's W8 bodies
//! (`workloads::echo`), the server's hook counting and timing the requests it echoes. `coroutines × contexts` clients (at most
//! [`MAX_CONNECTIONS`], to stay clear of the file-descriptor limit) connect, then send
//! [`REQUEST_BYTES`]-byte requests, each carrying a sequence number and the time it was
//! sent, and wait for the echo until the stop flag; then they close, and their servers see
//! end-of-file and leave.
//!
//! Histograms: the **request latency** (from the client's stamp to the whole echo read
//! back), and the **I/O wake latency** of the server side (from the client's stamp to the
//! server coroutine resuming with the whole request: the socket became readable, epoll
//! reported it and the coroutine ran). Checks: every client connected, the servers answered
//! as many requests and bytes as the clients sent, and every echo matched its request.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};

use coprimitives::io::{TcpListener, TcpStream};
use coscheduler::{AioContext, Coroutine, JoinHandle};

use super::part::{self, Clock, Part, PartEnv, PartReport, Recorder, Stop, Tally};
use crate::outcome::{Check, HistogramKind};
use crate::workload::RunError;

/// The workload's name.
pub(super) const NAME: &str = "echo";

/// The `--list` paragraph.
pub(super) const DESCRIPTION: &str = "Clients send 64-byte requests over loopback TCP, each to a server coroutine of its \
     own, and wait for the echo. Checks that every client connected and every byte sent \
     came back unchanged. Measures request latency (the round trip) and I/O wake latency \
     (from the send to the server coroutine running with the request).";

/// The most client connections: each costs two file descriptors, and the usual soft limit
/// is 1024.
const MAX_CONNECTIONS: usize = 128;

/// The size of a request and of its echo (W8's 64 bytes).
const REQUEST_BYTES: usize = 64;

/// Requests between progress updates.
const TALLY_EVERY: u64 = 16;

/// What the clients counted.
#[derive(Debug, Default, Clone, Copy)]
struct ClientCounts {
    connected: u64,
    requests: u64,
    bytes_sent: u64,
    bytes_received: u64,
    mismatched: u64,
}

impl ClientCounts {
    fn add(&mut self, other: ClientCounts) {
        self.connected += other.connected;
        self.requests += other.requests;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.mismatched += other.mismatched;
    }
}

/// What the servers counted.
#[derive(Debug, Default, Clone, Copy)]
struct ServerCounts {
    requests: u64,
    bytes: u64,
}

/// What a server needs besides its stream.
#[derive(Clone)]
struct Serving {
    clock: Clock,
    io_wake: Recorder,
    contexts: Vec<AioContext>,
    stack_size: usize,
}

struct Running {
    addr: SocketAddr,
    request_latency: Recorder,
    io_wake: Recorder,
    clients: Vec<JoinHandle<Result<ClientCounts, String>>>,
    acceptor: JoinHandle<Result<ServerCounts, String>>,
}

/// Coroutines held at once, for the mapping-limit preflight. A client and a server per connection, and the acceptor.
pub(super) fn coroutines(per_context: usize, contexts: usize) -> usize {
    2 * (per_context * contexts).clamp(1, MAX_CONNECTIONS) + 1
}

/// Binds the listener, starts the acceptor and the clients.
pub(super) fn start(env: &PartEnv<'_>) -> Result<Box<dyn Part>, RunError> {
    let contexts = env.contexts().len();
    let clients = (env.coroutines() * contexts).clamp(1, MAX_CONNECTIONS);
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|err| RunError::failed(format!("echo: cannot listen on 127.0.0.1: {err}")))?;
    let addr = listener
        .local_addr()
        .map_err(|err| RunError::failed(format!("echo: the listener has no address: {err}")))?;
    let request_latency = Recorder::new(contexts);
    let io_wake = Recorder::new(contexts);
    let serving = Serving {
        clock: env.clock(),
        io_wake: io_wake.clone(),
        contexts: env.contexts().to_vec(),
        stack_size: env.stack_size(),
    };
    let acceptor = env.spawn(0, "echo-acceptor".to_owned(), move || {
        accept(&listener, clients, &serving)
    })?;
    let mut handles = Vec::with_capacity(clients);
    for client in 0..clients {
        let context = client % contexts;
        let stop = env.stop().clone();
        let clock = env.clock();
        let recorder = request_latency.clone();
        let tally = Tally::new(env.progress(), TALLY_EVERY);
        let name = format!("echo-client-{client}");
        handles.push(env.spawn(context, name, move || {
            let mut run = ClientRun {
                id: client as u64,
                clock,
                recorder,
                slot: context,
                tally,
                counts: ClientCounts::default(),
            };
            run.run(addr, &stop)
                .map(|()| run.counts)
                .map_err(|err| format!("client {client}: {err}"))
        })?);
    }
    Ok(Box::new(Running {
        addr,
        request_latency,
        io_wake,
        clients: handles,
        acceptor,
    }))
}

/// Accepts `clients` connections, serves each in a coroutine of its own, and returns the
/// servers' totals once every one has finished.
fn accept(
    listener: &TcpListener,
    clients: usize,
    serving: &Serving,
) -> Result<ServerCounts, String> {
    let mut servers = Vec::with_capacity(clients);
    let mut spawn_error = None;
    workloads::echo::accept(listener, Some(clients), |index, stream| {
        // Offset by one from the clients' placement, so most pairs cross contexts.
        let ctx = &serving.contexts[(index + 1) % serving.contexts.len()];
        let serving = serving.clone();
        let server = Coroutine::builder()
            .name(format!("echo-server-{index}"))
            .stack_size(serving.stack_size)
            .spawn_on(ctx, move || serve(stream, &serving));
        // A stream without a server closes, and its client fails on end-of-file.
        match server {
            Ok(server) => servers.push(server),
            Err(err) => {
                spawn_error.get_or_insert(format!("cannot create a server coroutine: {err}"));
            }
        }
    })
    .map_err(|err| format!("accept failed: {err}"))?;
    if let Some(err) = spawn_error {
        return Err(err);
    }
    let mut total = ServerCounts::default();
    for server in servers {
        let counts = server.join().map_err(|err| format!("server: {err}"))??;
        total.requests += counts.requests;
        total.bytes += counts.bytes;
    }
    Ok(total)
}

/// W8's server loop (`workloads::echo::serve_observed`), which echoes bytes as they come;
/// its hook counts them and cuts them back into requests, recording each one's I/O wake
/// latency as its last byte arrives. Ends when the client closes the connection.
fn serve(stream: TcpStream, serving: &Serving) -> Result<ServerCounts, String> {
    let slot = serving
        .contexts
        .iter()
        .position(AioContext::is_current)
        .unwrap_or(0);
    let mut counts = ServerCounts::default();
    let mut request = [0u8; REQUEST_BYTES];
    let mut filled = 0;
    workloads::echo::serve_observed(stream, |mut bytes| {
        counts.bytes += bytes.len() as u64;
        while !bytes.is_empty() {
            let take = bytes.len().min(REQUEST_BYTES - filled);
            request[filled..filled + take].copy_from_slice(&bytes[..take]);
            (filled, bytes) = (filled + take, &bytes[take..]);
            if filled == REQUEST_BYTES {
                let sent_at = u64::from_le_bytes(request[8..16].try_into().expect("8 bytes"));
                serving.io_wake.record(slot, serving.clock.since(sent_at));
                counts.requests += 1;
                filled = 0;
            }
        }
    })
    .map_err(|err| format!("server failed: {err}"))?;
    if filled != 0 {
        return Err(format!(
            "connection closed after {filled} bytes of a request"
        ));
    }
    Ok(counts)
}

/// One client's connection and tallies.
struct ClientRun {
    id: u64,
    clock: Clock,
    recorder: Recorder,
    slot: usize,
    tally: Tally,
    counts: ClientCounts,
}

impl ClientRun {
    /// Connects and sends requests until the stop flag, then closes.
    fn run(&mut self, addr: SocketAddr, stop: &Stop) -> std::io::Result<()> {
        let mut stream = TcpStream::connect(addr)?;
        self.counts.connected = 1;
        stream.set_nodelay(true)?;
        let mut request = [0u8; REQUEST_BYTES];
        // The rest of the request is a pattern that differs between clients.
        for (i, byte) in request.iter_mut().enumerate().skip(16) {
            *byte = (self.id as u8).wrapping_mul(31).wrapping_add(i as u8);
        }
        let mut reply = [0u8; REQUEST_BYTES];
        let mut sequence = 0u64;
        while !stop.is_set() {
            let sent_at = self.clock.now();
            request[..8].copy_from_slice(&sequence.to_le_bytes());
            request[8..16].copy_from_slice(&sent_at.to_le_bytes());
            stream.write_all(&request)?;
            self.counts.bytes_sent += REQUEST_BYTES as u64;
            stream.read_exact(&mut reply)?;
            self.recorder.record(self.slot, self.clock.since(sent_at));
            self.counts.bytes_received += REQUEST_BYTES as u64;
            self.counts.mismatched += u64::from(reply != request);
            self.counts.requests += 1;
            sequence += 1;
            self.tally.add();
        }
        // The server sees end-of-file and finishes; a failure here changes nothing.
        let _ = stream.shutdown(Shutdown::Write);
        Ok(())
    }
}

impl Part for Running {
    fn finish(self: Box<Self>) -> Result<PartReport, RunError> {
        let expected = self.clients.len() as u64;
        let mut clients = ClientCounts::default();
        let mut first_error = None;
        for result in part::join_all(NAME, self.clients)? {
            match result {
                Ok(counts) => clients.add(counts),
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        // The acceptor waits for one connection per client: stand in for those that never
        // connected. A server for such a stand-in sees end-of-file at once.
        for _ in clients.connected..expected {
            let _ = std::net::TcpStream::connect(self.addr);
        }
        let servers = part::join(NAME, self.acceptor)?
            .map_err(|err| RunError::failed(format!("{NAME}: {err}")))?;
        if let Some(err) = first_error {
            return Err(RunError::failed(format!("{NAME}: {err}")));
        }
        Ok(PartReport::new(clients.requests)
            .check(Check::equal(
                "clients connected",
                expected,
                clients.connected,
            ))
            .check(Check::equal(
                "requests answered by servers == requests sent",
                clients.requests,
                servers.requests,
            ))
            .check(Check::equal(
                "bytes echoed == bytes sent",
                clients.bytes_sent,
                servers.bytes,
            ))
            .check(Check::equal(
                "bytes received == bytes sent",
                clients.bytes_sent,
                clients.bytes_received,
            ))
            .check(Check::equal(
                "echoes that differ from their request",
                0,
                clients.mismatched,
            ))
            .histogram(
                "request latency",
                HistogramKind::RequestLatency,
                self.request_latency.merged(),
            )
            .histogram(
                "wake latency (I/O)",
                HistogramKind::WakeIo,
                self.io_wake.merged(),
            ))
    }
}
