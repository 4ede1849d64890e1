//! Who is calling: signature v3 or v1, clock skew, nonce reuse, and which actions the key's
//! policy allows. Order of checks: the request's shape, the key, the clock, the signature, and
//! only then the nonce (so a forged request cannot burn a nonce).

use model::ApiError;
use store::{AccessKey, Accounts, Store};

use crate::signature::{
    constant_time_eq, parse_v3_authorization, sha256_hex, v1_sign, v1_string_to_sign, v3_canonical_request, v3_sign,
    v3_string_to_sign, V3_ALGORITHM,
};
use crate::time::parse_utc;

/// A request as the gateway received it.
pub struct RawRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// Decoded query parameters.
    pub query: Vec<(String, String)>,
    /// Decoded form-body parameters.
    pub body_params: Vec<(String, String)>,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

impl RawRequest {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every parameter: the query, then the body.
    pub fn all_params(&self) -> Vec<(String, String)> {
        self.query.iter().chain(self.body_params.iter()).cloned().collect()
    }

    /// The action asked for: `x-acs-action` for a v3 request, `Action` (else that header) for v1.
    pub fn action(&self) -> &str {
        let named = match self.header("authorization") {
            Some(h) if h.trim_start().starts_with("ACS3-") => self.header("x-acs-action"),
            _ => self.param("Action").or(self.header("x-acs-action")),
        };
        named.unwrap_or_default().trim()
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().chain(self.body_params.iter()).find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Clock skew: a request's date may be this far from now (the reference's 15 minutes). Its
/// nonce is kept until its date plus this (`Store::use_nonce`), in the database.
pub const WINDOW_MS: i64 = 15 * 60 * 1000;

/// Who called, and which action.
pub struct Caller {
    /// The key that signed.
    pub key: AccessKey,
    /// The action asked for.
    pub action: String,
    /// The request's nonce, new, being committed (wait for it before answering).
    pub nonce: NonceCheck,
}

fn lookup(store: &Store, key_id: &str) -> Result<AccessKey, ApiError> {
    match store.get_key(key_id) {
        Ok(Some(k)) if k.enabled => Ok(k),
        Ok(Some(_)) => Err(ApiError::access_key_inactive()),
        Ok(None) => Err(ApiError::access_key_not_found()),
        Err(e) => Err(crate::ops::db(e)),
    }
}

/// The request's date, if it is within the window of now.
fn check_time(ts_ms: Option<i64>, now_ms: i64) -> Result<i64, ApiError> {
    match ts_ms {
        Some(t) if (now_ms - t).abs() <= WINDOW_MS => Ok(t),
        _ => Err(ApiError::timestamp_expired()),
    }
}

/// A request's nonce, new (a used one is refused at once, `SignatureNonceUsed`). It must be
/// committed before the request is answered, so that no replay is accepted even after a crash,
/// and no later than anything the request writes: [`NonceCheck::send`] it before the operation
/// runs, and wait for [`NonceCommit::committed`] before answering.
pub struct NonceCheck(store::NewNonce);

impl NonceCheck {
    pub(crate) fn record(
        store: &Store,
        key_id: &str,
        nonce: &str,
        date_ms: i64,
        now_ms: i64,
    ) -> Result<Self, ApiError> {
        match store.use_nonce_later(key_id, nonce, date_ms, WINDOW_MS, now_ms) {
            Ok(Some(new)) => Ok(NonceCheck(new)),
            Ok(None) => Err(ApiError::nonce_used()),
            Err(e) => Err(recording_failed(e)),
        }
    }

