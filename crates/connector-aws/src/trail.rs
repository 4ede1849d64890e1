//! CloudTrail trails (`aws.trail`, one instance per trail, in its home region): whether it logs
//! every region, is logging now, validates and encrypts its log files, and whether the bucket
//! it delivers to logs its own access and is not public. Each setting is its own aspect, so two
//! repairs of one trail never restore each other's setting.

use std::collections::BTreeMap;

use aws_sdk_cloudtrail::types::Trail;
use model::Document;
use serde_json::{json, Value};

use crate::clients::{AwsError, Clients, Failure};
use crate::s3;

pub(crate) const MULTI_REGION: &str = "multi_region";
pub(crate) const LOGGING: &str = "logging";
pub(crate) const LOG_VALIDATION: &str = "log_validation";
pub(crate) const KMS: &str = "kms";
pub(crate) const BUCKET_LOGGING: &str = "bucket_logging";

/// The trail as DescribeTrails answers it in its home region.
pub(crate) async fn describe(c: &Clients, name: &str) -> Result<Trail, AwsError> {
    let out = c.cloudtrail.describe_trails().trail_name_list(name).include_shadow_trails(false).send().await?;
    out.trail_list()
        .iter()
        .find(|t| t.name() == Some(name) || t.trail_arn() == Some(name))
        .cloned()
        .ok_or_else(|| AwsError::gone("TrailNotFoundException", format!("trail {name} does not exist")))
}

fn bucket_of(t: &Trail) -> Result<&str, AwsError> {
    t.s3_bucket_name().ok_or_else(|| AwsError::other("the trail names no S3 bucket"))
}

pub(crate) async fn read(c: &Clients, name: &str, aspect: &str) -> Result<Value, AwsError> {
    let t = describe(c, name).await?;
    Ok(match aspect {
        MULTI_REGION => json!({"IsMultiRegionTrail": t.is_multi_region_trail().unwrap_or(false)}),
        LOG_VALIDATION => json!({"LogFileValidationEnabled": t.log_file_validation_enabled().unwrap_or(false)}),
        KMS => json!({"KmsKeyId": t.kms_key_id().filter(|k| !k.is_empty())}),
        LOGGING => {
            let status = c.cloudtrail.get_trail_status().name(name).send().await?;
            json!({"IsLogging": status.is_logging().unwrap_or(false)})
        }
        BUCKET_LOGGING => s3::read(c, bucket_of(&t)?, s3::LOGGING).await?,
        other => return Err(AwsError::other(format!("{other} is not an aspect of a trail"))),
    })
}

pub(crate) async fn document(c: &Clients, name: &str) -> Result<Document, AwsError> {
    let t = describe(c, name).await?;
    let status = c.cloudtrail.get_trail_status().name(name).send().await?;
    let mut d = Document::new();
    let flag = |b: Option<bool>| b.unwrap_or(false).to_string();
    d.insert("trail.multi_region".into(), flag(t.is_multi_region_trail()));
    d.insert("trail.logging".into(), flag(status.is_logging()));
    d.insert("trail.log_validation".into(), flag(t.log_file_validation_enabled()));
    if let Some(key) = t.kms_key_id().filter(|k| !k.is_empty()) {
        d.insert("trail.kms_key".into(), key.to_string());
    }
    let Some(bucket) = t.s3_bucket_name() else { return Ok(d) };
    d.insert("trail.bucket".into(), bucket.to_string());
    // The bucket is another resource, often in another region or account: not being able to
    // read it is a finding about the bucket (its items then do not apply, the reason is kept),
    // not an error of the trail, whose own items still answer.
    let logging = match bucket_part(s3::read(c, bucket, s3::LOGGING).await, &mut d)? {
        Some(l) => l,
        None => return Ok(d),
    };
    if let Value::Object(l) = logging {
        d.insert("trail.bucket_logging".into(), l.get("TargetBucket").and_then(Value::as_str).unwrap_or("").into());
    }
    let Some(public) = bucket_part(s3::public_grants(c, bucket).await, &mut d)? else { return Ok(d) };
    d.insert("trail.bucket_readable".into(), "yes".into());
    d.insert("trail.bucket_public".into(), if public.is_empty() { "no" } else { "yes" }.into());
    d.insert("trail.bucket_public_grants".into(), public.join(", "));
    Ok(d)
}

