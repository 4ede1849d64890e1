//! The catalog as the console sees it: GetCheckSummary (the overview), ListCheckStandard,
//! GetCheckStructure, ListCheckItems and ListCheckPolicies. All read one tree,
//! [`catalog::Catalog::structure`]; the summary adds each item's aggregate status, computed
//! as ListCheckResult computes it, so the two always agree.

use catalog::{CheckDef, Risk, Standard};
use model::{ApiError, CheckStatus};
use serde_json::{json, Value};

use super::check_results::{aggregate_status, aggregates, one_of, policies, vendor_codes};
use super::{object, page_info, Ctx};
use crate::params::Params;

/// How the overview counts an item, from its aggregate status.
#[derive(Clone, Copy, PartialEq)]
enum Verdict {
    /// PASS, or WHITELIST (every failing instance is exempted by a rule).
    Pass = 0,
    /// NOT_PASS: an instance fails.
    NotPass = 1,
    /// NOT_CHECK, CHECKING, or FAILED (the check could not judge).
    NotCheck = 2,
}

impl Verdict {
    fn of(status: CheckStatus) -> Verdict {
        match status {
            CheckStatus::Pass | CheckStatus::Whitelist => Verdict::Pass,
            CheckStatus::NotPass => Verdict::NotPass,
            CheckStatus::NotCheck | CheckStatus::Checking | CheckStatus::Failed => Verdict::NotCheck,
        }
    }
}

/// High, medium, low: 0, 1, 2.
fn risk_index(risk: Risk) -> usize {
    match risk {
        Risk::High => 0,
        Risk::Medium => 1,
        Risk::Low => 2,
    }
}

/// Items counted by verdict and risk (`OverallStatistic`, `TypeStatistic`, `StandardStatistic`).
#[derive(Default)]
struct Statistic {
    counts: [[i64; 3]; 3],
}

impl Statistic {
    fn add(&mut self, verdict: Verdict, risk: Risk) {
        self.counts[verdict as usize][risk_index(risk)] += 1;
    }

    fn total(&self, verdict: Verdict) -> i64 {
        self.counts[verdict as usize].iter().sum()
    }

    fn to_json(&self) -> Value {
        let mut out = serde_json::Map::new();
        for (verdict, name) in [(Verdict::Pass, "Pass"), (Verdict::NotPass, "NotPass"), (Verdict::NotCheck, "NotCheck")]
        {
            let c = self.counts[verdict as usize];
            out.insert(format!("{name}Count"), json!(self.total(verdict)));
            out.insert(format!("{name}HighCount"), json!(c[0]));
            out.insert(format!("{name}MediumCount"), json!(c[1]));
            out.insert(format!("{name}LowCount"), json!(c[2]));
        }
        Value::Object(out)
    }
}

/// The standard types in the order their first standard appears.
fn types<'a>(tree: &[Standard<'a>]) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for s in tree {
        if !out.contains(&s.standard_type) {
            out.push(s.standard_type);
        }
    }
    out
}