    /// Sends the nonce to disk: for a request that may write, ahead of its writes in the main
    /// database (committed with them or before them); for a read, to the nonce log.
    pub fn send(self, store: &Store, may_write: bool) -> NonceCommit {
        NonceCommit(if may_write { self.0.ahead_of_writes(store) } else { self.0.log() })
    }
}

/// A nonce on its way to disk.
pub struct NonceCommit(store::NonceWait);

impl NonceCommit {
    /// Resolves once the nonce is committed (without holding a thread meanwhile).
    pub async fn committed(self) -> Result<(), ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.0.notify(move |r| {
            let _ = tx.send(r);
        });
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(recording_failed(e)),
            Err(_) => Err(ApiError::server_error()),
        }
    }
}

fn recording_failed(e: store::StoreError) -> ApiError {
    tracing::error!(error = %e, stage = "auth", "the nonce could not be recorded");
    crate::ops::db(e)
}

/// Authenticates a request (v3 when `Authorization` starts with `ACS3-`, else v1).
pub fn authenticate(store: &Store, req: &RawRequest, now_ms: i64) -> Result<Caller, ApiError> {
    // (`RawRequest::action` tells the two apart the same way.)
    match req.header("authorization") {
        Some(h) if h.trim_start().starts_with("ACS3-") => authenticate_v3(store, req, h, now_ms),
        _ => authenticate_v1(store, req, now_ms),
    }
}

const V3_REQUIRED_SIGNED: [&str; 6] =
    ["host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"];

/// The string to sign as a mismatch answer echoes it, unless the request carries a cloud
/// secret (AddCloudVendorAccountAK, ModifyCloudVendorAccountAK): a secret is never sent back,
/// not even to its sender (error bodies end up in client logs).
fn echoed(req: &RawRequest, string_to_sign: &str) -> String {
    match req.param("SecretKey") {
        Some(_) => "(not shown: the request carries a SecretKey)".to_string(),
        None => string_to_sign.to_string(),
    }
}

fn authenticate_v3(store: &Store, req: &RawRequest, header: &str, now_ms: i64) -> Result<Caller, ApiError> {
    let body_hash = sha256_hex(&req.body);
    let auth = parse_v3_authorization(header).ok_or_else(|| ApiError::incomplete_signature(""))?;
    if auth.algorithm != V3_ALGORITHM {
        return Err(ApiError::incomplete_signature(""));
    }
    let mut required: Vec<&str> = V3_REQUIRED_SIGNED.to_vec();
    if !req.body.is_empty() {
        required.push("content-type");
    }
    for h in required {
        if !auth.signed_headers.iter().any(|s| s == h) || req.header(h).is_none() {
            return Err(ApiError::incomplete_signature(""));
        }
    }
    if !req.header("x-acs-content-sha256").is_some_and(|h| h.trim().eq_ignore_ascii_case(&body_hash)) {
        return Err(ApiError::content_sha256_mismatch());
    }
    let key = lookup(store, &auth.key_id)?;
    let date_ms = check_time(req.header("x-acs-date").and_then(|d| parse_utc(d.trim())).map(|s| s * 1000), now_ms)?;
    let canonical = v3_canonical_request(&req.method, "/", &req.query, &req.headers, &auth.signed_headers, &body_hash);
    let string_to_sign = v3_string_to_sign(&canonical);
    let expected = v3_sign(&key.secret, &string_to_sign);
    if !constant_time_eq(expected.as_bytes(), auth.signature.to_ascii_lowercase().as_bytes()) {
        return Err(ApiError::signature_mismatch(&echoed(req, &string_to_sign)));
    }
    let nonce =
        NonceCheck::record(store, &key.id, req.header("x-acs-signature-nonce").unwrap_or_default(), date_ms, now_ms)?;
    let action = req.action().to_string();
    check_version(req.header("x-acs-version"))?;
    Ok(Caller { key, action, nonce })
}

