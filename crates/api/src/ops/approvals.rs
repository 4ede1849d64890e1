//! Approval (posture extensions): ApproveOperationTask and RejectOperationTask decide the
//! tasks of a root task that wait for approval (`WAIT_APPROVAL`), never by the key that
//! submitted it (two-person rule); ModifyApprovalConfig and DescribeApprovalConfig set and show
//! where approval is required. The rules are in docs/api.md ("Approval").

use model::ApiError;
use serde_json::{json, Value};
use store::{ApprovalChange, ApprovalConfig, StoreError};

use super::{db, known_check, Ctx};
use crate::params::Params;

/// ApproveOperationTask: `RootTaskId`, optionally `TaskIds.N` of it.
pub fn approve_operation_task(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    decide(ctx, p, true)
}

/// RejectOperationTask: `RootTaskId`, optionally `TaskIds.N` of it.
pub fn reject_operation_task(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    decide(ctx, p, false)
}

fn decide(ctx: &Ctx, p: &Params, approve: bool) -> Result<Value, ApiError> {
    let root = p.required("RootTaskId")?;
    let task_ids = p.list("TaskIds")?;
    let submitter = match ctx.store.root_submitter(ctx.account_id, root) {
        Ok(submitter) => submitter,
        Err(StoreError::NotFound) => return Err(ApiError::task_not_found(root)),
        Err(e) => return Err(db(e)),
    };
    // A rule's repairs are its creator's: that key may not approve them either.
    let submitter = match submitter.strip_prefix("auto:") {
        Some(rule) => {
            let rules = ctx.store.auto_rules(ctx.account_id).map_err(db)?;
            rules.into_iter().find(|r| r.id == rule).map_or(submitter.clone(), |r| r.created_by)
        }
        None => submitter,
    };
    if submitter == ctx.key_id {
        return Err(ApiError::approval_by_submitter());
    }
    let decided = match ctx.store.decide(ctx.account_id, root, &task_ids, approve, ctx.key_id) {
        Ok(decided) => decided,
        Err(StoreError::NotFound) => {
            return Err(ApiError::task_not_found(task_ids.first().map_or(root, String::as_str)))
        }
        Err(e) => return Err(db(e)),
    };
    // Approved tasks may be taken at once; rejected ones release what waited behind them.
    ctx.engine.wake();
    let pks: Vec<i64> = decided.iter().map(|(_, pk, _)| *pk).collect();
    let instances = ctx.store.instances_by_pks(ctx.account_id, &pks).map_err(db)?;
    let tasks: Vec<Value> = decided
        .into_iter()
        .map(|(id, pk, outcome)| {
            let instance = instances.iter().find(|i| i.pk == pk).map_or("", |i| i.instance_id.as_str());
            json!({"TaskId": id, "InstanceId": instance, "Decision": outcome.as_str()})
        })
        .collect();
    Ok(json!({"RootTaskId": root, "Tasks": tasks}))
}

/// The settings as DescribeApprovalConfig (and `posture accounts set-approval`) show them.
pub fn config_json(c: &ApprovalConfig) -> Value {
    let items: Vec<Value> =
        c.overrides.iter().map(|(id, required)| json!({"CheckId": id, "Required": required})).collect();
    json!({"Required": c.required, "ExpirySeconds": c.expiry_ms / 1000, "Items": items})
}

/// DescribeApprovalConfig: whether the account's repairs wait for approval, for how long, and
/// the items that say otherwise.
pub fn describe_approval_config(ctx: &Ctx, _p: &Params) -> Result<Value, ApiError> {
    Ok(config_json(&ctx.store.approval_config(ctx.account_id).map_err(db)?))
}

/// How long a task may wait for approval, as given (`90s`, `24h`, `7d`): 1 second to 30 days.
pub fn parse_expiry(text: &str) -> Option<i64> {
    super::agents::parse_duration(text).filter(|ms| (1_000..=30 * 86_400_000).contains(ms))
}

/// ModifyApprovalConfig: `Required` (`true`, `false`; with `CheckId`, also `inherit`: the item
/// follows the account again) for the account or, with `CheckId`, for that item; `Expiry`
/// (`90s`, `24h`, `7d`; 1 second to 30 days).
pub fn modify_approval_config(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let required = p.str("Required");
    let mut change = ApprovalChange::default();
    match p.int("CheckId")? {
        Some(check_id) => {
            known_check(ctx, check_id)?;
            let item = match required {
                Some("inherit") => None,
                _ => Some(p.bool("Required")?.ok_or_else(|| ApiError::missing_parameter("Required"))?),
            };
            change.item = Some((check_id, item));
        }
        None => change.required = p.bool("Required")?,
    }
    if let Some(text) = p.str("Expiry") {
        let ms = parse_expiry(text).ok_or_else(|| ApiError::invalid_parameter("Expiry"))?;
        change.expiry_ms = Some(ms);
    }
    if change == ApprovalChange::default() {
        return Err(ApiError::missing_parameter("Required"));
    }
    Ok(config_json(&ctx.store.set_approval(ctx.account_id, &change).map_err(db)?))
}
