//! api: `clients` concurrent keep-alive clients, each request signed v3 like the SDK, for
//! `duration` seconds per operation, against the baseline of an unsigned no-op request
//! (`GET /healthz`) on the same server stack; over plain HTTP, then over HTTPS (TLS 1.3, a
//! service of its own with the same set-up), each HTTPS row beside its HTTP one.

use std::time::Duration;

use client::{sign, Request, Signing};
use serde_json::{json, Value};

use super::service::Service;
use super::{fleet, load, r3, Progress};

/// The repairable check items a submission cycles through (1016 needs its IPPort).
const CHECKS: [i64; 16] =
    [1001, 1002, 1003, 1004, 1005, 1006, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 1015, 1016, 1017];

pub fn run(clients: usize, duration_s: u64, nodes: usize, progress: &Progress) -> Result<Vec<Value>, String> {
    let mut rows = run_on(false, clients, duration_s, nodes, progress)?;
    let https = run_on(true, clients, duration_s, nodes, progress)?;
    for (mut tls, plain) in https.into_iter().zip(rows.clone()) {
        let rate = |v: &Value| v["req_per_s"].as_f64().unwrap_or(0.0);
        tls["http_req_per_s"] = plain["req_per_s"].clone();
        tls["http_p99_ms"] = plain["p99_ms"].clone();
        tls["vs_http"] = r3(rate(&tls) / rate(&plain).max(f64::MIN_POSITIVE));
        rows.push(tls);
    }
    Ok(rows)
}

fn run_on(
    https: bool,
    clients: usize,
    duration_s: u64,
    nodes: usize,
    progress: &Progress,
) -> Result<Vec<Value>, String> {
    let duration = Duration::from_secs(duration_s);
    let transport = if https { "https" } else { "http" };
    progress.say(&format!("api: starting a service with the demo fleet ({transport})"));
    // Several nodes share one database's connections: together they keep as many open as one
    // node does alone (the default pool), as docs/deploy.md advises. The database, not the
    // number of its clients, is then what bounds the rate.
    let pool = store::DEFAULT_POOL.div_ceil(nodes).to_string();
    let mut args = vec!["--demo", "--demo-fleet", "roots", "--workers", "0"];
    if nodes > 1 {
        args.extend(["--database-pool", pool.as_str()]);
    }
    let mut svc = Service::start_on(&args, https)?;
    for _ in 1..nodes {
        svc.add_node(&args[1..])?;
    }
    // Enough fresh (check, instance) pairs that no submission can conflict with another.
    let instances = (4_000 * duration_s as usize).max(2_000);
    progress.say(&format!("api: registering {instances} instances for SubmitOperationTask"));
    fleet::register(&svc.store()?, &svc.account_id, instances, "i-api", |i| format!("/nonexistent/{i}"))?;
    let host = svc.endpoint.clone();
    let hosts = svc.endpoints()?;
    let mut rows = Vec::new();

    progress.say(&format!("api: baseline, unsigned GET /healthz, {clients} clients ({transport})"));
    let healthz =
        Request { host: host.clone(), path: "/healthz".into(), query: String::new(), headers: vec![], body: vec![] };
    let cpu = svc.cpu_seconds();
    let baseline = load::run(&hosts, "GET", clients, duration, |_, _| Some(healthz.clone()), |r| r.status == 200);
    let mut base = baseline.figures();
    base["server_cpu_us_per_req"] = cpu_per_request(svc.cpu_seconds() - cpu, &base);
    let base_rps = base["req_per_s"].as_f64().unwrap_or(1.0);

    let signed =
        |action: &str, params: Vec<(String, String)>| sign(&svc.endpoint, &svc.creds, action, &params, Signing::V3);
    type Builder<'a> = Box<dyn Fn(usize, usize) -> Option<Request> + Sync + 'a>;
    let groups = instances / 10;
    let ops: Vec<(&str, Builder)> = vec![
        ("ListCheckResult", Box::new(|_, _| Some(signed("ListCheckResult", vec![("PageSize".into(), "20".into())])))),
        (
            "ListOperationTask",
            Box::new(|_, _| Some(signed("ListOperationTask", vec![("PageSize".into(), "100".into())]))),
        ),
        (
            "SubmitOperationTask",
            Box::new(move |c, i| {
                // Client c owns the groups g ≡ c (mod clients); its i-th request takes check
                // i mod 16 on its (i / 16)-th group: every (check, instance) pair is used once.
                let group = c + (i / CHECKS.len()) * clients;
                if group >= groups {
                    return None;
                }
                let check = CHECKS[i % CHECKS.len()];
                let mut p = vec![("CheckId".to_string(), check.to_string()), ("Type".into(), "REPAIR".into())];
                for k in 0..10 {
                    p.push((
                        format!("OperationTaskInstances.{}.InstanceId", k + 1),
                        format!("i-api{:07}", group * 10 + k),
                    ));
                }
                if check == 1016 {
                    p.push(("RepairTempParam.1.Name".into(), "IPPort".into()));
                    p.push(("RepairTempParam.1.Value".into(), "127.0.0.1:6379".into()));
                }
                Some(signed("SubmitOperationTask", p))
            }),
        ),
    ];
    for (op, build) in ops {
        progress.say(&format!("api: {op}, {clients} clients for {duration_s} s ({transport})"));
        let cpu = svc.cpu_seconds();
        let r = load::run(&hosts, "POST", clients, duration, build, |r| {
            r.status == 200 && r.body.contains("RequestId") && !r.body.contains("\"Code\"")
        });
        let mut v = r.figures();
        v["server_cpu_us_per_req"] = cpu_per_request(svc.cpu_seconds() - cpu, &v);
        v["baseline_server_cpu_us_per_req"] = base["server_cpu_us_per_req"].clone();
        v["scenario"] = json!("api");
        v["op"] = json!(op);
        v["transport"] = json!(transport);
        v["n"] = json!(clients);
        v["nodes"] = json!(nodes);
        v["pool_per_node"] = json!(if nodes > 1 { store::DEFAULT_POOL.div_ceil(nodes) } else { store::DEFAULT_POOL });
        v["baseline_req_per_s"] = base["req_per_s"].clone();
        v["baseline_p99_ms"] = base["p99_ms"].clone();
        v["ratio"] = r3(v["req_per_s"].as_f64().unwrap_or(0.0) / base_rps);
        rows.push(v);
    }
    Ok(rows)
}

/// The service's CPU time per request answered, in microseconds.
fn cpu_per_request(cpu_seconds: f64, figures: &Value) -> Value {
    let requests = figures["requests"].as_f64().unwrap_or(0.0).max(1.0);
    json!(r3(cpu_seconds * 1e6 / requests))
}
