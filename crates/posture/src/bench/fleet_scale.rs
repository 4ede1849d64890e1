//! fleet: N registered and checked instances, then what the console reads, with one client and
//! with 64: ListCheckResult, ListCheckInstanceResult (first page, and the last: a deep page),
//! ListOperationTask; the web console's check items page (its first load in bytes, and its call
//! through a console session); and the full check's time, the service's peak RSS and the
//! database's size.
//! Instances share a few demo-like roots (the check still reads and evaluates each one).

use std::time::{Duration, Instant};

use client::{sign, Request, Signing};
use serde_json::{json, Value};

use super::service::Service;
use super::{fleet, load, r3, Progress};

/// Distinct host roots the instances cycle through.
const ROOTS: usize = 16;

/// Results listed per page.
const PAGE: usize = 20;

const KEY: &str = "CSPM_OPERATION_RELATION_KEY_fleet";

pub fn run(n: usize, duration_s: u64, clients: usize, progress: &Progress) -> Result<Vec<Value>, String> {
    progress.say(&format!("fleet {n}: starting a service"));
    let mut svc = Service::start(&[])?;
    let roots = svc.path("roots");
    fleet::write_hosts(&roots, ROOTS)?;
    progress.say(&format!("fleet {n}: registering {n} instances"));
    fleet::register(&svc.store()?, &svc.account_id, n, "i-fleet", |i| {
        roots.join(format!("h{:07}", i % ROOTS)).display().to_string()
    })?;

    let started = Instant::now();
    svc.full_check(Duration::from_secs(6 * 3600), |done, all| {
        progress.say(&format!("fleet {n}: checked {done}/{all} hosts"))
    })?;
    let check_seconds = started.elapsed().as_secs_f64();
    let mut rows = vec![json!({
        "scenario": "fleet", "n": n, "op": "full check",
        "check_seconds": r3(check_seconds), "hosts_per_s": r3(n as f64 / check_seconds),
        "peak_rss_mb": r3(svc.peak_rss_mb()), "database_mb": r3(database_mb(&svc)?),
    })];

    // A repair of every instance waiting in the queue (the workers stopped, so none runs: the
    // instances share their roots), for ListOperationTask to list.
    progress.say(&format!("fleet {n}: queueing a repair of every instance"));
    svc.restart(&["--workers", "0"])?;
    svc.call("CreateAssetSelectionConfig", &[("BusinessType", KEY), ("TargetType", "all_instance")])?;
    svc.call("SubmitOperationTask", &[("CheckId", "1001"), ("Type", "REPAIR"), ("RelationKey", KEY)])?;

    // What the console reads. A page of one item's instances, first and last.
    let last_page = n.div_ceil(PAGE).max(1).to_string();
    let page = PAGE.to_string();
    let ops: Vec<(&str, Vec<(String, String)>)> = vec![
        ("ListCheckResult", vec![pair("PageSize", &page)]),
        ("ListCheckInstanceResult", vec![pair("CheckId", "1001"), pair("PageSize", &page)]),
        (
            "ListCheckInstanceResult (last page)",
            vec![pair("CheckId", "1001"), pair("PageSize", &page), pair("CurrentPage", &last_page)],
        ),
        ("ListOperationTask", vec![pair("PageSize", &page)]),
    ];
    let hosts = svc.endpoints()?;
    let duration = Duration::from_secs(duration_s);
    let console = ConsoleSession::open(&svc)?;
    rows.push(json!({"scenario": "fleet", "n": n, "op": "console: first load of the check items page",
        "bytes": console.first_load_bytes(&svc)?}));
    for (op, params) in &ops {
        let action = op.split(' ').next().unwrap_or(op);
        let request = || -> Request { sign(&svc.endpoint, &svc.creds, action, params, Signing::V3) };
        for c in [1, clients] {
            progress.say(&format!("fleet {n}: {op}, {c} clients for {duration_s} s"));
            let r = load::run(
                &hosts,
                "POST",
                c,
                duration,
                |_, _| Some(request()),
                |r| r.status == 200 && r.body.contains("RequestId") && !r.body.contains("\"Code\""),
            );
            let mut v = r.figures();
            v["scenario"] = json!("fleet");
            v["n"] = json!(n);
            v["op"] = json!(op);
            v["clients"] = json!(c);
            rows.push(v);
        }
    }
    // The console's check items page: its one call, through a session (cookie and CSRF token).
    let page_call = console.call(&svc, &[("Action", "ListCheckResult"), ("PageSize", &page), ("Lang", "en")]);
    for c in [1, clients] {
        progress.say(&format!("fleet {n}: console check items page, {c} clients for {duration_s} s"));
        let r = load::run(
            &hosts,
            "POST",
            c,
            duration,
            |_, _| Some(page_call.clone()),
            |r| r.status == 200 && r.body.contains("Checks"),
        );
        let mut v = r.figures();
        v["scenario"] = json!("fleet");
        v["n"] = json!(n);
        v["op"] = json!("console: check items page");
        v["clients"] = json!(c);
        rows.push(v);
    }
    Ok(rows)
}

