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
    let arg = |n: &str| args.get(n).cloned().ok_or_else(|| AwsError::other(format!("{action} needs {n}")));
    match action {
        "trail.multi_region" => write(c, name, MULTI_REGION, &json!({"IsMultiRegionTrail": true})).await,
        "trail.start_logging" => write(c, name, LOGGING, &json!({"IsLogging": true})).await,
        "trail.log_validation" => write(c, name, LOG_VALIDATION, &json!({"LogFileValidationEnabled": true})).await,
        "trail.encrypt" => write(c, name, KMS, &json!({"KmsKeyId": arg("kms_key")?})).await,
        "trail.bucket_logging" => {
            let want = json!({"TargetBucket": arg("target_bucket")?, "TargetPrefix": arg("prefix")?});
            write(c, name, BUCKET_LOGGING, &want).await
        }
        other => Err(AwsError::other(format!("{other} is not a trail action"))),
    }
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
