//! The HTTP/1.1 server the API is served by: a small, strict one, so that every answer —
//! including the refusals of the HTTP layer itself (a malformed request line, a header too
//! large, a body too long or too slow) — carries the API's JSON error envelope with a
//! documented `Code`, and so that no connection can be held open for free:
//!
//! - a request's head must arrive within `header_timeout` of its first byte, its body within
//!   `body_timeout`, and a kept-alive connection with no new request is closed after
//!   `idle_timeout`; a response the client does not read is abandoned after `body_timeout`;
//! - at most `max_connections` connections at once (lowered to fit the process's file limit).
//!   When all are taken, the connection idle the longest is closed to make room (a kept-alive
//!   connection costs its client nothing to open again); only when none is idle is the new
//!   one answered `503 ServiceUnavailable` and closed;
//! - framing is strict (one message framing: `Content-Length` digits or `Transfer-Encoding:
//!   chunked`, never both; no bytes outside visible ASCII in the request target; no control
//!   characters in header values), which leaves nothing for request smuggling to play with.
//!
//! Over TLS ([`crate::tls`]) the handshake must end within `header_timeout` too, and a plain
//! HTTP request sent to the TLS port is answered, in plain HTTP, that the port is HTTPS.
//!
//! Heads are parsed by `httparse` (the parser hyper uses). The service behind answers one
//! [`Request`] with one [`Response`]; [`Service::refuse`] renders the server's own refusals.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::{timeout, Instant};

/// Most header fields a request may have, whatever the configuration says.
pub const MAX_HEADERS: usize = 128;

/// The server's limits.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// From a request's first byte to the end of its head.
    pub header_timeout: Duration,
    /// To receive a request's body (and to send a response).
    pub body_timeout: Duration,
    /// A kept-alive connection waiting for its next request.
    pub idle_timeout: Duration,
    /// Largest request head (request line and headers), bytes.
    pub max_head_bytes: usize,
    /// Largest request target (path and query), bytes.
    pub max_target_bytes: usize,
    /// Most header fields (at most [`MAX_HEADERS`]).
    pub max_headers: usize,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_head_bytes: 128 * 1024,
            max_target_bytes: 64 * 1024,
            max_headers: 100,
            max_body_bytes: 1 << 20,
        }
    }
}

/// One request, as received.
#[derive(Debug)]
pub struct Request {
    /// The method token (`GET`, `POST`, …).
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string, without `?` (still percent-encoded).
    pub query: String,
    /// Header fields, names lower-cased, values as text (a byte outside UTF-8, which only
    /// obsolete clients send, becomes U+FFFD).
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
    /// Who sent it.
    pub peer: SocketAddr,
}

impl Request {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// One response.
#[derive(Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Header fields (Content-Length and Connection are added by the server).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Why the server refused a request by itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// The envelope's `Code`.
    pub code: &'static str,
    /// The envelope's `Message`.
    pub message: String,
}

fn refusal(status: u16, code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal { status, code, message: message.into() }
}

fn malformed(what: impl std::fmt::Display) -> Refusal {
    refusal(400, "MalformedRequest", format!("The request is not valid HTTP/1.1: {what}."))
}

/// A future answering one request.
pub type Answer = Pin<Box<dyn Future<Output = Response> + Send>>;

/// What the server serves.
pub trait Service: Send + Sync + 'static {
    /// Answers a request.
    fn call(&self, request: Request) -> Answer;
    /// Renders a refusal of the server itself (in the service's error envelope).
    fn refuse(&self, refusal: &Refusal) -> Response;
}

/// The process's open-file limit, raised to its hard limit, and what is left of it for
/// connections once the database, the configuration files and the helpers have theirs.
fn connection_budget(wanted: usize) -> usize {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.maximum.is_some_and(|max| limit.current.is_some_and(|cur| cur < max)) {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
        limit = getrlimit(Resource::Nofile);
    }
    match limit.current {
        // A quarter (at most 256) is kept for everything else.
        Some(files) => wanted.min(files.saturating_sub((files / 4).min(256)).max(16) as usize),
        None => wanted,
    }
}

