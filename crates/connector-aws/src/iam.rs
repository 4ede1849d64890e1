//! The account's IAM password policy (`aws.iam`, one instance per account, region `global`).

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
    let policy = read(c).await?;
    let mut d = Document::new();
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
    if action != "iam.password_policy" {
        return Err(AwsError::other(format!("{action} is not an IAM action")));
    }
    let mut policy = match read(c).await? {
        Value::Object(m) => m,
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
    write(c, &Value::Object(policy)).await
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
