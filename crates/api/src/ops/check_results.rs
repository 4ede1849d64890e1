//! ListCheckResult, ListCheckInstanceResult, GetCheckDetail.

use std::collections::BTreeMap;

use catalog::CheckDef;
use model::{ApiError, CheckStatus, Lang, Vendor};
use serde_json::{json, Value};
use store::{ResultAggregate, ResultFilter};

use super::{db, known_check, object, page_info, Ctx};
use crate::params::Params;

/// The aggregate status of a check item over its instances: the worst one wins.
pub(super) fn aggregate_status(agg: Option<&ResultAggregate>) -> CheckStatus {
    let count = |s: CheckStatus| agg.and_then(|a| a.counts.get(s.as_str())).copied().unwrap_or(0);
    [CheckStatus::NotPass, CheckStatus::Failed, CheckStatus::Checking, CheckStatus::Pass, CheckStatus::Whitelist]
        .into_iter()
        .find(|s| count(*s) > 0)
        .unwrap_or(CheckStatus::NotCheck)
}

fn status_rank(s: CheckStatus) -> u8 {
    match s {
        CheckStatus::NotPass => 0,
        CheckStatus::Failed => 1,
        CheckStatus::Checking => 2,
        CheckStatus::NotCheck => 3,
        CheckStatus::Whitelist => 4,
        CheckStatus::Pass => 5,
    }
}

/// The vendor fields of a check item's row: the instances' vendor when they share one; see
/// docs/api.md for the mixed case.
fn vendor_fields(agg: Option<&ResultAggregate>) -> (i64, &'static str, &'static str) {
    match agg.map(|a| a.vendors.as_slice()) {
        Some([one]) => Vendor::from_code(*one).map_or((-1, "", ""), |v| (v.code(), v.name(), v.show_name())),
        Some(v) if v.len() > 1 => (-1, "MULTIPLE", "Multiple vendors"),
        _ => (-1, "", ""),
    }
}

/// `CheckPolicies`: where the item sits in its standard.
pub(super) fn policies(c: &CheckDef, lang: Lang) -> Value {
    let p = &c.policy;
    Value::Array(vec![object([
        ("RequirementId", json!(p.requirement_id)),
        ("RequirementShowName", json!(p.requirement.get(lang))),
        ("SectionId", json!(p.section_id)),
        ("SectionShowName", json!(p.section.get(lang))),
        ("StandardId", json!(p.standard_id)),
        ("StandardShowName", json!(p.standard.get(lang))),
        ("Type", json!(p.standard_type)),
    ])])
}

fn operation_type(c: &CheckDef) -> &'static str {
    if c.repair.is_some() {
        "SUPPORT_REPAIR"
    } else {
        "NOT_SUPPORT_REPAIR"
    }
}

pub(super) fn one_of<'a>(allowed: &'a [&str]) -> impl Fn(&str) -> bool + 'a {
    move |v| allowed.contains(&v)
}

/// The vendor codes `Vendors` names (each in any of its spellings).
pub(super) fn vendor_codes(p: &Params) -> Result<Vec<i64>, ApiError> {
    let mut codes = Vec::new();
    for name in &p.list("Vendors")? {
        let matched: Vec<i64> = Vendor::ALL.iter().filter(|v| v.matches_name(name)).map(|v| v.code()).collect();
        if matched.is_empty() {
            return Err(ApiError::invalid_parameter("Vendors"));
        }
        codes.extend(matched);
    }
    Ok(codes)
}

/// Each item's results counted by status, over the instances given (all when none) of the
/// vendors given (all when none), for the items given (all when none).
pub(super) fn aggregates(
    ctx: &Ctx,
    instance_ids: &[String],
    vendor_codes: &[i64],
    check_ids: &[i64],
) -> Result<BTreeMap<i64, ResultAggregate>, ApiError> {
    ctx.store.aggregate_results(ctx.account_id, instance_ids, vendor_codes, check_ids).map_err(db)
}

