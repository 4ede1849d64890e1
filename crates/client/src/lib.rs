//! The RPC protocol's client side, shared without the gateway: the v1 and v3 signatures, the
//! encodings and timestamps (also what the gateway verifies with), and a small blocking client
//! that signs like the official SDK (v3 by default, v1 on request), over HTTP or HTTPS
//! ([`tls`]). It serves `posture call`, the tests, the benchmarks and the agent.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod encoding;
pub mod signature;
pub mod time;
pub mod tls;

use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use crate::signature::{
    sha256_hex, v1_sign, v1_string_to_sign, v3_canonical_request, v3_sign, v3_string_to_sign, V3_ALGORITHM,
};
use crate::time::format_utc;

/// An AccessKey pair.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// `AccessKeyId`.
    pub access_key_id: String,
    /// `AccessKeySecret`.
    pub access_key_secret: String,
}

/// Which signature to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signing {
    /// ACS3-HMAC-SHA256 in headers (the Sas SDK's default).
    V3,
    /// HMAC-SHA1 in the query (aliyun-python-sdk-core, pop-core, the CLI).
    V1,
}

/// A raw HTTP answer.
#[derive(Clone, Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
}

impl Response {
    /// The body as JSON (Null if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn nonce() -> String {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).expect("the OS random source works");
    hex::encode(b)
}

/// `host:port` from `http://host:port/`, `https://host:port/` or `host:port`.
pub fn authority(endpoint: &str) -> &str {
    split_url(endpoint).1
}

/// Whether a URL is `https://`, and its `host:port` (a bare `host:port` is plain HTTP).
pub fn split_url(url: &str) -> (bool, &str) {
    let u = url.trim();
    let (tls, rest) = match (u.strip_prefix("https://"), u.strip_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => (false, u),
    };
    (tls, rest.trim_end_matches('/'))
}

/// Where requests go: `HOST:PORT`, and how to speak TLS to it when it is `https://`.
#[derive(Clone)]
pub struct Endpoint {
    /// `HOST:PORT`.
    pub authority: String,
    tls: Option<(Arc<rustls::ClientConfig>, rustls::pki_types::ServerName<'static>)>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", if self.tls.is_some() { "https" } else { "http" }, self.authority)
    }
}

impl Endpoint {
    /// Plain HTTP to `HOST:PORT`.
    pub fn plain(authority: &str) -> Endpoint {
        Endpoint { authority: authority.to_string(), tls: None }
    }

    /// `https://HOST:PORT` (trusting `trust`), `http://HOST:PORT` or `HOST:PORT` (plain).
    pub fn parse(url: &str, trust: &tls::Trust) -> Result<Endpoint, String> {
        let (tls, authority) = split_url(url);
        if authority.is_empty() || authority.contains('/') {
            return Err(format!("{url:?} is not http(s)://HOST:PORT"));
        }
        match tls {
            true => Endpoint::https(authority, trust),
            false => Ok(Endpoint::plain(authority)),
        }
    }

    /// HTTPS to `HOST:PORT`, trusting `trust`.
    pub fn https(authority: &str, trust: &tls::Trust) -> Result<Endpoint, String> {
        let name = tls::server_name(authority)?;
        Ok(Endpoint { authority: authority.to_string(), tls: Some((trust.client_config()?, name)) })
    }

    /// Whether it is HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A new connection (the TLS handshake done, so that a certificate refused is said at once).
    pub fn connect(&self) -> io::Result<Stream> {
        let tcp = TcpStream::connect(&self.authority)?;
        tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
        self.over(tcp)
    }

    /// [`Endpoint::connect`], with connecting, and then every read and write, bounded by
    /// `timeout` (for servers that may hang: webhook receivers).
    pub fn connect_within(&self, timeout: Duration) -> io::Result<Stream> {
        use std::net::ToSocketAddrs;
        let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{} has no address", self.authority));
        for addr in self.authority.to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(tcp) => {
                    tcp.set_read_timeout(Some(timeout))?;
                    tcp.set_write_timeout(Some(timeout))?;
                    return self.over(tcp);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn over(&self, tcp: TcpStream) -> io::Result<Stream> {
        tcp.set_nodelay(true)?;
        let Some((config, name)) = &self.tls else { return Ok(Stream::Plain(tcp)) };
        let conn = rustls::ClientConnection::new(config.clone(), name.clone()).map_err(io::Error::other)?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).map_err(|e| {
                io::Error::new(e.kind(), format!("TLS with {} failed: {e}{}", self.authority, hint(&e.to_string())))
            })?;
        }
        Ok(Stream::Tls(Box::new(tls)))
    }
}

