//! EC2 instances (`aws.ec2`): metadata options, and the instance profile (read only). moto
//! does not implement the `metadata-options.http-tokens` filter, so instances are read one by
//! one and judged here.

use aws_sdk_ec2::types::{HttpTokensState, InstanceMetadataEndpointState, InstanceStateName};
use model::Document;
use serde_json::{json, Value};

use crate::clients::{AwsError, Clients};

pub(crate) const METADATA_OPTIONS: &str = "metadata_options";

/// The instance's metadata options (the aspect a repair changes).
pub(crate) async fn read(c: &Clients, instance_id: &str) -> Result<Value, AwsError> {
    Ok(metadata_options(&describe(c, instance_id).await?))
}

fn metadata_options(i: &aws_sdk_ec2::types::Instance) -> Value {
    let m = i.metadata_options();
    json!({
        "HttpTokens": m.and_then(|m| m.http_tokens()).map(|t| t.as_str()),
        "HttpEndpoint": m.and_then(|m| m.http_endpoint()).map(|e| e.as_str()),
        "HttpPutResponseHopLimit": m.and_then(|m| m.http_put_response_hop_limit()),
    })
}

async fn describe(c: &Clients, instance_id: &str) -> Result<aws_sdk_ec2::types::Instance, AwsError> {
    let out = c.ec2.describe_instances().instance_ids(instance_id).send().await?;
    let instance = out.reservations().iter().flat_map(|r| r.instances()).find(|i| i.instance_id() == Some(instance_id));
    let gone =
        || AwsError::gone("InvalidInstanceID.NotFound", format!("{instance_id} does not exist or is terminated"));
    let Some(i) = instance else { return Err(gone()) };
    if matches!(i.state().and_then(|s| s.name()), Some(InstanceStateName::Terminated | InstanceStateName::ShuttingDown))
    {
        return Err(gone());
    }
    Ok(i.clone())
}

pub(crate) async fn document(c: &Clients, instance_id: &str) -> Result<Document, AwsError> {
    let i = describe(c, instance_id).await?;
    let m = metadata_options(&i);
    let mut d = Document::new();
    // CIS 1.18: the instance reaches AWS through a role, not keys stored on it.
    if let Some(profile) = i.iam_instance_profile().and_then(|p| p.arn()) {
        d.insert("ec2.instance_profile".into(), profile.to_string());
    }
    for (field, key) in [("HttpTokens", "ec2.http_tokens"), ("HttpEndpoint", "ec2.http_endpoint")] {
        if let Some(v) = m[field].as_str() {
            d.insert(key.into(), v.to_string());
        }
    }
    Ok(d)
}

pub(crate) async fn apply(c: &Clients, instance_id: &str, action: &str) -> Result<(), AwsError> {
    match action {
        "ec2.require_imdsv2" => {
            c.ec2
                .modify_instance_metadata_options()
                .instance_id(instance_id)
                .http_tokens(HttpTokensState::Required)
                .http_endpoint(InstanceMetadataEndpointState::Enabled)
                .send()
                .await?;
            Ok(())
        }
        other => Err(AwsError::other(format!("{other} is not an EC2 instance action"))),
    }
}

/// What the metadata options will read as after [`apply`] carried `action` out on options that
/// read as `before`; calls nothing. The hop limit is not in the request, so AWS keeps it (moto
/// replaces every option and answers no hop limit after it).
pub(crate) fn planned(action: &str, before: &Value) -> Result<Value, AwsError> {
    match action {
        "ec2.require_imdsv2" => Ok(json!({
            "HttpTokens": HttpTokensState::Required.as_str(),
            "HttpEndpoint": InstanceMetadataEndpointState::Enabled.as_str(),
            "HttpPutResponseHopLimit": before.get("HttpPutResponseHopLimit").cloned().unwrap_or(Value::Null),
        })),
        other => Err(AwsError::other(format!("{other} is not an EC2 instance action"))),
    }
}

pub(crate) async fn write(c: &Clients, instance_id: &str, want: &Value) -> Result<(), AwsError> {
    c.ec2
        .modify_instance_metadata_options()
        .instance_id(instance_id)
        .set_http_tokens(want["HttpTokens"].as_str().map(HttpTokensState::from))
        .set_http_endpoint(want["HttpEndpoint"].as_str().map(InstanceMetadataEndpointState::from))
        .set_http_put_response_hop_limit(want["HttpPutResponseHopLimit"].as_i64().map(|n| n as i32))
        .send()
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imdsv2_is_planned_required_and_the_hop_limit_kept() {
        let before = json!({"HttpTokens": "optional", "HttpEndpoint": "disabled", "HttpPutResponseHopLimit": 2});
        assert_eq!(
            planned("ec2.require_imdsv2", &before).unwrap(),
            json!({"HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 2})
        );
        let done = json!({"HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 1});
        assert_eq!(planned("ec2.require_imdsv2", &done).unwrap(), done);
        assert!(planned("ec2.stop", &done).is_err());
    }
}
