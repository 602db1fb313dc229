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

/// Which server to run.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum Server {
    /// Coroutine sockets, one coroutine per connection.
    #[value(alias = "co", alias = "coscheduler")]
    Coroutines,
    /// tokio, one task per connection.
    Tokio,
}

/// A key-value server speaking the Redis protocol, on coroutines or on tokio.
#[derive(clap::Parser)]
struct Options {
    /// The server to run.
    #[arg(long, value_enum, default_value_t = Server::Coroutines)]
    server: Server,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The TCP port.
    #[arg(long, default_value_t = 6380)]
    port: u16,
    /// Worker threads.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    threads: u16,
    /// Stop after this many (fractional) seconds; without it, run until killed.
    #[arg(long, value_parser = seconds)]
    exit_after: Option<Duration>,
}

/// A duration given in (fractional) seconds.
fn seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|e| format!("{e}"))?;
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{e}"))
}

fn main() {
    let o = <Options as clap::Parser>::parse();
    let store = Arc::new(Store::new());
    let addr = format!("{}:{}", o.host, o.port);
    match o.server {
        Server::Coroutines => {
            let rt = Runtime::builder()
                .threads(usize::from(o.threads))
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
                .worker_threads(usize::from(o.threads))
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