/// A web console session of the service's admin key.
struct ConsoleSession {
    cookie: String,
    csrf: String,
}

impl ConsoleSession {
    fn open(svc: &Service) -> Result<ConsoleSession, String> {
        let body = client::encoding::form_encode(&[
            ("AccessKeyId", &svc.creds.access_key_id),
            ("AccessKeySecret", &svc.creds.access_key_secret),
        ]);
        let r = exchange(svc, "POST", &request(svc, "/console/session", Vec::new(), body))?;
        let cookie = r.headers.iter().find(|(k, _)| k == "set-cookie").map(|(_, v)| v.clone()).unwrap_or_default();
        let cookie = cookie.split(';').next().unwrap_or_default().to_string();
        let csrf = r.json()["CsrfToken"].as_str().unwrap_or_default().to_string();
        match r.status == 200 && !csrf.is_empty() {
            true => Ok(ConsoleSession { cookie, csrf }),
            false => Err(format!("console sign-in: {} {}", r.status, r.body)),
        }
    }

    /// A call of the console's script.
    fn call(&self, svc: &Service, params: &[(&str, &str)]) -> Request {
        let headers = vec![("cookie".into(), self.cookie.clone()), ("x-posture-csrf".into(), self.csrf.clone())];
        request(svc, "/console/api", headers, client::encoding::form_encode(params))
    }

    /// What a browser transfers to show the check items page the first time: the page, its
    /// script and style, and the page's calls (the session, the items, the standards).
    fn first_load_bytes(&self, svc: &Service) -> Result<usize, String> {
        let mut total = 0;
        for path in ["/console/", "/console/console.js", "/console/console.css"] {
            total += exchange(svc, "GET", &request(svc, path, Vec::new(), String::new()))?.body.len();
        }
        let session = vec![("cookie".to_string(), self.cookie.clone())];
        total += exchange(svc, "GET", &request(svc, "/console/session", session, String::new()))?.body.len();
        for action in ["ListCheckResult", "ListCheckStandard"] {
            let answer =
                exchange(svc, "POST", &self.call(svc, &[("Action", action), ("PageSize", "20"), ("Lang", "en")]))?;
            if answer.status != 200 {
                return Err(format!("console {action}: {} {}", answer.status, answer.body));
            }
            total += answer.body.len();
        }
        Ok(total)
    }
}

/// A request to the service at `path`, with a form body when `body` is not empty.
fn request(svc: &Service, path: &str, mut headers: Vec<(String, String)>, body: String) -> Request {
    headers.push(("host".into(), svc.endpoint.clone()));
    if !body.is_empty() {
        headers.push(("content-type".into(), "application/x-www-form-urlencoded".into()));
    }
    Request { host: svc.endpoint.clone(), path: path.into(), query: String::new(), headers, body: body.into_bytes() }
}

/// Sends one request on a new connection.
fn exchange(svc: &Service, method: &str, r: &Request) -> Result<client::Response, String> {
    client::Connection::open(&svc.endpoint).and_then(|mut c| c.send(method, r)).map_err(|e| e.to_string())
}

fn pair(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

/// The size of the service's database: SQLite's files, or PostgreSQL's database.
fn database_mb(svc: &Service) -> Result<f64, String> {
    let bytes = match &svc.db {
        Some(db) => {
            let mut c = postgres::Client::connect(&db.url, postgres::NoTls).map_err(|e| e.to_string())?;
            let size: i64 =
                c.query_one("SELECT pg_database_size(current_database())", &[]).map_err(|e| e.to_string())?.get(0);
            size as u64
        }
        None => ["posture.db", "posture.db-wal"]
            .iter()
            .filter_map(|f| std::fs::metadata(svc.data().join(f)).ok())
            .map(|m| m.len())
            .sum(),
    };
    Ok(bytes as f64 / 1_048_576.0)
}
