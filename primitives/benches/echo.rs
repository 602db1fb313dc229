//! W8 echo (docs/BENCHMARKS.md): a loopback TCP echo server with one
//! coroutine per connection (`Runtime::spawn`) on 2 workers, against a
//! tokio echo server built the same way (2-worker multi-thread runtime,
//! `tokio::spawn` per connection, read then `write_all` into a 4 KiB
//! buffer), in the same process and the same run.
//!
//! Both get the same load from one neutral client: a single thread driving
//! 100 non-blocking connections with raw `mio` (neither runtime's code),
//! each sending a 64-byte request and waiting for its echo, back to back.
//! Latency per request goes into an HDR histogram.
//!
//! `cargo bench -p coprimitives --bench echo [-- --secs S --rounds R
//! --connections C --size B]`. Defaults: 3 s per measurement, 2 rounds
//! alternating coscheduler / tokio, 100 connections, 64 bytes.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};

// ----------------------------------------------------------------------
// Servers.

/// Round-robin placement counter.
static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Connections served per context id (mod 8), for the metrics printout.
static SERVED: [std::sync::atomic::AtomicUsize; 8] =
    [const { std::sync::atomic::AtomicUsize::new(0) }; 8];

/// `round_robin`: place each connection's coroutine on the workers in turn
/// (`AioContext::spawn`) instead of `Runtime::spawn` (work stealing of
/// unstarted coroutines decides where it lands, and a started coroutine
/// stays there).
fn start_coscheduler_server(
    poll_max: Option<Duration>,
    round_robin: bool,
) -> (Arc<coscheduler::Runtime>, SocketAddr) {
    use coprimitives::io::{TcpListener, TcpStream};
    // Unpinned, like tokio's workers: the client thread shares the cores,
    // and a pinned worker cannot dodge it.
    let pin = std::env::var_os("W8_PIN").is_some();
    let mut b = coscheduler::Runtime::builder().threads(2).pin_threads(pin);
    if let Some(p) = poll_max {
        b = b.poll_max(p);
    }
    let rt = Arc::new(b.build().expect("runtime"));
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let weak = Arc::downgrade(&rt);
    fn serve(s: TcpStream) {
        let ctx = coscheduler::AioContext::current().id() as usize;
        SERVED[ctx % SERVED.len()].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = s.set_nodelay(true);
        // Until EOF or an error; the stream reads and writes through `&TcpStream`.
        let _ = std::io::copy(&mut &s, &mut &s);
    }
    let _acceptor = rt.spawn(move || {
        while let Ok((stream, _)) = listener.accept() {
            let Some(rt) = weak.upgrade() else { return };
            if round_robin {
                let ctxs = rt.contexts();
                let i = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                ctxs[i % ctxs.len()].spawn(move || serve(stream));
            } else {
                rt.spawn(move || serve(stream));
            }
        }
    });
    (rt, addr)
}

fn start_tokio_server() -> (tokio::runtime::Runtime, SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    rt.spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (rt, addr)
}

// ----------------------------------------------------------------------
// The neutral client.

struct Conn {
    s: MioStream,
    sent_at: Instant,
    got: usize,
}

struct Load {
    requests: u64,
    secs: f64,
    /// Process CPU time (user + system) during the measurement: the client
    /// thread plus the server under test (the other server is idle).
    cpu: Duration,
    latency: Histogram<u64>,
}