/// GetCheckSummary: the items counted by verdict and risk, overall, per standard type and per
/// standard. `Vendors` narrows the items to those with results on instances of these vendors,
/// as ListCheckResult's does.
pub fn get_check_summary(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let lang = p.lang();
    let with_items = p.bool("IsItemStatistic")?.unwrap_or(false);
    p.list("TaskSources")?;
    let vendors = vendor_codes(p)?;
    let aggregates = aggregates(ctx, &[], &vendors, &[])?;
    let in_scope = |c: &&CheckDef| vendors.is_empty() || aggregates.contains_key(&c.id);
    let verdict = |c: &CheckDef| Verdict::of(aggregate_status(aggregates.get(&c.id)));
    let tree = catalog::structure(ctx.catalog().all().filter(in_scope));

    let mut overall = Statistic::default();
    let mut summaries = Vec::new();
    for kind in types(&tree) {
        let mut of_type = Statistic::default();
        let mut standards = Vec::new();
        for s in tree.iter().filter(|s| s.standard_type == kind) {
            let mut of_standard = Statistic::default();
            let mut failing_by_risk = [0i64; 3];
            for c in s.checks() {
                let v = verdict(c);
                of_standard.add(v, c.risk);
                of_type.add(v, c.risk);
                overall.add(v, c.risk);
                if v == Verdict::NotPass {
                    failing_by_risk[risk_index(c.risk)] += 1;
                }
            }
            standards.push(json!({
                "Id": s.id,
                "ShowName": s.name.get(lang),
                "PassCount": of_standard.total(Verdict::Pass),
                "FailCount": of_standard.total(Verdict::NotPass),
                "RiskLevelHighCount": failing_by_risk[0],
                "RiskLevelMediumCount": failing_by_risk[1],
                "RiskLevelLowCount": failing_by_risk[2],
                "StandardStatistic": of_standard.to_json(),
            }));
        }
        summaries.push(json!({
            "Type": kind,
            "PassCount": of_type.total(Verdict::Pass),
            "FailCount": of_type.total(Verdict::NotPass),
            "TypeStatistic": of_type.to_json(),
            "Standards": standards,
        }));
    }
    let mut answer = json!({"OverallStatistic": overall.to_json(), "Summarys": summaries});
    if with_items {
        let with_results = ctx.catalog().all().filter(|c| aggregates.contains_key(&c.id)).count();
        answer["OverallItemStatistic"] =
            json!({"ReleaseCount": ctx.catalog().all().count(), "ResultCount": with_results});
    }
    Ok(answer)
}

/// `BindVendor`: the vendor code of a standard whose items all judge one vendor's resources,
/// else -1 (host items judge servers on any vendor).
fn bind_vendor(s: &Standard) -> i64 {
    let mut vendors = s.checks().map(CheckDef::vendor);
    match vendors.next() {
        Some(Some(first)) if vendors.all(|v| v == Some(first)) => first.code(),
        _ => -1,
    }
}

/// ListCheckStandard: the standards and their requirements, with how many items each
/// requirement holds, over the items the filters keep.
pub fn list_check_standard(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let lang = p.lang();
    let instance_ids = p.list("InstanceIds")?;
    let instance_types = p.list("InstanceTypes")?;
    let instance_sub_types = p.list("InstanceSubTypes")?;
    p.list("TaskSources")?;
    let vendors = vendor_codes(p)?;
    let with_results = if instance_ids.is_empty() { None } else { Some(aggregates(ctx, &instance_ids, &[], &[])?) };
    let tree = catalog::structure(
        ctx.catalog()
            .all()
            .filter(|c| instance_types.is_empty() || instance_types.contains(&c.instance_type))
            .filter(|c| instance_sub_types.is_empty() || instance_sub_types.contains(&c.instance_sub_type))
            // A host item applies to servers of any vendor.
            .filter(|c| vendors.is_empty() || c.vendor().is_none_or(|v| vendors.contains(&v.code())))
            .filter(|c| with_results.as_ref().is_none_or(|r| r.contains_key(&c.id))),
    );
    let standards: Vec<Value> = tree
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let requirements: Vec<Value> = s
                .requirements
                .iter()
                .enumerate()
                .map(|(j, r)| {
                    json!({"Id": r.id, "ShowName": r.name.get(lang), "ShowPriorityLevel": j + 1, "RiskCheckCount": r.checks().count()})
                })
                .collect();
            json!({
                "Id": s.id, "ShowName": s.name.get(lang), "Type": s.standard_type, "ShowPriorityLevel": i + 1,
                "BindVendor": bind_vendor(s), "Requirements": requirements,
            })
        })
        .collect();
    Ok(object([("Standards", Value::Array(standards))]))
}

