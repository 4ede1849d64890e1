//! The API's errors: one type with a code, an HTTP status and a message. Every rejection the
//! service makes is one of the constructors below; docs/api.md lists them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An error answered to a client in the envelope `{RequestId, HostId, Code, Message, Recommend}`
/// (serialised as itself only where a ClientToken keeps a refusal as its answer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// The `Code` field.
    pub code: String,
    /// The `Message` field.
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

fn e(status: u16, code: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError { status, code: code.into(), message: message.into() }
}

/// The v1 and v3 signature mismatch message; it must keep the colon (aliyunsdkcore splits on it).
pub const SIGNATURE_MISMATCH_PREFIX: &str =
    "Specified signature is not matched with our calculation. server string to sign is:";

#[allow(missing_docs)]
impl ApiError {
    // --- gateway (rpc-protocol.md §6) ---
    pub fn missing_parameter(name: &str) -> Self {
        e(
            400,
            "MissingParameter",
            format!("The input parameter \"{name}\" that is mandatory for processing this request is not supplied."),
        )
    }
    pub fn parameter_too_long(name: &str, max: usize) -> Self {
        e(400, "ParameterTooLong", format!("The parameter \"{name}\" is longer than {max} bytes."))
    }
    pub fn too_many_items(name: &str, max: usize) -> Self {
        e(400, "TooManyItems", format!("The parameter \"{name}\" has more than {max} entries."))
    }
    pub fn invalid_parameter(name: &str) -> Self {
        e(400, "InvalidParameter", format!("The specified parameter \"{name}\" is not valid."))
    }
    pub fn incomplete_signature(string_to_sign: &str) -> Self {
        e(
            400,
            "IncompleteSignature",
            format!(
                "The request signature does not conform to Aliyun standards. server string to sign is:{string_to_sign}"
            ),
        )
    }
    pub fn access_key_not_found() -> Self {
        e(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
    }
    pub fn access_key_inactive() -> Self {
        e(400, "InvalidAccessKeyId.Inactive", "Specified access key is disabled.")
    }
    /// The console's sign-in was refused: the same answer for an unknown key, a wrong secret, a
    /// disabled key and a used or expired sign-in link (nothing tells which).
    pub fn console_sign_in_failed() -> Self {
        e(401, "Console.SignInFailed", "The AccessKeyId and secret (or the sign-in link) were not accepted.")
    }
    /// A console call without a session in force (never signed in, signed out, idle or expired,
    /// or its key disabled or deleted).
    pub fn console_session_required() -> Self {
        e(401, "Console.SessionRequired", "Sign in to the console (the session has ended or never began).")
    }
    /// A console call that changes something without the session's CSRF token, or sent from
    /// another site.
    pub fn console_csrf_refused() -> Self {
        e(
            403,
            "Console.CsrfRefused",
            "The request does not carry this session's CSRF token, or comes from another site.",
        )
    }
    /// A path under `/console/` that the console does not serve.
    pub fn console_not_found() -> Self {
        e(404, "Console.NotFound", "The console has no such page.")
    }
    pub fn timestamp_expired() -> Self {
        e(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
    }
    pub fn nonce_used() -> Self {
        e(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
    }
    pub fn signature_mismatch(string_to_sign: &str) -> Self {
        e(400, "SignatureDoesNotMatch", format!("{SIGNATURE_MISMATCH_PREFIX}{string_to_sign}"))
    }
    pub fn content_sha256_mismatch() -> Self {
        e(
            400,
            "InvalidParameter",
            "The specified parameter \"x-acs-content-sha256\" is not valid: it does not match the body.",
        )
    }
    pub fn action_not_found() -> Self {
        e(404, "InvalidAction.NotFound", "Specified api is not found, please check your url and method.")
    }
    pub fn unsupported_method() -> Self {
        e(403, "UnsupportedHTTPMethod", "This HTTP method is not supported.")
    }
    pub fn body_too_large(limit: usize) -> Self {
        e(413, "RequestEntityTooLarge", format!("The request body is larger than {limit} bytes."))
    }
    pub fn no_permission() -> Self {
        e(403, "NoPermission", "caller has no permission")
    }
    pub fn server_error() -> Self {
        e(500, "ServerError", "ServerError")
    }
    /// The database cannot be reached (PostgreSQL down or unreachable): retry later.
    pub fn database_unavailable() -> Self {
        e(503, "ServiceUnavailable", "The database is unavailable; retry later.")
    }

    // --- operations ---
    pub fn illegal_param(detail: &str) -> Self {
        e(400, "IllegalParam", format!("Illegal param: {detail}"))
    }
    pub fn cspm_param_illegal(detail: &str) -> Self {
        e(400, "CspmParamIllegal", detail.to_string())
    }
    pub fn instance_ids_required() -> Self {
        e(400, "-101", "InstanceIds is mandatory for this action.")
    }
    pub fn illegal_custom_config(names: &[String]) -> Self {
        e(
            400,
            "IllegalCustomConfig",
            format!(
                "Not a custom config of this item, or a value its type refuses (GetCheckDetail lists them): {}. Nothing was changed.",
                names.join(", ")
            ),
        )
    }
    pub fn instance_limit_exceeded(instances: i64, max: i64) -> Self {
        e(
            400,
            "InstanceLimitExceeded",
            format!("This submission would touch {instances} instances; the account allows at most {max} in one submission (posture accounts set-limits). Nothing was submitted."),
        )
    }
    pub fn export_not_found(id: i64) -> Self {
        e(404, "InvalidExportId.NotFound", format!("The export {id} does not exist (or has expired and was deleted)."))
    }
    pub fn export_too_large(max: usize) -> Self {
        e(
            400,
            "ExportTooLarge",
            format!("The export would hold more than {max} results: narrow it with Params (CheckIds, Statuses, InstanceIds)."),
        )
    }
    pub fn check_not_found(check_id: i64) -> Self {
        e(404, "InvalidCheckId.NotFound", format!("The check item {check_id} does not exist."))
    }
    pub fn repair_not_supported(check_id: i64) -> Self {
        e(400, "RepairNotSupported", format!("The check item {check_id} cannot be repaired automatically."))
    }
    pub fn rollback_not_supported(check_id: i64) -> Self {
        e(400, "RollbackNotSupported", format!("Repairs of the check item {check_id} cannot be rolled back."))
    }
    pub fn instance_not_found(instance_id: &str) -> Self {
        e(404, "InvalidInstance.NotFound", format!("The instance {instance_id} does not exist."))
    }
    pub fn instance_ambiguous(instance_id: &str) -> Self {
        e(
            400,
            "InvalidInstance.Ambiguous",
            format!("The instance id {instance_id} matches several instances; give its Vendor and RegionId."),
        )
    }
    pub fn instance_not_applicable(instance_id: &str, check_id: i64) -> Self {
        e(
            400,
            "InstanceNotApplicable",
            format!("The check item {check_id} does not apply to the instance {instance_id}."),
        )
    }
    pub fn relation_key_not_found(key: &str) -> Self {
        e(404, "InvalidRelationKey.NotFound", format!("No asset selection is bound to the RelationKey {key}."))
    }
    pub fn instance_whitelisted(instance_id: &str, check_id: i64) -> Self {
        e(400, "InstanceWhitelisted", format!("The check item {check_id} is whitelisted on the instance {instance_id}; remove the whitelist rule to repair it."))
    }
    pub fn selection_not_found(key: &str) -> Self {
        e(404, "InvalidSelectionKey.NotFound", format!("The selection {key} does not exist."))
    }
    pub fn business_type_not_found(business_type: &str) -> Self {
        e(404, "InvalidBusinessType.NotFound", format!("No selection is bound to the BusinessType {business_type}."))
    }
    pub fn rule_not_found(rule_id: i64) -> Self {
        e(404, "InvalidRuleId.NotFound", format!("The whitelist rule {rule_id} does not exist."))
    }
    pub fn idempotent_processing() -> Self {
        e(
            409,
            "IdempotentProcessing",
            "A call with this ClientToken was carried out, and its answer is not available (it is still finishing, \
             or its node stopped before answering). It is not run again: read its effect with the listing actions.",
        )
    }
    pub fn idempotent_mismatch() -> Self {
        e(400, "IdempotentParameterMismatch", "The ClientToken was used before with other parameters.")
    }
    pub fn no_instance_to_operate() -> Self {
        e(
            400,
            "NoInstanceToOperate",
            "No instance to operate on: no listed instance, and no instance of the check item fails it.",
        )
    }
    pub fn param_not_customized(name: &str) -> Self {
        e(
            400,
            format!("RepairedParamNotCustomized.{name}"),
            format!("The repair parameter {name} is required and was not given."),
        )
    }
    pub fn param_meaning(name: &str, why: &str) -> Self {
        e(400, format!("ErrorParamFormat.{name}"), format!("The repair parameter {name} is refused: {why}."))
    }
    pub fn param_format(name: &str) -> Self {
        e(
            400,
            format!("ErrorParamFormat.{name}"),
            format!("The repair parameter {name} is unknown or its value has the wrong format."),
        )
    }
    pub fn auto_rule_not_found(id: &str) -> Self {
        e(404, "AutoRemediationNotFound", format!("The auto-remediation rule {id} does not exist."))
    }
    pub fn webhook_not_found(id: &str) -> Self {
        e(404, "WebhookNotFound", format!("The webhook {id} does not exist."))
    }
    pub fn approval_by_submitter() -> Self {
        e(
            403,
            "ApprovalBySubmitter",
            "The key that submitted a root task cannot approve or reject it: another key must (two-person rule).",
        )
    }
    pub fn preview_type_unsupported() -> Self {
        e(
            400,
            "PreviewTypeUnsupported",
            "PreviewOperationTask previews repairs (Type REPAIR). A rollback puts back its repair's snapshot exactly.",
        )
    }
    pub fn repair_task_conflict() -> Self {
        e(400, "RepairTaskConflict", "Fix task conflicts.")
    }
    pub fn task_not_found(task_id: &str) -> Self {
        e(404, "InvalidTaskId.NotFound", format!("The task {task_id} does not exist."))
    }
    pub fn rollback_task_required() -> Self {
        e(400, "MissingParameter", "The input parameter \"OperationTaskInstances.N.TaskId\" that is mandatory for processing this request is not supplied.")
    }
    pub fn rollback_task_mismatch(task_id: &str) -> Self {
        e(
            400,
            "RollbackTaskMismatch",
            format!("The task {task_id} is not a repair of this check item on this instance."),
        )
    }
    pub fn rollback_not_allowed(task_id: &str, status: &str) -> Self {
        e(400, "RollbackNotAllowed", format!("The repair task {task_id} is {status}: only an applied repair (REPAIR_SUCCESS_VERIFIED or REPAIR_SUCCESS_UNVERIFIED) can be rolled back."))
    }
    // --- cloud accounts ---
    pub fn cloud_vendor_not_supported(vendor: &str) -> Self {
        e(
            400,
            "CloudVendorNotSupported",
            format!("Cloud accounts of vendor {vendor} are not supported by this posture; it supports: AWS."),
        )
    }
    pub fn cloud_access_key_invalid(detail: &str) -> Self {
        e(400, "CloudAccessKeyInvalid", format!("The cloud vendor refused the AccessKey: {detail}"))
    }
    pub fn cloud_unavailable(detail: &str) -> Self {
        e(
            503,
            "CloudServiceUnavailable",
            format!("The cloud vendor could not be reached to verify the AccessKey; try again later: {detail}"),
        )
    }
    pub fn cloud_account_exists(secret_id: &str) -> Self {
        e(400, "CloudAccountExists", format!("The AccessKey {secret_id} is already registered for this vendor."))
    }
    pub fn cloud_account_not_found(auth_id: &str) -> Self {
        e(404, "CloudAccountNotFound", format!("The cloud account {auth_id} does not exist."))
    }
    pub fn rollback_not_latest(task_id: &str, newer: &str) -> Self {
        e(400, "RollbackNotLatest", format!("The repair task {task_id} is not the latest change of the files (or cloud aspect) it changed on this instance: the later repair {newer} still stands. Roll back {newer} first (or let it finish)."))
    }

    // --- agents (docs/api.md, "Agents") ---
    pub fn agent_path_not_found(path: &str) -> Self {
        e(404, "AgentPathNotFound", format!("{path} is not an agent endpoint (enroll, poll, report)."))
    }
    pub fn agent_request_invalid(detail: &str) -> Self {
        e(400, "AgentRequestInvalid", format!("The agent request is not valid: {detail}."))
    }
    pub fn agent_token_invalid(why: &str) -> Self {
        e(
            401,
            "AgentTokenInvalid",
            format!("The enrolment token cannot be used: {why}. Create a new one with `posture agents token create`."),
        )
    }
    pub fn agent_token_other_instance(instance_id: &str) -> Self {
        e(
            403,
            "AgentTokenWrongInstance",
            format!("The enrolment token was created for instance {instance_id} and enrols only that one."),
        )
    }
    pub fn agent_instance_exists(instance_id: &str) -> Self {
        e(409, "AgentInstanceExists", format!("Instance {instance_id} is already registered; re-enrolling it needs a token created for it (`posture agents token create --instance-id {instance_id}`)."))
    }
    pub fn agent_unknown() -> Self {
        e(401, "AgentNotFound", "No agent is enrolled under this AgentId; enrol again.")
    }
    pub fn agent_revoked() -> Self {
        e(
            403,
            "AgentRevoked",
            "This agent has been revoked (or replaced by a later enrolment of its instance); it must stop.",
        )
    }
    pub fn agent_signature_invalid() -> Self {
        e(
            401,
            "AgentSignatureInvalid",
            "The request's Ed25519 signature does not verify with the agent's registered key.",
        )
    }
    pub fn agent_version_unsupported(version: &str, minimum: &str) -> Self {
        e(
            426,
            "AgentVersionUnsupported",
            format!(
                "Agent version {version} is older than the oldest this server accepts ({minimum}); upgrade the agent."
            ),
        )
    }
    pub fn agent_work_not_yours() -> Self {
        e(403, "AgentWorkNotFound", "No such task, check or preview of this agent's own instance.")
    }
    pub fn agent_report_stale() -> Self {
        e(
            409,
            "AgentReportStale",
            "The report's lease has expired or been taken over, or the task has moved on; nothing was written.",
        )
    }
    pub fn agent_not_found(name: &str) -> Self {
        e(404, "AgentNotFound", format!("The account has no active agent {name}."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_mismatch_keeps_the_colon_sdk_core_splits_on() {
        let m = ApiError::signature_mismatch("POST&%2F&x").message;
        let after_first_colon = m.split(':').nth(1).unwrap();
        assert_eq!(after_first_colon, "POST&%2F&x");
    }
}
