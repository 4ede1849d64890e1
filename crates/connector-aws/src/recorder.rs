//! A region's AWS Config recorder (`aws.config`, one instance per account and region, its id
//! `<account id>-config`): whether
//! a recorder exists, is recording, and records every supported resource type including the
//! global ones. A stopped recorder can be started (and stopped again on rollback); creating one
//! needs an IAM role and a delivery channel that a person chooses, so a region without one is
//! reported, not repaired.

use model::Document;
use serde_json::{json, Value};

use crate::clients::{AwsError, Clients};

pub(crate) const RECORDING: &str = "recording";

/// The instance id of a region's AWS Config settings (the account id is EBS's).
pub(crate) fn instance_id(account: &str) -> String {
    format!("{account}-config")
}

/// The first recorder's name (a region has at most one customer managed recorder).
async fn recorder(c: &Clients) -> Result<Option<aws_sdk_config::types::ConfigurationRecorder>, AwsError> {
    let out = c.config.describe_configuration_recorders().send().await?;
    Ok(out.configuration_recorders().first().cloned())
}

pub(crate) async fn read(c: &Clients) -> Result<Value, AwsError> {
    let out = c.config.describe_configuration_recorder_status().send().await?;
    Ok(json!({"Recording": out.configuration_recorders_status().iter().any(|s| s.recording())}))
}

pub(crate) async fn document(c: &Clients) -> Result<Document, AwsError> {
    let mut d = Document::new();
    let Some(r) = recorder(c).await? else { return Ok(d) };
    d.insert("config.recorder".into(), r.name().unwrap_or("default").to_string());
    let on = read(c).await?["Recording"].as_bool().unwrap_or(false);
    d.insert("config.recording".into(), on.to_string());
    let group = r.recording_group();
    d.insert("config.all_supported".into(), group.is_none_or(|g| g.all_supported()).to_string());
    d.insert("config.global_resources".into(), group.is_some_and(|g| g.include_global_resource_types()).to_string());
    Ok(d)
}

pub(crate) async fn apply(c: &Clients, action: &str) -> Result<(), AwsError> {
    match action {
        "config.start_recorder" => write(c, &json!({"Recording": true})).await,
        other => Err(AwsError::other(format!("{other} is not an AWS Config action"))),
    }
}

/// Whether the region has a configuration recorder (without one, [`write`] fails).
pub(crate) async fn exists(c: &Clients) -> Result<bool, AwsError> {
    Ok(recorder(c).await?.is_some())
}

/// What the recording status will read as after [`apply`] carried `action` out in a region that
/// has a recorder (`has_recorder`, see [`exists`]); without one the repair fails, and so does
/// its plan. Calls nothing.
pub(crate) fn planned(action: &str, has_recorder: bool) -> Result<Value, AwsError> {
    match action {
        "config.start_recorder" if has_recorder => Ok(json!({"Recording": true})),
        "config.start_recorder" => Err(no_recorder()),
        other => Err(AwsError::other(format!("{other} is not an AWS Config action"))),
    }
}

fn no_recorder() -> AwsError {
    AwsError::other(
        "the region has no configuration recorder: create one (it needs an IAM role and a delivery channel)",
    )
}

pub(crate) async fn write(c: &Clients, want: &Value) -> Result<(), AwsError> {
    let Some(r) = recorder(c).await? else { return Err(no_recorder()) };
    let name = r.name().unwrap_or("default");
    if want["Recording"].as_bool().unwrap_or(false) {
        c.config.start_configuration_recorder().configuration_recorder_name(name).send().await?;
    } else {
        c.config.stop_configuration_recorder().configuration_recorder_name(name).send().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starting_plans_recording_where_there_is_a_recorder() {
        assert_eq!(planned("config.start_recorder", true).unwrap(), json!({"Recording": true}));
        let e = planned("config.start_recorder", false).unwrap_err();
        assert!(e.message.contains("no configuration recorder"), "{}", e.message);
        assert!(planned("config.delete_recorder", true).is_err());
    }
}
