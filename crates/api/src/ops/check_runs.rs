//! Check runs: SubmitCheck, GetCheckProcess, VerifyCheckResult, VerifyCheckInstanceResult,
//! ListOperationProcess, ListOperationProcessDetail.

use model::{ApiError, RunDetailStatus, RunStatus};
use serde_json::{json, Value};
use store::{CheckRun, RunFilter};

use super::{check_name, db, known_check, object, page_info, Ctx};
use crate::params::Params;

fn start_run(ctx: &Ctx, task_type: &str, source: &str, checks: &[i64], pks: &[i64]) -> Result<CheckRun, ApiError> {
    let run = ctx.store.create_run(ctx.account_id, task_type, source, checks, pks).map_err(db)?;
    ctx.engine.wake();
    Ok(run)
}

fn known_checks(ctx: &Ctx, ids: &[i64]) -> Result<(), ApiError> {
    ids.iter().try_for_each(|id| known_check(ctx, *id).map(|_| ()))
}

/// SubmitCheck: a full check of the account. `POLICY` runs the same items as `FULL` (every
/// catalog item is in posture's policy).
pub fn submit_check(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let task_type = match p.str("ScanRange").unwrap_or("FULL") {
        "FULL" => "CHECK_ALL",
        "POLICY" => "CHECK_POLICY",
        _ => return Err(ApiError::invalid_parameter("ScanRange")),
    };
    let run = start_run(ctx, task_type, p.str("TaskSource").unwrap_or(""), &[], &[])?;
    Ok(json!({"TaskId": run.id, "Data": {}}))
}

/// GetCheckProcess: progress of a check run. An unknown id answers StatusCode "5".
pub fn get_check_process(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let id = p.required("TaskId")?;
    let Some(run) = ctx.store.get_run(ctx.account_id, id).map_err(db)? else {
        return Ok(json!({"TaskId": id, "TotalCount": 0, "FinishCount": 0, "StatusCode": "5"}));
    };
    let (details, _) = ctx.store.run_detail_counts(&run.id).map_err(db)?;
    let code = match run.status {
        RunStatus::NotStarted => "0",
        RunStatus::Checking if details == 0 => "6",
        RunStatus::Checking => "1",
        _ if run.total == 0 => "4",
        _ => "2",
    };
    Ok(json!({"TaskId": run.id, "TotalCount": run.total, "FinishCount": run.finished, "StatusCode": code}))
}

/// DescribeCheckTrend (a posture action): the account's results when each of its last check
/// runs completed (`Count`, 1 … 100, default 30), oldest first — the overview's trend.
pub fn describe_check_trend(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let count = p.int("Count")?.unwrap_or(30);
    if !(1..=100).contains(&count) {
        return Err(ApiError::invalid_parameter("Count"));
    }
    let points = ctx.store.check_trend(ctx.account_id, count).map_err(db)?;
    let points: Vec<Value> = points
        .iter()
        .map(|t| {
            json!({
                "TaskId": t.run_id,
                "EndTime": t.ended_ms,
                "PassCount": t.pass,
                "FailCount": t.fail,
                "FailingCheckCount": t.failing_items,
            })
        })
        .collect();
    Ok(json!({"Points": points}))
}

/// `Data.OperateCode: Throttling` when one of these items was verified on one of these
/// instances within the service's verify interval (unless `Force`).
fn throttled(ctx: &Ctx, p: &Params, checks: &[i64], pks: &[i64]) -> Result<Option<Value>, ApiError> {
    if p.bool("Force")? == Some(true) {
        return Ok(None);
    }
    let now = store::now_ms();
    let window = ctx.settings.verify_interval_ms;
    let last = ctx.store.last_verification(ctx.account_id, checks, pks, now - window).map_err(db)?;
    Ok(last.map(|at| {
        let wait_s = (at + window - now + 999) / 1000;
        json!({"Data": {"OperateCode": "Throttling", "ThrottlingTimeSecond": wait_s.max(1), "TaskId": ""}})
    }))
}

/// Instance ids → internal keys; the ids that match nothing are returned apart.
fn instance_pks(ctx: &Ctx, ids: &[String]) -> Result<(Vec<i64>, Vec<String>), ApiError> {
    let found = ctx.store.find_instances_by_ids(ctx.account_id, ids).map_err(db)?;
    let unknown = ids.iter().filter(|id| !found.iter().any(|i| &i.instance_id == *id)).cloned().collect();
    Ok((found.iter().map(|i| i.pk).collect(), unknown))
}

/// VerifyCheckResult: re-run check items (optionally on some instances).
pub fn verify_check_result(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let checks = p.int_list("CheckIds")?;
    if checks.is_empty() {
        return Err(ApiError::illegal_param("CheckIds is empty"));
    }
    known_checks(ctx, &checks)?;
    let ids = p.list("InstanceIds")?;
    let (pks, unknown) = instance_pks(ctx, &ids)?;
    if !ids.is_empty() && pks.is_empty() {
        return Err(ApiError::instance_not_found(&unknown.join(",")));
    }
    if let Some(answer) = throttled(ctx, p, &checks, &pks)? {
        return Ok(answer);
    }
    let run = start_run(ctx, "CHECK_ITEM", p.str("TaskSource").unwrap_or(""), &checks, &pks)?;
    Ok(json!({"Data": {"TaskId": run.id}}))
}