/// Connections waiting for their next request, by the order they began to wait: the oldest is
/// the first asked to close when a new connection needs its slot.
#[derive(Default)]
struct Idle {
    waiting: Mutex<BTreeMap<u64, Arc<Notify>>>,
    next: AtomicU64,
}

impl Idle {
    fn enter(&self) -> (u64, Arc<Notify>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).insert(id, notify.clone());
        (id, notify)
    }

    fn leave(&self, id: u64) {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }

    /// Asks the connection idle the longest to close; false if none is idle.
    fn evict_oldest(&self) -> bool {
        let oldest = self.waiting.lock().unwrap_or_else(|p| p.into_inner()).pop_first();
        oldest.map(|(_, n)| n.notify_one()).is_some()
    }
}

/// What every connection shares: the limits, the idle list, the shutdown signal.
struct Shared {
    limits: Limits,
    idle: Idle,
    stop: watch::Receiver<bool>,
}

/// Serves `service` on `listener` (over TLS with `tls`) until `shutdown` completes; then stops
/// accepting and waits (at most `body_timeout`) for the requests under way.
pub async fn serve<S: Service>(
    listener: TcpListener,
    service: Arc<S>,
    limits: Limits,
    tls: Option<Arc<crate::tls::Tls>>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let max = connection_budget(limits.max_connections);
    if max < limits.max_connections {
        tracing::warn!(wanted = limits.max_connections, allowed = max, "connections limited by the open-file limit");
    }
    let slots = Arc::new(Semaphore::new(max));
    // Told to every connection at shutdown: one waiting for its next request closes at once.
    let (stopping, stop) = watch::channel(false);
    let shared = Arc::new(Shared { limits, idle: Idle::default(), stop });
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors (or a connection reset before it was accepted): wait a
                    // little rather than spin; the connections in progress will free some.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (service, shared, slots, tls) = (service.clone(), shared.clone(), slots.clone(), tls.clone());
        tokio::spawn(async move {
            let slot = match slots.clone().try_acquire_owned() {
                Ok(slot) => Some(slot),
                // Full: make room by closing the connection idle the longest (and the next, if that
                // one woke with a request just then).
                Err(_) => {
                    let mut slot = None;
                    for _ in 0..8 {
                        if !shared.idle.evict_oldest() {
                            break;
                        }
                        if let Ok(Ok(s)) = timeout(Duration::from_millis(100), slots.clone().acquire_owned()).await {
                            slot = Some(s);
                            break;
                        }
                    }
                    slot
                }
            };
            let mut stream = stream;
            match (slot, tls) {
                (Some(_slot), None) => connection(stream, peer, &*service, &shared).await,
                (Some(_slot), Some(tls)) => {
                    if let Some(stream) = handshake(stream, peer, &tls, &*service, &shared.limits).await {
                        connection(stream, peer, &*service, &shared).await
                    }
                }
                (None, _) => {
                    // Said in plain HTTP even on the TLS port: a handshake would cost the slot
                    // it is refused for.
                    let r = refusal(503, "ServiceUnavailable", "Too many connections are open; try again later.");
                    let _ = timeout(
                        Duration::from_secs(1),
                        write_response(&mut stream, &service.refuse(&r), Some("close"), false),
                    )
                    .await;
                }
            }
        });
    }
    // No new connection; the requests under way finish; idle connections close at once.
    drop(listener);
    let _ = stopping.send(true);
    let _ = timeout(shared.limits.body_timeout, slots.acquire_many(max as u32)).await;
    Ok(())
}

