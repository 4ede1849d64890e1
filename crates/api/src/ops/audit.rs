//! The audit trail's API side: what a call's record holds (its parameters with secrets
//! redacted), and DescribeAuditLog (a posture extension) to read an account's records.

use model::ApiError;
use serde_json::{json, Map, Value};
use store::{AuditEntry, AuditFilter, AuditRecord};

use super::{db, page_info, Ctx, COMMON_PARAMS};
use crate::params::Params;

/// Longest value kept of one parameter (bytes), and most bytes of parameters kept, in a record
/// (a request may be up to 1 MiB; its record is bounded, whoever sends it).
const MAX_VALUE_BYTES: usize = 256;
const MAX_RECORD_BYTES: usize = 8 * 1024;

/// The text that stands in for a secret's value.
pub const REDACTED: &str = "(redacted)";

/// Whether a parameter holds a secret (`SecretKey`, `AccessKeySecret`, `Password`, a token —
/// but not `SecretId`, an AccessKey's public id, nor `ClientToken`).
fn is_secret(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name).to_ascii_lowercase();
    (last.contains("secret") && last != "secretid")
        || last.contains("password")
        || (last.contains("token") && last != "clienttoken")
}

/// A call's parameters as its record keeps them: a JSON object of each parameter's first value
/// (the one the operation reads), the request's signature and transport parameters left out,
/// secrets redacted, a long value cut, and past [`MAX_RECORD_BYTES`] the names of the rest only
/// (a name the action does not know cannot push one it reads out of the record: every name
/// is kept).
pub fn recorded_params(pairs: &[(String, String)]) -> String {
    let mut kept = Map::new();
    let mut size = 0;
    let mut unshown = Vec::new();
    let mine = pairs.iter().filter(|(k, _)| !COMMON_PARAMS.contains(&k.as_str()) || k == "ClientToken");
    for (name, value) in mine {
        if kept.contains_key(name) || unshown.contains(&name.as_str()) {
            continue;
        }
        let value = if is_secret(name) {
            REDACTED.to_string()
        } else if value.len() > MAX_VALUE_BYTES {
            let mut end = MAX_VALUE_BYTES;
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}…({} bytes in all)", &value[..end], value.len())
        } else {
            value.clone()
        };
        size += name.len() + value.len() + 6;
        if size > MAX_RECORD_BYTES {
            unshown.push(name.as_str());
        } else {
            kept.insert(name.clone(), Value::String(value));
        }
    }
    if !unshown.is_empty() {
        let names: String = unshown.join(",").chars().take(MAX_RECORD_BYTES).collect();
        kept.insert("…".into(), json!(format!("values not kept: {names}")));
    }
    Value::Object(kept).to_string()
}

/// An API call's record.
pub fn entry(account_id: &str, key_id: &str, source: &str, action: &str, p: &[(String, String)]) -> AuditEntry {
    AuditEntry {
        account_id: account_id.to_string(),
        at_ms: store::now_ms(),
        actor: key_id.to_string(),
        source: source.to_string(),
        action: action.to_string(),
        params: recorded_params(p),
        outcome: String::new(),
        request_id: String::new(),
    }
}

/// A record as DescribeAuditLog and `posture audit --json` show it.
pub fn record_json(r: AuditRecord) -> Value {
    let e = r.entry;
    json!({
        "Id": r.id,
        "Time": e.at_ms,
        "Actor": e.actor,
        "SourceIp": e.source,
        "ActionName": e.action,
        "Parameters": serde_json::from_str::<Value>(&e.params).unwrap_or(Value::String(e.params)),
        "Outcome": e.outcome,
        "RequestId": e.request_id,
    })
}

/// DescribeAuditLog: the caller's account's records, newest first. Filters: `StartTime`,
/// `EndTime` (ms), `ActionName`, `Actor` (who), `Outcome` (`OK`, `FAILED` or a code).
pub fn describe_audit_log(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let (page, size, offset) = p.page(20, 100)?;
    let text = |name: &str| p.str(name).map(str::trim).filter(|v| !v.is_empty()).map(String::from);
    let filter = AuditFilter {
        action: text("ActionName"),
        // Not `AccessKeyId`: v1 requests carry the signer's under that name.
        actor: text("Actor"),
        outcome: text("Outcome"),
        start_ms: p.int("StartTime")?,
        end_ms: p.int("EndTime")?,
        offset,
        limit: size,
    };
    let (rows, total) = ctx.store.list_audit(ctx.account_id, &filter).map_err(db)?;
    let records: Vec<Value> = rows.into_iter().map(record_json).collect();
    Ok(json!({"PageInfo": page_info(records.len(), page, size, total), "Records": records}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_signatures_never_reach_a_record() {
        let pairs: Vec<(String, String)> = [
            ("SecretKey", "wJalrXUtnFEMI"),
            ("SecretId", "AKIAEXAMPLE"),
            ("AccessKeySecret", "s3cr3t"),
            ("Signature", "abc="),
            ("AccessKeyId", "LTAI"),
            ("ClientToken", "retry-1"),
            ("Webhook.1.Secret", "whsec"),
            ("CheckId", "1001"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let kept: Value = serde_json::from_str(&recorded_params(&pairs)).unwrap();
        assert_eq!(
            kept,
            json!({"SecretKey": REDACTED, "SecretId": "AKIAEXAMPLE", "AccessKeySecret": REDACTED,
                   "ClientToken": "retry-1", "Webhook.1.Secret": REDACTED, "CheckId": "1001"})
        );
        let long = vec![("Reason".to_string(), "x".repeat(5000))];
        let kept: Value = serde_json::from_str(&recorded_params(&long)).unwrap();
        assert!(kept["Reason"].as_str().unwrap().ends_with("…(5000 bytes in all)"));
        // The first value is the one the operation reads; padding cannot hide a parameter.
        let twice = vec![("Required".to_string(), "true".to_string()), ("Required".to_string(), "false".to_string())];
        assert_eq!(serde_json::from_str::<Value>(&recorded_params(&twice)).unwrap()["Required"], "true");
        let mut padded: Vec<(String, String)> = (0..400).map(|i| (format!("Junk{i}"), "é".repeat(300))).collect();
        padded.push(("Expiry".into(), "2s".into()));
        let text = recorded_params(&padded);
        assert!(text.len() < 3 * MAX_RECORD_BYTES, "{}", text.len());
        assert!(text.contains("Expiry"), "every name is kept");
    }
}