/// A read of the trail's bucket: its value, or None with the reason kept in the document
/// (`trail.bucket_unreadable`); only a transient failure is an error of the whole fetch.
fn bucket_part<T>(read: Result<T, AwsError>, d: &mut Document) -> Result<Option<T>, AwsError> {
    match read {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.failure == Failure::Transient => Err(e),
        Err(e) => {
            let why = if e.code.is_empty() { e.message } else { format!("AWS {}: {}", e.code, e.message) };
            d.insert("trail.bucket_unreadable".into(), why);
            Ok(None)
        }
    }
}

pub(crate) async fn apply(
    c: &Clients,
    name: &str,
    action: &str,
    args: &BTreeMap<String, String>,
) -> Result<(), AwsError> {
    let (aspect, want) = wanted(action, args)?;
    write(c, name, aspect, &want).await
}

/// The aspect an action changes and what it writes there (the JSON of [`read`]).
fn wanted(action: &str, args: &BTreeMap<String, String>) -> Result<(&'static str, Value), AwsError> {
    let arg = |n: &str| args.get(n).cloned().ok_or_else(|| AwsError::other(format!("{action} needs {n}")));
    Ok(match action {
        "trail.multi_region" => (MULTI_REGION, json!({"IsMultiRegionTrail": true})),
        "trail.start_logging" => (LOGGING, json!({"IsLogging": true})),
        "trail.log_validation" => (LOG_VALIDATION, json!({"LogFileValidationEnabled": true})),
        "trail.encrypt" => (KMS, json!({"KmsKeyId": arg("kms_key")?})),
        "trail.bucket_logging" => {
            (BUCKET_LOGGING, json!({"TargetBucket": arg("target_bucket")?, "TargetPrefix": arg("prefix")?}))
        }
        other => return Err(AwsError::other(format!("{other} is not a trail action"))),
    })
}

/// The ARN of the KMS key `key` names (a key ARN, an alias ARN, `alias/…`, or a key id),
/// which is how CloudTrail stores and describes a trail's key whatever form it was given in.
/// Read only: DescribeKey, unless `key` is already a key ARN.
pub(crate) async fn key_arn(c: &Clients, key: &str) -> Result<String, AwsError> {
    if is_key_arn(key) {
        return Ok(key.to_string());
    }
    match c.kms.describe_key().key_id(key).send().await.map_err(AwsError::from) {
        Ok(out) => out
            .key_metadata()
            .and_then(|m| m.arn())
            .map(str::to_string)
            .ok_or_else(|| AwsError::other(format!("KMS describes no ARN for the key {key}"))),
        // The key is missing, not the trail: the repair would fail (CloudTrail refuses a key it
        // cannot find), which is no reason to take the trail for gone.
        Err(e) if e.failure == Failure::Gone => {
            Err(AwsError::other(format!("the KMS key {key} does not exist: AWS {}: {}", e.code, e.message)))
        }
        Err(e) => Err(e),
    }
}

fn is_key_arn(key: &str) -> bool {
    key.starts_with("arn:") && key.split(':').nth(2) == Some("kms") && key.contains(":key/")
}

/// What the aspect `action` changes will read as after [`apply`] carried it out: what it
/// writes, except that CloudTrail describes the key of `trail.encrypt` by its ARN (`key_arn`,
/// see [`key_arn`]; None: as given). Calls nothing.
pub(crate) fn planned(action: &str, args: &BTreeMap<String, String>, key_arn: Option<&str>) -> Result<Value, AwsError> {
    let (aspect, mut want) = wanted(action, args)?;
    if let (KMS, Some(arn)) = (aspect, key_arn) {
        want["KmsKeyId"] = Value::from(arn);
    }
    Ok(want)
}