/// The TLS handshake of a new connection, within the header timeout. A client speaking plain
/// HTTP (its first byte is not a TLS handshake record's) is told in plain HTTP to use https.
async fn handshake<S: Service + ?Sized>(
    mut stream: TcpStream,
    peer: SocketAddr,
    tls: &crate::tls::Tls,
    service: &S,
    limits: &Limits,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    const HANDSHAKE_RECORD: u8 = 0x16;
    let deadline = Instant::now() + limits.header_timeout;
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == HANDSHAKE_RECORD => {}
        Ok(Ok(1)) => {
            let r = refusal(400, "MalformedRequest", "This port serves HTTPS: send the request to https://.");
            refuse(&mut stream, service, &r, limits).await;
            return None;
        }
        _ => return None,
    }
    match tokio::time::timeout_at(deadline, tls.acceptor().accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake did not end within the header timeout");
            None
        }
    }
}

/// A request head, parsed.
struct Head {
    /// HTTP/1.`version`.
    version: u8,
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    keep_alive: bool,
    framing: Framing,
    expect_continue: bool,
}

enum Framing {
    Length(usize),
    Chunked,
}

/// Serves one connection: requests one after another until either side closes it.
async fn connection<S: Service + ?Sized, IO: AsyncRead + AsyncWrite + Unpin>(
    mut io: IO,
    peer: SocketAddr,
    service: &S,
    shared: &Shared,
) {
    let limits = &shared.limits;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let head = match read_head(&mut io, &mut buf, shared).await {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(r) => return refuse(&mut io, service, &r, limits).await,
        };
        if head.expect_continue {
            let sent = timeout(limits.body_timeout, io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")).await;
            if !matches!(sent, Ok(Ok(()))) {
                return;
            }
        }
        let body = match timeout(limits.body_timeout, read_body(&mut io, &mut buf, &head.framing, limits)).await {
            Ok(Ok(body)) => body,
            Ok(Err(r)) => return refuse(&mut io, service, &r, limits).await,
            Err(_) => {
                let r = refusal(408, "RequestTimeout", "The request body did not arrive in time.");
                return refuse(&mut io, service, &r, limits).await;
            }
        };
        let (path, query) = match head.target.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (head.target.clone(), String::new()),
        };
        let is_head = head.method == "HEAD";
        let connection = match (head.keep_alive, head.version) {
            (false, _) => Some("close"),
            (true, 0) => Some("keep-alive"), // HTTP/1.0 closes unless told otherwise
            (true, _) => None,
        };
        let request = Request { method: head.method, path, query, headers: head.headers, body, peer };
        let response = service.call(request).await;
        let sent = timeout(limits.body_timeout, write_response(&mut io, &response, connection, is_head)).await;
        if !head.keep_alive || !matches!(sent, Ok(Ok(()))) || *shared.stop.borrow() {
            let _ = timeout(Duration::from_secs(1), io.shutdown()).await;
            return;
        }
    }
}

