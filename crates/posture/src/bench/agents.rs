//! agents: N agents — threads of this process, each the agent library (the same code and
//! loopback HTTP as `posture-agent`) on a small root of its own — enrolled with one service;
//! a full check through them (time until every result is in), the service's memory and CPU;
//! then every agent idle, polling: what their heartbeats add to the service's own idle cost.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::service::Service;
use super::{fleet, r3, Progress};

/// The agents' heartbeat as served by default (`serve --agent-poll-wait`): what the cost of a
/// poll is projected to, for 10,000 agents.
const PRODUCTION_POLL_S: f64 = 30.0;

pub fn run(n: usize, duration: u64, poll_s: u64, progress: &Progress) -> Result<Value, String> {
    // Every agent holds a connection while it waits: room for all of them, and their polls.
    let config = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    std::fs::write(config.path(), format!("[http]\nmax_connections = {}\n", n + 256)).map_err(|e| e.to_string())?;
    let (polls, wait) = ((n + 16).to_string(), format!("{poll_s}s"));
    let config_path = config.path().display().to_string();
    let svc = Service::start(&["--config", &config_path, "--max-agent-polls", &polls, "--agent-poll-wait", &wait])?;

    // The service's own idle cost (its workers and sweeps looking for work), before any agent:
    // the agents' cost below is what they add to it.
    let window = Duration::from_secs(duration.max(2 * poll_s));
    progress.say(&format!("agents {n}: the service idle, without agents"));
    let (cpu0, t0) = (svc.cpu_seconds(), Instant::now());
    std::thread::sleep(window);
    let baseline_share = (svc.cpu_seconds() - cpu0) / t0.elapsed().as_secs_f64();

    progress.say(&format!("agents {n}: writing {n} roots"));
    let roots = svc.path("roots");
    fleet::write_hosts(&roots, n)?;
    let token = svc.call("CreateAgentToken", &[("Uses", &n.to_string()), ("Expires", "2h")])?["Token"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    let started = Instant::now();
    for i in 0..n {
        if i % 100 == 0 {
            progress.say(&format!("agents {n}: enrolling {i}/{n}"));
        }
        posture_agent::enroll::enroll(posture_agent::enroll::Options {
            server: format!("http://{}", svc.endpoint),
            ca: None,
            fingerprint: None,
            token: token.clone(),
            state: state(&svc, i),
            root: roots.join(format!("h{i:07}")),
            // A directory of files, not the running system: no live step runs.
            live: Some(false),
            services: None,
            instance_id: Some(format!("agent-{i:07}")),
            region_id: "bench".into(),
            vendor: 2,
            insecure_http: false,
        })
        .map_err(|e| e.message)?;
    }
    let enrolments_per_s = n as f64 / started.elapsed().as_secs_f64();

    let stop = Arc::new(AtomicBool::new(false));
    for i in 0..n {
        let (state, stop) = (state(&svc, i), stop.clone());
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let _ = posture_agent::run::run_until(&state, &stop);
            })
            .map_err(|e| e.to_string())?;
    }
    // The agents' first polls are sent before the clock starts (a poll is counted when it
    // ends, so this cannot be watched; the check wakes every waiting poll anyway).
    std::thread::sleep(Duration::from_secs(2));

    progress.say(&format!("agents {n}: full check"));
    let (cpu0, t0) = (svc.cpu_seconds(), Instant::now());
    let id = svc
        .full_check(Duration::from_secs(600), |done, all| progress.say(&format!("agents {n}: {done}/{all} checked")))?;
    let check_seconds = t0.elapsed().as_secs_f64();
    let check_cpu = svc.cpu_seconds() - cpu0;
    let failed = svc.call("ListOperationProcessDetail", &[("TaskIds.1", &id), ("StatusCodes.1", "4")])?["PageInfo"]
        ["TotalCount"]
        .as_i64()
        .unwrap_or(-1);

    progress.say(&format!("agents {n}: {n} agents idle, polling every {poll_s} s"));
    std::thread::sleep(Duration::from_secs(poll_s + 1));
    let (cpu0, polls0, t0) = (svc.cpu_seconds(), agent_requests(&svc)?, Instant::now());
    std::thread::sleep(window);
    let (cpu, polls, seconds) = (svc.cpu_seconds() - cpu0, agent_requests(&svc)? - polls0, t0.elapsed().as_secs_f64());
    stop.store(true, Ordering::Relaxed);
    let added_share = (cpu / seconds - baseline_share).max(0.0);
    let cpu_per_poll = added_share * seconds / polls.max(1.0);
    Ok(json!({
        "scenario": "agents", "n": n,
        "enrolments_per_s": r3(enrolments_per_s),
        "check_seconds": r3(check_seconds), "check_server_cpu_seconds": r3(check_cpu), "check_failed": failed,
        "server_peak_rss_mb": r3(svc.peak_rss_mb()),
        "idle_polls_per_s": r3(polls / seconds), "idle_server_core_share": r3(cpu / seconds),
        "server_core_share_without_agents": r3(baseline_share), "agents_added_core_share": r3(added_share),
        "server_cpu_us_per_poll": r3(cpu_per_poll * 1e6),
        // 10,000 agents on the default heartbeat (one poll each every 30 s).
        "poll_wait_s": poll_s,
        "projected_core_share_10k_agents": r3(cpu_per_poll * 10_000.0 / PRODUCTION_POLL_S),
    }))
}

fn state(svc: &Service, i: usize) -> std::path::PathBuf {
    Path::new(&svc.path("agents")).join(format!("a{i:07}"))
}

/// The agent requests the service has answered so far (its `/metrics`).
fn agent_requests(svc: &Service) -> Result<f64, String> {
    let text = client::send_to(&svc.endpoint, "GET", "/metrics", "", &[], b"").map_err(|e| e.to_string())?.body;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("posture_requests_total{action=\"agent\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}
