//! S3 buckets (`aws.s3`): the public access block, the ACL, default encryption, versioning, the
//! bucket policy and server access logging, each an aspect read exactly as the API answers it
//! (`null` when there is none).

use std::collections::BTreeMap;

use aws_sdk_s3::types::{
    AccessControlPolicy, BucketCannedAcl, BucketLoggingStatus, BucketVersioningStatus, Grant, Grantee, LoggingEnabled,
    Owner, Permission, PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Type, VersioningConfiguration,
};
use model::Document;
use serde_json::{json, Value};

use crate::clients::{ok_body, xml_field, AwsError, Clients};

pub(crate) const PUBLIC_ACCESS_BLOCK: &str = "public_access_block";
pub(crate) const ACL: &str = "acl";
pub(crate) const ENCRYPTION: &str = "encryption";
pub(crate) const VERSIONING: &str = "versioning";
pub(crate) const POLICY: &str = "policy";
pub(crate) const LOGGING: &str = "logging";

/// The statement `s3.deny_insecure_transport` adds (CIS AWS 2.1.1).
const DENY_HTTP_SID: &str = "PostureDenyInsecureTransport";

const PUBLIC_GROUPS: &[&str] =
    &["http://acs.amazonaws.com/groups/global/AllUsers", "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"];

const PAB_FIELDS: [&str; 4] = ["BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"];

fn build_err(e: impl std::fmt::Display) -> AwsError {
    AwsError::other(e.to_string())
}

