//! Asset selections: CreateAssetSelectionConfig, AddAssetSelectionCriteria,
//! GetAssetSelectionConfig, ListAssetSelectionTarget, ListAssetSelectionSelectedTarget.
//! A selection bound to a BusinessType is what SubmitOperationTask's `RelationKey` names.

use model::{ApiError, Vendor};
use serde_json::{json, Value};
use store::{Criterion, Selection, StoreError};

use super::{db, instances_by_ids, object, Ctx};
use crate::params::Params;

/// Most targets one AddAssetSelectionCriteria may name (larger sets: several calls, or Criteria).
pub const MAX_TARGETS_PER_CALL: usize = 10_000;

fn selection_data(s: &Selection) -> Value {
    json!({"BusinessType": s.business_type, "Platform": s.platform, "SelectionKey": s.key, "TargetType": s.target_type})
}

fn selection_of(ctx: &Ctx, p: &Params) -> Result<Selection, ApiError> {
    let key = p.required("SelectionKey")?;
    ctx.store.selection(ctx.account_id, key).map_err(db)?.ok_or_else(|| ApiError::selection_not_found(key))
}

/// CreateAssetSelectionConfig: binds a new selection to a BusinessType, or answers the one
/// already bound to it.
pub fn create_asset_selection_config(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let business_type = p.required("BusinessType")?;
    if business_type.len() > 128 || business_type.chars().any(char::is_control) {
        return Err(ApiError::invalid_parameter("BusinessType"));
    }
    // posture has no server groups or VPCs: a selection holds instances, or all of them.
    let target_type = p.required("TargetType")?;
    if !matches!(target_type, "instance" | "all_instance") {
        return Err(ApiError::invalid_parameter("TargetType"));
    }
    let default_platform = if business_type.starts_with("FILE_PROTECT_RULE_SWITCH_TYPE_") { "linux" } else { "all" };
    let platform = p.str("Platform").unwrap_or(default_platform);
    if !matches!(platform, "all" | "linux" | "windows") {
        return Err(ApiError::invalid_parameter("Platform"));
    }
    if p.bool("DryRun")? == Some(true) {
        return Ok(
            json!({"Data": {"BusinessType": business_type, "Platform": platform, "SelectionKey": "", "TargetType": target_type}}),
        );
    }
    let (selection, _) =
        ctx.store.create_selection(ctx.account_id, business_type, target_type, platform).map_err(db)?;
    Ok(json!({"Data": selection_data(&selection)}))
}

/// Parses `Criteria`: `{"LogicalExp": "AND"|"OR", "Criteria": <array, or a string holding one>}`
/// (or a bare array, AND), each condition `{"name", "value"}`. Returns the conditions and
/// whether any one suffices.
fn parse_criteria(text: &str) -> Result<(Vec<Criterion>, bool), ApiError> {
    let bad = || ApiError::invalid_parameter("Criteria");
    let v: Value = serde_json::from_str(text).map_err(|_| bad())?;
    let (list, any) = match &v {
        Value::Array(_) => (v.clone(), false),
        Value::Object(o) => {
            let any = match o.get("LogicalExp").and_then(Value::as_str).unwrap_or("AND").to_ascii_uppercase().as_str() {
                "AND" => false,
                "OR" => true,
                _ => return Err(bad()),
            };
            let inner = match o.get("Criteria").ok_or_else(bad)? {
                Value::String(s) => serde_json::from_str(s).map_err(|_| bad())?,
                other => other.clone(),
            };
            (inner, any)
        }
        _ => return Err(bad()),
    };
    let items = list.as_array().ok_or_else(bad)?;
    let mut out = Vec::new();
    for c in items {
        let name = c.get("name").and_then(Value::as_str).ok_or_else(bad)?;
        let value = match c.get("value") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(bad()),
        };
        out.push(match name {
            "instanceId" => Criterion::InstanceId(value),
            "instanceName" => Criterion::InstanceName(value),
            "regionId" => Criterion::RegionId(value),
            "vendor" => Criterion::Vendor(Vendor::parse(&value).ok_or_else(bad)?),
            "osType" => Criterion::OsType(value),
            "failedCheckId" => Criterion::FailsCheck(value.trim().parse().map_err(|_| bad())?),
            _ => return Err(bad()),
        });
    }
    Ok((out, any))
}

fn operation(value: Option<&str>, name: &str) -> Result<bool, ApiError> {
    match value.unwrap_or("add") {
        "add" => Ok(true),
        "del" => Ok(false),
        _ => Err(ApiError::invalid_parameter(name)),
    }
}

