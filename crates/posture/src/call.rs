//! `posture call`: one signed request, the JSON answer on stdout.

use std::path::PathBuf;
use std::process::ExitCode;

use client::tls::Trust;
use client::{call_at, params_from_args, Credentials, Endpoint, Signing};

use crate::serve::CredentialsFile;

pub fn run(action: &str, args: &[String]) -> ExitCode {
    match try_run(action, args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("posture call: {e}");
            ExitCode::from(2)
        }
    }
}

fn try_run(action: &str, args: &[String]) -> Result<ExitCode, String> {
    if action == "--help" || action == "-h" {
        println!("usage: posture call <Action> [--Name value]... [--endpoint [https://]HOST:PORT] [--ca FILE] [--credentials FILE] [--signature v3|v1]");
        return Ok(ExitCode::SUCCESS);
    }
    let mut params = params_from_args(args)?;
    let mut take = |name: &str| -> Option<String> {
        let i = params.iter().position(|(k, _)| k == name)?;
        Some(params.remove(i).1)
    };
    let endpoint = take("endpoint");
    let ca = take("ca").map(PathBuf::from);
    let cred_path =
        take("credentials").map(PathBuf::from).unwrap_or_else(|| crate::default_data_dir().join("credentials.json"));
    let signing = match take("signature").as_deref() {
        None | Some("v3") => Signing::V3,
        Some("v1") => Signing::V1,
        Some(other) => return Err(format!("--signature must be v3 or v1, not {other}")),
    };
    let text = std::fs::read_to_string(&cred_path)
        .map_err(|e| format!("cannot read credentials {}: {e}", cred_path.display()))?;
    let file: CredentialsFile =
        serde_json::from_str(&text).map_err(|e| format!("{} is not a credentials file: {e}", cred_path.display()))?;
    // The file's Protocol and CaFile go with its Endpoint; --endpoint says its own scheme.
    let (url, file_ca) = match endpoint {
        Some(url) => (url, None),
        None => (format!("{}://{}", file.protocol.as_deref().unwrap_or("http"), file.endpoint), file.ca_file.clone()),
    };
    if ca.is_some() && !client::split_url(&url).0 {
        return Err(format!("--ca is for https://, and {url} is plain HTTP"));
    }
    let trust = match ca.or(file_ca) {
        Some(path) => Trust::ca_file(&path)?,
        None => Trust::System,
    };
    let endpoint = Endpoint::parse(&url, &trust)?;
    let creds = Credentials { access_key_id: file.access_key_id, access_key_secret: file.access_key_secret };
    let resp = call_at(&endpoint, &creds, action, &params, signing).map_err(|e| format!("cannot reach {url}: {e}"))?;
    let body = resp.json();
    if resp.status >= 400 {
        eprintln!(
            "Error: {} ({}): {}\nRequestId: {}",
            body["Code"].as_str().unwrap_or("?"),
            resp.status,
            body["Message"].as_str().unwrap_or(&resp.body),
            body["RequestId"].as_str().unwrap_or("")
        );
        return Ok(ExitCode::from(1));
    }
    println!("{}", serde_json::to_string_pretty(&body).unwrap_or(resp.body));
    Ok(ExitCode::SUCCESS)
}