/// What a TLS failure usually means, said plainly.
fn hint(error: &str) -> &'static str {
    if error.contains("InvalidContentType") || error.contains("corrupt message") {
        " (the server answered in plain HTTP: use http://, or it refused the connection before TLS)"
    } else if error.contains("UnknownIssuer") {
        " (the certificate is not from a CA this client trusts: give the service's CA, e.g. --ca FILE)"
    } else if error.contains("not valid for name") || error.contains("NotValidForName") {
        " (the certificate does not name the host or address used: connect by a name it has)"
    } else {
        ""
    }
}

/// A connection: plain TCP or TLS over it.
pub enum Stream {
    /// Plain HTTP.
    Plain(TcpStream),
    /// HTTPS.
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    /// Bounds each later read (a deadline shrinks it before each read).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Plain(t) => t.set_read_timeout(timeout),
            Stream::Tls(t) => t.sock.set_read_timeout(timeout),
        }
    }

    /// The server's certificate chain (TLS only; the leaf first).
    pub fn peer_certificates(&self) -> Vec<Vec<u8>> {
        match self {
            Stream::Plain(_) => Vec::new(),
            Stream::Tls(t) => t.conn.peer_certificates().unwrap_or_default().iter().map(|c| c.to_vec()).collect(),
        }
    }

    /// The TLS version agreed (`TLSv1_3`, …), None for plain HTTP.
    pub fn tls_version(&self) -> Option<String> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(t) => t.conn.protocol_version().map(|v| format!("{v:?}")),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Above this many bytes of query string, parameters travel in a form body instead (HTTP
/// servers limit the request line; the SDKs do the same for large parameters).
const MAX_QUERY: usize = 8 * 1024;

/// A request ready to send: signed, encoded.
#[derive(Clone, Debug)]
pub struct Request {
    /// `host:port`.
    pub host: String,
    /// The path (`/` for every action).
    pub path: String,
    /// The query string (without `?`).
    pub query: String,
    /// Headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Signs one action as the SDK would (a fresh date and nonce each time).
pub fn sign(
    endpoint: &str,
    creds: &Credentials,
    action: &str,
    params: &[(String, String)],
    signing: Signing,
) -> Request {
    sign_at(endpoint, creds, action, params, signing, now_ms())
}

/// [`sign`], dated `date_ms` instead of now (a client whose clock is off; the replay tests).
pub fn sign_at(
    endpoint: &str,
    creds: &Credentials,
    action: &str,
    params: &[(String, String)],
    signing: Signing,
    date_ms: i64,
) -> Request {
    let host = authority(endpoint).to_string();
    let date = format_utc(date_ms / 1000);
    let form = || ("content-type".to_string(), "application/x-www-form-urlencoded".to_string());
    match signing {
        Signing::V3 => {
            let encoded = encoding::form_encode(params);
            let (query, body, in_query) = if encoded.len() > MAX_QUERY {
                (String::new(), encoded, &[][..])
            } else {
                (encoded, String::new(), params)
            };
            let body_hash = sha256_hex(body.as_bytes());
            let mut headers: Vec<(String, String)> = vec![
                ("host".into(), host.clone()),
                ("x-acs-action".into(), action.to_string()),
                ("x-acs-version".into(), "2018-12-03".into()),
                ("x-acs-date".into(), date),
                ("x-acs-signature-nonce".into(), nonce()),
                ("x-acs-content-sha256".into(), body_hash.clone()),
                ("accept".into(), "application/json".into()),
            ];
            if !body.is_empty() {
                headers.push(form());
            }
            let signed: Vec<String> = headers.iter().map(|(k, _)| k.clone()).collect();
            let canonical = v3_canonical_request("POST", "/", in_query, &headers, &signed, &body_hash);
            let signature = v3_sign(&creds.access_key_secret, &v3_string_to_sign(&canonical));
            let mut sorted = signed.clone();
            sorted.sort();
            let auth = format!(
                "{V3_ALGORITHM} Credential={},SignedHeaders={},Signature={signature}",
                creds.access_key_id,
                sorted.join(";")
            );
            headers.push(("authorization".into(), auth));
            Request { host, path: "/".into(), query, headers, body: body.into_bytes() }
        }
        Signing::V1 => {
            let mut all: Vec<(String, String)> = vec![
                ("Action".into(), action.to_string()),
                ("Format".into(), "JSON".into()),
                ("Version".into(), "2018-12-03".into()),
                ("Timestamp".into(), date),
                ("SignatureNonce".into(), nonce()),
                ("SignatureMethod".into(), "HMAC-SHA1".into()),
                ("SignatureVersion".into(), "1.0".into()),
                ("AccessKeyId".into(), creds.access_key_id.clone()),
            ];
            all.extend(params.iter().cloned());
            let sig = v1_sign(&creds.access_key_secret, &v1_string_to_sign("POST", &all));
            all.push(("Signature".into(), sig));
            let encoded = encoding::form_encode(&all);
            let headers = vec![("host".to_string(), host.clone())];
            if encoded.len() > MAX_QUERY {
                Request {
                    host,
                    path: "/".into(),
                    query: String::new(),
                    headers: [headers, vec![form()]].concat(),
                    body: encoded.into_bytes(),
                }
            } else {
                Request { host, path: "/".into(), query: encoded, headers, body: Vec::new() }
            }
        }
    }
}

/// Signs and sends one action on a new connection; returns the raw answer (an API error is
/// still `Ok`).
pub fn call(
    endpoint: &str,
    creds: &Credentials,
    action: &str,
    params: &[(String, String)],
    signing: Signing,
) -> io::Result<Response> {
    let endpoint = Endpoint::parse(endpoint, &tls::Trust::System).map_err(io::Error::other)?;
    call_at(&endpoint, creds, action, params, signing)
}

/// [`call`] to an [`Endpoint`] (HTTP or HTTPS).
pub fn call_at(
    endpoint: &Endpoint,
    creds: &Credentials,
    action: &str,
    params: &[(String, String)],
    signing: Signing,
) -> io::Result<Response> {
    let r = sign(&endpoint.authority, creds, action, params, signing);
    Connection::open_at(endpoint)?.exchange("POST", &r, true)
}

#[allow(clippy::too_many_arguments)]
/// The bytes of one HTTP/1.1 request (the caller has checked that nothing in it can break a
/// line: see `api::webhooks::target` for URLs from outside).
pub fn request_bytes(
    host: &str,
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    body: &[u8],
    close: bool,
) -> Vec<u8> {
    let target = if query.is_empty() { path.to_string() } else { format!("{path}?{query}") };
    let mut req = format!("{method} {target} HTTP/1.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("host: {host}\r\n"));
    }
    req.push_str(&format!("content-length: {}\r\n", body.len()));
    if close {
        req.push_str("connection: close\r\n");
    }
    req.push_str("\r\n");
    [req.into_bytes(), body.to_vec()].concat()
}

/// Sends one raw HTTP/1.1 request (`Connection: close`) and reads the whole answer.
pub fn send(host: &str, method: &str, query: &str, headers: &[(String, String)], body: &[u8]) -> io::Result<Response> {
    send_to(host, method, "/", query, headers, body)
}

/// [`send`] to any path.
pub fn send_to(
    host: &str,
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> io::Result<Response> {
    let request = Request {
        host: host.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers: headers.to_vec(),
        body: body.to_vec(),
    };
    Connection::open(host)?.exchange(method, &request, true)
}

/// One request on a new connection to `endpoint` (`Connection: close`), every step within
/// `timeout`.
pub fn send_within(endpoint: &Endpoint, timeout: Duration, method: &str, r: &Request) -> io::Result<Response> {
    Connection { stream: std::io::BufReader::new(endpoint.connect_within(timeout)?) }.exchange(method, r, true)
}

/// One kept-alive HTTP/1.1 connection (the load generator's, the agent's): requests are sent
/// one after another on it, answers read by their Content-Length.
pub struct Connection {
    stream: std::io::BufReader<Stream>,
}

impl Connection {
    /// Connects (plain HTTP).
    pub fn open(host: &str) -> io::Result<Connection> {
        Connection::open_at(&Endpoint::plain(host))
    }

    /// Connects to an endpoint (HTTP or HTTPS).
    pub fn open_at(endpoint: &Endpoint) -> io::Result<Connection> {
        Ok(Connection { stream: std::io::BufReader::new(endpoint.connect()?) })
    }

    /// The connection itself (its TLS details).
    pub fn stream(&self) -> &Stream {
        self.stream.get_ref()
    }

    /// Sends a request and reads its answer.
    pub fn send(&mut self, method: &str, r: &Request) -> io::Result<Response> {
        self.exchange(method, r, false)
    }

    /// Sends a request (asking the server to close afterwards when `close`) and reads its
    /// answer: by its Content-Length, else (chunked, or neither) to the end of the stream.
    fn exchange(&mut self, method: &str, r: &Request, close: bool) -> io::Result<Response> {
        let bytes = request_bytes(&r.host, method, &r.path, &r.query, &r.headers, &r.body, close);
        let out = self.stream.get_mut();
        out.write_all(&bytes)?;
        out.flush()?;
        let mut head = Vec::new();
        loop {
            let n = self.stream.read_until(b'\n', &mut head)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
            }
            if head.ends_with(b"\r\n\r\n") {
                break;
            }
        }
        let text = String::from_utf8_lossy(&head);
        let header = |name: &str| {
            text.lines()
                .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case(name)))
                .map(|(_, v)| v.trim().to_ascii_lowercase())
        };
        let status = text.split_whitespace().nth(1).unwrap_or_default();
        let bodiless = method == "HEAD" || status == "204" || status == "304";
        let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
        match header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            _ if bodiless => {}
            Some(len) if !chunked => {
                let mut body = vec![0u8; len];
                self.stream.read_exact(&mut body)?;
                head.extend_from_slice(&body);
            }
            _ if close => read_to_close(&mut self.stream, &mut head, chunked)?,
            _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "no content-length")),
        }
        parse_response(&head)
    }
}

