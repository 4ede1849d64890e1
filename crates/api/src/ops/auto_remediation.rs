//! CreateAutoRemediation, ListAutoRemediations, DeleteAutoRemediation (posture actions): rules
//! that repair an item's failing instances after each check run (the engine's `auto.rs`).

use model::{ApiError, TaskType};
use serde_json::{json, Value};
use store::{AutoRule, RootLimits};

use super::operation_tasks::{repair_params, root_limits};
use super::{account_view, db, known_check, Ctx};
use crate::params::Params;

/// CreateAutoRemediation: `CheckId` (a repairable item), optionally `RelationKey` (only that
/// selection's instances), `RepairTempParam.N` (checked as SubmitOperationTask checks them), and
/// `FailureThreshold`, `MaxConcurrency`, `CanaryCount` for each submission it makes.
pub fn create_auto_remediation(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let check_id = p.required_int("CheckId")?;
    let check = known_check(ctx, check_id)?;
    if check.repair.is_none() {
        return Err(ApiError::repair_not_supported(check_id));
    }
    let relation_key = p.str("RelationKey").map(String::from);
    if let Some(key) = &relation_key {
        ctx.store
            .selection_by_business_type(ctx.account_id, key)
            .map_err(db)?
            .ok_or_else(|| ApiError::relation_key_not_found(key))?;
    }
    let params = repair_params(&*account_view(ctx, check)?, p)?;
    let limits: RootLimits = root_limits(p)?;
    let rule = AutoRule {
        id: String::new(),
        check_id,
        relation_key,
        params,
        limits,
        created_by: ctx.key_id.to_string(),
        created_ms: 0,
    };
    let rule = ctx.store.create_auto_rule(ctx.account_id, &rule).map_err(db)?;
    Ok(json!({"RuleId": rule.id, "Rule": rule_json(&rule)}))
}

fn rule_json(r: &AutoRule) -> Value {
    let params: Vec<Value> = r.params.iter().map(|(n, v)| json!({"Name": n, "Value": v})).collect();
    json!({
        "RuleId": r.id, "CheckId": r.check_id, "RelationKey": r.relation_key, "RepairParams": params,
        "FailureThreshold": r.limits.failure_threshold.map(|f| f.as_string()),
        "MaxConcurrency": r.limits.max_concurrency, "CanaryCount": r.limits.canary_count,
        "CreatedBy": r.created_by, "CreateTime": r.created_ms, "Type": TaskType::Repair.as_str(),
    })
}

/// ListAutoRemediations: the account's rules, oldest first.
pub fn list_auto_remediations(ctx: &Ctx, _p: &Params) -> Result<Value, ApiError> {
    let rules: Vec<Value> = ctx.store.auto_rules(ctx.account_id).map_err(db)?.iter().map(rule_json).collect();
    Ok(json!({"Rules": rules}))
}

/// DeleteAutoRemediation: `RuleId`; repairs it already submitted go on.
pub fn delete_auto_remediation(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let id = p.required("RuleId")?;
    if !ctx.store.delete_auto_rule(ctx.account_id, id).map_err(db)? {
        return Err(ApiError::auto_rule_not_found(id));
    }
    Ok(json!({"RuleId": id, "Deleted": true}))
}
