//! repair: N REPAIR tasks on host instances (one RelationKey submission) until every one is
//! REPAIR_SUCCESS_VERIFIED, then N ROLLBACKs until every one is ROLL_BACK_VERIFIED; against
//! the raw cost of the same file change (read, modify, write a temporary file, fsync, rename,
//! fsync the directory) done directly on a copy of the same files.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::service::Service;
use super::{fleet, r3, Progress};

const KEY: &str = "CSPM_OPERATION_RELATION_KEY_repair";

fn count(svc: &Service, kind: &str, status: &str) -> Result<usize, String> {
    let v = svc
        .call("ListOperationTask", &[("CheckId", "1001"), ("Type", kind), ("Statuses.1", status), ("PageSize", "1")])?;
    Ok(v["PageInfo"]["TotalCount"].as_u64().unwrap_or(0) as usize)
}

fn wait_all(svc: &Service, kind: &str, done: &str, n: usize, progress: &Progress) -> Result<(), String> {
    svc.wait(Duration::from_secs(3600), || {
        let ok = count(svc, kind, done)?;
        progress.say(&format!("repair {n}: {kind} {ok}/{n} {done}"));
        Ok(ok >= n)
    })
}

pub fn run(n: usize, progress: &Progress) -> Result<Value, String> {
    progress.say(&format!("repair {n}: writing {n} hosts"));
    let svc = Service::start(&[])?;
    let fleet_dir = svc.path("fleet");
    fleet::write_hosts(&fleet_dir, n)?;
    let insecure = crate::demo::sshd_config(false);
    for i in 0..n {
        std::fs::write(fleet_dir.join(format!("h{i:07}/etc/ssh/sshd_config")), &insecure).map_err(|e| e.to_string())?;
    }
    let baseline_dir = svc.path("baseline");
    fleet::write_hosts(&baseline_dir, n)?;
    fleet::register(&svc.store()?, &svc.account_id, n, "h", |i| {
        fleet_dir.join(format!("h{i:07}")).display().to_string()
    })?;
    svc.call("CreateAssetSelectionConfig", &[("BusinessType", KEY), ("TargetType", "all_instance")])?;

    progress.say(&format!("repair {n}: repairing"));
    let started = Instant::now();
    svc.call("SubmitOperationTask", &[("CheckId", "1001"), ("Type", "REPAIR"), ("RelationKey", KEY)])?;
    wait_all(&svc, "REPAIR", "REPAIR_SUCCESS_VERIFIED", n, progress)?;
    let repair_s = started.elapsed().as_secs_f64();

    // Every repair's TaskId, then rollbacks in calls of 500 instances.
    let mut pairs = Vec::with_capacity(n);
    for page in 1..=n.div_ceil(100) {
        let v = svc.call(
            "ListOperationTask",
            &[("CheckId", "1001"), ("Type", "REPAIR"), ("PageSize", "100"), ("CurrentPage", &page.to_string())],
        )?;
        for t in v["OperationTasks"].as_array().into_iter().flatten() {
            pairs.push((
                t["InstanceId"].as_str().unwrap_or_default().to_string(),
                t["TaskId"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    progress.say(&format!("repair {n}: rolling back"));
    let started = Instant::now();
    for chunk in pairs.chunks(500) {
        let mut p: Vec<(String, String)> = vec![("CheckId".into(), "1001".into()), ("Type".into(), "ROLLBACK".into())];
        for (k, (instance, task)) in chunk.iter().enumerate() {
            p.push((format!("OperationTaskInstances.{}.InstanceId", k + 1), instance.clone()));
            p.push((format!("OperationTaskInstances.{}.TaskId", k + 1), task.clone()));
        }
        let refs: Vec<(&str, &str)> = p.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        svc.call("SubmitOperationTask", &refs)?;
    }
    wait_all(&svc, "ROLLBACK", "ROLL_BACK_VERIFIED", n, progress)?;
    let rollback_s = started.elapsed().as_secs_f64();

    progress.say(&format!("repair {n}: baseline (raw file changes)"));
    let baseline = raw_changes_per_s(&baseline_dir, n)?;
    let (repairs, rollbacks) = (n as f64 / repair_s, n as f64 / rollback_s);
    Ok(json!({
        "scenario": "repair", "n": n,
        "repairs_per_s": r3(repairs), "rollbacks_per_s": r3(rollbacks),
        "repair_seconds": r3(repair_s), "rollback_seconds": r3(rollback_s),
        "baseline_changes_per_s": r3(baseline), "ratio": r3(repairs / baseline),
    }))
}

/// The file change alone, durably: read, modify, write a temporary file, fsync it, rename it
/// over the original, fsync the directory.
fn raw_changes_per_s(dir: &Path, n: usize) -> Result<f64, String> {
    let started = Instant::now();
    for i in 0..n {
        let path = dir.join(format!("h{i:07}/etc/ssh/sshd_config"));
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let changed = text.replace("PermitRootLogin yes", "PermitRootLogin no");
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(|e| e.to_string())?;
        f.write_all(changed.as_bytes()).map_err(|e| e.to_string())?;
        f.sync_all().map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, &path).map_err(|e| e.to_string())?;
        std::fs::File::open(path.parent().expect("a parent")).and_then(|d| d.sync_all()).map_err(|e| e.to_string())?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}
