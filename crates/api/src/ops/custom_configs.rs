//! ChangeCheckCustomConfig and ListCheckItem: an account's thresholds of an item (its
//! `CustomConfigs`), judged by every later check and verification of the account's instances
//! and used as the default of the repair parameter named like them. All or nothing: one bad
//! entry changes nothing.

use model::ApiError;
use serde_json::{json, Value};

use super::check_results::{aggregates, custom_configs};
use super::{db, known_check, object, page_info, Ctx};
use crate::params::Params;

/// ListCheckItem: the items with their `CustomConfigs` (the account's values), in id order.
/// `EstimatedCount` and `InstanceEstimatedCount` are the instances the item has a result on
/// (posture counts no licences); `Vendor` is the vendor code of the resources an item judges
/// (`7` for AWS items), empty for host items (servers of any vendor).
pub fn list_check_item(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let lang = p.lang();
    let (page, size, offset) = p.page(20, 100)?;
    p.list("TaskSources")?;
    let values = ctx.store.custom_values(ctx.account_id).map_err(db)?;
    let counts = aggregates(ctx, &[], &[], &[])?;
    let all: Vec<&catalog::CheckDef> = ctx.catalog().all().collect();
    let items: Vec<Value> = all
        .iter()
        .skip(offset as usize)
        .take(size as usize)
        .map(|c| {
            let instances: i64 = counts.get(&c.id).map_or(0, |a| a.counts.values().sum());
            json!({
                "CheckId": c.id,
                "CheckShowName": c.name.get(lang),
                "CheckType": "SYSTEM",
                "RiskLevel": c.risk.upper(),
                "InstanceType": c.instance_type,
                "InstanceSubType": c.instance_sub_type,
                "Vendor": c.vendor().map_or(String::new(), |v| v.code().to_string()),
                "EstimatedCount": instances,
                "InstanceEstimatedCount": instances,
                "SectionIds": [c.policy.section_id],
                "Description": {"Type": "text", "Value": c.description.get(lang)},
                "CustomConfigs": custom_configs(c, values.get(&c.id), lang),
            })
        })
        .collect();
    Ok(object([
        ("PageInfo", page_info(items.len(), page, size, all.len() as i64)),
        ("CheckItems", Value::Array(items)),
    ]))
}

/// The `TaskSource` of the check a change starts.
pub const RECHECK_SOURCE: &str = "CUSTOM_CONFIG";

/// ChangeCheckCustomConfig: `CustomConfigs.N` (`Name`, `Value`, `Operation` `DELETE` to go back
/// to the default) of `CheckId`. An unknown name, a value its type refuses or another
/// operation is `IllegalCustomConfig` naming them, and nothing changes. `RepairConfigs` are
/// refused the same way: a repair parameter's default follows the custom config of its name.
/// A change starts a check of the item, so its results follow the new thresholds at once.
pub fn change_check_custom_config(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let check = known_check(ctx, p.required_int("CheckId")?)?;
    let mut illegal = Vec::new();
    let (mut set, mut delete) = (Vec::new(), Vec::new());
    for (i, o) in p.objects("CustomConfigs")?.iter().enumerate() {
        let name = o.get("Name").cloned().unwrap_or_default();
        let Some(spec) = check.custom.iter().find(|c| c.name == name) else {
            illegal.push(if name.is_empty() { format!("CustomConfigs.{}.Name", i + 1) } else { name });
            continue;
        };
        match (o.get("Operation").map(String::as_str), o.get("Value")) {
            (Some("DELETE"), _) => delete.push(name),
            (None | Some(""), Some(v)) => match spec.kind.check(v.trim()) {
                Some(canonical) => set.push((name, canonical)),
                None => illegal.push(name),
            },
            _ => illegal.push(name),
        }
    }
    for o in p.objects("RepairConfigs")? {
        illegal.push(o.get("Name").cloned().unwrap_or_else(|| "RepairConfigs".into()));
    }
    if !illegal.is_empty() {
        return Err(ApiError::illegal_custom_config(&illegal));
    }
    if set.is_empty() && delete.is_empty() {
        return Err(ApiError::missing_parameter("CustomConfigs"));
    }
    ctx.store.change_custom_values(ctx.account_id, check.id, &set, &delete).map_err(db)?;
    match ctx.store.create_run(ctx.account_id, "CHECK_POLICY", RECHECK_SOURCE, &[check.id], &[]) {
        Ok(_) => ctx.engine.wake(),
        Err(e) => tracing::warn!(error = %e, "the check after a threshold change could not be started"),
    }
    Ok(json!({"IllegalCustomConfigs": [], "IllegalRepairConfigs": []}))
}