/// Answers a refusal and closes. The client may still be sending what was refused: the
/// connection is half-closed and its input read and dropped for a moment (at most 1 s and
/// 1 MiB), as nginx's lingering close does, so that the refusal is not lost to a reset.
async fn refuse<S: Service + ?Sized, IO: AsyncRead + AsyncWrite + Unpin>(
    io: &mut IO,
    service: &S,
    r: &Refusal,
    limits: &Limits,
) {
    tracing::debug!(status = r.status, code = r.code, "request refused by the HTTP layer");
    let _ = timeout(limits.body_timeout, write_response(io, &service.refuse(r), Some("close"), false)).await;
    let _ = timeout(Duration::from_secs(1), io.shutdown()).await;
    let _ = timeout(Duration::from_secs(1), async {
        let mut sink = [0u8; 8192];
        let mut left = 1usize << 20;
        while left > 0 {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// Reads more bytes into `buf`; false at the end of the stream.
async fn fill<IO: AsyncRead + Unpin>(io: &mut IO, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    // Straight into the buffer's spare room: no copy, and no 8 KiB array inside the future
    // (a future is moved as it is polled; a large one costs a large memmove each time).
    buf.reserve(8192);
    Ok(io.read_buf(buf).await? > 0)
}

/// Reads and parses the next request head. None when the connection ends (or stays idle past
/// the idle timeout) between requests.
async fn read_head<IO: AsyncRead + Unpin>(
    io: &mut IO,
    buf: &mut Vec<u8>,
    shared: &Shared,
) -> Result<Option<Head>, Refusal> {
    let limits = &shared.limits;
    // Between requests: wait for the next request's first byte, at most the idle time in all.
    // A few empty lines before a request line are allowed (RFC 9112 §2.2); a stream of them is
    // not a way to keep a connection open.
    let idle_until = Instant::now() + limits.idle_timeout;
    let mut blank_bytes = 0;
    loop {
        let blank = buf.iter().take_while(|b| **b == b'\r' || **b == b'\n').count();
        buf.drain(..blank);
        blank_bytes += blank;
        if blank_bytes > 16 {
            return Ok(None);
        }
        if !buf.is_empty() {
            break;
        }
        let mut stop = shared.stop.clone();
        if *stop.borrow_and_update() {
            return Ok(None);
        }
        let (id, evicted) = shared.idle.enter();
        let read = tokio::select! {
            read = tokio::time::timeout_at(idle_until, fill(io, buf)) => matches!(read, Ok(Ok(true))),
            _ = stop.changed() => false,
            _ = evicted.notified() => false,
        };
        shared.idle.leave(id);
        if !read {
            return Ok(None);
        }
    }
    let deadline = Instant::now() + limits.header_timeout;
    // Only new bytes are searched for the end of the line and of the head, and the head is
    // parsed once it is complete (or already too long): a head sent a byte at a time costs
    // what a head sent at once does.
    let (mut scanned, mut line_ended, mut head_ended) = (0usize, false, false);
    loop {
        let new = &buf[scanned.saturating_sub(3)..];
        line_ended = line_ended || new.windows(2).any(|w| w == b"\r\n");
        head_ended = head_ended || new.windows(4).any(|w| w == b"\r\n\r\n");
        scanned = buf.len();
        let too_long = buf.len() > limits.max_head_bytes || (!line_ended && buf.len() > limits.max_target_bytes + 64);
        if head_ended || too_long {
            if let Some(head) = parse_head(buf, limits)? {
                return Ok(Some(head));
            }
        }
        match tokio::time::timeout_at(deadline, fill(io, buf)).await {
            Ok(Ok(true)) => {}
            Ok(_) => return Ok(None), // closed halfway through a head: nobody to answer
            Err(_) => return Err(refusal(408, "RequestTimeout", "The request head did not arrive in time.")),
        }
    }
}

/// Parses a complete head at the start of `buf` (removing it), None if more bytes are needed.
fn parse_head(buf: &mut Vec<u8>, limits: &Limits) -> Result<Option<Head>, Refusal> {
    // The request line first: its target must be visible ASCII (percent-encoded), whatever
    // httparse would let through.
    let line_end = buf.windows(2).position(|w| w == b"\r\n");
    let line = &buf[..line_end.unwrap_or(buf.len())];
    let target_len = line.split(|b| *b == b' ').nth(1).map_or(0, <[u8]>::len);
    if target_len > limits.max_target_bytes || (line_end.is_none() && buf.len() > limits.max_target_bytes + 64) {
        return Err(refusal(
            414,
            "RequestURITooLong",
            format!(
                "The request target is longer than {} bytes; send the parameters in a form body.",
                limits.max_target_bytes
            ),
        ));
    }
    if let Some(bad) = line.iter().find(|b| !(0x20..0x7f).contains(*b)) {
        return Err(malformed(format_args!("byte 0x{bad:02x} in the request line (percent-encode it)")));
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields[..limits.max_headers.min(MAX_HEADERS)]);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_head_bytes => {
            return Err(refusal(
                431,
                "RequestHeaderFieldsTooLarge",
                format!("The request head is larger than {} bytes.", limits.max_head_bytes),
            ))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(refusal(
                431,
                "RequestHeaderFieldsTooLarge",
                format!("The request has more than {} header fields.", limits.max_headers),
            ))
        }
        Err(e) => return Err(malformed(e)),
    };
    if len > limits.max_head_bytes {
        return Err(refusal(
            431,
            "RequestHeaderFieldsTooLarge",
            format!("The request head is larger than {} bytes.", limits.max_head_bytes),
        ));
    }
    let version = req.version.unwrap_or(1);
    let method = req.method.unwrap_or_default().to_string();
    let target = req.path.unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
        .collect();
    buf.drain(..len);
    fn values<'a>(headers: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        headers.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    let tokens = |name: &str| -> Vec<String> {
        values(&headers, name)
            .flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase()).collect::<Vec<_>>())
            .filter(|t| !t.is_empty())
            .collect()
    };
    let connection = tokens("connection");
    let keep_alive = match version {
        1 => !connection.iter().any(|t| t == "close"),
        _ => connection.iter().any(|t| t == "keep-alive"),
    };
    let lengths: Vec<&str> = values(&headers, "content-length").collect();
    let encodings = tokens("transfer-encoding");
    let framing = match (lengths.as_slice(), encodings.as_slice()) {
        ([], []) => Framing::Length(0),
        ([], [chunked]) if chunked == "chunked" && version == 1 => Framing::Chunked,
        ([], _) => {
            return Err(refusal(501, "NotImplemented", "Only the chunked transfer coding is supported."));
        }
        ([len], []) => {
            let digits = Some(*len).filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
            match digits.map(|d| d.parse::<u64>()) {
                Some(Ok(n)) if n > limits.max_body_bytes as u64 => {
                    return Err(refusal(
                        413,
                        "RequestEntityTooLarge",
                        format!("The request body is larger than {} bytes.", limits.max_body_bytes),
                    ))
                }
                Some(Ok(n)) => Framing::Length(n as usize),
                _ => return Err(malformed("Content-Length is not a number")),
            }
        }
        _ => return Err(malformed("more than one Content-Length, or one with Transfer-Encoding")),
    };
    let expect_continue = tokens("expect").iter().any(|t| t == "100-continue") && version == 1;
    Ok(Some(Head { version, method, target, headers, keep_alive, framing, expect_continue }))
}

