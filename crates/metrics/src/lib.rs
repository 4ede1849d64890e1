//! What a node counts, for `GET /metrics` (the Prometheus text format, version 0.0.4). Every
//! label takes values from a bounded set (action names, status names, error codes, connector
//! kinds), so a hostile client cannot grow the registry. One process-wide registry: the
//! gateway, the engine and the store record into it without being handed it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// A counter per label values.
pub struct Counter {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    values: Mutex<BTreeMap<Vec<String>, u64>>,
}

/// A histogram per label values, over fixed buckets (seconds).
pub struct Histogram {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    values: Mutex<BTreeMap<Vec<String>, Series>>,
}

#[derive(Default, Clone)]
struct Series {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

/// Upper bounds of the duration buckets, in seconds: from a millisecond to a minute.
const BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Counter {
    const fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Counter {
        Counter { name, help, labels, values: Mutex::new(BTreeMap::new()) }
    }

    /// Adds one for these label values (as many as the counter has labels).
    pub fn inc(&self, values: &[&str]) {
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.name);
        *lock(&self.values).entry(values.iter().map(|v| v.to_string()).collect()).or_default() += 1;
    }

    /// The count for these label values.
    pub fn get(&self, values: &[&str]) -> u64 {
        let key: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        lock(&self.values).get(&key).copied().unwrap_or(0)
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} counter", self.name, self.help, self.name);
        for (values, n) in lock(&self.values).iter() {
            let _ = writeln!(out, "{}{} {n}", self.name, labels(self.labels, values, None));
        }
    }
}

impl Histogram {
    const fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Histogram {
        Histogram { name, help, labels, values: Mutex::new(BTreeMap::new()) }
    }

    /// Records one duration for these label values.
    pub fn observe(&self, values: &[&str], d: Duration) {
        let secs = d.as_secs_f64();
        let mut all = lock(&self.values);
        let s = all
            .entry(values.iter().map(|v| v.to_string()).collect())
            .or_insert_with(|| Series { buckets: vec![0; BUCKETS.len()], ..Default::default() });
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            s.buckets[i] += 1;
        }
        s.sum += secs;
        s.count += 1;
    }

    /// How many durations were recorded for these label values.
    pub fn count(&self, values: &[&str]) -> u64 {
        let key: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        lock(&self.values).get(&key).map_or(0, |s| s.count)
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} histogram", self.name, self.help, self.name);
        for (values, s) in lock(&self.values).iter() {
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(&s.buckets) {
                cumulative += n;
                let le = labels(self.labels, values, Some(&bound.to_string()));
                let _ = writeln!(out, "{}_bucket{le} {cumulative}", self.name);
            }
            let _ = writeln!(out, "{}_bucket{} {}", self.name, labels(self.labels, values, Some("+Inf")), s.count);
            let plain = labels(self.labels, values, None);
            let _ = writeln!(out, "{}_sum{plain} {}\n{}_count{plain} {}", self.name, s.sum, self.name, s.count);
        }
    }
}

/// `{a="x",b="y"}` (with `le` last when given), values escaped.
fn labels(names: &[&str], values: &[String], le: Option<&str>) -> String {
    let mut parts: Vec<String> = names.iter().zip(values).map(|(n, v)| format!("{n}=\"{}\"", escape(v))).collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Everything a node counts.
pub struct Registry {
    /// Requests by action (`unknown` for a name that is not an action) and answer code (`OK`).
    pub requests: Counter,
    /// Request latency by action.
    pub request_seconds: Histogram,
    /// Task transitions made by this node, by the status reached.
    pub transitions: Counter,
    /// Durations of the engine's steps, by connector.
    pub step_seconds: Histogram,
    /// Failures reported by connectors, by connector and error code.
    pub connector_errors: Counter,
    /// Tasks claimed again after a lease expired (a worker or node that died or stalled).
    pub lease_expirations: Counter,
}

/// The process's registry.
pub fn global() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Registry {
        requests: Counter::new(
            "posture_requests_total",
            "API requests by action and answer code.",
            &["action", "code"],
        ),
        request_seconds: Histogram::new("posture_request_duration_seconds", "API request latency.", &["action"]),
        transitions: Counter::new(
            "posture_task_transitions_total",
            "Task transitions by the status reached.",
            &["status"],
        ),
        step_seconds: Histogram::new(
            "posture_step_duration_seconds",
            "Engine step durations by connector.",
            &["connector"],
        ),
        connector_errors: Counter::new(
            "posture_connector_errors_total",
            "Connector failures by connector and error code.",
            &["connector", "code"],
        ),
        lease_expirations: Counter::new(
            "posture_lease_expirations_total",
            "Tasks claimed again after their lease expired.",
            &[],
        ),
    })
}

impl Registry {
    /// The text format, with gauges read at the time of the scrape (name, help, value).
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        self.requests.render(&mut out);
        self.request_seconds.render(&mut out);
        self.transitions.render(&mut out);
        self.step_seconds.render(&mut out);
        self.connector_errors.render(&mut out);
        self.lease_expirations.render(&mut out);
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_render_in_the_text_format() {
        let c = Counter::new("x_total", "X.", &["action", "code"]);
        c.inc(&["List", "OK"]);
        c.inc(&["List", "OK"]);
        c.inc(&["Bad\"", "E"]);
        let h = Histogram::new("d_seconds", "D.", &["action"]);
        h.observe(&["List"], Duration::from_millis(3));
        h.observe(&["List"], Duration::from_secs(120));
        let mut out = String::new();
        c.render(&mut out);
        h.render(&mut out);
        assert!(out.contains("x_total{action=\"List\",code=\"OK\"} 2\n"), "{out}");
        assert!(out.contains("x_total{action=\"Bad\\\"\",code=\"E\"} 1\n"), "{out}");
        assert!(out.contains("d_seconds_bucket{action=\"List\",le=\"0.005\"} 1\n"), "{out}");
        assert!(out.contains("d_seconds_bucket{action=\"List\",le=\"+Inf\"} 2\n"), "{out}");
        assert!(out.contains("d_seconds_count{action=\"List\"} 2\n"), "{out}");
    }
}