pub(crate) async fn write(c: &Clients, name: &str, aspect: &str, want: &Value) -> Result<(), AwsError> {
    let flag = |f: &str| want[f].as_bool().unwrap_or(false);
    let update = || c.cloudtrail.update_trail().name(name);
    match aspect {
        MULTI_REGION => drop(update().is_multi_region_trail(flag("IsMultiRegionTrail")).send().await?),
        LOG_VALIDATION => drop(update().enable_log_file_validation(flag("LogFileValidationEnabled")).send().await?),
        // An empty key id turns SSE-KMS off again (the trail then uses the bucket's encryption).
        KMS => drop(update().kms_key_id(want["KmsKeyId"].as_str().unwrap_or("")).send().await?),
        LOGGING if flag("IsLogging") => drop(c.cloudtrail.start_logging().name(name).send().await?),
        LOGGING => drop(c.cloudtrail.stop_logging().name(name).send().await?),
        BUCKET_LOGGING => {
            let t = describe(c, name).await?;
            s3::write(c, bucket_of(&t)?, s3::LOGGING, want).await?
        }
        other => return Err(AwsError::other(format!("{other} is not an aspect of a trail"))),
    }
    Ok(())
}

/// The trails of a region whose home it is.
pub(crate) async fn list(c: &Clients, region: &str) -> Result<Vec<(String, String)>, AwsError> {
    let out = c.cloudtrail.describe_trails().include_shadow_trails(false).send().await?;
    Ok(out
        .trail_list()
        .iter()
        .filter(|t| t.home_region().is_none_or(|h| h == region))
        .filter_map(|t| t.name().map(|n| (n.to_string(), format!("trail {n}"))))
        .collect())
}

/// What one trail records of S3 object-level (data) events in every bucket: (reads, writes).
fn s3_object_events(
    selectors: &[aws_sdk_cloudtrail::types::EventSelector],
    advanced: &[aws_sdk_cloudtrail::types::AdvancedEventSelector],
) -> (bool, bool) {
    use aws_sdk_cloudtrail::types::ReadWriteType;
    let (mut reads, mut writes) = (false, false);
    for s in selectors {
        let all_buckets = s.data_resources().iter().any(|r| {
            r.r#type() == Some("AWS::S3::Object")
                && r.values().iter().any(|v| v == "arn:aws:s3" || v == "arn:aws:s3:::")
        });
        if all_buckets {
            match s.read_write_type() {
                Some(ReadWriteType::ReadOnly) => reads = true,
                Some(ReadWriteType::WriteOnly) => writes = true,
                _ => (reads, writes) = (true, true),
            }
        }
    }
    for s in advanced {
        let field = |name: &str| s.field_selectors().iter().find(|f| f.field() == name);
        let equals = |name: &str, v: &str| field(name).is_some_and(|f| f.equals().iter().any(|e| e == v));
        // Selectors narrowed to some buckets (resources.ARN) do not cover every bucket.
        if equals("eventCategory", "Data")
            && equals("resources.type", "AWS::S3::Object")
            && field("resources.ARN").is_none()
        {
            match field("readOnly").map(|f| f.equals()) {
                Some([v]) if v == "true" => reads = true,
                Some([v]) if v == "false" => writes = true,
                _ => (reads, writes) = (true, true),
            }
        }
    }
    (reads, writes)
}