/// Reads a body framed as the head says; bytes already read (pipelined) come first.
async fn read_body<IO: AsyncRead + Unpin>(
    io: &mut IO,
    buf: &mut Vec<u8>,
    framing: &Framing,
    limits: &Limits,
) -> Result<Vec<u8>, Refusal> {
    let closed = || malformed("the connection ended inside the body");
    match *framing {
        Framing::Length(n) => {
            while buf.len() < n {
                if !fill(io, buf).await.map_err(|_| closed())? {
                    return Err(closed());
                }
            }
            Ok(buf.drain(..n).collect())
        }
        Framing::Chunked => {
            let too_large = || {
                refusal(
                    413,
                    "RequestEntityTooLarge",
                    format!("The request body is larger than {} bytes.", limits.max_body_bytes),
                )
            };
            let mut body = Vec::new();
            loop {
                let line = read_line(io, buf).await?;
                let size_text = line.split(|b| *b == b';').next().unwrap_or_default();
                let size_text = std::str::from_utf8(size_text).map_err(|_| malformed("a bad chunk size"))?.trim();
                if size_text.is_empty() || size_text.len() > 8 || !size_text.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(malformed("a bad chunk size"));
                }
                let size = usize::from_str_radix(size_text, 16).map_err(|_| malformed("a bad chunk size"))?;
                if size == 0 {
                    // Trailer fields, up to the empty line; they are read and dropped.
                    let mut trailer = 0;
                    while !read_line(io, buf).await?.is_empty() {
                        trailer += 1;
                        if trailer > limits.max_headers {
                            return Err(malformed("too many trailer fields"));
                        }
                    }
                    return Ok(body);
                }
                if body.len() + size > limits.max_body_bytes {
                    return Err(too_large());
                }
                while buf.len() < size + 2 {
                    if !fill(io, buf).await.map_err(|_| closed())? {
                        return Err(closed());
                    }
                }
                if &buf[size..size + 2] != b"\r\n" {
                    return Err(malformed("a chunk not followed by CRLF"));
                }
                body.extend_from_slice(&buf[..size]);
                buf.drain(..size + 2);
            }
        }
    }
}

