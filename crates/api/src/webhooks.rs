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
use client::{Endpoint, Request};
use store::{DueDelivery, Webhooks};

use crate::App;

/// How long one attempt may take (connecting, then each read and write).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts before a delivery is given up: with the backoff below, over about 25 minutes.
const MAX_ATTEMPTS: i64 = 12;

/// Deliveries taken at once by a node (each on its own thread while it is tried).
const BATCH: usize = 16;

/// How often the thread looks for due deliveries, and for agents gone offline.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// How long deliveries made or given up are kept (ListWebhooks shows the latest of them).
const KEEP_DELIVERIES: Duration = Duration::from_secs(7 * 86_400);

/// The wait before attempt `attempts + 1`: 1 s, doubling, at most 512 s.
pub fn backoff(attempts: i64) -> Duration {
    Duration::from_secs(1u64 << attempts.clamp(0, 9))
}

/// Where a webhook URL is served and what to ask it: (endpoint, `host:port`, path, query).
pub fn target(url: &str) -> Result<(Endpoint, String, String, String), String> {
    let (tls, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        _ => return Err("the URL must start with http:// or https://".into()),
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.is_empty() || authority.contains('@') || authority.contains(char::is_whitespace) {
        return Err("the URL needs a host (and no user name or password in it)".into());
    }
    let authority = match authority.rsplit_once(':') {
        Some((_, port)) if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) => authority.to_string(),
        _ => format!("{authority}:{}", if tls { 443 } else { 80 }),
    };
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, q),
        None => (path, ""),
    };
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

/// One attempt: (what it got, whether it was delivered).
fn attempt(d: &DueDelivery) -> (String, bool) {
    let (endpoint, host, path, query) = match target(&d.url) {
        Ok(t) => t,
        Err(e) => return (e, false),
    };
    let request =
        Request { host, path, query, headers: signed_headers(d, store::now_ms()), body: d.body.clone().into_bytes() };
    match client::send_within(&endpoint, ATTEMPT_TIMEOUT, "POST", &request) {
        Ok(r) => (format!("HTTP {}", r.status), (200..300).contains(&r.status)),
        Err(e) => (e.to_string(), false),
    }
}

/// Tries the deliveries due now; how many were tried.
pub fn deliver_due(store: &dyn Webhooks) -> store::Result<usize> {
    let due = store.claim_deliveries(2 * ATTEMPT_TIMEOUT.as_millis() as i64 + 5_000, BATCH)?;
    let outcomes: Vec<(String, String, bool, i64)> = std::thread::scope(|s| {
        let handles: Vec<_> = due
            .iter()
            .map(|d| {
                s.spawn(move || {
                    let (result, delivered) = attempt(d);
                    (d.id.clone(), result, delivered, d.attempts)
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    for (id, result, delivered, attempts) in &outcomes {
        let retry = (!delivered && attempts + 1 < MAX_ATTEMPTS)
            .then(|| store::now_ms() + backoff(*attempts).as_millis() as i64);
        if !delivered {
            tracing::info!(delivery = %id, result = %result, attempts = attempts + 1, given_up = retry.is_none(), "webhook delivery failed");
        }
        store.record_attempt(id, result, *delivered, retry)?;
    }
    Ok(outcomes.len())
}

/// Delivers for as long as the app lives, and reports agents gone offline (as DescribeAgents'
/// `Online` counts them).
pub fn start_delivering(app: &Arc<App>) {
    let weak: Weak<App> = Arc::downgrade(app);
    let mut last_prune = std::time::Instant::now();
    let _ = std::thread::Builder::new().name("posture-webhooks".into()).spawn(move || loop {
        let Some(app) = weak.upgrade() else { return };
        if last_prune.elapsed() >= Duration::from_secs(60) {
            last_prune = std::time::Instant::now();
            let before = store::now_ms() - KEEP_DELIVERIES.as_millis() as i64;
            if let Err(e) = app.store.prune_deliveries(before) {
                tracing::warn!(error = %e, "old webhook deliveries could not be removed");
            }
        }
        if let Err(e) = app.store.report_offline_agents(crate::ops::agents::ONLINE_MS) {
            tracing::warn!(error = %e, "agents gone offline could not be reported");
        }
        let tried = deliver_due(&*app.store).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "webhook deliveries could not be taken or recorded");
            0
        });
        drop(app);
        if tried == 0 {
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
        for bad in ["ftp://x/", "http://", "http://user:pw@x/", "x.example.com/hook", "http://a b/"] {
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
