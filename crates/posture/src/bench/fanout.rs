//! fan-out: a RelationKey selection of N instances → the time until SubmitOperationTask answers
//! (its root task and N tasks committed), the service's peak RSS, and rows/s against raw
//! batched SQLite inserts of the same rows into the same schema.

use std::time::Instant;

use serde_json::{json, Value};

use super::service::Service;
use super::{fleet, r3, Progress};

const KEY: &str = "CSPM_OPERATION_RELATION_KEY_bench";

pub fn run(n: usize, progress: &Progress) -> Result<Value, String> {
    progress.say(&format!("fan-out {n}: starting a service"));
    let svc = Service::start(&["--workers", "0"])?;
    progress.say(&format!("fan-out {n}: registering {n} instances"));
    fleet::register(&svc.store()?, &svc.account_id, n, "i-fan", |i| format!("/nonexistent/{i}"))?;
    progress.say(&format!("fan-out {n}: selecting them through the API"));
    let sel = svc.call("CreateAssetSelectionConfig", &[("BusinessType", KEY), ("TargetType", "instance")])?;
    let key = sel["Data"]["SelectionKey"].as_str().unwrap_or_default().to_string();
    svc.call(
        "AddAssetSelectionCriteria",
        &[("SelectionKey", &key), ("Criteria", r#"[{"name":"regionId","value":"cn-bench"}]"#)],
    )?;
    let rss_before = svc.peak_rss_mb();

    progress.say(&format!("fan-out {n}: SubmitOperationTask"));
    let started = Instant::now();
    let answer = svc.call("SubmitOperationTask", &[("CheckId", "1001"), ("Type", "REPAIR"), ("RelationKey", KEY)])?;
    let submit = started.elapsed().as_secs_f64();
    if answer["RootTaskId"].as_str().is_none() {
        return Err(format!("no RootTaskId: {answer}"));
    }
    let peak = svc.peak_rss_mb();
    let total = svc.call("ListOperationTask", &[("CheckId", "1001"), ("PageSize", "1")])?["PageInfo"]["TotalCount"]
        .as_u64()
        .unwrap_or(0);
    if total != n as u64 {
        return Err(format!("{total} tasks written, not {n}"));
    }

    progress.say(&format!("fan-out {n}: baseline (raw inserts)"));
    let baseline = match &svc.db {
        Some(db) => raw_postgres_rows_per_s(&svc, &db.url, n)?,
        None => raw_insert_rows_per_s(&svc, n)?,
    };
    let rows_per_s = n as f64 / submit;
    Ok(json!({
        "scenario": "fanout", "n": n,
        "submit_seconds": r3(submit), "peak_rss_mb": r3(peak), "rss_before_submit_mb": r3(rss_before),
        "rows_per_s": r3(rows_per_s), "baseline_rows_per_s": r3(baseline), "ratio": r3(rows_per_s / baseline),
    }))
}

/// [`raw_insert_rows_per_s`] on PostgreSQL: the same rows, one prepared INSERT each, one
/// transaction, into a new database of the same schema on the same server.
fn raw_postgres_rows_per_s(svc: &Service, service_db: &str, n: usize) -> Result<f64, String> {
    let db = store::testing::TestDatabase::create_on(service_db)?;
    let at =
        store::Location { data: svc.path("baseline"), database: Some(db.url.clone()), master_key: None, pool: None };
    drop(store::Store::connect(&at).map_err(|e| e.to_string())?); // the same schema and indexes
    let mut c = postgres::Client::connect(&db.url, postgres::NoTls).map_err(|e| e.to_string())?;
    let e = |e: postgres::Error| e.to_string();
    c.batch_execute(
        "INSERT INTO accounts (id, name, created_ms) VALUES ('acct', 'bench', 0);
         INSERT INTO root_tasks (id, account_id, check_id, type, dimension, created_ms) VALUES ('root', 'acct', 1001, 'REPAIR', 'INSTANCE', 0);",
    )
    .map_err(e)?;
    let mut tx = c.transaction().map_err(e)?;
    let inst = tx
        .prepare("INSERT INTO instances (pk, account_id, vendor, region_id, instance_id, instance_name, connector, locator, created_ms) VALUES ($1, 'acct', 0, 'r', $2, 'n', 'host', '/', 0)")
        .map_err(e)?;
    for i in 0..n {
        tx.execute(&inst, &[&(i as i64), &format!("i-{i}")]).map_err(e)?;
    }
    tx.commit().map_err(e)?;
    let started = Instant::now();
    let mut tx = c.transaction().map_err(e)?;
    let task = tx
        .prepare(
            "INSERT INTO tasks (id, root_id, account_id, check_id, instance_pk, type, status, params, created_ms, updated_ms)
             VALUES ($1, 'root', 'acct', 1001, $2, 'REPAIR', 'INIT', '[]', 0, 0)",
        )
        .map_err(e)?;
    let event = tx.prepare("INSERT INTO task_events (task_id, status, at_ms) VALUES ($1, 'INIT', 0)").map_err(e)?;
    for i in 0..n {
        let id = format!("{i:032x}");
        tx.execute(&task, &[&id, &(i as i64)]).map_err(e)?;
        tx.execute(&event, &[&id]).map_err(e)?;
    }
    tx.commit().map_err(e)?;
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// The same rows (a task per instance, with the same kind of id) written with one prepared INSERT in
/// one transaction into a fresh database of the same schema and durability, with no selection,
/// whitelist or conflict logic around them: what SQLite itself costs.
fn raw_insert_rows_per_s(svc: &Service, n: usize) -> Result<f64, String> {
    let path = svc.path("baseline.db");
    drop(store::Store::open(&path).map_err(|e| e.to_string())?); // the same schema and indexes
    let mut c = rusqlite::Connection::open(&path).map_err(|e| e.to_string())?;
    c.pragma_update(None, "journal_mode", "WAL").map_err(|e| e.to_string())?;
    c.pragma_update(None, "synchronous", "FULL").map_err(|e| e.to_string())?;
    c.pragma_update(None, "cache_size", -64 * 1024).map_err(|e| e.to_string())?; // as the service's writer
                                                                                 // What the tasks refer to (foreign keys stay on, as in the service), not timed.
    let tx = c.transaction().map_err(|e| e.to_string())?;
    tx.execute_batch(
        "INSERT INTO accounts (id, name, created_ms) VALUES ('acct', 'bench', 0);
         INSERT INTO root_tasks (id, account_id, check_id, type, dimension, created_ms) VALUES ('root', 'acct', 1001, 'REPAIR', 'INSTANCE', 0);",
    )
    .map_err(|e| e.to_string())?;
    {
        let mut inst = tx
            .prepare("INSERT INTO instances (pk, account_id, vendor, region_id, instance_id, instance_name, connector, locator, created_ms) VALUES (?, 'acct', 0, 'r', ?, 'n', 'host', '/', 0)")
            .map_err(|e| e.to_string())?;
        for i in 0..n {
            inst.execute(rusqlite::params![i as i64, format!("i-{i}")]).map_err(|e| e.to_string())?;
        }
    }
    tx.commit().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let tx = c.transaction().map_err(|e| e.to_string())?;
    {
        let mut task = tx
            .prepare(
                "INSERT INTO tasks (id, root_id, account_id, check_id, instance_pk, type, status, params, created_ms, updated_ms)
                 VALUES (?, 'root', 'acct', 1001, ?, 'REPAIR', 'INIT', '[]', 0, 0)",
            )
            .map_err(|e| e.to_string())?;
        let mut event = tx
            .prepare("INSERT INTO task_events (task_id, status, at_ms) VALUES (?, 'INIT', 0)")
            .map_err(|e| e.to_string())?;
        for i in 0..n {
            let id = format!("{i:032x}");
            task.execute(rusqlite::params![id, i as i64]).map_err(|e| e.to_string())?;
            event.execute([&id]).map_err(|e| e.to_string())?;
        }
    }
    tx.commit().map_err(|e| e.to_string())?;
    Ok(n as f64 / started.elapsed().as_secs_f64())
}
