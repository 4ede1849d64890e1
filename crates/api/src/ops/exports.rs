//! ExportRecord and DescribeExportInfo: a report of the account's check results with their
//! evidence, as CSV and JSON, made at once and downloaded by its link (`GET /exports/…`,
//! served by the gateway from the store, so any node serves it).

use std::collections::BTreeMap;

use catalog::CheckDef;
use model::{ApiError, CheckStatus, Lang};
use serde_json::{json, Value};
use store::{NewExport, ResultFilter, ResultRow};

use super::{db, Ctx};
use crate::params::Params;

/// The export type of configuration-assessment results (the SDK's "cloud platform
/// configuration check results").
pub const EXPORT_TYPE: &str = "baselineCspm";

/// Result rows one export holds at most: a larger one is refused (narrow it with `Params`).
pub const MAX_ROWS: usize = 200_000;

/// How long an export's link works.
pub const LINK_TTL_MS: i64 = 24 * 3_600_000;

/// Results read per query.
const PAGE: i64 = 1_000;

/// The report's columns, in order (CSV header and JSON keys).
const COLUMNS: [&str; 15] = [
    "CheckId",
    "CheckShowName",
    "RiskLevel",
    "StandardShowName",
    "RequirementShowName",
    "SectionShowName",
    "Cis",
    "InstanceId",
    "InstanceName",
    "RegionId",
    "Vendor",
    "Status",
    "StatusMessage",
    "LastCheckTime",
    "Evidence",
];

/// What `Params` (a JSON object, optional) narrows the export to.
#[derive(Default)]
struct Narrowing {
    check_ids: Vec<i64>,
    statuses: Vec<CheckStatus>,
    instance_ids: Vec<String>,
}

fn narrowing(p: &Params) -> Result<Narrowing, ApiError> {
    let Some(text) = p.str("Params").filter(|t| !t.trim().is_empty()) else { return Ok(Narrowing::default()) };
    let bad = || ApiError::invalid_parameter("Params");
    let v: Value = serde_json::from_str(text).map_err(|_| bad())?;
    let obj = v.as_object().ok_or_else(bad)?;
    let mut n = Narrowing::default();
    for (k, v) in obj {
        let list = v.as_array().ok_or_else(bad)?;
        // Each entry becomes a term of a query: as many as any list parameter may hold.
        if list.len() > crate::params::MAX_ITEMS {
            return Err(ApiError::too_many_items(&format!("Params.{k}"), crate::params::MAX_ITEMS));
        }
        match k.as_str() {
            "CheckIds" => n.check_ids = list.iter().map(|x| x.as_i64().ok_or_else(bad)).collect::<Result<_, _>>()?,
            "Statuses" => {
                n.statuses = list
                    .iter()
                    .map(|x| x.as_str().and_then(CheckStatus::parse).ok_or_else(bad))
                    .collect::<Result<_, _>>()?
            }
            "InstanceIds" => {
                n.instance_ids =
                    list.iter().map(|x| x.as_str().map(String::from).ok_or_else(bad)).collect::<Result<_, _>>()?
            }
            _ => return Err(bad()),
        }
    }
    Ok(n)
}

/// One row of the report.
fn row(c: &CheckDef, r: &ResultRow, lang: Lang) -> Vec<(&'static str, Value)> {
    let evidence: BTreeMap<String, String> = serde_json::from_str(&r.config).unwrap_or_default();
    let p = &c.policy;
    let values = [
        json!(c.id),
        json!(c.name.get(lang)),
        json!(c.risk.upper()),
        json!(p.standard.get(lang)),
        json!(p.requirement.get(lang)),
        json!(p.section.get(lang)),
        json!(c.cis.clone().unwrap_or_default()),
        json!(r.instance.instance_id),
        json!(r.instance.instance_name),
        json!(r.instance.region_id),
        json!(r.instance.vendor.name()),
        json!(r.status.as_str()),
        json!(r.status_message),
        json!(r.last_ms),
        json!(evidence),
    ];
    COLUMNS.into_iter().zip(values).collect()
}

/// A CSV field: quoted when it holds a separator, quote or line break; a text that a
/// spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, carriage return first) is
/// prefixed with `'` — evidence comes from the servers' own files, which an attacker may write.
fn csv_field(v: &Value) -> String {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Object(m) => {
            m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join("; ")
        }
        other => other.to_string(),
    };
    let text =
        if !v.is_number() && text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// ExportRecord: the account's results (narrowed by `Params`), with their evidence, as CSV
