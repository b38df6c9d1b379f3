//! The `/metrics` endpoint: a thread accepting HTTP `GET /metrics`, each connection answered
//! on a thread of its own with the text exposition format.
//!
//! It is a plain `std` listener rather than an HTTP crate: the only client is a Prometheus
//! scraper (or `curl`) asking for one path every few seconds, and what that needs (read a
//! request head of bounded size with a deadline, answer it, close) is a few dozen lines that
//! pull in no dependency. A connection has [`IO_TIMEOUT`] in all to send its request (not per
//! read: a client trickling bytes is cut off too) and the head is capped in size; at most
//! [`MAX_CONNECTIONS`] are served at once and any more are closed at once, so slow or hostile
//! clients cannot make it allocate, and cannot hold a scraper off for longer than the
//! deadline even when they fill every slot.

use crate::metrics::{CONTENT_TYPE, encode};
use prometheus_client::registry::Registry;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a client may take to send its request, or to take the answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections served at once; one more is closed as soon as it is accepted.
pub const MAX_CONNECTIONS: usize = 32;

/// How long to wait after a failed `accept` before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Bytes of request head read at most: a scraper's `GET` with its headers is a few hundred.
const MAX_REQUEST: usize = 8 * 1024;

/// A running `/metrics` endpoint; dropping it stops the thread.
pub struct MetricsServer {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `address` (TCP) and serves `registry` from a thread of its own.
    pub fn start(address: SocketAddr, registry: Registry) -> io::Result<Self> {
        let listener = TcpListener::bind(address)?;
        let address = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let registry = Arc::new(registry);
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("metrics".into())
                .spawn(move || serve(&listener, &registry, &stop))?
        };
        Ok(Self {
            address,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on (the actual port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Unblock the accept; the thread then sees the flag.
        let _ = TcpStream::connect_timeout(&self.address, IO_TIMEOUT);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(listener: &TcpListener, registry: &Arc<Registry>, stop: &AtomicBool) {
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else {
            // Out of descriptors, say: do not spin while it lasts.
            std::thread::sleep(ACCEPT_BACKOFF);
            continue;
        };
        if open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::SeqCst);
            tracing::debug!("metrics: {MAX_CONNECTIONS} connections open, one more refused");
            continue;
        }
        let (registry, done) = (registry.clone(), open.clone());
        let spawned = std::thread::Builder::new()
            .name("metrics-conn".into())
            .spawn(move || {
                if let Err(e) = answer(stream, &registry, Instant::now() + IO_TIMEOUT) {
                    tracing::debug!(error = %e, "metrics request failed");
                }
                done.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            open.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// What a request asked for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Metrics,
    NotFound,
    BadMethod,
    Malformed,
}

/// Parses a request head's first line.
fn parse(head: &[u8]) -> Request {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let Ok(line) = std::str::from_utf8(line) else {
        return Request::Malformed;
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Request::Malformed;
    };
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return Request::Malformed;
    }
    if method != "GET" && method != "HEAD" {
        return Request::BadMethod;
    }
    // Query strings are ignored; Prometheus sends none by default.
    match target.split('?').next() {
        Some("/metrics") => Request::Metrics,
        _ => Request::NotFound,
    }
}

/// Reads the request head (up to its blank line, [`MAX_REQUEST`] bytes at most), all of it
/// before `deadline`.
fn read_head(stream: &mut TcpStream, deadline: Instant) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() >= MAX_REQUEST {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request not sent in time",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n.min(MAX_REQUEST - head.len())]);
    }
    Ok(head)
}

fn answer(mut stream: TcpStream, registry: &Registry, deadline: Instant) -> io::Result<()> {
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let head = read_head(&mut stream, deadline)?;
    let head_only = head.starts_with(b"HEAD ");
    let (status, content_type, body) = match parse(&head) {
        Request::Metrics => match encode(registry) {
            Ok(text) => ("200 OK", CONTENT_TYPE, text),
            Err(_) => (
                "500 Internal Server Error",
                "text/plain",
                "encoding failed\n".into(),
            ),
        },
        Request::NotFound => ("404 Not Found", "text/plain", "try /metrics\n".into()),
        Request::BadMethod => ("405 Method Not Allowed", "text/plain", "only GET\n".into()),
        Request::Malformed => ("400 Bad Request", "text/plain", "bad request\n".into()),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        response.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&response)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_lines() {
        assert_eq!(
            parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Request::Metrics
        );
        assert_eq!(
            parse(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Request::Metrics
        );
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Request::NotFound);
        assert_eq!(parse(b"POST /metrics HTTP/1.1\r\n\r\n"), Request::BadMethod);
        assert_eq!(parse(b"GET /metrics\r\n\r\n"), Request::Malformed);
        assert_eq!(parse(b"\xff\xfe"), Request::Malformed);
        assert_eq!(parse(b""), Request::Malformed);
    }

    #[test]
    fn serves_metrics_over_tcp_and_stops() {
        let mut registry = Registry::default();
        let counter: prometheus_client::metrics::counter::Counter =
            prometheus_client::metrics::counter::Counter::default();
        counter.inc();
        registry.register("probe", "A test counter", counter);
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), registry).unwrap();
        let get = |request: &str| {
            let mut stream = TcpStream::connect(server.local_addr()).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            response
        };
        let response = get("GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(
            response.contains("\r\n\r\n# HELP probe_total"),
            "{response}"
        );
        assert!(response.contains("\nprobe_total 1\n"), "{response}");
        assert!(get("GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get("garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
        drop(server);
    }

    #[test]
    fn connections_beyond_the_cap_are_closed_and_the_rest_still_served() {
        let server =
            MetricsServer::start("127.0.0.1:0".parse().unwrap(), Registry::default()).unwrap();
        let silent: Vec<TcpStream> = (0..MAX_CONNECTIONS)
            .map(|_| TcpStream::connect(server.local_addr()).unwrap())
            .collect();
        // One more is closed without an answer (a read sees the end, not a timeout).
        let mut extra = TcpStream::connect(server.local_addr()).unwrap();
        extra
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut buf = [0u8; 16];
        assert!(matches!(extra.read(&mut buf), Ok(0) | Err(_)));
        // Once the silent ones go, a scrape is answered.
        drop(silent);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut stream = TcpStream::connect(server.local_addr()).unwrap();
            stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
            let mut response = String::new();
            let _ = stream.read_to_string(&mut response);
            if response.starts_with("HTTP/1.1 200 OK") {
                break;
            }
            assert!(Instant::now() < deadline, "never answered: {response:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
