//! RDS DB instances (`aws.rds`): public accessibility, automatic minor version upgrades and the
//! backup retention, each its own aspect; storage encryption is read only (it cannot be turned
//! on for an existing instance, only by restoring an encrypted copy of a snapshot).

use aws_sdk_rds::types::DbInstance;
use model::Document;
use serde_json::{json, Value};

use crate::clients::{AwsError, Clients};

pub(crate) const PUBLIC: &str = "publicly_accessible";
pub(crate) const MINOR_UPGRADE: &str = "auto_minor_version_upgrade";
pub(crate) const BACKUP: &str = "backup_retention";

async fn describe(c: &Clients, id: &str) -> Result<DbInstance, AwsError> {
    let out = c.rds.describe_db_instances().db_instance_identifier(id).send().await?;
    out.db_instances()
        .iter()
        .find(|i| i.db_instance_identifier() == Some(id))
        .cloned()
        .ok_or_else(|| AwsError::gone("DBInstanceNotFound", format!("DB instance {id} does not exist")))
}

pub(crate) async fn read(c: &Clients, id: &str, aspect: &str) -> Result<Value, AwsError> {
    let i = describe(c, id).await?;
    Ok(match aspect {
        PUBLIC => json!({"PubliclyAccessible": i.publicly_accessible().unwrap_or(false)}),
        MINOR_UPGRADE => json!({"AutoMinorVersionUpgrade": i.auto_minor_version_upgrade().unwrap_or(false)}),
        BACKUP => json!({"BackupRetentionPeriod": i.backup_retention_period().unwrap_or(0)}),
        other => return Err(AwsError::other(format!("{other} is not an aspect of a DB instance"))),
    })
}

pub(crate) async fn document(c: &Clients, id: &str) -> Result<Document, AwsError> {
    let i = describe(c, id).await?;
    let flag = |b: Option<bool>| b.unwrap_or(false).to_string();
    Ok(Document::from([
        ("rds.engine".to_string(), i.engine().unwrap_or("").to_string()),
        ("rds.publicly_accessible".to_string(), flag(i.publicly_accessible())),
        ("rds.storage_encrypted".to_string(), flag(i.storage_encrypted())),
        ("rds.auto_minor_version_upgrade".to_string(), flag(i.auto_minor_version_upgrade())),
        ("rds.backup_retention".to_string(), i.backup_retention_period().unwrap_or(0).to_string()),
    ]))
}

pub(crate) async fn apply(
    c: &Clients,
    id: &str,
    action: &str,
    args: &std::collections::BTreeMap<String, String>,
) -> Result<(), AwsError> {
    let (aspect, want) = wanted(action, args)?;
    write(c, id, aspect, &want).await
}

/// The aspect an action changes and what it writes there (the JSON of [`read`]).
fn wanted(action: &str, args: &std::collections::BTreeMap<String, String>) -> Result<(&'static str, Value), AwsError> {
    match action {
        "rds.private" => Ok((PUBLIC, json!({"PubliclyAccessible": false}))),
        "rds.auto_minor_version_upgrade" => Ok((MINOR_UPGRADE, json!({"AutoMinorVersionUpgrade": true}))),
        "rds.backup_retention" => {
            let days = args.get("days").and_then(|d| d.parse::<i64>().ok());
            let days = days.ok_or_else(|| AwsError::other("rds.backup_retention needs days"))?;
            Ok((BACKUP, json!({"BackupRetentionPeriod": days})))
        }
        other => Err(AwsError::other(format!("{other} is not a DB instance action"))),
    }
}

/// What the aspect `action` changes will read as after [`apply`] carried it out: what it
/// writes, since every change is applied immediately (AWS shows a change in
/// PendingModifiedValues until the instance has made it, a few minutes at most; this is the
/// state it then reads as). Calls nothing.
pub(crate) fn planned(action: &str, args: &std::collections::BTreeMap<String, String>) -> Result<Value, AwsError> {
    let (aspect, want) = wanted(action, args)?;
    if let Some(days) = want["BackupRetentionPeriod"].as_i64().filter(|d| !(0..=35).contains(d)) {
        return Err(AwsError::other(format!("{aspect}: AWS keeps backups 0 to 35 days, not {days}")));
    }
    Ok(want)
}

/// Every change is applied immediately, not in the next maintenance window, so that the check
/// that follows sees it (and a rollback is immediate too).
pub(crate) async fn write(c: &Clients, id: &str, aspect: &str, want: &Value) -> Result<(), AwsError> {
    let m = c.rds.modify_db_instance().db_instance_identifier(id).apply_immediately(true);
    let m = match aspect {
        PUBLIC => m.publicly_accessible(want["PubliclyAccessible"].as_bool().unwrap_or(false)),
        MINOR_UPGRADE => m.auto_minor_version_upgrade(want["AutoMinorVersionUpgrade"].as_bool().unwrap_or(false)),
        BACKUP => m.backup_retention_period(want["BackupRetentionPeriod"].as_i64().unwrap_or(0) as i32),
        other => return Err(AwsError::other(format!("{other} is not an aspect of a DB instance"))),
    };
    m.send().await?;
    Ok(())
}

pub(crate) async fn list(c: &Clients) -> Result<Vec<(String, String)>, AwsError> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = c.rds.describe_db_instances().set_marker(marker.take()).send().await?;
        for i in page.db_instances() {
            let Some(id) = i.db_instance_identifier() else { continue };
            out.push((id.to_string(), format!("{id} ({})", i.engine().unwrap_or("rds"))));
        }
        match page.marker() {
            Some(m) if !m.is_empty() => marker = Some(m.to_string()),
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn each_action_plans_its_aspect() {
        let none = BTreeMap::new();
        assert_eq!(planned("rds.private", &none).unwrap(), json!({"PubliclyAccessible": false}));
        assert_eq!(planned("rds.auto_minor_version_upgrade", &none).unwrap(), json!({"AutoMinorVersionUpgrade": true}));
        let days = |d: &str| BTreeMap::from([("days".to_string(), d.to_string())]);
        assert_eq!(planned("rds.backup_retention", &days("7")).unwrap(), json!({"BackupRetentionPeriod": 7}));
        assert!(planned("rds.backup_retention", &days("36")).is_err(), "AWS keeps 35 days at most");
        assert!(planned("rds.backup_retention", &days("week")).is_err());
        assert!(planned("rds.backup_retention", &none).is_err());
        assert!(planned("rds.reboot", &none).is_err());
    }
}
