//! The account (`aws.iam`, one instance per account, region `global`): the IAM password policy
//! (the one aspect a repair changes), the root user's keys and MFA, account-wide IAM findings
//! (policies that allow everything, the support role, CloudShell full access, expired server
//! certificates) and the account's trails as seen from us-east-1.

use std::collections::BTreeMap;

use model::Document;
use serde_json::{json, Map, Value};

use crate::clients::{done_unless, AwsError, Clients};

pub(crate) const PASSWORD_POLICY: &str = "password_policy";

/// The fields UpdateAccountPasswordPolicy sets; every one is given on each update (a field left
/// out is reset to its AWS default), so a restore writes back exactly the policy read.
const NUMBERS: [&str; 3] = ["MinimumPasswordLength", "MaxPasswordAge", "PasswordReusePrevention"];
const FLAGS: [&str; 6] = [
    "RequireSymbols",
    "RequireNumbers",
    "RequireUppercaseCharacters",
    "RequireLowercaseCharacters",
    "AllowUsersToChangePassword",
    "HardExpiry",
];

pub(crate) async fn read(c: &Clients) -> Result<Value, AwsError> {
    match c.iam.get_account_password_policy().send().await.map_err(AwsError::from) {
        Err(e) if e.is("NoSuchEntity") => Ok(Value::Null),
        Err(e) => Err(e),
        Ok(out) => {
            let Some(p) = out.password_policy() else { return Ok(Value::Null) };
            Ok(json!({
                "MinimumPasswordLength": p.minimum_password_length(),
                "MaxPasswordAge": p.max_password_age(),
                "PasswordReusePrevention": p.password_reuse_prevention(),
                "RequireSymbols": p.require_symbols(),
                "RequireNumbers": p.require_numbers(),
                "RequireUppercaseCharacters": p.require_uppercase_characters(),
                "RequireLowercaseCharacters": p.require_lowercase_characters(),
                "AllowUsersToChangePassword": p.allow_users_to_change_password(),
                "HardExpiry": p.hard_expiry(),
            }))
        }
    }
}

pub(crate) async fn document(c: &Clients) -> Result<Document, AwsError> {
    let mut d = account_document(c).await?;
    d.extend(crate::trail::account_document(c).await?);
    let policy = read(c).await?;
    if policy.is_null() {
        return Ok(d);
    }
    d.insert("iam.password_policy".into(), "present".into());
    let keys = [
        ("MinimumPasswordLength", "iam.min_length"),
        ("MaxPasswordAge", "iam.max_age"),
        ("PasswordReusePrevention", "iam.reuse_prevention"),
        ("RequireSymbols", "iam.require_symbols"),
        ("RequireNumbers", "iam.require_numbers"),
        ("RequireUppercaseCharacters", "iam.require_uppercase"),
        ("RequireLowercaseCharacters", "iam.require_lowercase"),
    ];
    for (field, key) in keys {
        match &policy[field] {
            Value::Number(n) => d.insert(key.into(), n.to_string()),
            Value::Bool(b) => d.insert(key.into(), b.to_string()),
            _ => None,
        };
    }
    Ok(d)
}

/// `iam.password_policy`: the current policy (or none) with the given fields changed.
pub(crate) async fn apply(c: &Clients, action: &str, args: &BTreeMap<String, String>) -> Result<(), AwsError> {
    let want = wanted(action, args, &read(c).await?)?;
    write(c, &want).await
}

