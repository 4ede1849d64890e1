//! Webhook deliveries: each node's delivery thread leases the deliveries due (the store's
//! outbox, see `store::webhooks`), POSTs each on a thread of its own within a time limit, and
//! records the outcome: delivered (a 2xx answer), or retried with backoff until it gives up.
//! Nothing here runs on the API's or the workers' threads, so a dead or slow endpoint slows
//! only its own deliveries.
//!
//! A delivery is signed: `X-Posture-Signature: t=<ms>,v1=<hex HMAC-SHA256 of "<ms>.<body>"
//! keyed by the webhook's secret>`; `X-Posture-Delivery` is its id (the same in every attempt,
//! for de-duplication) and `X-Posture-Event` its event.

use std::sync::{Arc, Weak};
use std::time::Duration;

use client::tls::Trust;
use client::Endpoint;
use store::{DueDelivery, Webhooks};

use crate::App;

/// How long one attempt may take (connecting, then each read and write).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts before a delivery is given up: with the backoff below, over about 25 minutes.
const MAX_ATTEMPTS: i64 = 12;

/// Deliveries under way at once on a node (each on its own thread while it is tried).
const BATCH: usize = 16;

/// How often the thread looks for due deliveries, and for agents gone offline.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// How long deliveries made or given up are kept (ListWebhooks shows the latest of them;
/// removed every 10 s of the delivery thread's looking).
const KEEP_DELIVERIES: Duration = Duration::from_secs(7 * 86_400);

/// The wait before attempt `attempts + 1`: 1 s, doubling, at most 512 s.
pub fn backoff(attempts: i64) -> Duration {
    Duration::from_secs(1u64 << attempts.clamp(0, 9))
}

/// Where a webhook URL is served and what to ask it: (endpoint, `host:port`, path, query).
/// Only printable ASCII without spaces is accepted anywhere in it (nothing can end the request
/// line or add a header), a port is 1 to 65535, and a `#fragment` is refused.
pub fn target(url: &str) -> Result<(Endpoint, String, String, String), String> {
    if url.bytes().any(|b| !(0x21..0x7f).contains(&b)) || url.contains('#') {
        return Err("the URL may hold only printable ASCII, without spaces or a #fragment".into());
    }
    let (tls, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        _ => return Err("the URL must start with http:// or https://".into()),
    };
    let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    if authority.is_empty() || authority.contains('@') {
        return Err("the URL needs a host (and no user name or password in it)".into());
    }
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = match authority.rsplit_once(':') {
        // An IPv6 literal without a port: `[::1]`.
        Some(_) if authority.ends_with(']') => (authority, default_port),
        Some((host, port)) => (host, port.parse::<u16>().ok().filter(|p| *p > 0).ok_or("the port must be 1 to 65535")?),
        None => (authority, default_port),
    };
    if host.is_empty() {
        return Err("the URL needs a host".into());
    }
    let authority = format!("{host}:{port}");
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let path = if path.is_empty() { "/" } else { path };
    let endpoint = match tls {
        true => Endpoint::https(&authority, &Trust::System)?,
        false => Endpoint::plain(&authority),
    };
    Ok((endpoint, authority, path.to_string(), query.to_string()))
}

/// The headers of a delivery, signed at `at_ms` with the webhook's secret.
pub fn signed_headers(d: &DueDelivery, at_ms: i64) -> Vec<(String, String)> {
    let signature = client::signature::hmac_sha256_hex(&d.secret, format!("{at_ms}.{}", d.body).as_bytes());
    vec![
        ("content-type".into(), "application/json".into()),
        ("user-agent".into(), format!("posture/{}", env!("CARGO_PKG_VERSION"))),
        ("x-posture-event".into(), d.event.clone()),
        ("x-posture-delivery".into(), d.id.clone()),
        ("x-posture-signature".into(), format!("t={at_ms},v1={signature}")),
    ]
}

/// Most bytes of an answer read: its status line is all a delivery needs.
const MAX_ANSWER_BYTES: usize = 8 * 1024;

