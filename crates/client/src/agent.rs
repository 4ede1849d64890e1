//! The agent protocol's wire side, shared by the agent (which signs) and the server (which
//! verifies): JSON bodies under `/agent/v1/`, each request signed with the agent's Ed25519 key
//! over its method, path, agent id, date, nonce and body digest (see docs/api.md, "Agents").

use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::signature::sha256_hex;

/// The path every agent request is under.
pub const PREFIX: &str = "/agent/v1/";

/// The agent id header; `enroll` for an enrolment (signed by the key being registered).
pub const AGENT_HEADER: &str = "x-posture-agent";
/// The date header: milliseconds since the Unix epoch.
pub const DATE_HEADER: &str = "x-posture-date";
/// The nonce header: a fresh random value per request.
pub const NONCE_HEADER: &str = "x-posture-nonce";
/// The signature header: base64 of the Ed25519 signature of [`string_to_sign`].
pub const SIGNATURE_HEADER: &str = "x-posture-signature";

/// The agent id an enrolment request is signed under (the agent has no id yet).
pub const ENROLLING: &str = "enroll";

/// What is signed: every part on its own line.
pub fn string_to_sign(method: &str, path: &str, agent: &str, date_ms: i64, nonce: &str, body: &[u8]) -> String {
    format!("POSTURE-AGENT-ED25519\n{method}\n{path}\n{agent}\n{date_ms}\n{nonce}\n{}", sha256_hex(body))
}

/// A new identity: 32 random bytes, the Ed25519 secret key.
pub fn new_secret() -> [u8; 32] {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).expect("the OS random source works");
    seed
}

/// The public key of a secret key (32 bytes).
pub fn public_key(secret: &[u8; 32]) -> [u8; 32] {
    SigningKey::from_bytes(secret).verifying_key().to_bytes()
}

/// Base64 (standard, padded): public keys and signatures on the wire.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes [`b64`].
pub fn unb64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text.trim()).ok()
}

/// The signing headers of one request.
pub fn sign(
    secret: &[u8; 32],
    method: &str,
    path: &str,
    agent: &str,
    date_ms: i64,
    body: &[u8],
) -> Vec<(String, String)> {
    let mut n = [0u8; 16];
    getrandom::getrandom(&mut n).expect("the OS random source works");
    let nonce = hex::encode(n);
    let signature =
        SigningKey::from_bytes(secret).sign(string_to_sign(method, path, agent, date_ms, &nonce, body).as_bytes());
    vec![
        (AGENT_HEADER.to_string(), agent.to_string()),
        (DATE_HEADER.to_string(), date_ms.to_string()),
        (NONCE_HEADER.to_string(), nonce),
        (SIGNATURE_HEADER.to_string(), b64(&signature.to_bytes())),
    ]
}

/// Whether `signature` (base64) is `public_key`'s signature of the request.
#[allow(clippy::too_many_arguments)]
pub fn verify(
    public_key: &[u8],
    signature: &str,
    method: &str,
    path: &str,
    agent: &str,
    date_ms: i64,
    nonce: &str,
    body: &[u8],
) -> bool {
    let Ok(key) = <[u8; 32]>::try_from(public_key) else { return false };
    let Ok(key) = VerifyingKey::from_bytes(&key) else { return false };
    let Some(sig) = unb64(signature).and_then(|s| <[u8; 64]>::try_from(s).ok()) else { return false };
    let sig = ed25519_dalek::Signature::from_bytes(&sig);
    key.verify(string_to_sign(method, path, agent, date_ms, nonce, body).as_bytes(), &sig).is_ok()
}

/// What an agent says of its server at enrolment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostInfo {
    /// Host name.
    pub hostname: String,
    /// `PRETTY_NAME` of os-release.
    pub os: String,
    /// Kernel release.
    pub kernel: String,
    /// IP addresses.
    pub addresses: Vec<String>,
}

/// `POST /agent/v1/enroll`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Enroll {
    /// The enrolment token.
    pub token: String,
    /// The server's InstanceId.
    pub instance_id: String,
    /// Its RegionId.
    pub region_id: String,
    /// Its Vendor code.
    pub vendor: i64,
    /// The agent's public key (base64 of 32 bytes).
    pub public_key: String,
    /// The agent's version.
    pub version: String,
    /// What it says of its server.
    pub info: HostInfo,
}

