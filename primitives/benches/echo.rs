//! W8 echo (docs/BENCHMARKS.md): a loopback TCP echo server with one
//! coroutine per connection (`Runtime::spawn`) on 2 workers, against a
//! tokio echo server built the same way (2-worker multi-thread runtime,
//! `tokio::spawn` per connection), in the same process and the same run.
//! Servers and client are cobench's (`workloads::echo`).
//!
//! Both get the same load from one neutral client: threads driving
//! non-blocking connections with raw `mio` (neither runtime's code), each
//! keeping `--depth` 64-byte requests in flight. Latency per request goes
//! into an HDR histogram.
//!
//! `cargo bench -p coprimitives --bench echo [-- --requests N --rounds R
//! --connections C --client-threads T --depth D]`. Defaults: 200,000
//! requests per measurement, 2 rounds alternating coscheduler / tokio, 100
//! connections over 2 client threads, depth 1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use workloads::echo::{self, client};

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
    // Unpinned, like tokio's workers: the client threads share the cores,
    // and a pinned worker cannot dodge them.
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
        let _ = echo::serve(s);
    }
    let _acceptor = rt.spawn(move || {
        let _ = echo::accept(&listener, None, |_, stream| {
            let Some(rt) = weak.upgrade() else { return };
            if round_robin {
                let ctxs = rt.contexts();
                let i = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                ctxs[i % ctxs.len()].spawn(move || serve(stream));
            } else {
                rt.spawn(move || serve(stream));
            }
        });
    });
    (rt, addr)
}

fn start_tokio_server() -> (tokio::runtime::Runtime, SocketAddr) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let (listener, addr) = echo::nonblocking_listener().expect("listener");
    rt.spawn(echo::accept_tokio(listener, None));
    (rt, addr)
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
    /// Server CPU µs per request (the process's less the client threads').
    cpu_us: f64,
    p50: f64,
    p99: f64,
    p999: f64,
}

fn figures(o: &client::Outcome) -> Figures {
    let us = |q: f64| o.latencies.value_at_quantile(q) as f64 / 1000.0;
    Figures {
        rps: o.requests_per_second(),
        cpu_us: o.server_cpu().as_secs_f64() * 1e6 / o.requests.max(1) as f64,
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
    let load = client::Load {
        requests: arg(&args, "--requests", 200_000),
        connections: arg(&args, "--connections", 100),
        threads: arg(&args, "--client-threads", 2),
        depth: arg(&args, "--depth", 1),
    };
    let rounds: usize = arg(&args, "--rounds", 2);
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
        "W8 echo: {} connections × {}-byte requests, {} in flight each, {} requests per measurement, {rounds} rounds",
        load.connections,
        client::REQUEST_SIZE,
        load.depth,
        load.requests
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
            let outcome = client::run(addr, &load).unwrap_or_else(|e| panic!("{label}: {e}"));
            let f = figures(&outcome);
            println!(
                "  round {round} {label:<12} {:>9.0} req/s  server CPU {:>5.1} µs/req  p50 {:>7.1} µs  p99 {:>8.1} µs  p99.9 {:>8.1} µs",
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
