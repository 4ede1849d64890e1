//! assess: a full check (SubmitCheck) of N demo-like hosts until GetCheckProcess says done;
//! rule evaluations/s and hosts/s, against reading the same configuration files directly.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::service::Service;
use super::{fleet, r3, Progress};

pub fn run(n: usize, progress: &Progress) -> Result<Value, String> {
    progress.say(&format!("assess {n}: writing {n} hosts"));
    let svc = Service::start(&[])?;
    let fleet_dir = svc.path("fleet");
    fleet::write_hosts(&fleet_dir, n)?;
    fleet::register(&svc.store()?, &svc.account_id, n, "h", |i| {
        fleet_dir.join(format!("h{i:07}")).display().to_string()
    })?;
    let items = catalog::Catalog::builtin().map_err(|e| e.to_string())?.for_asset("host").count();

    // The first check writes every result; the second, over the same unchanged files, is a
    // scheduled check's steady state (every result replaced by an equal one).
    let (seconds, cpu) = check(&svc, n, "first", progress)?;
    let (recheck_seconds, recheck_cpu) = check(&svc, n, "second", progress)?;

    progress.say(&format!("assess {n}: baseline (raw reads)"));
    let started = Instant::now();
    let mut bytes = 0usize;
    for i in 0..n {
        for f in fleet::files_under(&fleet_dir.join(format!("h{i:07}"))) {
            bytes += std::fs::read(&f).map_err(|e| e.to_string())?.len();
        }
    }
    let baseline_hosts = n as f64 / started.elapsed().as_secs_f64();
    let evaluations = (n * items) as f64;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get()) as f64;
    Ok(json!({
        "scenario": "assess", "n": n,
        "evaluations_per_s": r3(evaluations / seconds), "evaluations_per_s_per_core": r3(evaluations / seconds / cores),
        "hosts_per_s": r3(n as f64 / seconds), "check_seconds": r3(seconds),
        "check_server_cpu_seconds": r3(cpu), "server_cpu_ms_per_host": r3(cpu * 1000.0 / n as f64),
        "recheck_seconds": r3(recheck_seconds), "recheck_server_cpu_seconds": r3(recheck_cpu),
        "baseline_hosts_per_s": r3(baseline_hosts), "baseline_bytes_read": bytes, "ratio": r3(n as f64 / seconds / baseline_hosts),
    }))
}

/// One full check of the fleet, waited for: its wall-clock and the service's CPU seconds.
fn check(svc: &Service, n: usize, which: &str, progress: &Progress) -> Result<(f64, f64), String> {
    let (started, cpu0) = (Instant::now(), svc.cpu_seconds());
    svc.full_check(Duration::from_secs(3600), |done, all| {
        progress.say(&format!("assess {n}, {which} check: {done}/{all} hosts"))
    })?;
    Ok((started.elapsed().as_secs_f64(), svc.cpu_seconds() - cpu0))
}
