//! A region's EBS encryption by default (`aws.ebs`, one instance per account and region).

use model::Document;
use serde_json::{json, Value};

use crate::clients::{AwsError, Clients};

pub(crate) const ENCRYPTION_BY_DEFAULT: &str = "encryption_by_default";

pub(crate) async fn read(c: &Clients) -> Result<Value, AwsError> {
    let out = c.ec2.get_ebs_encryption_by_default().send().await?;
    Ok(json!({"EbsEncryptionByDefault": out.ebs_encryption_by_default().unwrap_or(false)}))
}

pub(crate) async fn document(c: &Clients) -> Result<Document, AwsError> {
    let on = read(c).await?["EbsEncryptionByDefault"].as_bool().unwrap_or(false);
    Ok(Document::from([("ebs.encryption_by_default".to_string(), on.to_string())]))
}

pub(crate) async fn apply(c: &Clients, action: &str) -> Result<(), AwsError> {
    match action {
        "ebs.enable_default_encryption" => write(c, &json!({"EbsEncryptionByDefault": true})).await,
        other => Err(AwsError::other(format!("{other} is not an EBS action"))),
    }
}

/// What the setting will read as after [`apply`] carried `action` out; calls nothing.
pub(crate) fn planned(action: &str) -> Result<Value, AwsError> {
    match action {
        "ebs.enable_default_encryption" => Ok(json!({"EbsEncryptionByDefault": true})),
        other => Err(AwsError::other(format!("{other} is not an EBS action"))),
    }
}

pub(crate) async fn write(c: &Clients, want: &Value) -> Result<(), AwsError> {
    if want["EbsEncryptionByDefault"].as_bool().unwrap_or(false) {
        c.ec2.enable_ebs_encryption_by_default().send().await?;
    } else {
        c.ec2.disable_ebs_encryption_by_default().send().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encryption_by_default_is_planned_on() {
        assert_eq!(planned("ebs.enable_default_encryption").unwrap(), json!({"EbsEncryptionByDefault": true}));
        assert!(planned("ebs.disable_default_encryption").is_err());
    }
}
