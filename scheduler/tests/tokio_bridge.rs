//! The tokio bridge: coroutines running tokio futures (sockets, timers)
//! without blocking their workers.
#![cfg(feature = "tokio")]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use coscheduler::{JoinError, Runtime, tokio_bridge, yield_now};
use testkit::wait_until;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn runtime() -> Runtime {
    Runtime::builder()
        .threads(2)
        .pin_threads(false)
        .build()
        .unwrap()
}

/// A tokio echo server on the bridge's runtime. Each connection reads one
/// 16-byte request, counts it in `received`, waits until `release` is true,
/// and echoes it.
fn echo_server(
    received: Arc<AtomicUsize>,
    release: tokio::sync::watch::Receiver<bool>,
) -> SocketAddr {
    let (tx, rx) = mpsc::channel();
    tokio_bridge::handle().spawn(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        tx.send(listener.local_addr().unwrap()).unwrap();
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let (received, mut release) = (received.clone(), release.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 16];
                if s.read_exact(&mut buf).await.is_err() {
                    return;
                }
                received.fetch_add(1, SeqCst);
                if release.wait_for(|open| *open).await.is_err() {
                    return;
                }
                let _ = s.write_all(&buf).await;
            });
        }
    });
    rx.recv().unwrap()
}

/// From inside a coroutine: connect, send, receive the echo, all on tokio.
fn echo_through_bridge(addr: SocketAddr, payload: [u8; 16]) -> [u8; 16] {
    tokio_bridge::run(async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(&payload).await.unwrap();
        let mut back = [0u8; 16];
        s.read_exact(&mut back).await.unwrap();
        back
    })
}

#[test]
fn a_coroutine_does_a_tokio_tcp_round_trip_through_the_bridge() {
    let (_open, release) = tokio::sync::watch::channel(true);
    let addr = echo_server(Arc::default(), release);
    let rt = runtime();
    let back = rt.block_on(move || {
        let home = thread::current().id();
        let back = echo_through_bridge(addr, *b"hello, tokio!!!!");
        assert_eq!(thread::current().id(), home, "resumed away from home");
        back
    });
    assert_eq!(&back, b"hello, tokio!!!!");
    rt.shutdown();
}

/// 100 coroutines on 2 workers each wait for a bridged echo that the server
/// holds back; meanwhile a ticking coroutine on each worker must keep
/// advancing, which it cannot if a bridged wait blocks its worker.
#[test]
fn a_hundred_bridged_round_trips_do_not_block_their_workers() {
    const N: usize = 100;
    const TICKS: u64 = 1_000;
    let received = Arc::new(AtomicUsize::new(0));
    let (open, release) = tokio::sync::watch::channel(false);
    let addr = echo_server(received.clone(), release);
    let rt = runtime();
    let stop = Arc::new(AtomicBool::new(false));
    let ticks: Vec<Arc<AtomicU64>> = (0..2).map(|_| Arc::default()).collect();
    let tickers: Vec<_> = (0..2)
        .map(|w| {
            let (stop, ticks) = (stop.clone(), ticks[w].clone());
            rt.contexts()[w].spawn(move || {
                while !stop.load(SeqCst) {
                    ticks.fetch_add(1, SeqCst);
                    yield_now();
                }
            })
        })
        .collect();
    let finished = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..N)
        .map(|i| {
            let finished = finished.clone();
            rt.contexts()[i % 2].spawn(move || {
                let home = thread::current().id();
                let mut payload = [0u8; 16];
                payload[..8].copy_from_slice(&(i as u64).to_le_bytes());
                let back = echo_through_bridge(addr, payload);
                assert_eq!(thread::current().id(), home, "resumed away from home");
                finished.fetch_add(1, SeqCst);
                (payload, back)
            })
        })
        .collect();
    wait_until("every request to reach the server", || {
        received.load(SeqCst) == N
    });
    // Every bridged round trip is outstanding now; both workers must still
    // be running their tickers.
    let at_start: Vec<u64> = ticks.iter().map(|t| t.load(SeqCst)).collect();
    wait_until("both tickers to advance", || {
        ticks
            .iter()
            .zip(&at_start)
            .all(|(t, s)| t.load(SeqCst) >= s + TICKS)
    });
    assert_eq!(finished.load(SeqCst), 0, "a reply came before the release");
    open.send(true).unwrap();
    for h in clients {
        let (sent, back) = h.join().unwrap();
        assert_eq!(sent, back);
    }
    stop.store(true, SeqCst);
    for t in tickers {
        t.join().unwrap();
    }
    rt.shutdown();
}

#[test]
fn a_panic_in_a_bridged_future_fails_the_coroutine() {
    let rt = runtime();
    let h = rt.spawn(|| tokio_bridge::run(async { panic!("tokio side failed") }));
    let e = h.join().unwrap_err();
    assert_eq!(e.panic_message(), Some("tokio side failed"));
    rt.shutdown();
}

/// Dropped on the tokio side when the bridged task is aborted.
struct Probe(Arc<AtomicBool>);
impl Drop for Probe {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

#[test]
fn shutting_down_a_waiting_coroutine_aborts_its_tokio_task() {
    let rt = runtime();
    let dropped = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let (d, s) = (dropped.clone(), started.clone());
    let h = rt.spawn(move || {
        tokio_bridge::run(async move {
            let _probe = Probe(d);
            s.store(true, SeqCst);
            std::future::pending::<()>().await;
        })
    });
    wait_until("the tokio task to start", || started.load(SeqCst));
    wait_until("the coroutine to suspend", || !h.coroutine().entered());
    rt.shutdown();
    assert!(matches!(h.join(), Err(JoinError::Cancelled)));
    wait_until("the tokio task to be dropped", || dropped.load(SeqCst));
}

#[test]
fn tokio_timers_work_from_coroutines() {
    let rt = runtime();
    let slept = rt.block_on(|| {
        let start = Instant::now();
        // Built inside the async block, so on a tokio thread: `Sleep::new`
        // needs the runtime's context.
        tokio_bridge::run(async { tokio::time::sleep(Duration::from_millis(5)).await });
        start.elapsed()
    });
    assert!(slept >= Duration::from_millis(5));
    rt.shutdown();
}

#[test]
fn run_on_uses_the_given_runtime() {
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("given-runtime")
        .build()
        .unwrap();
    let handle = tokio_rt.handle().clone();
    let rt = runtime();
    let name = rt.block_on(move || {
        tokio_bridge::run_on(&handle, async {
            thread::current().name().map(str::to_owned)
        })
    });
    assert_eq!(name.as_deref(), Some("given-runtime"));
    rt.shutdown();
}
