//! Signed requests to the service, over HTTPS verified from the CA (or the CA's public key)
//! pinned at enrolment. Plain HTTP is allowed only to a loopback address unless the operator
//! says otherwise (`--insecure-http`): everything an agent sends (snapshots of its server's
//! files among them) would be readable on the wire.

use std::net::ToSocketAddrs;

use client::agent as wire;
use client::tls::Trust;
use client::Endpoint;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a request failed.
#[derive(Debug)]
pub enum CallError {
    /// The service answered an error (`Code`, `Message`).
    Refused {
        /// HTTP status.
        status: u16,
        /// The envelope's Code.
        code: String,
        /// The envelope's Message.
        message: String,
    },
    /// No answer (network, or an answer that is not the protocol's).
    Transport(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Refused { status, code, message } => write!(f, "{code} ({status}): {message}"),
            CallError::Transport(e) => write!(f, "{e}"),
        }
    }
}

/// How the agent trusts an HTTPS service: the CAs of a PEM text, or a CA's public-key pin.
pub fn trust(ca: Option<&str>, fingerprint: Option<&str>) -> Result<Option<Trust>, String> {
    match (ca, fingerprint) {
        (Some(_), Some(_)) => Err("give the service's CA or its fingerprint, not both".into()),
        (Some(pem), None) => Ok(Some(Trust::Ca(client::tls::certificates_pem(pem, "the CA")?))),
        (None, Some(pin)) => Ok(Some(Trust::Pin(client::tls::parse_pin(pin)?))),
        (None, None) => Ok(None),
    }
}

/// The service at a URL, refusing what the agent must not use: https:// without a CA or pin to
/// verify it by, plain http:// to an address that is not loopback (unless `insecure_http`).
pub fn endpoint(server: &str, insecure_http: bool, trust: Option<&Trust>) -> Result<Endpoint, String> {
    let (tls, host) = client::split_url(server);
    if host.is_empty() || host.contains('/') {
        return Err(format!("{server:?} is not https://HOST:PORT"));
    }
    let addrs: Vec<_> = host.to_socket_addrs().map_err(|e| format!("{host}: {e}"))?.collect();
    if addrs.is_empty() {
        return Err(format!("{host} has no address"));
    }
    match (tls, trust) {
        (true, Some(trust)) => Endpoint::https(host, trust),
        (true, None) => Err(format!(
            "{server} is HTTPS: give the service's CA (--ca FILE) or its public-key fingerprint (--fingerprint sha256:HEX, from `posture tls fingerprint CA.pem`)"
        )),
        (false, Some(_)) => Err(format!("--ca and --fingerprint are for https://, and {server} is plain http://")),
        (false, None) if !insecure_http && !addrs.iter().all(|a| a.ip().is_loopback()) => Err(format!(
            "refusing plain http:// to {host}, which is not a loopback address: everything the agent sends would be readable on the wire (serve HTTPS, or give --insecure-http to accept that)"
        )),
        (false, None) => Ok(Endpoint::plain(host)),
    }
}

/// The agent's connection to the service: one kept-alive HTTP/1.1 connection, opened again
/// when the service has closed it (a request is sent again once, on a new connection, when the
/// old one turns out to be closed; it is a new signed request, and a report the service had
/// already taken is then refused as stale, which is harmless).
pub struct Link {
    endpoint: Endpoint,
    conn: std::sync::Mutex<Option<client::Connection>>,
}

impl Link {
    /// A link to the service; nothing is opened yet.
    pub fn new(endpoint: Endpoint) -> Link {
        Link { endpoint, conn: std::sync::Mutex::new(None) }
    }

    /// Sends `body` to `/agent/v1/<endpoint>` signed as `agent`, and decodes the answer.
    pub fn call<T: DeserializeOwned>(
        &self,
        secret: &[u8; 32],
        agent: &str,
        endpoint: &str,
        body: &impl Serialize,
    ) -> Result<T, CallError> {
        let body = serde_json::to_vec(body).map_err(|e| CallError::Transport(e.to_string()))?;
        let path = format!("{}{endpoint}", wire::PREFIX);
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut last = None;
        for _ in 0..2 {
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
            let mut headers = wire::sign(secret, "POST", &path, agent, now, &body);
            headers.push(("content-type".into(), "application/json".into()));
            let request = client::Request {
                host: self.endpoint.authority.clone(),
                path: path.clone(),
                query: String::new(),
                headers,
                body: body.clone(),
            };
            let sent = match conn.as_mut() {
                Some(c) => c.send("POST", &request),
                None => client::Connection::open_at(&self.endpoint).and_then(|c| conn.insert(c).send("POST", &request)),
            };
            match sent {
                Ok(r) => return answer(r),
                Err(e) => {
                    *conn = None;
                    last = Some(e);
                }
            }
        }
        Err(CallError::Transport(last.map_or_else(String::new, |e| e.to_string())))
    }
}

fn answer<T: DeserializeOwned>(r: client::Response) -> Result<T, CallError> {
    let v = r.json();
    if r.status != 200 {
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_string();
        return Err(CallError::Refused { status: r.status, code: field("Code"), message: field("Message") });
    }
    serde_json::from_value(v).map_err(|e| CallError::Transport(format!("an answer the agent does not understand: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback_unless_told_and_https_only_with_a_ca_or_pin() {
        let at = |url: &str, insecure: bool| endpoint(url, insecure, None).map(|e| e.authority);
        assert_eq!(at("http://127.0.0.1:8080/", false).unwrap(), "127.0.0.1:8080");
        assert_eq!(at("[::1]:8080", false).unwrap(), "[::1]:8080");
        let e = at("http://192.0.2.1:8080", false).unwrap_err();
        assert!(e.contains("--insecure-http"), "{e}");
        assert_eq!(at("http://192.0.2.1:8080", true).unwrap(), "192.0.2.1:8080");
        assert!(at("http://127.0.0.1:8080/x", false).is_err());
        let e = at("https://127.0.0.1:8443", false).unwrap_err();
        assert!(e.contains("--ca") && e.contains("--fingerprint"), "{e}");
        let pin = trust(None, Some(&format!("sha256:{}", "ab".repeat(32)))).unwrap().unwrap();
        let https = endpoint("https://192.0.2.1:8443", false, Some(&pin)).unwrap();
        assert!(https.is_tls(), "HTTPS needs no --insecure-http, whatever the address");
        assert!(endpoint("http://127.0.0.1:8080", false, Some(&pin)).is_err(), "a pin on plain http is a mistake");
        assert!(trust(None, Some("sha256:abcd")).is_err());
        assert!(trust(Some("not pem"), None).is_err());
    }
}
