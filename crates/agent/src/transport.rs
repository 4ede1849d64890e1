//! Signed requests to the service. Plain HTTP is allowed only to a loopback address unless the
//! operator says otherwise (`--insecure-http`): everything an agent sends (snapshots of its
//! server's files among them) would be readable on the wire.

use std::net::ToSocketAddrs;

use client::agent as wire;
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

/// `HOST:PORT` of a server URL, refusing what the agent must not use.
pub fn authority(server: &str, insecure_http: bool) -> Result<String, String> {
    let s = server.trim().trim_end_matches('/');
    if s.starts_with("https://") {
        return Err("https:// needs TLS, which this posture-agent build does not have yet; use http:// on a trusted network with --insecure-http, or a loopback address".into());
    }
    let host = s.strip_prefix("http://").unwrap_or(s);
    if host.is_empty() || host.contains('/') {
        return Err(format!("{server:?} is not http://HOST:PORT"));
    }
    let addrs: Vec<_> = host.to_socket_addrs().map_err(|e| format!("{host}: {e}"))?.collect();
    if addrs.is_empty() {
        return Err(format!("{host} has no address"));
    }
    if !insecure_http && !addrs.iter().all(|a| a.ip().is_loopback()) {
        return Err(format!(
            "refusing plain http:// to {host}, which is not a loopback address: everything the agent sends would be readable on the wire (give --insecure-http to accept that)"
        ));
    }
    Ok(host.to_string())
}

/// Sends `body` to `/agent/v1/<endpoint>` signed as `agent`, and decodes the answer.
pub fn call<T: DeserializeOwned>(
    host: &str,
    secret: &[u8; 32],
    agent: &str,
    endpoint: &str,
    body: &impl Serialize,
) -> Result<T, CallError> {
    let body = serde_json::to_vec(body).map_err(|e| CallError::Transport(e.to_string()))?;
    let path = format!("{}{endpoint}", wire::PREFIX);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let mut headers = wire::sign(secret, "POST", &path, agent, now, &body);
    headers.push(("content-type".into(), "application/json".into()));
    let r =
        client::send_to(host, "POST", &path, "", &headers, &body).map_err(|e| CallError::Transport(e.to_string()))?;
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
    fn plain_http_only_to_loopback_unless_told() {
        assert_eq!(authority("http://127.0.0.1:8080/", false).unwrap(), "127.0.0.1:8080");
        assert_eq!(authority("[::1]:8080", false).unwrap(), "[::1]:8080");
        let e = authority("http://192.0.2.1:8080", false).unwrap_err();
        assert!(e.contains("--insecure-http"), "{e}");
        assert_eq!(authority("http://192.0.2.1:8080", true).unwrap(), "192.0.2.1:8080");
        assert!(authority("https://127.0.0.1:8443", false).is_err());
        assert!(authority("http://127.0.0.1:8080/x", false).is_err());
    }
}
