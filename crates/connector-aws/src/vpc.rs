//! VPCs (`aws.vpc`): flow logs. A repair adds one flow log to an S3 bucket; its rollback deletes
//! exactly the flow logs the repair added (a flow log deleted by someone else cannot be brought
//! back with its id, so that restore is refused rather than imitated).

use aws_sdk_ec2::types::{Filter, FlowLogsResourceType, LogDestinationType, TrafficType};
use model::Document;
use serde_json::{json, Value};

use crate::clients::{AwsError, Clients};

pub(crate) const FLOW_LOGS: &str = "flow_logs";

async fn exists(c: &Clients, vpc: &str) -> Result<bool, AwsError> {
    let out = c.ec2.describe_vpcs().vpc_ids(vpc).send().await?;
    Ok(out.vpcs().iter().any(|v| v.vpc_id() == Some(vpc)))
}

/// The VPC's flow logs, sorted by id.
pub(crate) async fn read(c: &Clients, vpc: &str) -> Result<Value, AwsError> {
    if !exists(c, vpc).await? {
        return Err(AwsError::gone("InvalidVpcID.NotFound", format!("{vpc} does not exist")));
    }
    let filter = Filter::builder().name("resource-id").values(vpc).build();
    let out = c.ec2.describe_flow_logs().filter(filter).send().await?;
    let mut logs: Vec<Value> = out
        .flow_logs()
        .iter()
        .map(|f| {
            json!({
                "FlowLogId": f.flow_log_id(),
                "TrafficType": f.traffic_type().map(|t| t.as_str()),
                "LogDestinationType": f.log_destination_type().map(|t| t.as_str()),
                "LogDestination": f.log_destination().or(f.log_group_name()),
            })
        })
        .collect();
    logs.sort_by_key(|l| l["FlowLogId"].as_str().unwrap_or("").to_string());
    Ok(Value::Array(logs))
}

pub(crate) async fn document(c: &Clients, vpc: &str) -> Result<Document, AwsError> {
    let logs = read(c, vpc).await?;
    let logs = logs.as_array().map(Vec::as_slice).unwrap_or_default();
    let shown: Vec<String> = logs
        .iter()
        .map(|l| format!("{} ({} to {})", l["FlowLogId"].as_str().unwrap_or(""), l["TrafficType"], l["LogDestination"]))
        .collect();
    Ok(Document::from([
        ("vpc.flow_logs".to_string(), logs.len().to_string()),
        ("vpc.flow_log_list".to_string(), shown.join(", ")),
    ]))
}

pub(crate) async fn apply(
    c: &Clients,
    vpc: &str,
    action: &str,
    args: &std::collections::BTreeMap<String, String>,
) -> Result<(), AwsError> {
    let (bucket, traffic) = wanted(action, args)?;
    // A repair repeated after a crash finds its flow log already there.
    if delivers_to(&read(c, vpc).await?, bucket) {
        return Ok(());
    }
    let out = c
        .ec2
        .create_flow_logs()
        .resource_ids(vpc)
        .resource_type(FlowLogsResourceType::Vpc)
        .traffic_type(TrafficType::from(traffic))
        .log_destination_type(LogDestinationType::S3)
        .log_destination(bucket)
        .send()
        .await?;
    if let Some(e) = out.unsuccessful().first().and_then(|u| u.error()) {
        return Err(AwsError::other(format!(
            "AWS {}: {}",
            e.code().unwrap_or(""),
            e.message().unwrap_or("the flow log was not created")
        )));
    }
    Ok(())
}

/// The bucket (ARN) and the traffic (`ALL`, `ACCEPT`, `REJECT`) of the flow log an action adds.
fn wanted<'a>(
    action: &str,
    args: &'a std::collections::BTreeMap<String, String>,
) -> Result<(&'a str, &'a str), AwsError> {
    if action != "vpc.flow_logs" {
        return Err(AwsError::other(format!("{action} is not a VPC action")));
    }
    let bucket = args.get("bucket_arn").ok_or_else(|| AwsError::other("vpc.flow_logs needs bucket_arn"))?;
    Ok((bucket, args.get("traffic").map_or("ALL", String::as_str)))
}

/// Whether one of the flow logs (as [`read`]) already delivers to `bucket`.
fn delivers_to(logs: &Value, bucket: &str) -> bool {
    logs.as_array().into_iter().flatten().any(|l| l["LogDestination"] == bucket)
}

