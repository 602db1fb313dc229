//! A coroutine HTTP/1.1 service whose handler calls an async (tokio) client
//! through `coscheduler::tokio_bridge`.
//!
//! ```text
//! cargo run -p coprimitives --example http_bridge            # self-test, then exit
//! cargo run -p coprimitives --example http_bridge -- serve [--port 8080]
//!     curl http://127.0.0.1:8080/upper/hello
//! ```
//!
//! Two services:
//! - the **backend**, a tokio line service on the bridge's tokio runtime: it
//!   answers each line with the line in upper case;
//! - the **frontend**, on a coscheduler `Runtime`: a coroutine accepts on a
//!   `coprimitives::io::TcpListener` and spawns one coroutine per
//!   connection, which reads requests with plain blocking-style `Read`
//!   calls (they suspend the coroutine), and for `GET /upper/<text>` asks
//!   the backend through a `tokio::net::TcpStream` inside
//!   `tokio_bridge::run`, suspending until the answer is back. Connections
//!   are kept alive until the client closes them or sends
//!   `Connection: close`.
//!
//! Without `serve`, it starts both services on free ports, sends a few
//! requests from plain threads with `std::net::TcpStream`, checks the
//! answers, prints them and exits.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::SocketAddr;

use coprimitives::io::{TcpListener, TcpStream};
use coscheduler::{Handle, Runtime, tokio_bridge};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// Starts the backend on the bridge's tokio runtime; returns its address.
fn start_backend() -> io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    tokio_bridge::handle().spawn(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => return eprintln!("backend: {e}"),
        };
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut lines = tokio::io::BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply = format!("{}\n", line.to_uppercase());
                    if w.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// The async client: one request to the backend, on tokio.
async fn ask_backend(backend: SocketAddr, text: String) -> io::Result<String> {
    let stream = tokio::net::TcpStream::connect(backend).await?;
    let (r, mut w) = stream.into_split();
    w.write_all(format!("{text}\n").as_bytes()).await?;
    let mut line = String::new();
    tokio::io::BufReader::new(r).read_line(&mut line).await?;
    Ok(line.trim_end().to_owned())
}

/// One parsed request head.
struct Request {
    method: String,
    path: String,
    close: bool,
}

/// Reads one request head; `None` when the client closed the connection.
fn read_request(reader: &mut BufReader<&TcpStream>) -> io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad request line",
        ));
    };
    let mut close = version != "HTTP/1.1";
    let mut body_len = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 {
            return Ok(None);
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            } else if name.eq_ignore_ascii_case("content-length") {
                body_len = value.parse().unwrap_or(0);
            }
        }
    }
    // This service ignores request bodies, but must consume them to find
    // the next request on a kept-alive connection.
    io::copy(&mut reader.by_ref().take(body_len as u64), &mut io::sink())?;
    Ok(Some(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        close,
    }))
}

/// Answers one request; the backend call suspends only this coroutine.
fn respond(req: &Request, backend: SocketAddr) -> (u16, String) {
    match (req.method.as_str(), req.path.strip_prefix("/upper/")) {
        ("GET", Some(text)) => {
            let text = text.to_owned();
            match tokio_bridge::run(ask_backend(backend, text)) {
                Ok(upper) => (200, format!("{upper}\n")),
                Err(e) => (502, format!("backend failed: {e}\n")),
            }
        }
        ("GET", None) => (404, "try /upper/<text>\n".to_owned()),
        _ => (405, "GET only\n".to_owned()),
    }
}

/// Serves one connection until it closes.
fn serve_connection(stream: TcpStream, backend: SocketAddr) -> io::Result<()> {
    let mut reader = BufReader::new(&stream);
    while let Some(req) = read_request(&mut reader)? {
        let (status, body) = respond(&req, backend);
        let reason = match status {
            200 => "OK",
            404 => "Not Found",
            405 => "Method Not Allowed",
            _ => "Bad Gateway",
        };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if req.close {
                "Connection: close\r\n"
            } else {
                ""
            }
        );
        (&stream).write_all(head.as_bytes())?;
        (&stream).write_all(body.as_bytes())?;
        if req.close {
            break;
        }
    }
    Ok(())
}

/// Binds the frontend and spawns its acceptor coroutine.
fn start_frontend(rt: &Runtime, port: u16, backend: SocketAddr) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    let addr = listener.local_addr()?;
    let spawner: Handle = rt.handle();
    drop(rt.spawn(move || {
        loop {
            match listener.accept() {
                Ok((stream, _)) => drop(spawner.spawn(move || {
                    if let Err(e) = serve_connection(stream, backend) {
                        eprintln!("connection: {e}");
                    }
                })),
                Err(e) => eprintln!("accept: {e}"),
            }
        }
    }));
    Ok(addr)
}

/// A plain-thread HTTP client: two requests on one kept-alive connection.
fn self_test_client(addr: SocketAddr, word: &str) -> io::Result<Vec<String>> {
    let mut s = std::net::TcpStream::connect(addr)?;
    let mut reader = BufReader::new(s.try_clone()?);
    let mut bodies = Vec::new();
    for (i, close) in [(0, false), (1, true)] {
        let conn = if close { "Connection: close\r\n" } else { "" };
        write!(s, "GET /upper/{word}-{i} HTTP/1.1\r\nHost: x\r\n{conn}\r\n")?;
        let mut status = String::new();
        reader.read_line(&mut status)?;
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h.strip_prefix("Content-Length: ") {
                len = v.parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        bodies.push(format!(
            "{} -> {}",
            status.trim_end(),
            String::from_utf8_lossy(&body).trim_end()
        ));
    }
    Ok(bodies)
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let serve = args.next().as_deref() == Some("serve");
    let port = match (args.next().as_deref(), args.next()) {
        (Some("--port"), Some(p)) => p
            .parse()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("--port: {e}")))?,
        _ if serve => 8080,
        _ => 0,
    };
    let rt = Runtime::builder().threads(2).build()?;
    let backend = start_backend()?;
    let frontend = start_frontend(&rt, port, backend)?;
    if serve {
        println!("serving on http://{frontend}/upper/<text> (backend on {backend})");
        loop {
            std::thread::park();
        }
    }
    let clients: Vec<_> = ["alpha", "beta", "gamma", "delta"]
        .into_iter()
        .map(|w| std::thread::spawn(move || (w, self_test_client(frontend, w))))
        .collect();
    for c in clients {
        let (word, answers) = c.join().expect("client thread");
        let answers = answers?;
        for (i, a) in answers.iter().enumerate() {
            let want = format!("HTTP/1.1 200 OK -> {}-{i}", word.to_uppercase());
            assert_eq!(a, &want, "unexpected answer");
            println!("{a}");
        }
    }
    println!("self-test passed");
    Ok(())
}