/// GetCheckStructure: standard type → standards → requirements → sections. The paging
/// parameters page the standards (in id order); the answer has no PageInfo, as the SDK models it.
pub fn get_check_structure(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let lang = p.lang();
    let (_, size, offset) = p.page(100, 100)?;
    p.list("TaskSources")?;
    let mut tree = ctx.catalog().structure();
    let tree: Vec<Standard> = tree.drain(..).skip(offset as usize).take(size as usize).collect();
    let groups: Vec<Value> = types(&tree)
        .into_iter()
        .map(|kind| {
            let standards: Vec<Value> = tree
                .iter()
                .filter(|s| s.standard_type == kind)
                .map(|s| {
                    let requirements: Vec<Value> = s
                        .requirements
                        .iter()
                        .map(|r| {
                            let sections: Vec<Value> =
                                r.sections.iter().map(|c| json!({"Id": c.id, "ShowName": c.name.get(lang)})).collect();
                            json!({"Id": r.id, "ShowName": r.name.get(lang), "TotalCheckCount": r.checks().count(), "Sections": sections})
                        })
                        .collect();
                    json!({"Id": s.id, "ShowName": s.name.get(lang), "Type": s.standard_type, "Requirements": requirements})
                })
                .collect();
            json!({"StandardType": kind, "Standards": standards})
        })
        .collect();
    Ok(object([("CheckStructureResponse", Value::Array(groups))]))
}

/// Whether `needle` (lower case) is in the item's name in either language, or its key.
fn name_matches(c: &CheckDef, needle: &str) -> bool {
    c.name.zh.to_lowercase().contains(needle) || c.name.en.to_lowercase().contains(needle) || c.key.contains(needle)
}

/// `Remark`: the CIS recommendation the item checks, and the benchmark it is from.
fn remark(c: &CheckDef) -> String {
    c.cis.as_ref().map(|id| format!("CIS {id} ({})", c.benchmark)).unwrap_or_default()
}

fn text(value: &str) -> Value {
    json!({"Type": "text", "Value": value})
}

/// ListCheckItems: the check items with their rule, texts and place in the standards. Every
/// item is a released system item (`SYSTEM`, `RELEASE`), those of `--catalog-dir` included.
pub fn list_check_items(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let lang = p.lang();
    let (page, size, offset) = p.page(20, 100)?;
    let check_id = p.int("CheckId")?;
    let name = p.str("CheckShowName").map(str::to_lowercase);
    let check_types = p.enum_list("CheckTypes", one_of(&["CUSTOM", "SYSTEM"]))?;
    let statuses = p.enum_list("Statuses", one_of(&["EDIT", "RELEASE"]))?;
    let kept: Vec<&CheckDef> = ctx
        .catalog()
        .all()
        .filter(|c| check_id.is_none_or(|id| c.id == id))
        .filter(|c| name.as_deref().is_none_or(|n| name_matches(c, n)))
        .filter(|_| check_types.is_empty() || check_types.iter().any(|t| t == "SYSTEM"))
        .filter(|_| statuses.is_empty() || statuses.iter().any(|s| s == "RELEASE"))
        .collect();
    let values = ctx.store.custom_values(ctx.account_id).map_err(super::db)?;
    let items: Vec<Value> = kept
        .iter()
        .skip(offset as usize)
        .take(size as usize)
        .map(|c| {
            json!({
                "CheckId": c.id,
                "CheckShowName": c.name.get(lang),
                "CheckType": "SYSTEM",
                // The rule the account is judged by (its thresholds in place).
                "CheckRule": c.customised(values.get(&c.id)).rule_text(),
                "InstanceType": c.instance_type,
                "InstanceSubType": c.instance_sub_type,
                "Vendor": c.vendor().map_or("", |v| v.name()),
                "RiskLevel": c.risk.upper(),
                "Status": "RELEASE",
                "Remark": remark(c),
                "Description": text(c.description.get(lang)),
                "Solution": text(c.solution.get(lang)),
                "AssistInfo": text(c.assist.get(lang)),
                "CheckPolicies": policies(c, lang),
            })
        })
        .collect();
    Ok(object([
        ("PageInfo", page_info(items.len(), page, size, kept.len() as i64)),
        ("CheckItems", Value::Array(items)),
    ]))
}

/// One node of the tree as ListCheckPolicies answers it.
struct PolicyRow<'a> {
    id: i64,
    name: &'a model::Text,
    parent: i64,
    standard_type: &'a str,
}

