//! A TCP echo server: each connection is served by its own coroutine,
//! spawned with `Runtime::spawn` so that connections spread over all
//! workers; plus a client mode that measures requests/s and latency (W8 in
//! docs/BENCHMARKS.md).
//!
//! ```text
//! cargo run --release -p coprimitives --example echo -- [server] [--port 7878] [--threads N] [--duration SECS]
//! cargo run --release -p coprimitives --example echo -- client [--host 127.0.0.1] [--port 7878]
//!     [--threads N] [--connections 100] [--size 64] [--duration 5]
//! ```
//!
//! The server (W8's, from `workloads::echo`) runs until killed (or for
//! `--duration` seconds). The client
//! opens `--connections` connections, each in its own coroutine, and on each
//! sends a `--size`-byte request and waits for its echo, back to back, for
//! `--duration` seconds; it then prints requests/s and latency percentiles.

use std::io::{Read, Write};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use coprimitives::io::{TcpListener, TcpStream};
use coscheduler::Runtime;
use hdrhistogram::Histogram;

/// The server's runtime, reachable from the acceptor coroutine for
/// `Runtime::spawn`. A static because it lives as long as the process.
static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// A TCP echo server on coroutine sockets, and a client that measures it.
#[derive(clap::Parser)]
struct Options {
    /// `server` (the default) or `client`.
    #[arg(value_enum, default_value_t = Mode::Server)]
    mode: Mode,
    /// The server's address (client mode).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The TCP port.
    #[arg(long, default_value_t = 7878)]
    port: u16,
    /// Worker threads; 0 for one per core.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Connections the client opens.
    #[arg(long, default_value_t = 100, value_parser = at_least_one)]
    connections: usize,
    /// Bytes per request.
    #[arg(long, default_value_t = 64, value_parser = at_least_one)]
    size: usize,
    /// Seconds to run: the server runs until killed without it, the client 5 s.
    #[arg(long, value_parser = seconds)]
    duration: Option<Duration>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    Server,
    Client,
}

/// A count that must not be zero (no connection, or an empty request that
/// never waits, would make the client spin).
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>().map_err(|e| e.to_string())? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

/// A duration given in (fractional) seconds.
fn seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|e| format!("{e}"))?;
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{e}"))
}

fn main() {
    let o = <Options as clap::Parser>::parse();
    let mut b = Runtime::builder().pin_threads(false);
    if o.threads > 0 {
        b = b.threads(o.threads);
    }
    let rt = b
        .build()
        .unwrap_or_else(|e| panic!("cannot start the runtime: {e}"));
    if o.mode == Mode::Client {
        client(&rt, &o);
        rt.shutdown();
    } else {
        let _ = RUNTIME.set(rt);
        server(&o);
    }
}

fn server(o: &Options) {
    let rt = RUNTIME.get().expect("set in main");
    let listener =
        TcpListener::bind((o.host.as_str(), o.port)).unwrap_or_else(|e| panic!("bind: {e}"));
    eprintln!(
        "echo: listening on {} with {} workers",
        listener.local_addr().unwrap(),
        rt.contexts().len()
    );
    let _acceptor = rt.spawn(move || {
        loop {
            // W8's server (`workloads::echo`): on an error, report it and go on accepting.
            let accepted = workloads::echo::accept(&listener, None, |_, stream| {
                let rt = RUNTIME.get().expect("set in main");
                rt.spawn(move || workloads::echo::serve(stream));
            });
            if let Err(e) = accepted {
                eprintln!("echo: accept: {e}");
            }
        }
    });
    match o.duration {
        Some(d) => std::thread::sleep(d),
        None => loop {
            std::thread::park();
        },
    }
}

fn client(rt: &Runtime, o: &Options) {
    let addr = format!("{}:{}", o.host, o.port);
    let duration = o.duration.unwrap_or(Duration::from_secs(5));
    let size = o.size;
    static STOP: AtomicBool = AtomicBool::new(false);
    let start = Instant::now();
    let handles: Vec<_> = (0..o.connections)
        .map(|_| {
            let addr = addr.clone();
            rt.spawn(move || -> Result<Histogram<u64>, String> {
                let mut s = TcpStream::connect(addr.as_str())
                    .map_err(|e| format!("connect {addr}: {e}"))?;
                s.set_nodelay(true).map_err(|e| e.to_string())?;
                let request = vec![0x5a; size];
                let mut reply = vec![0; size];
                let mut h =
                    Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
                while !STOP.load(Relaxed) {
                    let t = Instant::now();
                    s.write_all(&request).map_err(|e| format!("write: {e}"))?;
                    s.read_exact(&mut reply).map_err(|e| format!("read: {e}"))?;
                    h.record(t.elapsed().as_nanos() as u64).expect("in range");
                }
                Ok(h)
            })
        })
        .collect();
    std::thread::sleep(duration);
    STOP.store(true, Relaxed);
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
    for h in handles {
        match h.join() {
            Ok(Ok(h)) => all.add(&h).expect("same bounds"),
            Ok(Err(e)) => eprintln!("echo client: {e}"),
            Err(e) => eprintln!("echo client: a connection failed: {e}"),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let us = |q: f64| all.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{} connections, {size}-byte requests, {:.1} s: {:.0} requests/s, latency p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs",
        o.connections,
        secs,
        all.len() as f64 / secs,
        us(0.5),
        us(0.99),
        us(0.999)
    );
}