/// One CRLF-terminated line of a chunked body (without the CRLF), at most 4 KiB.
async fn read_line<IO: AsyncRead + Unpin>(io: &mut IO, buf: &mut Vec<u8>) -> Result<Vec<u8>, Refusal> {
    loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = buf[..i].to_vec();
            buf.drain(..i + 2);
            return Ok(line);
        }
        if buf.len() > 4096 {
            return Err(malformed("a chunk line longer than 4096 bytes"));
        }
        if !fill(io, buf).await.map_err(|_| malformed("the connection ended inside the body"))? {
            return Err(malformed("the connection ended inside the body"));
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        304 => "Not Modified",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        414 => "URI Too Long",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

async fn write_response<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    r: &Response,
    connection: Option<&str>,
    head_only: bool,
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(256 + r.body.len());
    out.extend_from_slice(format!("HTTP/1.1 {} {}\r\n", r.status, reason(r.status)).as_bytes());
    for (k, v) in &r.headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("content-length: {}\r\n", r.body.len()).as_bytes());
    if let Some(c) = connection {
        out.extend_from_slice(format!("connection: {c}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&r.body);
    }
    io.write_all(&out).await?;
    io.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;

    impl Service for Echo {
        fn call(&self, r: Request) -> Answer {
            Box::pin(async move {
                Response {
                    status: 200,
                    headers: vec![],
                    body: format!("{} {} {} {}", r.method, r.path, r.query, String::from_utf8_lossy(&r.body))
                        .into_bytes(),
                }
            })
        }
        fn refuse(&self, r: &Refusal) -> Response {
            Response { status: r.status, headers: vec![], body: format!("{{\"Code\":\"{}\"}}", r.code).into_bytes() }
        }
    }

    /// Sends `input` on one connection and returns everything the server wrote back.
    async fn exchange(input: &[u8], limits: Limits) -> String {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let (_stopping, stop) = watch::channel(false);
        let shared = Shared { limits, idle: Idle::default(), stop };
        let task = tokio::spawn(async move { connection(server, peer, &Echo, &shared).await });
        client.write_all(input).await.unwrap();
        client.shutdown().await.unwrap();
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        task.await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn keep_alive_pipelining_and_chunked_bodies() {
        let out = rt().block_on(exchange(
            b"GET /?a=1 HTTP/1.1\r\nHost: x\r\n\r\nPOST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer: t\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nfg",
            Limits::default(),
        ));
        assert!(out.contains("GET / a=1 "), "{out}");
        assert!(out.contains("POST /  abcde"), "{out}");
        assert!(out.contains("POST /  fg"), "{out}");
        assert_eq!(out.matches("HTTP/1.1 200").count(), 3);
    }

    #[test]
    fn every_refusal_carries_the_envelope() {
        let cases: Vec<(&[u8], u16, &str)> = vec![
            (b"GET /\x00 HTTP/1.1\r\n\r\n", 400, "MalformedRequest"),
            (b"GET /\xe9t\xe9 HTTP/1.1\r\n\r\n", 400, "MalformedRequest"),
            (b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", 400, "MalformedRequest"),
            (b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "MalformedRequest"),
            (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, "MalformedRequest"),
            (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "MalformedRequest"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "NotImplemented"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "MalformedRequest"),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd", 400, "MalformedRequest"),
            (b"POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", 413, "RequestEntityTooLarge"),
            (b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab", 400, "MalformedRequest"),
        ];
        for (input, status, code) in cases {
            let out = rt().block_on(exchange(input, Limits::default()));
            assert!(out.starts_with(&format!("HTTP/1.1 {status} ")), "{:?}: {out}", String::from_utf8_lossy(input));
            assert!(out.contains(&format!("{{\"Code\":\"{code}\"}}")), "{:?}: {out}", String::from_utf8_lossy(input));
        }
        let small = Limits { max_head_bytes: 256, max_target_bytes: 64, max_headers: 4, ..Limits::default() };
        let long_target = format!("GET /?{} HTTP/1.1\r\n\r\n", "a".repeat(100));
        let out = rt().block_on(exchange(long_target.as_bytes(), small.clone()));
        assert!(out.starts_with("HTTP/1.1 414 ") && out.contains("RequestURITooLong"), "{out}");
        let big_head = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(300));
        let out = rt().block_on(exchange(big_head.as_bytes(), small.clone()));
        assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
        let many = "GET / HTTP/1.1\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\n\r\n";
        let out = rt().block_on(exchange(many.as_bytes(), small));
        assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, failure_persistence: None, ..Default::default() })]

        /// Any bytes at all: a head, a refusal, or a request for more bytes; never a panic.
        #[test]
        fn any_bytes_parse_or_are_refused(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let mut buf = bytes;
            let small = Limits { max_head_bytes: 256, max_target_bytes: 64, max_headers: 8, ..Limits::default() };
            if let Err(r) = parse_head(&mut buf, &small) {
                assert!((400..600).contains(&r.status) && !r.code.is_empty());
            }
        }

        /// Heads built from plausible pieces, with bodies framed any way.
        #[test]
        fn plausible_requests_get_an_answer(
            method in "(GET|POST|PUT|HEAD|[A-Z]{1,8})",
            target in "/[ -~]{0,30}",
            headers in proptest::collection::vec(("(Content-Length|Transfer-Encoding|Connection|Expect|Host|[A-Za-z-]{1,10})", "[ -~]{0,20}"), 0..6),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let mut req = format!("{method} {target} HTTP/1.1\r\n");
            for (k, v) in &headers {
                req.push_str(&format!("{k}: {v}\r\n"));
            }
            req.push_str("\r\n");
            let mut bytes = req.into_bytes();
            bytes.extend_from_slice(&body);
            let out = rt().block_on(exchange(&bytes, Limits::default()));
            assert!(out.is_empty() || out.starts_with("HTTP/1.1 "), "{out}");
        }
    }

    #[test]
    fn slow_heads_and_bodies_are_cut_off() {
        let limits = Limits {
            header_timeout: Duration::from_millis(100),
            body_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(100),
            ..Limits::default()
        };
        rt().block_on(async move {
            for partial in [&b"GET / HTTP/1.1\r\nHost"[..], b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nab", b""] {
                let (mut client, server) = tokio::io::duplex(1 << 16);
                let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
                let (_stopping, stop) = watch::channel(false);
                let shared = Shared { limits: limits.clone(), idle: Idle::default(), stop };
                let task = tokio::spawn(async move { connection(server, peer, &Echo, &shared).await });
                client.write_all(partial).await.unwrap();
                // The client never finishes (and never closes): the server ends it.
                let mut out = Vec::new();
                timeout(Duration::from_secs(5), client.read_to_end(&mut out))
                    .await
                    .expect("closed by the server")
                    .unwrap();
                task.await.unwrap();
                let out = String::from_utf8_lossy(&out);
                if partial.is_empty() {
                    assert!(out.is_empty(), "an idle connection is closed without a word: {out}");
                } else {
                    assert!(out.starts_with("HTTP/1.1 408 ") && out.contains("RequestTimeout"), "{out}");
                }
            }
        });
    }
}
