//! IAM users (`aws.iam_user`, one instance per user, region `global`): MFA for console users,
//! idle and old access keys, an idle console password, and permissions given to the user
//! directly instead of through groups. Ages are whole days, computed here from the dates IAM
//! reports, so the catalog's rules hold the thresholds (45 and 90 days in CIS).

use std::collections::BTreeMap;

use aws_sdk_iam::types::StatusType;
use aws_smithy_types::DateTime;
use model::Document;
use serde_json::{json, Value};

use crate::clients::{AwsError, Clients};
use crate::iam::allows_everything;

pub(crate) const ACCESS_KEYS: &str = "access_keys";

/// Seconds since the Unix epoch, now.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Whole days from `then` to now (0 for a date in the future).
fn days_since(then: &DateTime) -> i64 {
    (unix_now() - then.secs()).max(0) / 86_400
}

/// One access key: its status, age and idle time (days since last use, or since creation when
/// it was never used).
struct Key {
    id: String,
    active: bool,
    age: i64,
    idle: i64,
}

async fn keys(c: &Clients, user: &str) -> Result<Vec<Key>, AwsError> {
    let out = c.iam.list_access_keys().user_name(user).send().await?;
    let mut keys = Vec::new();
    for k in out.access_key_metadata() {
        let Some(id) = k.access_key_id() else { continue };
        let age = k.create_date().map_or(0, days_since);
        let used = c.iam.get_access_key_last_used().access_key_id(id).send().await?;
        let idle = used.access_key_last_used().and_then(|u| u.last_used_date()).map_or(age, days_since);
        keys.push(Key { id: id.to_string(), active: k.status() == Some(&StatusType::Active), age, idle });
    }
    keys.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(keys)
}

/// The aspect a repair changes: each key's status.
pub(crate) async fn read(c: &Clients, user: &str) -> Result<Value, AwsError> {
    let keys = keys(c, user).await?;
    Ok(Value::Array(
        keys.iter()
            .map(|k| json!({"AccessKeyId": k.id, "Status": if k.active { "Active" } else { "Inactive" }}))
            .collect(),
    ))
}

pub(crate) async fn document(c: &Clients, user: &str) -> Result<Document, AwsError> {
    let u = c.iam.get_user().user_name(user).send().await?;
    let u = u.user().ok_or_else(|| AwsError::gone("NoSuchEntity", format!("user {user} does not exist")))?;
    let mut d = Document::new();
    match c.iam.get_login_profile().user_name(user).send().await.map_err(AwsError::from) {
        Ok(profile) => {
            d.insert("iam_user.console".into(), "yes".into());
            let since = profile.login_profile().map(|p| p.create_date()).unwrap_or(u.create_date());
            let idle = u.password_last_used().map_or_else(|| days_since(since), days_since);
            d.insert("iam_user.password_idle_days".into(), idle.to_string());
        }
        Err(e) if e.is("NoSuchEntity") => {}
        Err(e) => return Err(e),
    }
    let mfa = c.iam.list_mfa_devices().user_name(user).send().await?;
    d.insert("iam_user.mfa_devices".into(), mfa.mfa_devices().len().to_string());

    let active: Vec<Key> = keys(c, user).await?.into_iter().filter(|k| k.active).collect();
    d.insert("iam_user.active_keys".into(), active.len().to_string());
    d.insert("iam_user.max_key_age_days".into(), active.iter().map(|k| k.age).max().unwrap_or(0).to_string());
    d.insert("iam_user.max_key_idle_days".into(), active.iter().map(|k| k.idle).max().unwrap_or(0).to_string());
    let shown: Vec<String> =
        active.iter().map(|k| format!("{} (created {} days ago, idle {} days)", k.id, k.age, k.idle)).collect();
    d.insert("iam_user.key_list".into(), shown.join(", "));

    let attached = c.iam.list_attached_user_policies().user_name(user).send().await?;
    let inline = c.iam.list_user_policies().user_name(user).send().await?;
    let mut direct: Vec<String> =
        attached.attached_policies().iter().filter_map(|p| p.policy_name()).map(str::to_string).collect();
    direct.extend(inline.policy_names().iter().map(|n| format!("{n} (inline)")));
    d.insert("iam_user.direct_policies".into(), direct.len().to_string());
    d.insert("iam_user.direct_policy_list".into(), direct.join(", "));
    let mut admin = Vec::new();
    for name in inline.policy_names() {
        let p = c.iam.get_user_policy().user_name(user).policy_name(name).send().await?;
        if allows_everything(p.policy_document()) {
            admin.push(name.clone());
        }
    }
    d.insert("iam_user.inline_admin_policies".into(), admin.len().to_string());
    d.insert("iam_user.inline_admin_policy_list".into(), admin.join(", "));
    Ok(d)
}