/// ListCheckResult: check items with their aggregate result.
pub fn list_check_result(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let lang = p.lang();
    let (page, size, offset) = p.page(20, 100)?;
    let check_ids = p.int_list("CheckIds")?;
    let key = p.str("CheckKey").map(str::to_lowercase);
    let instance_ids = p.list("InstanceIds")?;
    let instance_types = p.list("InstanceTypes")?;
    let operation_types = p.enum_list("OperationTypes", one_of(&["SUPPORT_REPAIR", "NOT_SUPPORT_REPAIR"]))?;
    let risk_levels = p.enum_list("RiskLevels", one_of(&["HIGH", "MEDIUM", "LOW"]))?;
    let statuses = p.parsed_list("Statuses", CheckStatus::parse)?;
    let sort_types = p.enum_list("SortTypes", one_of(&["RISK_LEVEL", "STATUS"]))?;
    let check_types = p.enum_list("CheckTypes", one_of(&["CUSTOM", "SYSTEM"]))?;
    let standard_ids = p.int_list("StandardIds")?;
    let requirement_ids = p.int_list("RequirementIds")?;
    let types = p.list("Types")?;
    let custom_param = p.bool("CustomParam")?;
    let vendor_codes = vendor_codes(p)?;
    let scoped = !instance_ids.is_empty() || !vendor_codes.is_empty();
    // Every item's results are read only when they choose or order the items; otherwise only
    // the page's are (a page of 20 of a catalog of hundreds).
    let by_results = scoped || !statuses.is_empty() || sort_types.iter().any(|s| s == "STATUS");
    let everything = if by_results { aggregates(ctx, &instance_ids, &vendor_codes, &[])? } else { BTreeMap::new() };

    let mut rows: Vec<(&CheckDef, CheckStatus)> = ctx
        .catalog()
        .all()
        .filter(|c| check_ids.is_empty() || check_ids.contains(&c.id))
        .filter(|c| {
            key.as_ref().is_none_or(|k| {
                c.name.zh.to_lowercase().contains(k)
                    || c.name.en.to_lowercase().contains(k)
                    || c.key.contains(k.as_str())
            })
        })
        .filter(|c| instance_types.is_empty() || instance_types.contains(&c.instance_type))
        .filter(|c| operation_types.is_empty() || operation_types.iter().any(|o| o == operation_type(c)))
        .filter(|c| risk_levels.is_empty() || risk_levels.iter().any(|r| r == c.risk.upper()))
        .filter(|_| check_types.is_empty() || check_types.iter().any(|t| t == "SYSTEM"))
        .filter(|c| standard_ids.is_empty() || standard_ids.contains(&c.policy.standard_id))
        .filter(|c| requirement_ids.is_empty() || requirement_ids.contains(&c.policy.requirement_id))
        .filter(|c| types.is_empty() || types.contains(&c.policy.standard_type))
        .filter(|c| custom_param.is_none_or(|wanted| wanted != c.custom.is_empty()))
        .filter(|c| !scoped || everything.contains_key(&c.id))
        .map(|c| (c, aggregate_status(everything.get(&c.id))))
        .filter(|(_, s)| statuses.is_empty() || statuses.contains(s))
        .collect();
    for sort in sort_types.iter().rev() {
        match sort.as_str() {
            "RISK_LEVEL" => rows.sort_by_key(|(c, _)| c.risk),
            _ => rows.sort_by_key(|(_, s)| status_rank(*s)),
        }
    }
    let total = rows.len() as i64;
    let mut rows: Vec<_> = rows.into_iter().skip(offset as usize).take(size as usize).collect();
    let aggregates = if by_results {
        everything
    } else {
        let ids: Vec<i64> = rows.iter().map(|(c, _)| c.id).collect();
        let page = if ids.is_empty() { BTreeMap::new() } else { aggregates(ctx, &[], &[], &ids)? };
        for (c, status) in rows.iter_mut() {
            *status = aggregate_status(page.get(&c.id));
        }
        page
    };
    let checks: Vec<Value> = rows
        .into_iter()
        .map(|(c, status)| {
            let agg = aggregates.get(&c.id);
            let (asset_vendor, vendor, vendor_show) = vendor_fields(agg);
            // Built from its fields in key order (`object`), not inserted one by one: a page's
            // rows were a quarter of this action's CPU.
            object([
                ("AssetSubType", json!(0)),
                ("AssetType", json!(0)),
                ("AssetVendor", json!(asset_vendor)),
                ("CheckId", json!(c.id)),
                ("CheckPolicies", policies(c, lang)),
                ("CheckSaleType", json!(1)),
                ("CheckShowName", json!(c.name.get(lang))),
                ("CheckType", json!("SYSTEM")),
                ("InstanceSubType", json!(c.instance_sub_type)),
                ("InstanceType", json!(c.instance_type)),
                ("LastCheckTime", json!(agg.map_or(0, |a| a.last_ms))),
                ("OperationType", json!(operation_type(c))),
                ("RiskLevel", json!(c.risk.upper())),
                ("Status", json!(status.as_str())),
                // posture's extension: how many instances have each status.
                ("StatusCounts", agg.map_or(json!({}), |a| json!(a.counts))),
                ("StatusMessage", json!("")),
                ("TaskId", json!(agg.map_or("", |a| a.run_id.as_str()))),
                ("TrialPermission", json!(false)),
                ("TrialPermissionType", json!(1)),
                ("Vendor", json!(vendor)),
                ("VendorShowName", json!(vendor_show)),
            ])
        })
        .collect();
    Ok(object([("PageInfo", page_info(checks.len(), page, size, total)), ("Checks", Value::Array(checks))]))
}