/// VerifyCheckInstanceResult: re-run check items on given instances.
pub fn verify_check_instance_result(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let mut checks = p.int_list("CheckIds")?;
    if let Some(one) = p.int("CheckId")? {
        if !checks.contains(&one) {
            checks.insert(0, one);
        }
    }
    if checks.is_empty() {
        return Err(ApiError::missing_parameter("CheckId"));
    }
    known_checks(ctx, &checks)?;
    let ids = p.list("InstanceIds")?;
    if ids.is_empty() {
        return Err(ApiError::instance_ids_required());
    }
    let (pks, unknown) = instance_pks(ctx, &ids)?;
    if p.bool("DryRun")? == Some(true) || pks.is_empty() {
        return Ok(json!({"Data": {"TaskId": "", "FailInstances": unknown}}));
    }
    if let Some(mut answer) = throttled(ctx, p, &checks, &pks)? {
        answer["Data"]["FailInstances"] = json!(unknown);
        return Ok(answer);
    }
    let run = start_run(ctx, "CHECK_INSTANCE", p.str("TaskSource").unwrap_or(""), &checks, &pks)?;
    Ok(json!({"Data": {"TaskId": run.id, "FailInstances": unknown}}))
}

/// `StatusCodes`, each one the API defines for the listing (`from_code`), else InvalidParameter.
fn status_codes<T>(p: &Params, from_code: fn(i64) -> Option<T>) -> Result<Vec<T>, ApiError> {
    p.parsed_list("StatusCodes", |v| v.trim().parse().ok().and_then(from_code))
}

fn run_filter(p: &Params, offset: i64, limit: i64, details: bool) -> Result<RunFilter, ApiError> {
    let (run_statuses, detail_statuses) = match details {
        false => (status_codes(p, RunStatus::from_code)?, Vec::new()),
        true => (Vec::new(), status_codes(p, RunDetailStatus::from_code)?),
    };
    Ok(RunFilter {
        run_ids: p.list("TaskIds")?,
        task_types: p.list("TaskTypes")?,
        task_sources: p.list("TaskSources")?,
        run_statuses,
        detail_statuses,
        start_ms: p.int("StartTime")?,
        end_ms: p.int("EndTime")?,
        offset,
        limit,
    })
}

/// ListOperationProcess: check runs, newest first.
pub fn list_operation_process(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let (page, size, offset) = p.page(20, 100)?;
    let (runs, total) = ctx.store.list_runs(ctx.account_id, &run_filter(p, offset, size, false)?).map_err(db)?;
    let mut processes = Vec::new();
    for r in &runs {
        let (details, ready) = ctx.store.run_detail_counts(&r.id).map_err(db)?;
        processes.push(json!({
            "TaskId": r.id,
            "TaskType": r.task_type,
            "TaskSource": r.task_source,
            "StatusCode": r.status.code(),
            "CreateTime": r.created_ms,
            "StartTime": r.started_ms,
            "EndTime": r.ended_ms,
            "DetailTaskTotalCount": details,
            "DetailTaskReadyCount": ready,
            "FinishCount": r.finished,
            "TotalCount": r.total,
        }));
    }
    Ok(object([("PageInfo", page_info(processes.len(), page, size, total)), ("Processes", Value::Array(processes))]))
}

/// ListOperationProcessDetail: the per-instance subtasks of check runs.
pub fn list_operation_process_detail(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let lang = p.lang();
    let (page, size, offset) = p.page(20, 100)?;
    let filter = run_filter(p, offset, size, true)?;
    if filter.run_ids.is_empty() {
        return Err(ApiError::cspm_param_illegal("TaskIds is mandatory for this action."));
    }
    let (details, total) = ctx.store.list_details(ctx.account_id, &filter).map_err(db)?;
    let rows: Vec<Value> = details
        .iter()
        .map(|d| {
            let checks: Vec<Value> = d
                .check_ids
                .iter()
                .map(|id| json!({"CheckId": id, "CheckShowName": check_name(ctx, *id, lang)}))
                .collect();
            json!({
                "TaskId": d.run_id,
                "DetailTaskId": d.id,
                "StatusCode": d.status.code(),
                "AssetType": 0,
                "AssetSubType": 0,
                "AssetVendor": d.vendor.code(),
                "CreateTime": d.created_ms,
                "StartTime": d.started_ms,
                "EndTime": d.ended_ms,
                "Checks": checks,
            })
        })
        .collect();
    Ok(object([("PageInfo", page_info(rows.len(), page, size, total)), ("ProcessDetails", Value::Array(rows))]))
}
