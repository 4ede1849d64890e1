//! Customer managed KMS keys (`aws.kms`, one instance per symmetric key): automatic rotation of
//! the key material. AWS managed keys rotate by themselves, and asymmetric or HMAC keys cannot
//! rotate automatically, so neither is an instance.

use aws_sdk_kms::types::{KeyManagerType, KeySpec, KeyState};
use model::Document;
use serde_json::{json, Value};

use crate::clients::{AwsError, Clients};

pub(crate) const ROTATION: &str = "rotation";

/// Whether a key can rotate automatically: customer managed, symmetric, not being deleted.
async fn rotatable(c: &Clients, key_id: &str) -> Result<(bool, String), AwsError> {
    let out = c.kms.describe_key().key_id(key_id).send().await?;
    let Some(m) = out.key_metadata() else { return Ok((false, String::new())) };
    let state = m.key_state().map(|s| s.as_str().to_string()).unwrap_or_default();
    let ok = m.key_manager() == Some(&KeyManagerType::Customer)
        && matches!(m.key_spec(), None | Some(KeySpec::SymmetricDefault))
        && !matches!(m.key_state(), Some(KeyState::PendingDeletion | KeyState::PendingReplicaDeletion));
    Ok((ok, state))
}

pub(crate) async fn read(c: &Clients, key_id: &str) -> Result<Value, AwsError> {
    let out = c.kms.get_key_rotation_status().key_id(key_id).send().await?;
    Ok(json!({"KeyRotationEnabled": out.key_rotation_enabled()}))
}

pub(crate) async fn document(c: &Clients, key_id: &str) -> Result<Document, AwsError> {
    let (ok, state) = rotatable(c, key_id).await?;
    let mut d = Document::from([("kms.key_state".to_string(), state)]);
    if ok {
        d.insert("kms.rotatable".into(), "yes".into());
        let on = read(c, key_id).await?["KeyRotationEnabled"].as_bool().unwrap_or(false);
        d.insert("kms.rotation".into(), on.to_string());
    }
    Ok(d)
}

pub(crate) async fn apply(c: &Clients, key_id: &str, action: &str) -> Result<(), AwsError> {
    match action {
        "kms.enable_rotation" => write(c, key_id, &json!({"KeyRotationEnabled": true})).await,
        other => Err(AwsError::other(format!("{other} is not a KMS key action"))),
    }
}

/// What the rotation status will read as after [`apply`] carried `action` out; calls nothing.
pub(crate) fn planned(action: &str) -> Result<Value, AwsError> {
    match action {
        "kms.enable_rotation" => Ok(json!({"KeyRotationEnabled": true})),
        other => Err(AwsError::other(format!("{other} is not a KMS key action"))),
    }
}

pub(crate) async fn write(c: &Clients, key_id: &str, want: &Value) -> Result<(), AwsError> {
    if want["KeyRotationEnabled"].as_bool().unwrap_or(false) {
        c.kms.enable_key_rotation().key_id(key_id).send().await?;
    } else {
        c.kms.disable_key_rotation().key_id(key_id).send().await?;
    }
    Ok(())
}

/// The region's customer managed symmetric keys, named by their first alias.
pub(crate) async fn list(c: &Clients) -> Result<Vec<(String, String)>, AwsError> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = c.kms.list_keys().set_marker(marker.take()).send().await?;
        for k in page.keys() {
            let Some(id) = k.key_id() else { continue };
            if !rotatable(c, id).await?.0 {
                continue;
            }
            let aliases = c.kms.list_aliases().key_id(id).send().await?;
            let names: Vec<&str> = aliases.aliases().iter().filter_map(|a| a.alias_name()).collect();
            // AWS managed keys carry `alias/aws/…` (an emulator may report them as customer keys).
            if names.iter().any(|n| n.starts_with("alias/aws/")) {
                continue;
            }
            let name = names.first().copied().unwrap_or(id);
            out.push((id.to_string(), name.to_string()));
        }
        match page.next_marker() {
            Some(m) if page.truncated() && !m.is_empty() => marker = Some(m.to_string()),
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_is_planned_on() {
        assert_eq!(planned("kms.enable_rotation").unwrap(), json!({"KeyRotationEnabled": true}));
        assert!(planned("kms.schedule_deletion").is_err());
    }
}