fn check_of<'a>(ctx: &'a Ctx, p: &Params) -> Result<&'a CheckDef, ApiError> {
    known_check(ctx, p.required_int("CheckId")?)
}

/// `InstanceInfo.Config`: the current values of the settings the item shows.
/// The item's shown settings of one result, each followed by where it came from (`Name
/// (source)`: a file and line, or the default) and on a live system by its value in effect
/// (`Name (live)`), so a file and a service that disagree show both.
fn config_values(c: &CheckDef, stored: &str, lang: Lang) -> Vec<Value> {
    let values: BTreeMap<String, String> = serde_json::from_str(stored).unwrap_or_default();
    let mut out = Vec::new();
    for f in &c.config {
        let show = f.show_name.get(lang);
        out.push(json!({"Name": f.name, "ShowName": show, "Value": values.get(&f.name).cloned().unwrap_or_default()}));
        for (suffix, zh, en) in [("source", "来源", "source"), ("live", "生效值", "in effect")] {
            let name = format!("{} ({suffix})", f.name);
            if let Some(v) = values.get(&name) {
                let shown = if lang == Lang::Zh { zh } else { en };
                out.push(json!({"Name": name, "ShowName": format!("{show} ({shown})"), "Value": v}));
            }
        }
    }
    out
}

/// ListCheckInstanceResult: the instances of one check item.
pub fn list_check_instance_result(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let lang = p.lang();
    let check = check_of(ctx, p)?;
    let (page, size, offset) = p.page(20, 100)?;
    let statuses = p.parsed_list("Statuses", CheckStatus::parse)?;
    let sort = p.enum_list("SortTypes", one_of(&["STATUS"]))?;
    let filter = ResultFilter {
        instance_id_key: p.str("InstanceIdKey").map(String::from),
        instance_name_key: p.str("InstanceNameKey").map(String::from),
        region_id_key: p.str("RegionIdKey").map(String::from),
        instance_ids: p.list("InstanceIds")?,
        statuses,
        sort_by_status: !sort.is_empty(),
        offset,
        limit: size,
    };
    let (rows, total) = ctx.store.list_results(ctx.account_id, check.id, &filter).map_err(db)?;
    let zh_en = |zh: &'static str, en: &'static str| lang.pick(zh, en);
    let mut columns = vec![
        json!({"Key": "InstanceIdShow", "ShowName": zh_en("实例ID", "Instance ID"), "Type": "text", "Search": true, "SearchKey": "InstanceIdKey", "Grids": []}),
        json!({"Key": "InstanceNameShow", "ShowName": zh_en("实例名称", "Instance name"), "Type": "text", "Search": true, "SearchKey": "InstanceNameKey", "Grids": []}),
        json!({"Key": "RegionIdShow", "ShowName": zh_en("地域", "Region"), "Type": "text", "Search": true, "SearchKey": "RegionIdKey", "Grids": []}),
        json!({"Key": "StatusShow", "ShowName": zh_en("检查结果", "Result"), "Type": "text", "Search": false, "SearchKey": "", "Grids": []}),
    ];
    for f in &check.config {
        columns.push(json!({"Key": f.name, "ShowName": f.show_name.get(lang), "Type": "text", "Search": false, "SearchKey": "", "Grids": []}));
    }
    let mut basic = Vec::new();
    let mut table = Vec::new();
    for r in &rows {
        let config = config_values(check, &r.config, lang);
        let mut row = serde_json::Map::new();
        row.insert("InstanceIdShow".into(), json!({"value": r.instance.instance_id}));
        row.insert("InstanceNameShow".into(), json!({"value": r.instance.instance_name}));
        row.insert("RegionIdShow".into(), json!({"value": r.instance.region_id}));
        row.insert("StatusShow".into(), json!({"value": r.status.as_str()}));
        for c in &config {
            row.insert(c["Name"].as_str().unwrap_or_default().to_string(), json!({"value": c["Value"]}));
        }
        table.push(Value::Object(row));
        basic.push(json!({
            "Id": r.id,
            "InstanceId": r.instance.instance_id,
            "InstanceName": r.instance.instance_name,
            "RegionId": r.instance.region_id,
            "Status": r.status.as_str(),
            "StatusMessage": r.status_message,
            "VendorUserName": "",
            "InstanceInfo": {"FirstUpdateTime": r.first_ms, "LastUpdateTime": r.last_ms, "Config": config},
        }));
    }
    let mut info = page_info(rows.len(), page, size, total);
    info["Count"] = json!(rows.len().to_string());
    Ok(object([
        ("PageInfo", info),
        ("BasicData", Value::Array(basic)),
        ("Columns", Value::Array(columns)),
        ("Checks", Value::Array(table)),
    ]))
}

