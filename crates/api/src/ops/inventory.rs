//! What an account has, for the console's assets page (posture actions, not in the Sas SDK):
//! ListInstances (its servers and cloud resources) and DescribeAccessKeys (the account and its
//! keys, for administrators only; `auth::policy_allows`).

use model::ApiError;
use serde_json::{json, Value};

use super::{db, Ctx};
use crate::params::Params;

/// ListInstances: one page of the account's instances (released ones left out), in the order
/// they were added; `InstanceIdKey` keeps those whose id or name contains it (case-blind).
pub fn list_instances(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let (page, size, offset) = p.page(20, 100)?;
    let key = p.str("InstanceIdKey").filter(|k| !k.is_empty());
    let (instances, total) = ctx.store.instances_page(ctx.account_id, key, offset, size).map_err(db)?;
    let rows: Vec<Value> = instances
        .iter()
        .map(|i| {
            json!({
                "InstanceId": i.instance_id,
                "InstanceName": i.instance_name,
                "RegionId": i.region_id,
                "Vendor": i.vendor.name(),
                "Connector": i.connector,
                "ThroughAgent": i.via_agent(),
                "Live": i.live.is_some(),
            })
        })
        .collect();
    Ok(json!({
        "Instances": rows,
        "PageInfo": {"Count": rows.len(), "CurrentPage": page, "PageSize": size, "TotalCount": total},
    }))
}

/// DescribeAccessKeys: the caller's account (repair quota, limits) and its AccessKeys, without
/// their secrets.
pub fn describe_access_keys(ctx: &Ctx, _p: &Params) -> Result<Value, ApiError> {
    let account = ctx.store.get_account(ctx.account_id).map_err(db)?.ok_or_else(ApiError::server_error)?;
    let keys = ctx.store.list_keys(Some(ctx.account_id)).map_err(db)?;
    Ok(json!({
        "Account": {
            "AccountId": account.id,
            "Name": account.name,
            "RepairQuota": account.repair_quota,
            "Trial": account.trial,
            "MaxSubmissionInstances": account.max_submission_instances,
        },
        "AccessKeys": keys.iter().map(|k| json!({
            "AccessKeyId": k.id,
            "Policy": k.policy,
            "Enabled": k.enabled,
            "CreateTime": k.created_ms,
        })).collect::<Vec<_>>(),
    }))
}