pub(crate) async fn apply(
    c: &Clients,
    user: &str,
    action: &str,
    args: &BTreeMap<String, String>,
) -> Result<(), AwsError> {
    let days = idle_limit(action, args)?;
    for k in keys(c, user).await? {
        if k.active && k.idle > days {
            set_status(c, user, &k.id, StatusType::Inactive).await?;
        }
    }
    Ok(())
}

/// The idle days beyond which `iam_user.deactivate_idle_keys` deactivates a key.
fn idle_limit(action: &str, args: &BTreeMap<String, String>) -> Result<i64, AwsError> {
    if action != "iam_user.deactivate_idle_keys" {
        return Err(AwsError::other(format!("{action} is not an IAM user action")));
    }
    args.get("days").and_then(|d| d.parse().ok()).ok_or_else(|| AwsError::other("no days"))
}

/// Each access key's idle days (what [`apply`] judges a key by; the aspect holds only the
/// status). Read only.
pub(crate) async fn idle_days(c: &Clients, user: &str) -> Result<BTreeMap<String, i64>, AwsError> {
    Ok(keys(c, user).await?.into_iter().map(|k| (k.id, k.idle)).collect())
}

/// What the keys will read as after [`apply`] carried `action` out on keys that read as
/// `before`, idle as `idle` says (see [`idle_days`]); calls nothing. Idle days are whole days
/// counted from now: a key exactly at the limit when planned may be past it when repaired.
pub(crate) fn planned(
    action: &str,
    args: &BTreeMap<String, String>,
    before: &Value,
    idle: &BTreeMap<String, i64>,
) -> Result<Value, AwsError> {
    let days = idle_limit(action, args)?;
    let mut keys = before.as_array().cloned().unwrap_or_default();
    for k in &mut keys {
        let id = k["AccessKeyId"].as_str().unwrap_or("");
        if k["Status"] == "Active" && idle.get(id).is_some_and(|i| *i > days) {
            k["Status"] = Value::from("Inactive");
        }
    }
    Ok(Value::Array(keys))
}

/// Gives each key the status `want` holds; a key deleted since cannot be brought back.
pub(crate) async fn write(c: &Clients, user: &str, want: &Value) -> Result<(), AwsError> {
    let now = read(c, user).await?;
    for w in want.as_array().into_iter().flatten() {
        let id = w["AccessKeyId"].as_str().unwrap_or("");
        let Some(current) = now.as_array().into_iter().flatten().find(|n| n["AccessKeyId"] == id) else {
            return Err(AwsError::other(format!("access key {id} was deleted and cannot be brought back")));
        };
        if current["Status"] != w["Status"] {
            let status = if w["Status"] == "Active" { StatusType::Active } else { StatusType::Inactive };
            set_status(c, user, id, status).await?;
        }
    }
    Ok(())
}

async fn set_status(c: &Clients, user: &str, key: &str, status: StatusType) -> Result<(), AwsError> {
    c.iam.update_access_key().user_name(user).access_key_id(key).status(status).send().await?;
    Ok(())
}

pub(crate) async fn list(c: &Clients) -> Result<Vec<(String, String)>, AwsError> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = c.iam.list_users().set_marker(marker.take()).send().await?;
        out.extend(page.users().iter().map(|u| (u.user_name().to_string(), format!("IAM user {}", u.user_name()))));
        match page.marker() {
            Some(m) if page.is_truncated() && !m.is_empty() => marker = Some(m.to_string()),
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_active_keys_idle_too_long_are_planned_inactive() {
        let before = json!([
            {"AccessKeyId": "AKIAAAAAAAAAAAAAAAAA", "Status": "Active"},
            {"AccessKeyId": "AKIABBBBBBBBBBBBBBBB", "Status": "Active"},
            {"AccessKeyId": "AKIACCCCCCCCCCCCCCCC", "Status": "Inactive"},
        ]);
        let idle = BTreeMap::from([
            ("AKIAAAAAAAAAAAAAAAAA".to_string(), 46),
            ("AKIABBBBBBBBBBBBBBBB".to_string(), 45),
            ("AKIACCCCCCCCCCCCCCCC".to_string(), 400),
        ]);
        let args = BTreeMap::from([("days".to_string(), "45".to_string())]);
        assert_eq!(
            planned("iam_user.deactivate_idle_keys", &args, &before, &idle).unwrap(),
            json!([
                {"AccessKeyId": "AKIAAAAAAAAAAAAAAAAA", "Status": "Inactive"},
                {"AccessKeyId": "AKIABBBBBBBBBBBBBBBB", "Status": "Active"},
                {"AccessKeyId": "AKIACCCCCCCCCCCCCCCC", "Status": "Inactive"},
            ])
        );
        assert_eq!(planned("iam_user.deactivate_idle_keys", &args, &json!([]), &idle).unwrap(), json!([]));
        assert!(planned("iam_user.deactivate_idle_keys", &BTreeMap::new(), &before, &idle).is_err(), "no days");
        assert!(planned("iam_user.delete_keys", &args, &before, &idle).is_err());
    }
}