/// Reads to the end of the stream. A TLS peer that closes without its close_notify (as many
/// servers do after `Connection: close`) ends it too when the body is chunked (its last chunk
/// proves it complete); otherwise such an end may be a truncation, and is an error.
fn read_to_close(stream: &mut impl Read, into: &mut Vec<u8>, chunked: bool) -> io::Result<()> {
    match stream.read_to_end(into) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && chunked => Ok(()),
        other => other.map(drop),
    }
}

fn parse_response(raw: &[u8]) -> io::Result<Response> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed HTTP response");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(bad)?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status: u16 =
        lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body).ok_or_else(bad)?;
    }
    Ok(Response { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..line_end]).ok()?.split(';').next()?.trim(), 16).ok()?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

/// Parses `--Name value` pairs given on a command line into parameters (used by `posture call`).
pub fn params_from_args(args: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let name = a.strip_prefix("--").ok_or_else(|| format!("expected --Name, got {a:?}"))?;
        let (name, value) = match name.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => (name.to_string(), it.next().ok_or_else(|| format!("--{name} needs a value"))?.clone()),
        };
        if name.is_empty() {
            return Err("empty parameter name".into());
        }
        out.push((name, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::form_decode;

    #[test]
    fn responses_parse_with_and_without_chunking() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"a\":1}").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["a"], 1);
        let r = parse_response(
            b"HTTP/1.1 400 Bad Request\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":2}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.status, 400);
        assert_eq!(r.json()["a"], 2);
    }

    #[test]
    fn command_line_parameters() {
        let args: Vec<String> =
            ["--CheckId", "1016", "--RepairTempParam.1.Value=1.2.3.4:6379"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            params_from_args(&args).unwrap(),
            vec![("CheckId".into(), "1016".into()), ("RepairTempParam.1.Value".into(), "1.2.3.4:6379".into())]
        );
        assert!(params_from_args(&["CheckId".to_string()]).is_err());
        assert!(params_from_args(&["--CheckId".to_string()]).is_err());
    }

    #[test]
    fn query_strings_round_trip_through_the_server_decoder() {
        let p = vec![("RepairTempParam.1.Value".to_string(), "a b*c~/中+&=".to_string())];
        assert_eq!(form_decode(&encoding::form_encode(&p)), p);
    }
}
