//! Coroutine sockets over loopback: echo with a thousand concurrent
//! connections, streams moved between workers, timeouts, resets, EOF, and
//! runtime shutdown while coroutines wait on sockets.

mod support_io;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use coprimitives::io::{TcpListener, TcpStream, UnixListener, UnixStream};
use coprimitives::{TimedOut, co_timeout, co_timeout_with_cleanup};
use coscheduler::{Runtime, fd::registered_count};
use support_io::{raise_fd_limit, runtime, watchdog};

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn sockets_are_send_and_sync() {
    assert_send_sync::<TcpStream>();
    assert_send_sync::<TcpListener>();
    assert_send_sync::<UnixStream>();
    assert_send_sync::<UnixListener>();
}

/// Accepts forever; serves each connection in its own `Runtime::spawn`ed
/// coroutine, echoing until EOF. The acceptor holds only a `Weak` so that
/// the test can still shut the runtime down.
fn spawn_echo_server(rt: &Arc<Runtime>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let weak = Arc::downgrade(rt);
    let _detached = rt.spawn(move || {
        while let Ok((stream, _)) = listener.accept() {
            let Some(rt) = weak.upgrade() else { return };
            rt.spawn(move || echo(stream));
        }
    });
    addr
}

/// Shuts down a runtime shared with an acceptor that upgrades its `Weak`
/// for a moment per connection.
fn shutdown_shared(mut rt: Arc<Runtime>) {
    for _ in 0..1000 {
        match Arc::try_unwrap(rt) {
            Ok(rt) => return rt.shutdown(),
            Err(again) => rt = again,
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("the runtime is still shared");
}

fn echo(s: TcpStream) {
    // Until EOF or an error; the stream reads and writes through `&TcpStream`.
    let _ = std::io::copy(&mut &s, &mut &s);
}

#[test]
fn echo_with_a_thousand_concurrent_connections() {
    let _w = watchdog(
        "echo_with_a_thousand_concurrent_connections",
        Duration::from_secs(90),
    );
    // Two sockets per connection (client + server) plus slack.
    let limit = raise_fd_limit();
    let conns = 1000.min((limit.saturating_sub(100) / 2) as usize);
    assert!(conns >= 400, "fd limit {limit} too low for this test");
    let rt = Arc::new(runtime(2));
    let addr = spawn_echo_server(&rt);
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..conns)
        .map(|i| {
            let done = done.clone();
            rt.spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_nodelay(true).unwrap();
                for round in 0..5u8 {
                    let msg: Vec<u8> = (0..100 + i % 900)
                        .map(|k| (k as u8) ^ round ^ (i as u8))
                        .collect();
                    s.write_all(&msg).unwrap();
                    let mut back = vec![0u8; msg.len()];
                    s.read_exact(&mut back).unwrap();
                    assert_eq!(back, msg, "connection {i} round {round}");
                }
                done.fetch_add(1, SeqCst);
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(done.load(SeqCst), conns);
    let m = rt.metrics();
    eprintln!(
        "{conns} connections; per-context epoll waits: {:?}",
        m.per_context
            .iter()
            .map(|c| c.epoll_waits)
            .collect::<Vec<_>>()
    );
    shutdown_shared(rt);
}

#[test]
fn a_stream_accepted_on_one_worker_serves_on_another() {
    let _w = watchdog(
        "a_stream_accepted_on_one_worker_serves_on_another",
        Duration::from_secs(30),
    );
    let rt = runtime(2);
    let ctxs = rt.contexts().to_vec();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let client = std::thread::spawn(move || {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        for round in 0..3u8 {
            std::thread::sleep(Duration::from_millis(10));
            c.write_all(&[round; 10]).unwrap();
            let mut back = [0u8; 10];
            c.read_exact(&mut back).unwrap();
            assert_eq!(back, [round; 10]);
        }
    });
    // Accept on context 0 and block there once, so the stream is registered
    // on context 0; then move it to context 1, then back.
    let (stream, first) = ctxs[0]
        .spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 10];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
            (s, buf[0])
        })
        .join()
        .unwrap();
    assert_eq!(first, 0);
    let stream = ctxs[1]
        .spawn(move || {
            let mut s = stream;
            let mut buf = [0u8; 10];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
            s
        })
        .join()
        .unwrap();
    let stream = ctxs[0]
        .spawn(move || {
            let mut s = stream;
            let mut buf = [0u8; 10];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
            s
        })
        .join()
        .unwrap();
    client.join().unwrap();
    drop(stream);
    for ctx in &ctxs {
        let left = ctx
            .spawn(|| {
                coprimitives::co_sleep(Duration::from_millis(5));
                registered_count()
            })
            .join()
            .unwrap();
        assert_eq!(
            left,
            0,
            "no registration left behind on context {}",
            ctx.id()
        );
    }
    rt.shutdown();
}