/// `CustomConfigs`: the item's thresholds with the account's values (`mine`; the default
/// where it set none).
pub(super) fn custom_configs(c: &CheckDef, mine: Option<&catalog::CustomValues>, lang: Lang) -> Vec<Value> {
    c.custom
        .iter()
        .map(|f| {
            json!({
                "Name": f.name,
                "ShowName": f.show_name.get(lang),
                "TypeDefine": f.kind.type_define(),
                "DefaultValue": f.default,
                "Value": mine.and_then(|m| m.get(&f.name)).unwrap_or(&f.default),
            })
        })
        .collect()
}

/// GetCheckDetail: description, solution and repair metadata of a check item, with the
/// caller's account's thresholds.
pub fn get_check_detail(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let lang = p.lang();
    let c = check_of(ctx, p)?;
    // The account's thresholds: the repair values they set, and the CustomConfigs below.
    let values = ctx.store.custom_values(ctx.account_id).map_err(db)?;
    let mine = c.customised(values.get(&c.id));
    let text = |t: &model::Text| json!({"Type": "text", "Value": t.get(lang), "Link": ""});
    let repair = c.repair.as_ref();
    let flow: Vec<Value> = repair
        .map(|r| {
            r.flow
                .iter()
                .enumerate()
                .map(|(i, s)| json!({"Step": (i + 1).to_string(), "ShowText": s.get(lang)}))
                .collect()
        })
        .unwrap_or_default();
    let flow_id = format!("posture-{}", c.key);
    let configs: Vec<Value> = repair
        .map(|r| {
            r.params
                .iter()
                .map(|s| {
                    // The account's threshold, where one names this parameter.
                    let value = mine
                        .repair
                        .as_ref()
                        .and_then(|m| m.params.iter().find(|m| m.name == s.name))
                        .and_then(|m| m.default.clone());
                    json!({
                        "Name": s.name,
                        "ShowName": s.show_name.get(lang),
                        "UsageType": (s.usage as u8).to_string(),
                        "Value": value.unwrap_or_default(),
                        "DefaultValue": s.default.clone().unwrap_or_default(),
                        "TypeDefine": s.kind.type_define(),
                        "CustomFlag": s.caller_may_set(),
                        "EmptyParamSwitch": s.empty_param_switch(),
                        "ConsoleParamType": "1",
                        "DataTransformType": "0",
                        "ExclusiveName": [],
                        "FlowId": flow_id,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let support_type = c.repair_support_type();
    let reset = repair.is_some_and(|r| r.reset);
    Ok(json!({
        "Description": text(&c.description),
        "Solution": text(&c.solution),
        "AssistInfo": text(&c.assist),
        "Cis": c.cis,
        "Benchmark": c.benchmark,
        // How it is judged: every condition must hold, with the account's thresholds.
        "Rule": mine.rule.iter().map(|r| json!({
            "Key": r.key,
            "Operator": r.op.name(),
            "Value": r.value,
            "Values": r.values,
            "Default": r.default,
        })).collect::<Vec<_>>(),
        "CustomConfigs": custom_configs(c, values.get(&c.id), lang),
        "RepairSetting": {
            "RepairSupport": repair.is_some(),
            "RepairSupportType": support_type,
            "RepairReset": reset,
            "FlowStep": flow,
            "RepairConfigs": configs,
        },
        "RepairSupportType": support_type,
        "RepairReset": reset.to_string(),
    }))
}
