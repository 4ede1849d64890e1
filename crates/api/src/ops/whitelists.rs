//! Whitelists (accepted risks): AddCheckResultWhiteList, RemoveCheckResultWhiteList,
//! AddCheckInstanceResultWhiteList, RemoveCheckInstanceResultWhiteList. A whitelisted result
//! reads `WHITELIST` everywhere, is skipped by CHECK_ID and RelationKey repairs, and an explicit
//! repair of it is refused (`InstanceWhitelisted`).

use model::ApiError;
use serde_json::{json, Value};
use store::NewWhitelist;

use super::{db, instances_by_ids, known_check, Ctx};
use crate::params::Params;

const MAX_REMARK: usize = 65_535;

/// The fields every rule shares: `Remark`, and posture's `Reason` and `ExpireTime` (ms).
fn rule_template(p: &Params) -> Result<NewWhitelist, ApiError> {
    if p.str("RuleType").is_some_and(|t| t != "WHITE") {
        return Err(ApiError::invalid_parameter("RuleType"));
    }
    let remark = p.str("Remark").unwrap_or("").to_string();
    if remark.len() > MAX_REMARK {
        return Err(ApiError::invalid_parameter("Remark"));
    }
    let reason = p.str("Reason").unwrap_or("").to_string();
    if reason.len() > MAX_REMARK {
        return Err(ApiError::invalid_parameter("Reason"));
    }
    let expires_ms = p.int("ExpireTime")?;
    if expires_ms.is_some_and(|t| t <= store::now_ms()) {
        return Err(ApiError::invalid_parameter("ExpireTime"));
    }
    Ok(NewWhitelist { remark, reason, expires_ms, ..Default::default() })
}

/// AddCheckResultWhiteList: one rule per check item, for the given instances or all of them.
pub fn add_check_result_white_list(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let checks = p.int_list("CheckIds")?;
    if checks.is_empty() {
        return Err(ApiError::missing_parameter("CheckIds"));
    }
    for c in &checks {
        known_check(ctx, *c)?;
    }
    let pks: Vec<i64> = instances_by_ids(ctx, &p.list("InstanceIds")?)?.iter().map(|i| i.pk).collect();
    let template = rule_template(p)?;
    if p.bool("DryRun")? == Some(true) {
        return Ok(json!({"RuleIds": []}));
    }
    let rules: Vec<NewWhitelist> =
        checks.iter().map(|c| NewWhitelist { check_id: *c, instance_pks: pks.clone(), ..template.clone() }).collect();
    let ids = ctx.store.add_whitelists(ctx.account_id, &rules).map_err(db)?;
    Ok(json!({"RuleIds": ids}))
}

/// RemoveCheckResultWhiteList: by `RuleId`, or by `CheckIds` (optionally only `InstanceIds`).
pub fn remove_check_result_white_list(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    if let Some(rule) = p.int("RuleId")? {
        if !ctx.store.remove_whitelist_rule(ctx.account_id, rule).map_err(db)? {
            return Err(ApiError::rule_not_found(rule));
        }
    } else {
        let checks = p.int_list("CheckIds")?;
        if checks.is_empty() {
            return Err(ApiError::missing_parameter("RuleId"));
        }
        let pks: Vec<i64> = instances_by_ids(ctx, &p.list("InstanceIds")?)?.iter().map(|i| i.pk).collect();
        ctx.store.remove_whitelists(ctx.account_id, &checks, &pks).map_err(db)?;
    }
    Ok(json!({"Message": "success", "Success": true}))
}

/// AddCheckInstanceResultWhiteList: one rule for a check item on the given instances.
pub fn add_check_instance_result_white_list(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let check = p.required_int("CheckId")?;
    known_check(ctx, check)?;
    let mut pks = Vec::new();
    for i in instances_by_ids(ctx, &p.list("InstanceIds")?)? {
        pks.push(i.pk);
    }
    for (n, o) in p.objects("InstanceList")?.iter().enumerate() {
        let id = o.get("InstanceId").map(|s| s.trim()).filter(|s| !s.is_empty());
        let id = id.ok_or_else(|| ApiError::missing_parameter(&format!("InstanceList.{}.InstanceId", n + 1)))?;
        let region = o.get("RegionId").map(|s| s.trim()).filter(|s| !s.is_empty());
        pks.push(super::resolve_instance(ctx, id, region, None)?.pk);
    }
    if pks.is_empty() {
        return Err(ApiError::missing_parameter("InstanceIds"));
    }
    let template = rule_template(p)?;
    if p.bool("DryRun")? == Some(true) {
        return Ok(json!({"RuleId": ""}));
    }
    let ids = ctx
        .store
        .add_whitelists(ctx.account_id, &[NewWhitelist { check_id: check, instance_pks: pks, ..template }])
        .map_err(db)?;
    Ok(json!({"RuleId": ids[0].to_string()}))
}

/// RemoveCheckInstanceResultWhiteList: the given instances are no longer exempted from the item.
pub fn remove_check_instance_result_white_list(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let check = p.required_int("CheckId")?;
    known_check(ctx, check)?;
    let ids = p.list("InstanceIds")?;
    if ids.is_empty() {
        return Err(ApiError::missing_parameter("InstanceIds"));
    }
    let pks: Vec<i64> = instances_by_ids(ctx, &ids)?.iter().map(|i| i.pk).collect();
    ctx.store.remove_whitelists(ctx.account_id, &[check], &pks).map_err(db)?;
    Ok(json!({}))
}

/// ListCheckWhiteList (a posture action): the rules of a check item in force now, with why the
/// risk is accepted and until when.
pub fn list_check_white_list(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let check = p.required_int("CheckId")?;
    known_check(ctx, check)?;
    let rules = ctx.store.whitelist_rules(ctx.account_id, check, store::now_ms()).map_err(db)?;
    let rules: Vec<Value> = rules
        .iter()
        .map(|r| {
            json!({
                "RuleId": r.id,
                "InstanceIds": r.instance_ids,
                "InstanceCount": r.instance_count,
                "Remark": r.remark,
                "Reason": r.reason,
                "ExpireTime": r.expires_ms,
                "CreateTime": r.created_ms,
            })
        })
        .collect();
    Ok(json!({"Rules": rules}))
}