#[test]
fn a_reader_and_a_writer_coroutine_share_a_stream() {
    let _w = watchdog(
        "a_reader_and_a_writer_coroutine_share_a_stream",
        Duration::from_secs(30),
    );
    let rt = runtime(2);
    let r = rt.block_on(|| {
        let (a, b) = UnixStream::pair().unwrap();
        let (a, b) = (Arc::new(a), Arc::new(b));
        let ctx = coscheduler::AioContext::current();
        // b echoes whatever comes, through a reader and a writer coroutine
        // on one context sharing `&UnixStream`.
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let b2 = b.clone();
        let reader = ctx.spawn(move || {
            let mut buf = vec![0u8; 65536];
            let mut total = 0;
            loop {
                match (&*b2).read(&mut buf) {
                    Ok(0) => return total,
                    Ok(n) => {
                        total += n;
                        tx.send(buf[..n].to_vec()).unwrap();
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        });
        let data: Vec<u8> = (0..4 << 20).map(|i| (i % 253) as u8).collect();
        let a2 = a.clone();
        let d2 = data.clone();
        let writer = ctx.spawn(move || {
            (&*a2).write_all(&d2).unwrap();
            a2.shutdown(Shutdown::Write).unwrap();
        });
        writer.join().unwrap();
        let total = reader.join().unwrap();
        let got: Vec<u8> = rx.try_iter().flatten().collect();
        (total, got == data)
    });
    assert_eq!(r, (4 << 20, true));
    rt.shutdown();
}

#[test]
fn a_read_with_a_timeout_that_fires() {
    let _w = watchdog("a_read_with_a_timeout_that_fires", Duration::from_secs(20));
    let rt = runtime(2);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    let (r, took, server) = rt.block_on(move || {
        let server = coscheduler::AioContext::current().spawn(move || listener.accept().unwrap().0);
        let client = Arc::new(TcpStream::connect(addr).unwrap());
        let server = server.join().unwrap();
        let c2 = client.clone();
        let t = Instant::now();
        let r = co_timeout_with_cleanup(
            Duration::from_millis(20),
            move || {
                let mut buf = [0u8; 8];
                (&*c2).read(&mut buf)
            },
            move |late: std::io::Result<usize>| tx.send(late.map_err(|e| e.kind())).unwrap(),
        );
        (r.map(|_| ()), t.elapsed(), server)
    });
    assert_eq!(r, Err(TimedOut));
    assert!(
        took >= Duration::from_millis(20) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // The abandoned read ends when the peer closes; its result reaches the
    // clean-up.
    drop(server);
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), Ok(0));
    rt.shutdown();
}

#[test]
fn socket_read_and_write_timeouts() {
    let _w = watchdog("socket_read_and_write_timeouts", Duration::from_secs(20));
    let rt = runtime(1);
    let r = rt.block_on(|| {
        let (a, _b) = UnixStream::pair().unwrap();
        assert!(a.set_read_timeout(Some(Duration::ZERO)).is_err());
        a.set_read_timeout(Some(Duration::from_millis(15))).unwrap();
        a.set_write_timeout(Some(Duration::from_millis(15)))
            .unwrap();
        let t = Instant::now();
        let read = (&a).read(&mut [0u8; 4]).map_err(|e| e.kind());
        let read_took = t.elapsed();
        // Fill the socket buffer until a write times out.
        let chunk = vec![0u8; 1 << 16];
        let write = loop {
            match (&a).write(&chunk) {
                Ok(n) => assert!(n > 0),
                Err(e) => break e.kind(),
            }
        };
        (read, read_took, write)
    });
    assert_eq!(r.0, Err(ErrorKind::TimedOut));
    assert!(r.1 >= Duration::from_millis(15));
    assert_eq!(r.2, ErrorKind::TimedOut);
    rt.shutdown();
}

#[test]
fn peer_reset_and_eof() {
    let _w = watchdog("peer_reset_and_eof", Duration::from_secs(20));
    let rt = runtime(2);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        // First connection: some bytes then a clean close (EOF).
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(b"partial").unwrap();
        drop(s);
        // Second: some bytes then an RST.
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(b"abc").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: valid option pointer and length on an open socket.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&s),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
        drop(s);
    });
    let (eof, reset) = rt.block_on(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        let mut s = TcpStream::connect(addr).unwrap();
        let mut buf = [0u8; 3];
        s.read_exact(&mut buf).unwrap();
        let reset = s.read(&mut [0u8; 16]).map_err(|e| e.kind());
        (all, reset)
    });
    peer.join().unwrap();
    assert_eq!(eof, b"partial");
    assert_eq!(reset, Err(ErrorKind::ConnectionReset));
    rt.shutdown();
}