fn authenticate_v1(store: &Store, req: &RawRequest, now_ms: i64) -> Result<Caller, ApiError> {
    for name in [
        "AccessKeyId",
        "Signature",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureNonce",
        "Timestamp",
        "Action",
        "Version",
    ] {
        if req.param(name).is_none_or(str::is_empty) {
            // The action may also come from the header (rpc-protocol.md §1.6).
            if name == "Action" && req.header("x-acs-action").is_some() {
                continue;
            }
            if name == "Version" && req.header("x-acs-version").is_some() {
                continue;
            }
            return Err(ApiError::missing_parameter(name));
        }
    }
    if req.param("SignatureMethod") != Some("HMAC-SHA1") {
        return Err(ApiError::invalid_parameter("SignatureMethod"));
    }
    if req.param("SignatureVersion") != Some("1.0") {
        return Err(ApiError::invalid_parameter("SignatureVersion"));
    }
    let key = lookup(store, req.param("AccessKeyId").unwrap_or_default())?;
    let date_ms = check_time(req.param("Timestamp").and_then(parse_utc).map(|s| s * 1000), now_ms)?;
    let params = req.all_params();
    let string_to_sign = v1_string_to_sign(&req.method, &params);
    let expected = v1_sign(&key.secret, &string_to_sign);
    if !constant_time_eq(expected.as_bytes(), req.param("Signature").unwrap_or_default().as_bytes()) {
        return Err(ApiError::signature_mismatch(&echoed(req, &string_to_sign)));
    }
    let nonce = NonceCheck::record(store, &key.id, req.param("SignatureNonce").unwrap_or_default(), date_ms, now_ms)?;
    let action = req.action().to_string();
    check_version(req.param("Version").or(req.header("x-acs-version")))?;
    Ok(Caller { key, action, nonce })
}

fn check_version(v: Option<&str>) -> Result<(), ApiError> {
    match v.map(str::trim) {
        Some("2018-12-03") => Ok(()),
        _ => Err(ApiError::invalid_parameter("Version")),
    }
}

/// Actions that a policy wildcard never covers.
const ADMIN_ONLY: &[&str] = &["DescribeAuditLog", "DescribeAccessKeys"];

/// The actions a policy allows: a built-in name (`Admin`, `Operator`, `ReadOnly`) or a
/// comma-separated list of action patterns with `*` wildcards.
pub fn policy_allows(policy: &str, action: &str) -> bool {
    // The audit trail and the account's keys are an administrator's: a policy other than Admin
    // reads them only by naming them (not through `Describe*`).
    if ADMIN_ONLY.contains(&action) {
        return policy == "Admin" || policy.split(',').any(|p| p.trim() == action);
    }
    let patterns: Vec<&str> = match policy {
        "Admin" => vec!["*"],
        "Operator" => {
            vec![
                "List*",
                "Get*",
                "Describe*",
                "Check*",
                "ExportRecord",
                "SubmitOperationTask",
                "CancelOperationTask",
                "PreviewOperationTask",
                "Verify*",
                "SubmitCheck",
            ]
        }
        "ReadOnly" => vec!["List*", "Get*", "Describe*", "Check*", "ExportRecord"],
        custom => custom.split(',').map(str::trim).collect(),
    };
    patterns.iter().any(|p| wildcard(p.as_bytes(), action.as_bytes()))
}

fn wildcard(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| wildcard(rest, &s[i..])),
        Some((c, rest)) => s.first() == Some(c) && wildcard(rest, &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_match_with_wildcards() {
        assert!(policy_allows("Admin", "SubmitOperationTask"));
        assert!(policy_allows("ReadOnly", "ListCheckResult"));
        assert!(!policy_allows("ReadOnly", "SubmitOperationTask"));
        assert!(policy_allows("Operator", "VerifyCheckResult"));
        assert!(policy_allows("List*, GetCheckDetail", "GetCheckDetail"));
        assert!(!policy_allows("List*", "GetCheckDetail"));
        assert!(!policy_allows("ReadOnly", "DescribeAccessKeys"), "Describe* does not cover the keys");
        assert!(policy_allows("Admin", "DescribeAccessKeys"));
        assert!(policy_allows("ReadOnly,DescribeAccessKeys", "DescribeAccessKeys"));
    }
}