/// and JSON. Made before the answer, so DescribeExportInfo finds it done.
pub fn export_record(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    // One report is built at a time on a node (each may hold up to MAX_ROWS rows in memory).
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let lang = p.lang();
    if p.required("ExportType")? != EXPORT_TYPE {
        return Err(ApiError::invalid_parameter("ExportType"));
    }
    let n = narrowing(p)?;
    for id in &n.check_ids {
        super::known_check(ctx, *id)?;
    }
    let mut rows: Vec<Vec<(&'static str, Value)>> = Vec::new();
    for c in ctx.catalog().all().filter(|c| n.check_ids.is_empty() || n.check_ids.contains(&c.id)) {
        let mut offset = 0;
        loop {
            let filter = ResultFilter {
                instance_ids: n.instance_ids.clone(),
                statuses: n.statuses.clone(),
                offset,
                limit: PAGE,
                ..ResultFilter::default()
            };
            let (page, _) = ctx.store.list_results(ctx.account_id, c.id, &filter).map_err(db)?;
            offset += page.len() as i64;
            rows.extend(page.iter().map(|r| row(c, r, lang)));
            if rows.len() > MAX_ROWS {
                return Err(ApiError::export_too_large(MAX_ROWS));
            }
            if (page.len() as i64) < PAGE {
                break;
            }
        }
    }
    // RFC 4180: CRLF after every record.
    let mut csv = COLUMNS.join(",");
    csv.push_str("\r\n");
    for r in &rows {
        csv.push_str(&r.iter().map(|(_, v)| csv_field(v)).collect::<Vec<_>>().join(","));
        csv.push_str("\r\n");
    }
    let json_rows: Vec<Value> =
        rows.into_iter().map(|r| Value::Object(r.into_iter().map(|(k, v)| (k.to_string(), v)).collect())).collect();
    let total = json_rows.len() as i64;
    let stamp = store::now_ms();
    let file_name = format!("posture-check-results-{stamp}.csv");
    let export = NewExport {
        file_name: file_name.clone(),
        total,
        csv,
        json: Value::Array(json_rows).to_string(),
        token: store::new_id(24),
        expires_ms: stamp + LINK_TTL_MS,
    };
    let id = ctx.store.create_export(ctx.account_id, &export).map_err(db)?;
    Ok(json!({"Id": id, "FileName": file_name}))
}

/// The download link of an export: the CSV; the same path ending `.json` gives the JSON.
fn link(origin: &str, id: i64, file_name: &str, token: &str) -> String {
    format!("{origin}/exports/{id}/{file_name}?token={token}")
}

/// DescribeExportInfo: an export is made before ExportRecord answers, so it is `success` at
/// 100 %; its `Link` works for [`LINK_TTL_MS`] (then it is empty and `Message` says `expired`).
pub fn describe_export_info(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let id = p.required_int("ExportId")?;
    let info = ctx.store.export_info(ctx.account_id, id).map_err(db)?.ok_or_else(|| ApiError::export_not_found(id))?;
    let live = info.expires_ms > store::now_ms();
    Ok(json!({
        "Id": info.id,
        "FileName": info.file_name,
        "ExportStatus": "success",
        "Progress": 100,
        "CurrentCount": info.total,
        "TotalCount": info.total,
        "Link": if live { link(ctx.origin, info.id, &info.file_name, &info.token) } else { String::new() },
        "Message": if live { "success" } else { "expired" },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_neutralised() {
        assert_eq!(csv_field(&json!("plain")), "plain");
        assert_eq!(csv_field(&json!("a,b")), "\"a,b\"");
        assert_eq!(csv_field(&json!("say \"hi\"\n")), "\"say \"\"hi\"\"\n\"");
        assert_eq!(csv_field(&json!("=HYPERLINK(\"x\")")), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field(&json!("@SUM(A1)")), "'@SUM(A1)");
        assert_eq!(csv_field(&json!(1001)), "1001");
        assert_eq!(csv_field(&json!({"A": "1", "B": "x,y"})), "\"A=1; B=x,y\"");
        assert_eq!(csv_field(&json!({"-x": "1"})), "'-x=1");
    }
}
