//! The repair authorization: CheckTrialFixCount and DescribeFixUsedCount. posture has one
//! authorization per account, the number of repairs it may run (set with
//! `posture accounts set-quota`); the reference's vulnerability-fix quota operations report it.

use model::ApiError;
use serde_json::{json, Value};

use super::{db, Ctx};
use crate::params::Params;

/// CheckTrialFixCount: whether `ExpendCount` more repairs fit in the authorization.
pub fn check_trial_fix_count(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    if !matches!(p.required("Type")?, "cve" | "sys" | "cms") {
        return Err(ApiError::invalid_parameter("Type"));
    }
    // How many fixes are asked for: the entries of Info, or VulNames × Uuids.
    let expend = match p.str("Info") {
        Some(info) => {
            let v: Value = serde_json::from_str(info).map_err(|_| ApiError::invalid_parameter("Info"))?;
            v.as_array().ok_or_else(|| ApiError::invalid_parameter("Info"))?.len() as i64
        }
        None => (p.list("VulNames")?.len() * p.list("Uuids")?.len().max(1)) as i64,
    };
    let account = ctx.store.get_account(ctx.account_id).map_err(db)?.ok_or_else(ApiError::server_error)?;
    let (used, _, _) = ctx.store.repair_usage(ctx.account_id).map_err(db)?;
    let (can_fix, remain) = match account.repair_quota {
        // Unlimited: nothing is ever left short (RemainCount -1 means "no limit").
        None => (!account.trial, -1),
        Some(q) => (!account.trial && used + expend <= q, (q - used - expend).max(0)),
    };
    Ok(
        json!({"CanFix": can_fix, "ExpendCount": expend, "RemainCount": remain, "RepairedCount": used, "isTrial": account.trial}),
    )
}

/// DescribeFixUsedCount: repairs run so far, in Chinese-mainland regions (`cn-*`) and elsewhere.
pub fn describe_fix_used_count(ctx: &Ctx, _p: &Params) -> Result<Value, ApiError> {
    let (all, cn, other) = ctx.store.repair_usage(ctx.account_id).map_err(db)?;
    Ok(json!({"UsedCount": all, "UsedCountCn": cn, "UsedCountSg": other}))
}
