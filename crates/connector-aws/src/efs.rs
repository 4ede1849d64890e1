//! EFS file systems (`aws.efs`): encryption at rest, read only (it is chosen when a file system
//! is created and cannot be changed: the data must be copied to a new, encrypted one).

use model::Document;
use serde_json::{json, Value};

use crate::clients::{AwsError, Clients};

pub(crate) async fn read(c: &Clients, id: &str) -> Result<Value, AwsError> {
    let out = c.efs.describe_file_systems().file_system_id(id).send().await?;
    let fs = out.file_systems().iter().find(|f| f.file_system_id() == id);
    let fs = fs.ok_or_else(|| AwsError::gone("FileSystemNotFound", format!("file system {id} does not exist")))?;
    Ok(json!({"Encrypted": fs.encrypted().unwrap_or(false), "KmsKeyId": fs.kms_key_id()}))
}

pub(crate) async fn document(c: &Clients, id: &str) -> Result<Document, AwsError> {
    let fs = read(c, id).await?;
    let mut d = Document::from([("efs.encrypted".to_string(), fs["Encrypted"].as_bool().unwrap_or(false).to_string())]);
    if let Some(key) = fs["KmsKeyId"].as_str() {
        d.insert("efs.kms_key".into(), key.to_string());
    }
    Ok(d)
}

pub(crate) async fn list(c: &Clients) -> Result<Vec<(String, String)>, AwsError> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = c.efs.describe_file_systems().set_marker(marker.take()).send().await?;
        for f in page.file_systems() {
            let id = f.file_system_id();
            out.push((id.to_string(), f.name().unwrap_or(id).to_string()));
        }
        match page.next_marker() {
            Some(m) if !m.is_empty() => marker = Some(m.to_string()),
            _ => return Ok(out),
        }
    }
}