/// ListCheckPolicies: the standards, requirements or sections (`PolicyType`, required) of the
/// tree. Every policy is a system one: `CheckTypes` of `CUSTOM` alone lists none.
pub fn list_check_policies(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let lang = p.lang();
    let (page, size, offset) = p.page(50, 100)?;
    let policy_type = p.required("PolicyType")?;
    let standard_type = p.str("Type");
    let parent = p.int("DependentPolicyId")?;
    let policy_id = p.int("PolicyId")?;
    let name = p.str("PolicyShowName").map(str::to_lowercase);
    let check_types = p.enum_list("CheckTypes", one_of(&["CUSTOM", "SYSTEM"]))?;
    let tree = ctx.catalog().structure();
    let rows: Vec<PolicyRow> = match policy_type {
        "STANDARD" => tree
            .iter()
            .map(|s| PolicyRow { id: s.id, name: s.name, parent: 0, standard_type: s.standard_type })
            .collect(),
        "REQUIREMENT" => tree
            .iter()
            .flat_map(|s| {
                s.requirements.iter().map(|r| PolicyRow {
                    id: r.id,
                    name: r.name,
                    parent: s.id,
                    standard_type: s.standard_type,
                })
            })
            .collect(),
        "SECTION" => tree
            .iter()
            .flat_map(|s| {
                s.requirements.iter().flat_map(move |r| {
                    r.sections.iter().map(move |c| PolicyRow {
                        id: c.id,
                        name: c.name,
                        parent: r.id,
                        standard_type: s.standard_type,
                    })
                })
            })
            .collect(),
        _ => return Err(ApiError::invalid_parameter("PolicyType")),
    };
    let kept: Vec<PolicyRow> = rows
        .into_iter()
        .filter(|r| standard_type.is_none_or(|t| r.standard_type == t))
        .filter(|r| parent.is_none_or(|id| r.parent == id))
        .filter(|r| policy_id.is_none_or(|id| r.id == id))
        .filter(|r| {
            name.as_deref().is_none_or(|n| r.name.zh.to_lowercase().contains(n) || r.name.en.to_lowercase().contains(n))
        })
        .filter(|_| check_types.is_empty() || check_types.iter().any(|t| t == "SYSTEM"))
        .collect();
    let policies: Vec<Value> = kept
        .iter()
        .skip(offset as usize)
        .take(size as usize)
        .map(|r| {
            json!({
                "PolicyId": r.id, "PolicyShowName": r.name.get(lang), "PolicyType": policy_type,
                "DependentPolicyId": r.parent, "CheckType": "SYSTEM", "Type": r.standard_type,
            })
        })
        .collect();
    let mut info = page_info(policies.len(), page, size, kept.len() as i64);
    // The SDK models this Count, alone of all PageInfo counts, as a string.
    info["Count"] = json!(policies.len().to_string());
    Ok(object([("PageInfo", info), ("Policies", Value::Array(policies))]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_count_each_item_once_under_its_verdict_and_risk() {
        let mut s = Statistic::default();
        s.add(Verdict::of(CheckStatus::Whitelist), Risk::High);
        s.add(Verdict::of(CheckStatus::NotPass), Risk::Low);
        s.add(Verdict::of(CheckStatus::Failed), Risk::Medium);
        s.add(Verdict::of(CheckStatus::Pass), Risk::High);
        let j = s.to_json();
        assert_eq!((j["PassCount"].as_i64(), j["PassHighCount"].as_i64()), (Some(2), Some(2)));
        assert_eq!((j["NotPassCount"].as_i64(), j["NotPassLowCount"].as_i64()), (Some(1), Some(1)));
        assert_eq!((j["NotCheckCount"].as_i64(), j["NotCheckMediumCount"].as_i64()), (Some(1), Some(1)));
        assert_eq!(j.as_object().unwrap().len(), 12);
    }

    #[test]
    fn a_standard_binds_a_vendor_only_when_all_its_items_judge_that_vendor() {
        let catalog = catalog::Catalog::builtin().unwrap();
        let bound: Vec<(i64, i64)> = catalog.structure().iter().map(|s| (s.id, bind_vendor(s))).collect();
        assert_eq!(bound, [(1, -1), (2, -1), (3, model::Vendor::Aws.code())]);
    }
}