/// What stands for the id of a flow log not created yet: AWS assigns it (`fl-…`) when it
/// creates the flow log, and nothing can tell it in advance.
pub(crate) const ASSIGNED_BY_AWS: &str = "(assigned by AWS)";

/// What the flow logs will read as after [`apply`] carried `action` out on flow logs that read as
/// `before`; calls nothing. The flow log a repair adds has every field as it will read, except
/// its id, [`ASSIGNED_BY_AWS`]; the list stays sorted by id as [`read`] sorts it (the
/// placeholder sorts first, where the real id may sort anywhere).
pub(crate) fn planned(
    action: &str,
    args: &std::collections::BTreeMap<String, String>,
    before: &Value,
) -> Result<Value, AwsError> {
    let (bucket, traffic) = wanted(action, args)?;
    if delivers_to(before, bucket) {
        return Ok(before.clone());
    }
    let mut logs = before.as_array().cloned().unwrap_or_default();
    logs.push(json!({
        "FlowLogId": ASSIGNED_BY_AWS,
        "TrafficType": TrafficType::from(traffic).as_str(),
        "LogDestinationType": LogDestinationType::S3.as_str(),
        "LogDestination": bucket,
    }));
    logs.sort_by_key(|l| l["FlowLogId"].as_str().unwrap_or("").to_string());
    Ok(Value::Array(logs))
}

/// Deletes the flow logs `want` does not have; one it has that is gone cannot be recreated.
pub(crate) async fn write(c: &Clients, vpc: &str, want: &Value) -> Result<(), AwsError> {
    let id = |l: &Value| l["FlowLogId"].as_str().unwrap_or("").to_string();
    let want: Vec<String> = want.as_array().into_iter().flatten().map(id).collect();
    let now: Vec<String> = read(c, vpc).await?.as_array().into_iter().flatten().map(id).collect();
    if let Some(lost) = want.iter().find(|w| !now.contains(w)) {
        return Err(AwsError::other(format!("flow log {lost} was deleted and cannot be recreated with its id")));
    }
    let extra: Vec<String> = now.into_iter().filter(|n| !want.contains(n)).collect();
    if !extra.is_empty() {
        c.ec2.delete_flow_logs().set_flow_log_ids(Some(extra)).send().await?;
    }
    Ok(())
}

pub(crate) async fn list(c: &Clients) -> Result<Vec<(String, String)>, AwsError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = c.ec2.describe_vpcs().set_next_token(token.take()).send().await?;
        for v in page.vpcs() {
            let Some(id) = v.vpc_id() else { continue };
            let name = v.tags().iter().find(|t| t.key() == Some("Name")).and_then(|t| t.value());
            let default = if v.is_default() == Some(true) { ", default" } else { "" };
            out.push((id.to_string(), format!("{} ({id}{default})", name.unwrap_or("VPC"))));
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_flow_log_is_planned_once_with_its_id_left_to_aws() {
        let args = BTreeMap::from([
            ("bucket_arn".to_string(), "arn:aws:s3:::flow-logs".to_string()),
            ("traffic".to_string(), "REJECT".to_string()),
        ]);
        let other = json!({"FlowLogId": "fl-0123456789abcdef0", "TrafficType": "ALL", "LogDestinationType": "cloud-watch-logs", "LogDestination": "vpc-logs"});
        let added = json!({"FlowLogId": ASSIGNED_BY_AWS, "TrafficType": "REJECT", "LogDestinationType": "s3", "LogDestination": "arn:aws:s3:::flow-logs"});
        assert_eq!(planned("vpc.flow_logs", &args, &json!([])).unwrap(), json!([added.clone()]));
        assert_eq!(planned("vpc.flow_logs", &args, &json!([other.clone()])).unwrap(), json!([added, other]));
        // Already delivering to the bucket (whatever the traffic): nothing is added.
        let there = json!([{"FlowLogId": "fl-1", "TrafficType": "ALL", "LogDestinationType": "s3", "LogDestination": "arn:aws:s3:::flow-logs"}]);
        assert_eq!(planned("vpc.flow_logs", &args, &there).unwrap(), there);
        // Traffic defaults to ALL.
        let bucket_only = BTreeMap::from([("bucket_arn".to_string(), "arn:aws:s3:::flow-logs".to_string())]);
        assert_eq!(planned("vpc.flow_logs", &bucket_only, &json!([])).unwrap()[0]["TrafficType"], "ALL");
        assert!(planned("vpc.flow_logs", &BTreeMap::new(), &json!([])).is_err());
        assert!(planned("vpc.delete", &args, &json!([])).is_err());
    }
}