/// AddAssetSelectionCriteria: adds or removes targets (instance ids) and/or every instance
/// matching `Criteria`.
pub fn add_asset_selection_criteria(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let selection = selection_of(ctx, p)?;
    let mut ops = Vec::new();
    for (n, o) in p.objects("TargetOperationList")?.iter().enumerate() {
        let target = o.get("Target").map(|t| t.trim()).filter(|t| !t.is_empty());
        let target =
            target.ok_or_else(|| ApiError::missing_parameter(&format!("TargetOperationList.{}.Target", n + 1)))?;
        ops.push((
            target.to_string(),
            operation(o.get("Operation").map(String::as_str), &format!("TargetOperationList.{}.Operation", n + 1))?,
        ));
    }
    if ops.len() > MAX_TARGETS_PER_CALL {
        return Err(ApiError::invalid_parameter("TargetOperationList"));
    }
    let criteria = p.str("Criteria").map(parse_criteria).transpose()?;
    let criteria_add = operation(p.str("CriteriaOperation"), "CriteriaOperation")?;
    if selection.target_type == "all_instance" && (!ops.is_empty() || criteria.is_some()) {
        // It holds every instance already.
        return Err(ApiError::invalid_parameter("SelectionKey"));
    }
    if p.bool("DryRun")? == Some(true) {
        let ids: Vec<String> = ops.into_iter().map(|(id, _)| id).collect();
        instances_by_ids(ctx, &ids)?;
        return Ok(json!({}));
    }
    match ctx.store.apply_targets(ctx.account_id, &selection, &ops) {
        Ok(()) => {}
        Err(StoreError::UnknownInstance(id)) => return Err(ApiError::instance_not_found(&id)),
        Err(e) => return Err(db(e)),
    }
    if let Some((conds, any)) = criteria {
        ctx.store.apply_criteria(ctx.account_id, &selection, &conds, any, criteria_add).map_err(db)?;
    }
    Ok(json!({}))
}

/// GetAssetSelectionConfig: the selection bound to a BusinessType.
pub fn get_asset_selection_config(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let bt = p.required("BusinessType")?;
    let s = ctx
        .store
        .selection_by_business_type(ctx.account_id, bt)
        .map_err(db)?
        .ok_or_else(|| ApiError::business_type_not_found(bt))?;
    Ok(json!({"Data": {"SelectionKey": s.key, "TargetType": s.target_type, "Platform": s.platform}}))
}

/// ListAssetSelectionTarget: one page of the selected instances.
pub fn list_asset_selection_target(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let selection = selection_of(ctx, p)?;
    let (page, size, offset) = p.page(20, 100)?;
    let (rows, total) = ctx.store.list_selection_targets(ctx.account_id, &selection, offset, size).map_err(db)?;
    let data: Vec<Value> = rows.into_iter().map(|(id, name)| json!({"TargetId": id, "TargetName": name})).collect();
    Ok(object([
        ("Data", Value::Array(data)),
        ("PageInfo", json!({"CurrentPage": page, "PageSize": size, "TotalCount": total})),
    ]))
}

/// ListAssetSelectionSelectedTarget: which of the given instance ids are selected.
pub fn list_asset_selection_selected_target(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let selection = selection_of(ctx, p)?;
    let ids = p.list("TargetList")?;
    let rows = ctx.store.selected_among(ctx.account_id, &selection, &ids).map_err(db)?;
    let data: Vec<Value> = rows.into_iter().map(|(id, name)| json!({"TargetId": id, "TargetName": name})).collect();
    Ok(object([("Data", Value::Array(data))]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criteria_in_every_accepted_shape() {
        let nested = r#"{"LogicalExp":"OR","Criteria":"[{\"name\":\"osType\",\"value\":\"linux\",\"logicalExp\":\"AND\"},{\"name\":\"failedCheckId\",\"value\":1016}]"}"#;
        assert_eq!(
            parse_criteria(nested).unwrap(),
            (vec![Criterion::OsType("linux".into()), Criterion::FailsCheck(1016)], true)
        );
        let bare = r#"[{"name":"vendor","value":"ALIYUN"},{"name":"regionId","value":"cn-hangzhou"}]"#;
        assert_eq!(
            parse_criteria(bare).unwrap(),
            (vec![Criterion::Vendor(Vendor::Aliyun), Criterion::RegionId("cn-hangzhou".into())], false)
        );
        for bad in [
            "",
            "{",
            "[{\"name\":\"color\",\"value\":\"red\"}]",
            "{\"LogicalExp\":\"XOR\",\"Criteria\":[]}",
            "[{\"name\":\"vendor\",\"value\":\"GCP\"}]",
            "42",
        ] {
            assert_eq!(parse_criteria(bad).unwrap_err().code, "InvalidParameter", "{bad}");
        }
    }
}
