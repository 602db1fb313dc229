//! W8's servers and client against each other: every request comes back, at depth 1 and
//! at depth 16, on coscheduler and on tokio.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use workloads::echo::{self, client};

const CONNECTIONS: usize = 4;
const REQUESTS: u64 = 500;

fn load(depth: usize) -> client::Load {
    client::Load {
        connections: CONNECTIONS,
        threads: 2,
        requests: REQUESTS,
        depth,
    }
}

/// The warm-up's requests besides the timed ones, in bytes.
fn bytes_sent(depth: usize) -> u64 {
    let warm_up = 4 * depth as u64 * CONNECTIONS as u64;
    (warm_up + REQUESTS) * client::REQUEST_SIZE as u64
}

#[test]
fn the_coscheduler_server_echoes_every_request() {
    for depth in [1, client::MAX_DEPTH] {
        let listener = coprimitives::io::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let rt = coscheduler::Runtime::builder().threads(2).build().unwrap();
        let handle = rt.handle();
        let echoed = Arc::new(AtomicU64::new(0));
        let seen = echoed.clone();
        let acceptor = rt.spawn(move || {
            let mut servers = Vec::new();
            echo::accept(&listener, Some(CONNECTIONS), |_, stream| {
                let seen = seen.clone();
                servers.push(handle.spawn(move || {
                    echo::serve_observed(stream, |bytes| {
                        seen.fetch_add(bytes.len() as u64, Relaxed);
                    })
                }));
            })
            .unwrap();
            for server in servers {
                server.join().unwrap().unwrap();
            }
        });
        let outcome = client::run(addr, &load(depth)).unwrap();
        assert_eq!(outcome.requests, REQUESTS);
        assert_eq!(outcome.latencies.len(), REQUESTS);
        assert!(outcome.requests_per_second() > 0.0);
        // The client has closed its connections: every server saw end-of-file.
        acceptor.join().unwrap();
        assert_eq!(echoed.load(Relaxed), bytes_sent(depth), "depth {depth}");
        rt.shutdown();
    }
}

#[test]
fn the_tokio_server_echoes_every_request() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for depth in [1, client::MAX_DEPTH] {
        let (listener, addr) = echo::nonblocking_listener().unwrap();
        let acceptor = rt.spawn(echo::accept_tokio(listener, Some(CONNECTIONS)));
        let outcome = client::run(addr, &load(depth)).unwrap();
        assert_eq!(outcome.latencies.len(), REQUESTS);
        rt.block_on(acceptor).unwrap().unwrap();
    }
}

#[test]
fn the_std_server_runs_the_same_loop() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..CONNECTIONS {
                let (stream, _) = listener.accept().unwrap();
                s.spawn(move || echo::serve(stream).unwrap());
            }
        });
        let outcome = client::run(addr, &load(1)).unwrap();
        assert_eq!(outcome.latencies.len(), REQUESTS);
    });
}
