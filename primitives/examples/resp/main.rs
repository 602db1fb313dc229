//! A key-value server speaking the Redis protocol (RESP), twice: on
//! coroutine sockets (one coroutine per connection, `Runtime::spawn`ed) and
//! on tokio (one task per connection, multi-thread runtime with the same
//! number of workers). Both run the same parser, commands and keyspace
//! (`protocol.rs`); for each read they run every complete request in it
//! and write all the replies with one `write_all`.
//!
//! ```text
//! cargo run --release -p coprimitives --example resp -- [--server co|tokio]
//!     [--port 6380] [--threads 2] [--exit-after SECS]
//! redis-benchmark -p 6380 -c 50 -n 200000 -P 16 -t ping,set,get,incr,lpush,lpop -q
//! ```
//!
//! Commands: PING, ECHO, SET, MSET, GET, INCR, DECR, INCRBY, DECRBY, DEL,
//! EXISTS, LPUSH, RPUSH, LPOP, RPOP, LLEN, LRANGE, DBSIZE, FLUSHALL; CONFIG
//! and COMMAND answer an empty array. The server runs until killed, or for
//! `--exit-after` seconds.

mod protocol;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use coprimitives::io::{TcpListener, TcpStream};
use coscheduler::Runtime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use protocol::{Session, Store};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Server {
    Coroutines,
    Tokio,
}

struct Options {
    server: Server,
    host: String,
    port: u16,
    threads: usize,
    exit_after: Option<Duration>,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        server: Server::Coroutines,
        host: "127.0.0.1".into(),
        port: 6380,
        threads: 2,
        exit_after: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--server" => {
                o.server = match value("--server")?.as_str() {
                    "co" | "coroutines" | "coscheduler" => Server::Coroutines,
                    "tokio" => Server::Tokio,
                    other => return Err(format!("--server: unknown server {other}")),
                }
            }
            "--host" => o.host = value("--host")?,
            "--port" => {
                o.port = value("--port")?
                    .parse()
                    .map_err(|e| format!("--port: {e}"))?
            }
            "--threads" => {
                o.threads = value("--threads")?
                    .parse()
                    .map_err(|e| format!("--threads: {e}"))?
            }
            "--exit-after" => {
                let secs: f64 = value("--exit-after")?
                    .parse()
                    .map_err(|e| format!("--exit-after: {e}"))?;
                o.exit_after = Some(Duration::from_secs_f64(secs));
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    Ok(o)
}

fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("resp: {e}");
            }
            eprintln!(
                "usage: resp [--server co|tokio] [--host H] [--port P] [--threads N] [--exit-after SECS]"
            );
            std::process::exit(2);
        }
    };
    let store = Arc::new(Store::new());
    let addr = format!("{}:{}", o.host, o.port);
    match o.server {
        Server::Coroutines => {
            let rt = Runtime::builder()
                .threads(o.threads)
                .pin_threads(false)
                .build()
                .unwrap_or_else(|e| panic!("cannot start the runtime: {e}"));
            let listener = TcpListener::bind(addr.as_str())
                .unwrap_or_else(|e| panic!("cannot listen on {addr}: {e}"));
            eprintln!("resp: coroutine server on {addr}, {} workers", o.threads);
            serve_coroutines(&rt, listener, store);
            wait_or_forever(o.exit_after);
            rt.shutdown();
        }
        Server::Tokio => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(o.threads)
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("cannot start tokio: {e}"));
            let listener = rt
                .block_on(tokio::net::TcpListener::bind(addr.as_str()))
                .unwrap_or_else(|e| panic!("cannot listen on {addr}: {e}"));
            eprintln!("resp: tokio server on {addr}, {} workers", o.threads);
            rt.spawn(serve_tokio(listener, store));
            wait_or_forever(o.exit_after);
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

fn wait_or_forever(d: Option<Duration>) {
    match d {
        Some(d) => std::thread::sleep(d),
        None => loop {
            std::thread::park();
        },
    }
}

/// Accepts on `listener` in a coroutine of `rt`, serving each connection in
/// a coroutine of its own.
fn serve_coroutines(rt: &Runtime, listener: TcpListener, store: Arc<Store>) {
    let handle = rt.handle();
    drop(rt.spawn(move || {
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    let store = store.clone();
                    drop(handle.spawn(move || connection(stream, &store)));
                }
                Err(e) => eprintln!("resp: accept: {e}"),
            }
        }
    }));
}

/// One connection on coroutine sockets, until EOF or an error.
fn connection(mut s: TcpStream, store: &Store) {
    let _ = s.set_nodelay(true);
    let mut session = Session::new();
    loop {
        let n = match s.read(session.read_buf()) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        match session.received(n, store) {
            Ok(replies) => {
                if !replies.is_empty() && s.write_all(replies).is_err() {
                    return;
                }
            }
            Err(()) => {
                let _ = s.write_all(session.output());
                return;
            }
        }
    }
}

/// The tokio server: an accepting task, and a task per connection.
async fn serve_tokio(listener: tokio::net::TcpListener, store: Arc<Store>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let store = store.clone();
                tokio::spawn(async move { connection_tokio(stream, &store).await });
            }
            Err(e) => eprintln!("resp: accept: {e}"),
        }
    }
}

/// [`connection`] on tokio.
async fn connection_tokio(mut s: tokio::net::TcpStream, store: &Store) {
    let _ = s.set_nodelay(true);
    let mut session = Session::new();
    loop {
        let n = match s.read(session.read_buf()).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        match session.received(n, store) {
            Ok(replies) => {
                if !replies.is_empty() && s.write_all(replies).await.is_err() {
                    return;
                }
            }
            Err(()) => {
                let _ = s.write_all(session.output()).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both servers, over loopback, answer a pipelined batch the same.
    #[test]
    fn both_servers_answer_a_pipeline() {
        let batch = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n9\r\n\
            *2\r\n$4\r\nINCR\r\n$1\r\nk\r\n\
            *2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n";
        let expected = b"+OK\r\n:10\r\n$2\r\n10\r\n+PONG\r\n";
        let ask = |addr: std::net::SocketAddr| {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            // In two pieces, the first ending inside a request.
            c.write_all(&batch[..20]).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            c.write_all(&batch[20..]).unwrap();
            let mut got = vec![0; expected.len()];
            c.read_exact(&mut got).unwrap();
            got
        };

        let rt = Runtime::builder()
            .threads(2)
            .pin_threads(false)
            .build()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        serve_coroutines(&rt, listener, Arc::new(Store::new()));
        assert_eq!(ask(addr), expected);
        rt.shutdown();

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(serve_tokio(listener, Arc::new(Store::new())));
        assert_eq!(ask(addr), expected);
        rt.shutdown_timeout(Duration::from_secs(1));
    }
}