/// Whether a trail's selectors record every management event (reads and writes). A trail
/// without selectors records them all (CloudTrail's default).
fn all_management_events(
    selectors: &[aws_sdk_cloudtrail::types::EventSelector],
    advanced: &[aws_sdk_cloudtrail::types::AdvancedEventSelector],
) -> bool {
    use aws_sdk_cloudtrail::types::ReadWriteType;
    if selectors.is_empty() && advanced.is_empty() {
        return true;
    }
    selectors.iter().any(|s| {
        s.include_management_events().unwrap_or(true)
            && matches!(s.read_write_type(), None | Some(ReadWriteType::All))
            && s.exclude_management_event_sources().is_empty()
    }) || advanced.iter().any(|s| {
        let f = s.field_selectors();
        f.iter().any(|f| f.field() == "eventCategory" && f.equals().iter().any(|e| e == "Management"))
            && !f.iter().any(|f| f.field() == "readOnly" || f.field() == "eventSource")
    })
}

/// The account's trails seen from one region (shadow trails included): which of them log every
/// region with every management event, and which record S3 object reads and writes everywhere.
pub(crate) async fn account_document(c: &Clients) -> Result<Document, AwsError> {
    let out = c.cloudtrail.describe_trails().include_shadow_trails(true).send().await?;
    let (mut management, mut reads, mut writes) = (Vec::new(), Vec::new(), Vec::new());
    for t in out.trail_list() {
        let Some(id) = t.trail_arn().or(t.name()) else { continue };
        let name = t.name().unwrap_or(id).to_string();
        let logging = c.cloudtrail.get_trail_status().name(id).send().await?.is_logging().unwrap_or(false);
        if !logging || !t.is_multi_region_trail().unwrap_or(false) {
            continue;
        }
        let sel = c.cloudtrail.get_event_selectors().trail_name(id).send().await?;
        if all_management_events(sel.event_selectors(), sel.advanced_event_selectors()) {
            management.push(name.clone());
        }
        let (r, w) = s3_object_events(sel.event_selectors(), sel.advanced_event_selectors());
        if r {
            reads.push(name.clone());
        }
        if w {
            writes.push(name);
        }
    }
    let mut d = Document::new();
    d.insert("account.trails".into(), out.trail_list().len().to_string());
    for (key, names) in [
        ("account.trail_all_regions", management),
        ("account.trail_s3_reads", reads),
        ("account.trail_s3_writes", writes),
    ] {
        if !names.is_empty() {
            d.insert(key.into(), names.join(", "));
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn each_action_plans_its_aspect() {
        let none = BTreeMap::new();
        assert_eq!(planned("trail.multi_region", &none, None).unwrap(), json!({"IsMultiRegionTrail": true}));
        assert_eq!(planned("trail.start_logging", &none, None).unwrap(), json!({"IsLogging": true}));
        assert_eq!(planned("trail.log_validation", &none, None).unwrap(), json!({"LogFileValidationEnabled": true}));
        let logging = args(&[("target_bucket", "access-logs"), ("prefix", "cloudtrail-access/")]);
        assert_eq!(
            planned("trail.bucket_logging", &logging, None).unwrap(),
            json!({"TargetBucket": "access-logs", "TargetPrefix": "cloudtrail-access/"})
        );
        assert!(planned("trail.bucket_logging", &args(&[("target_bucket", "b")]), None).is_err(), "no prefix");
        assert!(planned("trail.delete", &none, None).is_err());
    }

    #[test]
    fn a_trail_s_key_is_planned_as_its_arn() {
        let arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        assert!(is_key_arn(arn));
        assert!(!is_key_arn("arn:aws:kms:us-east-1:123456789012:alias/trail"));
        assert!(!is_key_arn("alias/trail"));
        assert!(!is_key_arn("1234abcd-12ab-34cd-56ef-1234567890ab"));
        assert_eq!(planned("trail.encrypt", &args(&[("kms_key", arn)]), Some(arn)).unwrap(), json!({"KmsKeyId": arn}));
        // An alias: CloudTrail describes the key it names by the key's ARN.
        assert_eq!(
            planned("trail.encrypt", &args(&[("kms_key", "alias/trail")]), Some(arn)).unwrap(),
            json!({"KmsKeyId": arn})
        );
        assert!(planned("trail.encrypt", &BTreeMap::new(), None).is_err());
    }
}
