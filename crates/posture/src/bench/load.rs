//! The load generator: `clients` threads, each on its own kept-alive connection, sending
//! requests (signed per request, like the SDK) until the deadline; latencies per request.

use std::time::{Duration, Instant};

use client::{Connection, Endpoint, Request};
use serde_json::{json, Value};

use super::r3;

/// What one load run measured.
pub struct LoadResult {
    pub requests: usize,
    pub errors: usize,
    pub seconds: f64,
    pub latencies_ms: Vec<f64>,
}

impl LoadResult {
    pub fn figures(&self) -> Value {
        let mut l = self.latencies_ms.clone();
        l.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| if l.is_empty() { 0.0 } else { l[((l.len() - 1) as f64 * p).round() as usize] };
        json!({
            "req_per_s": r3(self.requests as f64 / self.seconds),
            "p50_ms": r3(pct(0.50)),
            "p99_ms": r3(pct(0.99)),
            "errors": self.errors,
            "requests": self.requests,
        })
    }
}

/// Runs `clients` threads for `duration`, client `c` talking to `hosts[c % hosts.len()]` (the
/// nodes of one service, over HTTP or HTTPS); `next(client, i)` builds the i-th request of a client (None: that
/// client is done) and `ok` judges an answer.
pub fn run(
    hosts: &[Endpoint],
    method: &str,
    clients: usize,
    duration: Duration,
    next: impl Fn(usize, usize) -> Option<Request> + Sync,
    ok: impl Fn(&client::Response) -> bool + Sync,
) -> LoadResult {
    let started = Instant::now();
    let deadline = started + duration;
    let results: Vec<(usize, usize, Vec<f64>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let (next, ok) = (&next, &ok);
                let host = &hosts[c % hosts.len()];
                scope.spawn(move || {
                    let (mut n, mut errors, mut lat) = (0, 0, Vec::new());
                    let Ok(mut conn) = Connection::open_at(host) else { return (0, 1, lat) };
                    while Instant::now() < deadline {
                        let Some(req) = next(c, n) else { break };
                        let t = Instant::now();
                        match conn.send(method, &req) {
                            Ok(r) if ok(&r) => {}
                            Ok(_) => errors += 1,
                            Err(_) => {
                                errors += 1;
                                match Connection::open_at(host) {
                                    Ok(c2) => conn = c2,
                                    Err(_) => break,
                                }
                            }
                        }
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                        n += 1;
                    }
                    (n, errors, lat)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or((0, 1, Vec::new()))).collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut out = LoadResult { requests: 0, errors: 0, seconds, latencies_ms: Vec::new() };
    for (n, e, l) in results {
        out.requests += n;
        out.errors += e;
        out.latencies_ms.extend(l);
    }
    out
}