pub(crate) async fn read(c: &Clients, bucket: &str, aspect: &str) -> Result<Value, AwsError> {
    match aspect {
        PUBLIC_ACCESS_BLOCK => match c.s3.get_public_access_block().bucket(bucket).send().await.map_err(AwsError::from)
        {
            Err(e) if e.is("NoSuchPublicAccessBlockConfiguration") => Ok(Value::Null),
            Err(e) => Err(e),
            Ok(out) => {
                let p = out.public_access_block_configuration();
                let get = |v: Option<bool>| v.unwrap_or(false);
                Ok(json!({
                    "BlockPublicAcls": get(p.and_then(|p| p.block_public_acls())),
                    "IgnorePublicAcls": get(p.and_then(|p| p.ignore_public_acls())),
                    "BlockPublicPolicy": get(p.and_then(|p| p.block_public_policy())),
                    "RestrictPublicBuckets": get(p.and_then(|p| p.restrict_public_buckets())),
                }))
            }
        },
        ACL => {
            let out = c.s3.get_bucket_acl().bucket(bucket).send().await?;
            let mut grants: Vec<Value> = out
                .grants()
                .iter()
                .map(|g| {
                    let grantee = g.grantee().map(|e| {
                        json!({"Type": e.r#type().as_str(), "ID": e.id(), "URI": e.uri(), "EmailAddress": e.email_address()})
                    });
                    json!({"Grantee": grantee, "Permission": g.permission().map(|p| p.as_str())})
                })
                .collect();
            grants.sort_by_key(|g| g.to_string());
            let owner = out.owner().map(|o| json!({"ID": o.id()}));
            Ok(json!({"Owner": owner, "Grants": grants}))
        }
        ENCRYPTION => match c.s3.get_bucket_encryption().bucket(bucket).send().await.map_err(AwsError::from) {
            Err(e) if e.is("ServerSideEncryptionConfigurationNotFoundError") => Ok(Value::Null),
            Err(e) => Err(e),
            Ok(out) => {
                let rules: Vec<Value> = out
                    .server_side_encryption_configuration()
                    .map(|c| c.rules())
                    .unwrap_or_default()
                    .iter()
                    .map(|r| {
                        let d = r.apply_server_side_encryption_by_default();
                        json!({
                            "SSEAlgorithm": d.map(|d| d.sse_algorithm().as_str()),
                            "KMSMasterKeyID": d.and_then(|d| d.kms_master_key_id()),
                            "BucketKeyEnabled": r.bucket_key_enabled(),
                        })
                    })
                    .collect();
                Ok(json!({"Rules": rules}))
            }
        },
        VERSIONING => match c.s3.get_bucket_versioning().bucket(bucket).send().await {
            Ok(out) => Ok(
                json!({"Status": out.status().map(|s| s.as_str()), "MFADelete": out.mfa_delete().map(|s| s.as_str())}),
            ),
            // moto answers with the root <GetBucketVersioningResponse> where AWS sends
            // <VersioningConfiguration>; the SDK refuses the root, the fields are the same.
            Err(e) if ok_body(&e).is_some_and(|b| b.contains("<GetBucketVersioningResponse")) => {
                let body = ok_body(&e).unwrap_or_default();
                Ok(json!({"Status": xml_field(&body, "Status"), "MFADelete": xml_field(&body, "MfaDelete")}))
            }
            Err(e) => Err(e.into()),
        },
        // The policy is stored parsed, so that its digest does not depend on whitespace.
        POLICY => match c.s3.get_bucket_policy().bucket(bucket).send().await.map_err(AwsError::from) {
            Err(e) if e.is("NoSuchBucketPolicy") => Ok(Value::Null),
            Err(e) => Err(e),
            Ok(out) => match out.policy() {
                None | Some("") => Ok(Value::Null),
                Some(text) => serde_json::from_str(text)
                    .map_err(|e| AwsError::other(format!("the policy of {bucket} is not JSON: {e}"))),
            },
        },
        LOGGING => {
            let out = c.s3.get_bucket_logging().bucket(bucket).send().await?;
            Ok(match out.logging_enabled() {
                Some(l) => json!({"TargetBucket": l.target_bucket(), "TargetPrefix": l.target_prefix()}),
                None => Value::Null,
            })
        }
        other => Err(AwsError::other(format!("{other} is not an aspect of a bucket"))),
    }
}

/// A policy statement's list field (a string or a list of strings).
fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn everyone(principal: &Value) -> bool {
    principal == "*" || strings(&principal["AWS"]).contains(&"*")
}

/// The statements of a bucket policy that allow everyone without a condition.
fn public_statements(policy: &Value) -> Vec<String> {
    statements(policy)
        .filter(|s| s["Effect"] == "Allow" && everyone(&s["Principal"]) && s.get("Condition").is_none())
        .map(|s| format!("policy:{}", s["Sid"].as_str().unwrap_or("(no Sid)")))
        .collect()
}

fn statements(policy: &Value) -> impl Iterator<Item = &Value> {
    match &policy["Statement"] {
        Value::Array(a) => a.iter().collect::<Vec<_>>(),
        s @ Value::Object(_) => vec![s],
        _ => Vec::new(),
    }
    .into_iter()
}

/// Whether the policy denies every request that does not use TLS: a Deny for everyone, of
/// every S3 action, on condition `aws:SecureTransport` false.
fn denies_http(policy: &Value) -> bool {
    statements(policy).any(|s| {
        let insecure = &s["Condition"]["Bool"]["aws:SecureTransport"];
        s["Effect"] == "Deny"
            && everyone(&s["Principal"])
            && strings(&s["Action"]).iter().any(|a| *a == "s3:*" || *a == "*")
            && (insecure == "false" || insecure == false || strings(insecure) == ["false"])
    })
}

/// The ACL's grants to everyone (`AllUsers:READ`, …).
fn acl_public_grants(acl: &Value) -> Vec<String> {
    acl["Grants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| g["Grantee"]["URI"].as_str().is_some_and(|u| PUBLIC_GROUPS.contains(&u)))
        .map(|g| {
            let who = g["Grantee"]["URI"].as_str().unwrap_or("").rsplit('/').next().unwrap_or("");
            format!("{who}:{}", g["Permission"].as_str().unwrap_or(""))
        })
        .collect()
}

/// The grants (ACL) and policy statements that make a bucket readable by everyone.
pub(crate) async fn public_grants(c: &Clients, bucket: &str) -> Result<Vec<String>, AwsError> {
    let mut found = acl_public_grants(&read(c, bucket, ACL).await?);
    found.extend(public_statements(&read(c, bucket, POLICY).await?));
    Ok(found)
}

pub(crate) async fn document(c: &Clients, bucket: &str) -> Result<Document, AwsError> {
    let mut d = Document::new();
    if let Value::Object(pab) = read(c, bucket, PUBLIC_ACCESS_BLOCK).await? {
        for (field, key) in PAB_FIELDS.iter().zip([
            "s3.pab.block_public_acls",
            "s3.pab.ignore_public_acls",
            "s3.pab.block_public_policy",
            "s3.pab.restrict_public_buckets",
        ]) {
            d.insert(key.into(), pab.get(*field).and_then(Value::as_bool).unwrap_or(false).to_string());
        }
    }
    let public = acl_public_grants(&read(c, bucket, ACL).await?);
    d.insert("s3.acl.public".into(), if public.is_empty() { "no" } else { "yes" }.into());
    d.insert("s3.acl.public_grants".into(), public.join(", "));
    if let Some(algo) = read(c, bucket, ENCRYPTION).await?["Rules"][0]["SSEAlgorithm"].as_str() {
        d.insert("s3.encryption".into(), algo.to_string());
    }
    let versioning = read(c, bucket, VERSIONING).await?;
    if let Some(status) = versioning["Status"].as_str() {
        d.insert("s3.versioning".into(), status.to_string());
    }
    if let Some(mfa) = versioning["MFADelete"].as_str() {
        d.insert("s3.mfa_delete".into(), mfa.to_string());
    }
    let policy = read(c, bucket, POLICY).await?;
    d.insert("s3.policy_denies_http".into(), if denies_http(&policy) { "yes" } else { "no" }.into());
    Ok(d)
}

pub(crate) async fn apply(
    c: &Clients,
    bucket: &str,
    action: &str,
    args: &BTreeMap<String, String>,
) -> Result<(), AwsError> {
    match action {
        "s3.block_public_access" => write(c, bucket, PUBLIC_ACCESS_BLOCK, &all_blocked()).await,
        "s3.acl_private" => {
            c.s3.put_bucket_acl().bucket(bucket).acl(BucketCannedAcl::Private).send().await?;
            Ok(())
        }
        "s3.default_encryption" => write(c, bucket, ENCRYPTION, &encryption_wanted(args)).await,
        "s3.enable_versioning" => {
            let cfg = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
            c.s3.put_bucket_versioning().bucket(bucket).versioning_configuration(cfg).send().await?;
            Ok(())
        }
        "s3.deny_insecure_transport" => match with_deny_http(bucket, read(c, bucket, POLICY).await?) {
            Some(policy) => write(c, bucket, POLICY, &policy).await,
            None => Ok(()),
        },
        other => Err(AwsError::other(format!("{other} is not a bucket action"))),
    }
}

/// The public access block with every setting on.
fn all_blocked() -> Value {
    Value::Object(PAB_FIELDS.iter().map(|f| (f.to_string(), Value::Bool(true))).collect())
}

/// The default encryption `s3.default_encryption` writes (SSE-S3 unless told otherwise; with
/// aws:kms and no key, S3 uses the AWS managed key `aws/s3`).
fn encryption_wanted(args: &BTreeMap<String, String>) -> Value {
    let algo = args.get("algorithm").map(String::as_str).unwrap_or("AES256");
    json!({"Rules": [{"SSEAlgorithm": algo, "KMSMasterKeyID": null, "BucketKeyEnabled": null}]})
}

/// The policy with the statement denying plain HTTP added (None: it already denies it).
fn with_deny_http(bucket: &str, policy: Value) -> Option<Value> {
    let mut policy = match policy {
        Value::Null => json!({"Version": "2012-10-17", "Statement": []}),
        p => p,
    };
    if denies_http(&policy) {
        return None;
    }
    let deny = json!({
        "Sid": DENY_HTTP_SID,
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    });
    match &mut policy["Statement"] {
        Value::Array(list) => list.push(deny),
        one => *one = json!([one.take(), deny]),
    }
    Some(policy)
}

/// What the aspect an action changes will read as (the JSON of [`read`]) after [`apply`]
/// carried it out on the bucket whose aspect reads as `before`; calls nothing.
pub(crate) fn planned(
    bucket: &str,
    action: &str,
    args: &BTreeMap<String, String>,
    before: &Value,
) -> Result<Value, AwsError> {
    Ok(match action {
        "s3.block_public_access" => all_blocked(),
        // The canned ACL `private`: the owner, and one grant of FULL_CONTROL to the owner. The
        // owner is the bucket's, as read now; should the read not name it (it always does), the
        // grant names a placeholder: only AWS knows the canonical id.
        "s3.acl_private" => {
            let owner = before.get("Owner").cloned().unwrap_or(Value::Null);
            let id = owner["ID"].as_str().unwrap_or("(the bucket owner's canonical id, known to AWS)").to_string();
            let grantee = json!({"Type": "CanonicalUser", "ID": id, "URI": null, "EmailAddress": null});
            json!({"Owner": owner, "Grants": [{"Grantee": grantee, "Permission": "FULL_CONTROL"}]})
        }
        // PutBucketEncryption replaces the whole configuration; a rule written without
        // BucketKeyEnabled reads back with it false (AWS and moto alike).
        "s3.default_encryption" => {
            let mut want = encryption_wanted(args);
            want["Rules"][0]["BucketKeyEnabled"] = Value::Bool(false);
            want
        }
        // The request names no MfaDelete, which therefore stays as it is.
        "s3.enable_versioning" => {
            json!({"Status": "Enabled", "MFADelete": before.get("MFADelete").cloned().unwrap_or(Value::Null)})
        }
        // S3 answers the policy as it was put; the read parses it, so only its content counts.
        "s3.deny_insecure_transport" => with_deny_http(bucket, before.clone()).unwrap_or_else(|| before.clone()),
        other => return Err(AwsError::other(format!("{other} is not a bucket action"))),
    })
}

/// Makes an aspect what `want` says (`null`: there is none).
pub(crate) async fn write(c: &Clients, bucket: &str, aspect: &str, want: &Value) -> Result<(), AwsError> {
    match (aspect, want) {
        (PUBLIC_ACCESS_BLOCK, Value::Null) => {
            c.s3.delete_public_access_block().bucket(bucket).send().await?;
        }
        (PUBLIC_ACCESS_BLOCK, w) => {
            let on = |f: &str| w[f].as_bool().unwrap_or(false);
            let cfg = PublicAccessBlockConfiguration::builder()
                .block_public_acls(on("BlockPublicAcls"))
                .ignore_public_acls(on("IgnorePublicAcls"))
                .block_public_policy(on("BlockPublicPolicy"))
                .restrict_public_buckets(on("RestrictPublicBuckets"))
                .build();
            c.s3.put_public_access_block().bucket(bucket).public_access_block_configuration(cfg).send().await?;
        }
        (ACL, w) => {
            let mut policy = AccessControlPolicy::builder();
            if let Some(id) = w["Owner"]["ID"].as_str() {
                policy = policy.owner(Owner::builder().id(id).build());
            }
            for g in w["Grants"].as_array().into_iter().flatten() {
                let e = &g["Grantee"];
                let mut grantee = Grantee::builder().r#type(Type::from(e["Type"].as_str().unwrap_or("CanonicalUser")));
                if let Some(v) = e["ID"].as_str() {
                    grantee = grantee.id(v);
                }
                if let Some(v) = e["URI"].as_str() {
                    grantee = grantee.uri(v);
                }
                if let Some(v) = e["EmailAddress"].as_str() {
                    grantee = grantee.email_address(v);
                }
                let mut grant = Grant::builder().grantee(grantee.build().map_err(build_err)?);
                if let Some(p) = g["Permission"].as_str() {
                    grant = grant.permission(Permission::from(p));
                }
                policy = policy.grants(grant.build());
            }
            c.s3.put_bucket_acl().bucket(bucket).access_control_policy(policy.build()).send().await?;
        }
        (ENCRYPTION, Value::Null) => {
            c.s3.delete_bucket_encryption().bucket(bucket).send().await?;
        }
        (ENCRYPTION, w) => {
            let mut cfg = ServerSideEncryptionConfiguration::builder();
            for r in w["Rules"].as_array().into_iter().flatten() {
                let mut d = ServerSideEncryptionByDefault::builder()
                    .sse_algorithm(ServerSideEncryption::from(r["SSEAlgorithm"].as_str().unwrap_or("AES256")));
                if let Some(k) = r["KMSMasterKeyID"].as_str() {
                    d = d.kms_master_key_id(k);
                }
                let mut rule = ServerSideEncryptionRule::builder()
                    .apply_server_side_encryption_by_default(d.build().map_err(build_err)?);
                if let Some(b) = r["BucketKeyEnabled"].as_bool() {
                    rule = rule.bucket_key_enabled(b);
                }
                cfg = cfg.rules(rule.build());
            }
            c.s3.put_bucket_encryption()
                .bucket(bucket)
                .server_side_encryption_configuration(cfg.build().map_err(build_err)?)
                .send()
                .await?;
        }
        (VERSIONING, w) => {
            // A bucket never returns to "never versioned": the closest state is Suspended.
            let status = match w["Status"].as_str() {
                Some("Enabled") => BucketVersioningStatus::Enabled,
                _ => BucketVersioningStatus::Suspended,
            };
            let cfg = VersioningConfiguration::builder().status(status).build();
            c.s3.put_bucket_versioning().bucket(bucket).versioning_configuration(cfg).send().await?;
        }
        (POLICY, Value::Null) => {
            c.s3.delete_bucket_policy().bucket(bucket).send().await?;
        }
        (POLICY, w) => {
            c.s3.put_bucket_policy().bucket(bucket).policy(w.to_string()).send().await?;
        }
        (LOGGING, w) => {
            let enabled = match w["TargetBucket"].as_str() {
                Some(target) => Some(
                    LoggingEnabled::builder()
                        .target_bucket(target)
                        .target_prefix(w["TargetPrefix"].as_str().unwrap_or(""))
                        .build()
                        .map_err(build_err)?,
                ),
                None => None,
            };
            let status = BucketLoggingStatus::builder().set_logging_enabled(enabled).build();
            c.s3.put_bucket_logging().bucket(bucket).bucket_logging_status(status).send().await?;
        }
        (other, _) => return Err(AwsError::other(format!("{other} is not an aspect of a bucket"))),
    }
    Ok(())
}

/// The region a bucket lives in (`GetBucketLocation` answers nothing for us-east-1, `EU` for
/// the oldest eu-west-1 buckets).
pub(crate) async fn region_of(c: &Clients, bucket: &str) -> Result<String, AwsError> {
    let out = c.s3.get_bucket_location().bucket(bucket).send().await?;
    Ok(match out.location_constraint().map(|l| l.as_str()) {
        None | Some("") => "us-east-1".to_string(),
        Some("EU") => "eu-west-1".to_string(),
        Some(r) => r.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: &str = "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a";

    fn plan(action: &str, args: &[(&str, &str)], before: &Value) -> Value {
        let args = args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        planned("logs-bucket", action, &args, before).unwrap()
    }

    #[test]
    fn the_public_access_block_is_planned_all_on() {
        let all = json!({"BlockPublicAcls": true, "IgnorePublicAcls": true, "BlockPublicPolicy": true, "RestrictPublicBuckets": true});
        assert_eq!(plan("s3.block_public_access", &[], &Value::Null), all);
        let some = json!({"BlockPublicAcls": true, "IgnorePublicAcls": false, "BlockPublicPolicy": false, "RestrictPublicBuckets": false});
        assert_eq!(plan("s3.block_public_access", &[], &some), all);
    }

    #[test]
    fn a_private_acl_is_the_owner_s_full_control() {
        let grant = |grantee: Value, permission: &str| json!({"Grantee": grantee, "Permission": permission});
        let owner = json!({"Type": "CanonicalUser", "ID": OWNER, "URI": null, "EmailAddress": null});
        let all_users = json!({"Type": "Group", "ID": null, "URI": PUBLIC_GROUPS[0], "EmailAddress": null});
        let before =
            json!({"Owner": {"ID": OWNER}, "Grants": [grant(owner.clone(), "FULL_CONTROL"), grant(all_users, "READ")]});
        let after = plan("s3.acl_private", &[], &before);
        assert_eq!(after, json!({"Owner": {"ID": OWNER}, "Grants": [grant(owner, "FULL_CONTROL")]}));
        assert!(acl_public_grants(&after).is_empty());
        // Planned from the private ACL, it is the same: nothing to change.
        assert_eq!(plan("s3.acl_private", &[], &after), after);
    }

    #[test]
    fn default_encryption_replaces_the_configuration() {
        let before = json!({"Rules": [{"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "arn:aws:kms:us-east-1:123456789012:key/1", "BucketKeyEnabled": true}]});
        assert_eq!(
            plan("s3.default_encryption", &[("algorithm", "AES256")], &before),
            json!({"Rules": [{"SSEAlgorithm": "AES256", "KMSMasterKeyID": null, "BucketKeyEnabled": false}]})
        );
        assert_eq!(
            plan("s3.default_encryption", &[("algorithm", "aws:kms")], &Value::Null),
            json!({"Rules": [{"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": null, "BucketKeyEnabled": false}]})
        );
        assert_eq!(plan("s3.default_encryption", &[], &Value::Null)["Rules"][0]["SSEAlgorithm"], "AES256");
    }

    #[test]
    fn versioning_is_enabled_and_mfa_delete_left_as_it_is() {
        let never = json!({"Status": null, "MFADelete": null});
        assert_eq!(plan("s3.enable_versioning", &[], &never), json!({"Status": "Enabled", "MFADelete": null}));
        let suspended = json!({"Status": "Suspended", "MFADelete": "Disabled"});
        assert_eq!(
            plan("s3.enable_versioning", &[], &suspended),
            json!({"Status": "Enabled", "MFADelete": "Disabled"})
        );
    }

    #[test]
    fn the_deny_http_statement_is_added_once() {
        let deny = json!({
            "Sid": DENY_HTTP_SID,
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": ["arn:aws:s3:::logs-bucket", "arn:aws:s3:::logs-bucket/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        });
        let after = plan("s3.deny_insecure_transport", &[], &Value::Null);
        assert_eq!(after, json!({"Version": "2012-10-17", "Statement": [deny.clone()]}));
        assert!(denies_http(&after));
        assert_eq!(plan("s3.deny_insecure_transport", &[], &after), after, "already denied: unchanged");
        // A single statement (not a list) becomes a list of two.
        let read = json!({"Sid": "Read", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::logs-bucket/*"});
        let before = json!({"Version": "2012-10-17", "Id": "p1", "Statement": read.clone()});
        assert_eq!(
            plan("s3.deny_insecure_transport", &[], &before),
            json!({"Version": "2012-10-17", "Id": "p1", "Statement": [read, deny]})
        );
        assert!(planned("b", "s3.make_public", &BTreeMap::new(), &Value::Null).is_err());
    }
}