/// POSTs a delivery and reads the status of the answer, the whole attempt within
/// [`ATTEMPT_TIMEOUT`] (a receiver that answers a byte at a time is cut off) and at most
/// [`MAX_ANSWER_BYTES`] read (its body never is).
fn post(d: &DueDelivery) -> Result<u16, String> {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + ATTEMPT_TIMEOUT;
    let (endpoint, host, path, query) = target(&d.url)?;
    let headers = signed_headers(d, store::now_ms());
    let request = client::request_bytes(&host, "POST", &path, &query, &headers, d.body.as_bytes(), true);
    let mut stream = endpoint.connect_within(ATTEMPT_TIMEOUT).map_err(|e| e.to_string())?;
    stream.write_all(&request).and_then(|()| stream.flush()).map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || answer.len() >= MAX_ANSWER_BYTES {
            return Err("no status line within the time limit".into());
        }
        stream.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        match stream.read(&mut chunk) {
            Ok(0) => return Err("the connection closed before an answer".into()),
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
    let line = String::from_utf8_lossy(&answer);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .filter(|_| line.starts_with("HTTP/1."))
        .ok_or_else(|| "the answer is not HTTP".to_string())
}

/// One attempt: (what it got, whether it was delivered).
fn attempt(d: &DueDelivery) -> (String, bool) {
    match post(d) {
        Ok(status) => (format!("HTTP {status}"), (200..300).contains(&status)),
        Err(e) => (e, false),
    }
}

/// Records an attempt's outcome, with the next try's time unless it was the last.
fn record(store: &dyn Webhooks, d: &DueDelivery, result: &str, delivered: bool) {
    let retry =
        (!delivered && d.attempts + 1 < MAX_ATTEMPTS).then(|| store::now_ms() + backoff(d.attempts).as_millis() as i64);
    if !delivered {
        tracing::info!(delivery = %d.id, result = %result, attempts = d.attempts + 1, given_up = retry.is_none(), "webhook delivery failed");
    }
    if let Err(e) = store.record_attempt(&d.id, result, delivered, retry) {
        tracing::warn!(delivery = %d.id, error = %e, "a webhook delivery's attempt could not be recorded; it is tried again");
    }
}

/// The deliveries under way on this node, by webhook: each is tried on a thread of its own
/// and recorded as soon as it ends, so a slow receiver holds only its own deliveries (at most
/// one at a time per webhook on a node) and never the others'.
struct InFlight {
    webhooks: std::sync::Mutex<Vec<String>>,
}

/// Starts attempts for the deliveries due now, as many as free places allow; how many.
fn start_due(store: &Arc<dyn Webhooks>, in_flight: &Arc<InFlight>) -> store::Result<usize> {
    let busy: Vec<String> = in_flight.webhooks.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let free = BATCH.saturating_sub(busy.len());
    if free == 0 {
        return Ok(0);
    }
    let due = store.claim_deliveries(LEASE_MS, free, &busy)?;
    for d in &due {
        in_flight.webhooks.lock().unwrap_or_else(|p| p.into_inner()).push(d.webhook_id.clone());
    }
    let n = due.len();
    for d in due {
        let (store, in_flight) = (store.clone(), in_flight.clone());
        let _ = std::thread::Builder::new().name("posture-webhook".into()).spawn(move || {
            // A panic in an attempt is a failed attempt, never a delivery left leased.
            let (result, delivered) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| attempt(&d)))
                .unwrap_or_else(|_| ("the attempt failed unexpectedly".into(), false));
            record(&*store, &d, &result, delivered);
            let mut busy = in_flight.webhooks.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(at) = busy.iter().position(|w| *w == d.webhook_id) {
                busy.swap_remove(at);
            }
        });
    }
    Ok(n)
}

/// How long a delivery is leased: more than an attempt and its record take.
const LEASE_MS: i64 = 2 * ATTEMPT_TIMEOUT.as_millis() as i64 + 5_000;

/// Delivers for as long as the app lives, reports agents gone offline (as DescribeAgents'
/// `Online` counts them) and removes old deliveries.
pub fn start_delivering(app: &Arc<App>) {
    let weak: Weak<App> = Arc::downgrade(app);
    let in_flight = Arc::new(InFlight { webhooks: std::sync::Mutex::new(Vec::new()) });
    let mut last_chores = std::time::Instant::now() - Duration::from_secs(3600);
    let _ = std::thread::Builder::new().name("posture-webhooks".into()).spawn(move || loop {
        let Some(app) = weak.upgrade() else { return };
        if last_chores.elapsed() >= LOOK_EVERY * 10 {
            last_chores = std::time::Instant::now();
            if let Err(e) = app.store.report_offline_agents(crate::ops::agents::ONLINE_MS) {
                tracing::warn!(error = %e, "agents gone offline could not be reported");
            }
            let before = store::now_ms() - KEEP_DELIVERIES.as_millis() as i64;
            if let Err(e) = app.store.prune_deliveries(before) {
                tracing::warn!(error = %e, "old webhook deliveries could not be removed");
            }
        }
        let store: Arc<dyn Webhooks> = app.store.clone();
        let started = start_due(&store, &in_flight).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "webhook deliveries could not be taken");
            0
        });
        drop((app, store));
        if started == 0 {
            std::thread::sleep(LOOK_EVERY);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_or_https_with_a_host() {
        let (e, host, path, query) = target("http://127.0.0.1:8080/hooks/posture?k=v").unwrap();
        assert_eq!(
            (e.is_tls(), host.as_str(), path.as_str(), query.as_str()),
            (false, "127.0.0.1:8080", "/hooks/posture", "k=v")
        );
        let (e, host, path, _) = target("https://hooks.example.com").unwrap();
        assert_eq!((e.is_tls(), host.as_str(), path.as_str()), (true, "hooks.example.com:443", "/"));
        let (_, host, path, _) = target("http://[::1]/x").unwrap();
        assert_eq!((host.as_str(), path.as_str()), ("[::1]:80", "/x"));
        for bad in [
            "ftp://x/",
            "http://",
            "http://user:pw@x/",
            "x.example.com/hook",
            "http://a b/",
            "http://127.0.0.1:9/x HTTP/1.1\r\nHost: y\r\n\r\nDELETE /z",
            "http://127.0.0.1:9/x\nX-Injected: yes",
            "http://127.0.0.1:99999/x",
            "http://127.0.0.1:/x",
            "http://127.0.0.1:0/x",
            "http://host/x#frag",
            "http://hôst/x",
        ] {
            assert!(target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn retries_back_off_doubling_to_512_seconds() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(11), Duration::from_secs(512));
    }
}