#[test]
fn connecting_to_a_closed_port_is_refused() {
    let _w = watchdog(
        "connecting_to_a_closed_port_is_refused",
        Duration::from_secs(20),
    );
    let rt = runtime(1);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = rt.block_on(move || {
        TcpStream::connect(("127.0.0.1", port))
            .map(|_| ())
            .map_err(|e| e.kind())
    });
    assert_eq!(r, Err(ErrorKind::ConnectionRefused));
    let r = co_timeout(Duration::from_secs(5), move || {
        TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(1),
        )
        .map(|_| ())
        .map_err(|e| e.kind())
    });
    assert_eq!(r, Ok(Err(ErrorKind::ConnectionRefused)));
    rt.shutdown();
}

#[test]
fn unix_listener_and_plain_thread_clients() {
    let _w = watchdog(
        "unix_listener_and_plain_thread_clients",
        Duration::from_secs(20),
    );
    let dir = std::env::temp_dir().join(format!("coprimitives-io-{}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    let listener = UnixListener::bind(&dir).unwrap();
    let rt = runtime(1);
    let server = rt.spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut line = String::new();
        (&mut s).take(5).read_to_string(&mut line).unwrap();
        s.write_all(line.to_uppercase().as_bytes()).unwrap();
    });
    // The coroutine socket used from a plain thread blocks like std's.
    let mut c = UnixStream::connect(&dir).unwrap();
    c.write_all(b"hello").unwrap();
    let mut back = [0u8; 5];
    c.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"HELLO");
    server.join().unwrap();
    let _ = std::fs::remove_file(&dir);
    rt.shutdown();
}

#[test]
fn shutdown_while_coroutines_wait_on_sockets() {
    let _w = watchdog(
        "shutdown_while_coroutines_wait_on_sockets",
        Duration::from_secs(20),
    );
    let rt = runtime(2);
    let mut keep = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..50 {
        let (a, b) = UnixStream::pair().unwrap();
        keep.push(b);
        handles.push(rt.spawn(move || {
            let mut buf = [0u8; 1];
            (&a).read(&mut buf).map(|_| ()).map_err(|e| e.kind())
        }));
    }
    std::thread::sleep(Duration::from_millis(30));
    rt.shutdown();
    for h in handles {
        assert!(h.join().is_err(), "unwound by the shutdown");
    }
}

/// After a short read the next read waits for readiness instead of trying
/// the socket (one syscall per request saved); data and EOF arriving later,
/// or already there, must still be seen.
#[test]
fn short_reads_then_late_data_then_eof() {
    let _w = watchdog(
        "short_reads_then_late_data_then_eof",
        Duration::from_secs(20),
    );
    let rt = runtime(1);
    let (a, b) = UnixStream::pair().unwrap();
    let a = Arc::new(a);
    let a2 = a.clone();
    let reader = rt.spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match (&*a2).read(&mut buf) {
                Ok(0) => return got,
                Ok(n) => got.push(n),
                Err(e) => panic!("{e}"),
            }
        }
    });
    (&b).write_all(&[1; 10]).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    (&b).write_all(&[2; 20]).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    // Data and EOF together: one edge announces both.
    (&b).write_all(&[3; 30]).unwrap();
    b.shutdown(Shutdown::Write).unwrap();
    assert_eq!(reader.join().unwrap(), vec![10, 20, 30]);
    drop(b);
    rt.shutdown();
}