/// The answer to an enrolment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Enrolled {
    /// The agent's id, sent with every request.
    pub agent_id: String,
    /// The InstanceId it was registered under.
    pub instance_id: String,
    /// How long a poll waits for work, in seconds.
    pub poll_seconds: u64,
}

/// `POST /agent/v1/poll`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Poll {
    /// The agent's version.
    pub version: String,
}

/// One piece of work (the answer to a poll or a report, when there is one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Kind", rename_all_fields = "PascalCase")]
pub enum Work {
    /// A step of a repair or rollback task.
    Task {
        /// The task.
        task_id: String,
        /// The lease; the report carries it back.
        fence: i64,
        /// The status whose step this is.
        status: String,
        /// `REPAIR` or `ROLLBACK`.
        task_type: String,
        /// The check item: the agent renders its steps from its own catalog.
        check_id: i64,
        /// The repair's values (name, value).
        params: Vec<(String, String)>,
        /// What to do.
        op: model::ConnectorOp,
    },
    /// Read the configuration for a check run.
    Check {
        /// The run's detail of this server.
        detail_id: String,
    },
    /// Plan a repair and say what it would change, changing nothing (agents from 0.2.0).
    Preview {
        /// The request; the report names it.
        preview_id: String,
        /// The check item: the agent renders its steps from its own catalog.
        check_id: i64,
        /// The repair's values (name, value).
        params: Vec<(String, String)>,
    },
}

/// The answer to a poll or a report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Next {
    /// The next piece of work, if any.
    pub work: Option<Work>,
}

/// A failed step, as the connector said.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Failure {
    /// The connector's code.
    pub code: String,
    /// What happened.
    pub message: String,
    /// Worth retrying later.
    pub retryable: bool,
    /// The server's root is gone.
    pub freed: bool,
}

/// `POST /agent/v1/report`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Kind", rename_all_fields = "PascalCase")]
pub enum Report {
    /// A task's step: its outcome or its failure.
    Task {
        /// The task.
        task_id: String,
        /// The lease the step was done under.
        fence: i64,
        /// The status whose step it was.
        status: String,
        /// What the step produced.
        outcome: Result<model::OpOutput, Failure>,
    },
    /// A check run's reading of the configuration.
    Check {
        /// The detail.
        detail_id: String,
        /// The document, or why it could not be read.
        outcome: Result<model::Document, Failure>,
    },
    /// What a repair would change, or why it could not be planned.
    Preview {
        /// The request.
        preview_id: String,
        /// The planned changes.
        outcome: Result<Vec<model::PlannedChange>, Failure>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_covers_every_part() {
        let secret = new_secret();
        let public = public_key(&secret);
        let headers = sign(&secret, "POST", "/agent/v1/poll", "agt-1", 1_700_000_000_000, b"{}");
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).unwrap().1.clone();
        let (sig, nonce) = (get(SIGNATURE_HEADER), get(NONCE_HEADER));
        assert!(verify(&public, &sig, "POST", "/agent/v1/poll", "agt-1", 1_700_000_000_000, &nonce, b"{}"));
        assert!(!verify(&public, &sig, "POST", "/agent/v1/report", "agt-1", 1_700_000_000_000, &nonce, b"{}"));
        assert!(!verify(&public, &sig, "POST", "/agent/v1/poll", "agt-2", 1_700_000_000_000, &nonce, b"{}"));
        assert!(!verify(&public, &sig, "POST", "/agent/v1/poll", "agt-1", 1_700_000_000_001, &nonce, b"{}"));
        assert!(!verify(&public, &sig, "POST", "/agent/v1/poll", "agt-1", 1_700_000_000_000, "00", b"{}"));
        assert!(!verify(&public, &sig, "POST", "/agent/v1/poll", "agt-1", 1_700_000_000_000, &nonce, b"{ }"));
        assert!(!verify(
            &public_key(&new_secret()),
            &sig,
            "POST",
            "/agent/v1/poll",
            "agt-1",
            1_700_000_000_000,
            &nonce,
            b"{}"
        ));
        assert!(!verify(&public, "not base64", "POST", "/agent/v1/poll", "agt-1", 1_700_000_000_000, &nonce, b"{}"));
    }

    #[test]
    fn reports_round_trip() {
        let r = Report::Task {
            task_id: "t".into(),
            fence: 3,
            status: "IN_BACKUP".into(),
            outcome: Err(Failure { code: "BackUpError".into(), message: "m".into(), retryable: false, freed: false }),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&text).unwrap(), r);
    }
}