/// User + system CPU time of this process so far.
fn process_cpu() -> Duration {
    // SAFETY: all-zero is a valid rusage, and getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Drives `n` connections to `addr` for `secs` (after a 0.5 s warm-up).
fn client(addr: SocketAddr, n: usize, size: usize, secs: f64) -> Load {
    let mut poll = Poll::new().expect("poll");
    let mut conns: Vec<Conn> = (0..n)
        .map(|i| {
            let std = std::net::TcpStream::connect(addr).expect("connect");
            std.set_nodelay(true).expect("nodelay");
            std.set_nonblocking(true).expect("nonblocking");
            let mut s = MioStream::from_std(std);
            poll.registry()
                .register(&mut s, Token(i), Interest::READABLE)
                .expect("register");
            Conn {
                s,
                sent_at: Instant::now(),
                got: 0,
            }
        })
        .collect();
    let request = vec![0x5au8; size];
    let mut buf = vec![0u8; size];
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
    let send = |c: &mut Conn| {
        c.sent_at = Instant::now();
        c.got = 0;
        // 64 bytes always fit an empty socket buffer: a request is only
        // sent after the previous echo came back.
        c.s.write_all(&request).expect("send");
    };
    conns.iter_mut().for_each(send);
    let mut events = Events::with_capacity(1024);
    let start = Instant::now();
    let warm = start + Duration::from_millis(500);
    let end = warm + Duration::from_secs_f64(secs);
    let mut requests = 0u64;
    let mut measuring = false;
    let mut cpu_start = process_cpu();
    while Instant::now() < end {
        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .expect("poll");
        if !measuring && Instant::now() >= warm {
            measuring = true;
            latency.reset();
            requests = 0;
            cpu_start = process_cpu();
        }
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            loop {
                match c.s.read(&mut buf[c.got..]) {
                    Ok(0) => panic!("server closed a connection"),
                    Ok(k) => {
                        c.got += k;
                        if c.got == size {
                            latency
                                .record(c.sent_at.elapsed().as_nanos() as u64)
                                .expect("in range");
                            requests += 1;
                            send(c);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("read: {e}"),
                }
            }
        }
    }
    let secs = Instant::now().duration_since(warm).as_secs_f64();
    Load {
        requests,
        secs,
        cpu: process_cpu() - cpu_start,
        latency,
    }
}

// ----------------------------------------------------------------------

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Figures {
    rps: f64,
    /// Process CPU µs per request (client + server).
    cpu_us: f64,
    p50: f64,
    p99: f64,
    p999: f64,
}

fn figures(l: &Load) -> Figures {
    let us = |q: f64| l.latency.value_at_quantile(q) as f64 / 1000.0;
    Figures {
        rps: l.requests as f64 / l.secs,
        cpu_us: l.cpu.as_secs_f64() * 1e6 / l.requests.max(1) as f64,
        p50: us(0.5),
        p99: us(0.99),
        p999: us(0.999),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        println!("w8_echo: bench");
        return;
    }
    let secs: f64 = arg(&args, "--secs", 3.0);
    let rounds: usize = arg(&args, "--rounds", 2);
    let n: usize = arg(&args, "--connections", 100);
    let size: usize = arg(&args, "--size", 64);
    // `--only coscheduler|tokio`: measure one side (for profiling).
    let only: Option<String> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let poll_max = args
        .iter()
        .position(|a| a == "--poll-max-us")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .map(Duration::from_micros);
    let round_robin = args.iter().any(|a| a == "--round-robin");
    let (ours_rt, ours_addr) = start_coscheduler_server(poll_max, round_robin);
    let (tokio_rt, tokio_addr) = start_tokio_server();
    println!(
        "W8 echo: {n} connections × {size}-byte requests, {secs} s per measurement, {rounds} rounds"
    );
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for (label, addr, out) in [
            ("coscheduler", ours_addr, &mut a),
            ("tokio", tokio_addr, &mut b),
        ] {
            if only.as_deref().is_some_and(|o| o != label) {
                let skipped = Figures {
                    rps: 1.0,
                    cpu_us: 1.0,
                    p50: 1.0,
                    p99: 1.0,
                    p999: 1.0,
                };
                out.push(skipped);
                continue;
            }
            let f = figures(&client(addr, n, size, secs));
            println!(
                "  round {round} {label:<12} {:>9.0} req/s  CPU {:>5.1} µs/req  p50 {:>7.1} µs  p99 {:>8.1} µs  p99.9 {:>8.1} µs",
                f.rps, f.cpu_us, f.p50, f.p99, f.p999
            );
            out.push(f);
        }
    }
    let med = |v: &[Figures], f: fn(&Figures) -> f64| median(v.iter().map(f).collect());
    println!(
        "  {:<12} {:>9} {:>10} {:>10} {:>10} {:>10}",
        "median", "req/s", "CPU µs/req", "p50 µs", "p99 µs", "p99.9 µs"
    );
    for (label, v) in [("coscheduler", &a), ("tokio", &b)] {
        println!(
            "  {label:<12} {:>9.0} {:>10.2} {:>10.1} {:>10.1} {:>10.1}",
            med(v, |f| f.rps),
            med(v, |f| f.cpu_us),
            med(v, |f| f.p50),
            med(v, |f| f.p99),
            med(v, |f| f.p999)
        );
    }
    println!(
        "  ratio coscheduler/tokio: req/s {:.2}, CPU/req {:.2}, p50 {:.2}, p99 {:.2}",
        med(&a, |f| f.rps) / med(&b, |f| f.rps),
        med(&a, |f| f.cpu_us) / med(&b, |f| f.cpu_us),
        med(&a, |f| f.p50) / med(&b, |f| f.p50),
        med(&a, |f| f.p99) / med(&b, |f| f.p99)
    );
    if std::env::var_os("W8_METRICS").is_some() {
        let served: Vec<usize> = SERVED
            .iter()
            .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        eprintln!("  connections served per context id (mod 8): {served:?}");
        let m = ours_rt.metrics();
        for (i, c) in m.per_context.iter().enumerate() {
            eprintln!(
                "  ctx {i}: switches {}, parks {}, epoll waits {}, poll hits {}, local wakes {}, remote wakes {}, steals {}",
                c.switches,
                c.parks,
                c.epoll_waits,
                c.poll_hits,
                c.local_wakes,
                c.remote_wakes,
                c.steal_successes
            );
        }
    }
    drop(tokio_rt);
    if let Ok(rt) = Arc::try_unwrap(ours_rt) {
        rt.shutdown();
    }
}