/// The policy `action` writes over the policy read as `current`: it, with the fields `args`
/// name set to their values.
fn wanted(action: &str, args: &BTreeMap<String, String>, current: &Value) -> Result<Value, AwsError> {
    if action != "iam.password_policy" {
        return Err(AwsError::other(format!("{action} is not an IAM action")));
    }
    let mut policy = match current {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    for (name, value) in args {
        let v = if NUMBERS.contains(&name.as_str()) {
            Value::from(value.parse::<i64>().map_err(|_| AwsError::other(format!("{name}={value} is not a number")))?)
        } else if FLAGS.contains(&name.as_str()) {
            Value::Bool(value == "true")
        } else {
            return Err(AwsError::other(format!("{name} is not a password policy field")));
        };
        policy.insert(name.clone(), v);
    }
    Ok(Value::Object(policy))
}

/// The ranges UpdateAccountPasswordPolicy accepts for the numbers (it refuses anything else).
const RANGES: [(&str, i64, i64); 3] =
    [("MinimumPasswordLength", 6, 128), ("MaxPasswordAge", 1, 1095), ("PasswordReusePrevention", 1, 24)];

/// What the policy will read as (the JSON of [`read`]) after [`apply`] carried `action` out on
/// the policy read as `before` (`null`: none); calls nothing.
///
/// The update sets every field: a field [`write`] leaves out takes AWS's default, which is
/// what the read then answers: MinimumPasswordLength 6, every flag (HardExpiry included) false,
/// MaxPasswordAge and PasswordReusePrevention absent (`null`: passwords never expire, any
/// password may be reused). moto answers MaxPasswordAge 0 where AWS leaves it out.
pub(crate) fn planned(action: &str, args: &BTreeMap<String, String>, before: &Value) -> Result<Value, AwsError> {
    let want = wanted(action, args, before)?;
    for (field, low, high) in RANGES {
        if let Some(n) = args.get(field).and_then(|v| v.parse::<i64>().ok()) {
            if !(low..=high).contains(&n) {
                return Err(AwsError::other(format!("{field}={n}: AWS accepts {low} to {high}")));
            }
        }
    }
    let number = |f: &str| want[f].as_i64();
    let flag = |f: &str| want[f].as_bool().unwrap_or(false);
    Ok(json!({
        "MinimumPasswordLength": number("MinimumPasswordLength").unwrap_or(6),
        "MaxPasswordAge": number("MaxPasswordAge"),
        "PasswordReusePrevention": number("PasswordReusePrevention"),
        "RequireSymbols": flag("RequireSymbols"),
        "RequireNumbers": flag("RequireNumbers"),
        "RequireUppercaseCharacters": flag("RequireUppercaseCharacters"),
        "RequireLowercaseCharacters": flag("RequireLowercaseCharacters"),
        "AllowUsersToChangePassword": flag("AllowUsersToChangePassword"),
        "HardExpiry": flag("HardExpiry"),
    }))
}

/// Sets the policy to `want`, or deletes it for `null`.
pub(crate) async fn write(c: &Clients, want: &Value) -> Result<(), AwsError> {
    if want.is_null() {
        return done_unless(c.iam.delete_account_password_policy().send().await.map(drop), "NoSuchEntity");
    }
    let int = |f: &str| want[f].as_i64().map(|n| n as i32);
    let flag = |f: &str| want[f].as_bool();
    c.iam
        .update_account_password_policy()
        .set_minimum_password_length(int("MinimumPasswordLength"))
        .set_max_password_age(int("MaxPasswordAge"))
        .set_password_reuse_prevention(int("PasswordReusePrevention"))
        .set_require_symbols(flag("RequireSymbols"))
        .set_require_numbers(flag("RequireNumbers"))
        .set_require_uppercase_characters(flag("RequireUppercaseCharacters"))
        .set_require_lowercase_characters(flag("RequireLowercaseCharacters"))
        .set_allow_users_to_change_password(flag("AllowUsersToChangePassword"))
        .set_hard_expiry(flag("HardExpiry"))
        .send()
        .await?;
    Ok(())
}

const SUPPORT_POLICY: &str = "arn:aws:iam::aws:policy/AWSSupportAccess";
const CLOUDSHELL_POLICY: &str = "arn:aws:iam::aws:policy/AWSCloudShellFullAccess";

/// Whether a policy document (as IAM returns it: URL-encoded JSON) has a statement allowing
/// every action on every resource.
pub(crate) fn allows_everything(document: &str) -> bool {
    let text = if document.trim_start().starts_with('{') {
        document.into()
    } else {
        percent_encoding::percent_decode_str(document).decode_utf8_lossy()
    };
    let Ok(policy) = serde_json::from_str::<Value>(&text) else { return false };
    let statements = match &policy["Statement"] {
        Value::Array(a) => a.clone(),
        s => vec![s.clone()],
    };
    let has_star = |v: &Value| match v {
        Value::String(s) => s == "*",
        Value::Array(a) => a.iter().any(|x| x == "*"),
        _ => false,
    };
    statements.iter().any(|s| s["Effect"] == "Allow" && has_star(&s["Action"]) && has_star(&s["Resource"]))
}

/// The users, groups and roles a managed policy is attached to (none when the policy does not
/// exist, as in an emulator without AWS's managed policies).
async fn attached_to(c: &Clients, arn: &str) -> Result<Vec<String>, AwsError> {
    match c.iam.list_entities_for_policy().policy_arn(arn).send().await.map_err(AwsError::from) {
        Ok(out) => Ok(out
            .policy_users()
            .iter()
            .filter_map(|u| u.user_name().map(|n| format!("user {n}")))
            .chain(out.policy_groups().iter().filter_map(|g| g.group_name().map(|n| format!("group {n}"))))
            .chain(out.policy_roles().iter().filter_map(|r| r.role_name().map(|n| format!("role {n}"))))
            .collect()),
        Err(e) if e.is("NoSuchEntity") => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The customer managed policies attached somewhere whose default version allows everything.
async fn admin_policies(c: &Clients) -> Result<Vec<String>, AwsError> {
    use aws_sdk_iam::types::PolicyScopeType;
    let mut found = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = c
            .iam
            .list_policies()
            .scope(PolicyScopeType::Local)
            .only_attached(true)
            .set_marker(marker.take())
            .send()
            .await?;
        for p in page.policies() {
            let (Some(arn), Some(version)) = (p.arn(), p.default_version_id()) else { continue };
            let v = c.iam.get_policy_version().policy_arn(arn).version_id(version).send().await?;
            if v.policy_version().and_then(|v| v.document()).is_some_and(allows_everything) {
                found.push(p.policy_name().unwrap_or(arn).to_string());
            }
        }
        match page.marker() {
            Some(m) if page.is_truncated() && !m.is_empty() => marker = Some(m.to_string()),
            _ => return Ok(found),
        }
    }
}

async fn account_document(c: &Clients) -> Result<Document, AwsError> {
    use aws_sdk_iam::types::{AssignmentStatusType, SummaryKeyType};
    let mut d = Document::new();
    let summary = c.iam.get_account_summary().send().await?;
    let summary = summary.summary_map();
    let get = |k: SummaryKeyType| summary.and_then(|m| m.get(&k)).copied().unwrap_or(0);
    d.insert("account.root_access_keys".into(), get(SummaryKeyType::AccountAccessKeysPresent).to_string());
    d.insert("account.root_mfa".into(), get(SummaryKeyType::AccountMfaEnabled).to_string());
    let virtual_mfa = c.iam.list_virtual_mfa_devices().assignment_status(AssignmentStatusType::Assigned).send().await?;
    let root_virtual = virtual_mfa.virtual_mfa_devices().iter().any(|m| {
        m.serial_number().ends_with(":mfa/root-account-mfa-device")
            || m.user().is_some_and(|u| u.arn().ends_with(":root"))
    });
    d.insert("account.root_virtual_mfa".into(), if root_virtual { "yes" } else { "no" }.into());

    let support = attached_to(c, SUPPORT_POLICY).await?;
    d.insert("account.support_roles".into(), support.len().to_string());
    d.insert("account.support_role_list".into(), support.join(", "));
    let cloudshell = attached_to(c, CLOUDSHELL_POLICY).await?;
    d.insert("account.cloudshell_full_access".into(), cloudshell.len().to_string());
    d.insert("account.cloudshell_full_access_list".into(), cloudshell.join(", "));
    let admin = admin_policies(c).await?;
    d.insert("account.admin_policies".into(), admin.len().to_string());
    d.insert("account.admin_policy_list".into(), admin.join(", "));

    let now = crate::iam_user::unix_now();
    let certs = c.iam.list_server_certificates().send().await?;
    let expired: Vec<String> = certs
        .server_certificate_metadata_list()
        .iter()
        .filter(|m| m.expiration().is_some_and(|e| e.secs() < now))
        .map(|m| m.server_certificate_name().to_string())
        .collect();
    d.insert("account.expired_certificates".into(), expired.len().to_string());
    d.insert("account.expired_certificate_list".into(), expired.join(", "));
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_password_policy_is_planned_with_aws_defaults_for_what_is_not_set() {
        let a = args(&[("MinimumPasswordLength", "14"), ("AllowUsersToChangePassword", "true")]);
        // No policy yet: the fields not given take AWS's defaults.
        assert_eq!(
            planned("iam.password_policy", &a, &Value::Null).unwrap(),
            json!({
                "MinimumPasswordLength": 14,
                "MaxPasswordAge": null,
                "PasswordReusePrevention": null,
                "RequireSymbols": false,
                "RequireNumbers": false,
                "RequireUppercaseCharacters": false,
                "RequireLowercaseCharacters": false,
                "AllowUsersToChangePassword": true,
                "HardExpiry": false,
            })
        );
        // A policy: every field keeps its value but those given.
        let before = json!({
            "MinimumPasswordLength": 8,
            "MaxPasswordAge": 90,
            "PasswordReusePrevention": 5,
            "RequireSymbols": true,
            "RequireNumbers": true,
            "RequireUppercaseCharacters": false,
            "RequireLowercaseCharacters": false,
            "AllowUsersToChangePassword": false,
            "HardExpiry": true,
        });
        let mut want = before.clone();
        want["PasswordReusePrevention"] = json!(24);
        assert_eq!(planned("iam.password_policy", &args(&[("PasswordReusePrevention", "24")]), &before).unwrap(), want);
        let flags = args(&[
            ("RequireSymbols", "true"),
            ("RequireNumbers", "true"),
            ("RequireUppercaseCharacters", "true"),
            ("RequireLowercaseCharacters", "true"),
        ]);
        let after = planned("iam.password_policy", &flags, &before).unwrap();
        assert_eq!(
            (after["RequireUppercaseCharacters"].clone(), after["MaxPasswordAge"].clone()),
            (json!(true), json!(90))
        );
        // The same again: nothing changes.
        assert_eq!(planned("iam.password_policy", &flags, &after).unwrap(), after);
        assert_eq!(
            planned("iam.password_policy", &args(&[("MaxPasswordAge", "60")]), &before).unwrap()["MaxPasswordAge"],
            60
        );
        // What apply or AWS would refuse.
        for bad in [
            ("MaxPasswordAge", "0"),
            ("MinimumPasswordLength", "200"),
            ("PasswordReusePrevention", "x"),
            ("Color", "1"),
        ] {
            assert!(planned("iam.password_policy", &args(&[bad]), &before).is_err(), "{bad:?}");
        }
        assert!(planned("iam.delete_users", &BTreeMap::new(), &before).is_err());
    }

    #[test]
    fn a_policy_allowing_everything_is_found_encoded_or_not() {
        let admin = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
        assert!(allows_everything(admin));
        assert!(allows_everything(&admin.replace('{', "%7B").replace('}', "%7D").replace('"', "%22")));
        let one = r#"{"Statement":{"Effect":"Allow","Action":["s3:*","*"],"Resource":["*"]}}"#;
        assert!(allows_everything(one));
        assert!(!allows_everything(r#"{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#));
        assert!(!allows_everything(r#"{"Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}"#));
        assert!(!allows_everything("not json"));
    }
}
