//! The operations, one group per file. Each is a plain function from the caller's context and
//! the decoded parameters to a JSON answer or an [`ApiError`]; the gateway does the rest.

pub mod agents;
pub mod approvals;
mod asset_selection;
pub mod audit;
mod auto_remediation;
mod check_config;
mod check_results;
mod check_runs;
mod check_standards;
mod cloud_accounts;
mod custom_configs;
mod exports;
mod inventory;
mod operation_tasks;
mod preview;
mod quota;
mod webhooks;
mod whitelists;

use std::sync::{Arc, Mutex};
use store::{ApiStore, Instance, StoreError};

use sha2::{Digest, Sha256};

use catalog::Catalog;
use engine::Engine;
use model::{ApiError, Lang, Vendor};
use serde_json::Value;

use crate::params::Params;

/// What an operation runs with.
pub struct Ctx<'a> {
    /// The store.
    pub store: &'a dyn ApiStore,
    /// The engine (to wake workers).
    pub engine: &'a Arc<Engine>,
    /// The caller's account: every query is scoped by it.
    pub account_id: &'a str,
    /// Service settings.
    pub settings: &'a Settings,
    /// Serialises calls that carry a ClientToken, so a retry racing its original waits for it.
    pub idempotency: &'a Mutex<()>,
    /// The scheme and host the caller reached this node by (`https://posture.example:8443`),
    /// for links in answers.
    pub origin: &'a str,
    /// The caller's AccessKeyId (who drove what the call changes).
    pub key_id: &'a str,
}

/// Service settings the operations read.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Re-verifying the same check item within this time answers `OperateCode: Throttling`
    /// (unless `Force`).
    pub verify_interval_ms: i64,
    /// Agent polls that may wait for work at once (past it, polls are answered at once).
    pub max_agent_polls: usize,
    /// How long an agent's poll waits for work.
    pub agent_poll_wait: std::time::Duration,
    /// Whether the node serves HTTPS (links in answers say so).
    pub https: bool,
    /// How long audit records are kept (`--audit-retention-days`; None: for ever).
    pub audit_retention_ms: Option<i64>,
    /// The address clients reach the service by, for links in answers (`--public-url`);
    /// None: the Host the caller sent, with this node's scheme.
    pub public_url: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            verify_interval_ms: 30_000,
            max_agent_polls: 512,
            agent_poll_wait: crate::agents::POLL_WAIT,
            https: false,
            public_url: None,
            audit_retention_ms: None,
        }
    }
}

impl Ctx<'_> {
    pub(crate) fn catalog(&self) -> &Catalog {
        self.engine.catalog()
    }
}

/// An operation.
pub type Op = fn(&Ctx, &Params) -> Result<Value, ApiError>;

/// Every action posture implements.
pub const OPERATIONS: &[(&str, Op)] = &[
    ("ListCheckResult", check_results::list_check_result),
    ("ListCheckInstanceResult", check_results::list_check_instance_result),
    ("GetCheckDetail", check_results::get_check_detail),
    ("GetCheckSummary", check_standards::get_check_summary),
    ("ListCheckStandard", check_standards::list_check_standard),
    ("GetCheckStructure", check_standards::get_check_structure),
    ("ListCheckItems", check_standards::list_check_items),
    ("ListCheckPolicies", check_standards::list_check_policies),
    ("GetCheckConfig", check_config::get_check_config),
    ("ChangeCheckConfig", check_config::change_check_config),
    ("ChangeCheckCustomConfig", custom_configs::change_check_custom_config),
    ("ListCheckItem", custom_configs::list_check_item),
    ("ExportRecord", exports::export_record),
    ("DescribeExportInfo", exports::describe_export_info),
    ("SubmitOperationTask", operation_tasks::submit_operation_task),
    ("ListOperationTask", operation_tasks::list_operation_task),
    ("ListOperationCheck", operation_tasks::list_operation_check),
    ("CancelOperationTask", operation_tasks::cancel_operation_task),
    ("PreviewOperationTask", preview::preview_operation_task),
    ("DescribeOperationTaskHistory", operation_tasks::describe_operation_task_history),
    ("DescribeAuditLog", audit::describe_audit_log),
    ("ApproveOperationTask", approvals::approve_operation_task),
    ("RejectOperationTask", approvals::reject_operation_task),
    ("DescribeApprovalConfig", approvals::describe_approval_config),
    ("ModifyApprovalConfig", approvals::modify_approval_config),
    ("CreateWebhook", webhooks::create_webhook),
    ("ListWebhooks", webhooks::list_webhooks),
    ("DeleteWebhook", webhooks::delete_webhook),
    ("CreateAutoRemediation", auto_remediation::create_auto_remediation),
    ("ListAutoRemediations", auto_remediation::list_auto_remediations),
    ("DeleteAutoRemediation", auto_remediation::delete_auto_remediation),
    ("SubmitCheck", check_runs::submit_check),
    ("GetCheckProcess", check_runs::get_check_process),
    ("DescribeCheckTrend", check_runs::describe_check_trend),
    ("VerifyCheckResult", check_runs::verify_check_result),
    ("VerifyCheckInstanceResult", check_runs::verify_check_instance_result),
    ("ListOperationProcess", check_runs::list_operation_process),
    ("ListOperationProcessDetail", check_runs::list_operation_process_detail),
    ("CreateAssetSelectionConfig", asset_selection::create_asset_selection_config),
    ("AddAssetSelectionCriteria", asset_selection::add_asset_selection_criteria),
    ("GetAssetSelectionConfig", asset_selection::get_asset_selection_config),
    ("ListAssetSelectionTarget", asset_selection::list_asset_selection_target),
    ("ListAssetSelectionSelectedTarget", asset_selection::list_asset_selection_selected_target),
    ("AddCheckResultWhiteList", whitelists::add_check_result_white_list),
    ("RemoveCheckResultWhiteList", whitelists::remove_check_result_white_list),
    ("AddCheckInstanceResultWhiteList", whitelists::add_check_instance_result_white_list),
    ("RemoveCheckInstanceResultWhiteList", whitelists::remove_check_instance_result_white_list),
    ("ListCheckWhiteList", whitelists::list_check_white_list),
    ("CheckTrialFixCount", quota::check_trial_fix_count),
    ("DescribeFixUsedCount", quota::describe_fix_used_count),
    ("AddCloudVendorAccountAK", cloud_accounts::add_cloud_vendor_account_ak),
    ("DescribeCloudVendorAccountAKList", cloud_accounts::describe_cloud_vendor_account_ak_list),
    ("ModifyCloudVendorAccountAK", cloud_accounts::modify_cloud_vendor_account_ak),
    ("DeleteCloudVendorAccountAK", cloud_accounts::delete_cloud_vendor_account_ak),
    ("ListCloudVendorRegions", cloud_accounts::list_cloud_vendor_regions),
    ("CreateAgentToken", agents::create_agent_token),
    ("DescribeAgents", agents::describe_agents),
    ("RevokeAgent", agents::revoke_agent),
    ("ListInstances", inventory::list_instances),
    ("DescribeAccessKeys", inventory::describe_access_keys),
];

/// The actions that change nothing (no row, no file).
const READS_ONLY: &[&str] = &[
    "ListCheckResult",
    "ListCheckInstanceResult",
    "GetCheckDetail",
    "GetCheckSummary",
    "ListCheckStandard",
    "GetCheckStructure",
    "ListCheckItems",
    "ListCheckPolicies",
    "GetCheckConfig",
    "ListCheckItem",
    "DescribeExportInfo",
    "ListOperationTask",
    "ListOperationCheck",
    "DescribeOperationTaskHistory",
    "DescribeAuditLog",
    "DescribeApprovalConfig",
    "ListWebhooks",
    "ListAutoRemediations",
    "GetCheckProcess",
    "ListOperationProcess",
    "ListOperationProcessDetail",
    "GetAssetSelectionConfig",
    "ListAssetSelectionTarget",
    "ListAssetSelectionSelectedTarget",
    "CheckTrialFixCount",
    "DescribeFixUsedCount",
    "DescribeCloudVendorAccountAKList",
    "ListCloudVendorRegions",
    "DescribeAgents",
    "DescribeCheckTrend",
    "ListCheckWhiteList",
    "ListInstances",
    "DescribeAccessKeys",
];

/// Whether an action may change something (its calls are recorded in the audit trail).
pub fn changes_state(action: &str) -> bool {
    find(action).is_some() && !READS_ONLY.contains(&action)
}

/// Whether an action changes nothing (a `ClientToken` makes any action keep its answer).
pub fn reads_only(action: &str, p: &Params) -> bool {
    READS_ONLY.contains(&action) && p.str("ClientToken").is_none()
}

/// Parameters that belong to the request's signature or transport, not to the operation.
pub(crate) const COMMON_PARAMS: &[&str] = &[
    "AccessKeyId",
    "Action",
    "Format",
    "RegionId",
    "SecurityToken",
    "Signature",
    "SignatureMethod",
    "SignatureNonce",
    "SignatureType",
    "SignatureVersion",
    "Timestamp",
    "Version",
    "ClientToken",
];

/// Runs an operation. With a `ClientToken` (≤ 64 ASCII characters) the first successful answer
/// is kept, and a retry with the same token and parameters gets it again without running the
/// operation twice; the same token with other parameters is refused. Dry runs are not kept.
/// The operation's first write records the token in its own transaction (`store::with_client_token`),
/// so no retry, on any node, runs again an operation that changed something.
pub fn run(ctx: &Ctx, action: &str, op: Op, p: &Params) -> Result<Value, ApiError> {
    // A preview's answer is of the instances as they are now: one kept for a token would
    // answer a later call with what is no longer true. An answer holding a secret (an
    // enrolment token, a webhook's secret) is never kept: it would be stored in clear.
    if matches!(action, "PreviewOperationTask" | "CreateAgentToken" | "CreateWebhook") {
        return op(ctx, p);
    }
    let Some(token) = p.str("ClientToken") else { return op(ctx, p) };
    if token.len() > 64 || !token.is_ascii() {
        return Err(ApiError::invalid_parameter("ClientToken"));
    }
    let mut pairs: Vec<&(String, String)> =
        p.pairs().iter().filter(|(k, _)| !COMMON_PARAMS.contains(&k.as_str())).collect();
    pairs.sort();
    // The key is part of what a token stands for: another key's retry with the same token is
    // another call (refused as a mismatch), never handed the first key's answer.
    let caller = ("AccessKeyId".to_string(), ctx.key_id.to_string());
    pairs.push(&caller);
    let digest = hex::encode(Sha256::digest(serde_json::to_vec(&pairs).unwrap_or_default()));
    let _serial = ctx.idempotency.lock().unwrap_or_else(|e| e.into_inner());
    let kept = || kept_answer(ctx, action, token, &digest);
    if let Some(answer) = kept()? {
        return Ok(answer);
    }
    if p.bool("DryRun")? == Some(true) {
        return op(ctx, p);
    }
    let client_token =
        store::ClientToken { action: action.to_string(), token: token.to_string(), digest: digest.clone() };
    let answer = match store::with_client_token(ctx.account_id, client_token, || op(ctx, p)) {
        (Ok(answer), _) => answer,
        // A write of this call committed with the token, and then the call failed (a deletion
        // of nothing, a call refused half way): no retry may run it again. A refusal is its
        // answer, kept for its retries as an answer is; after a server error what it did is not
        // known, and its retries are answered IdempotentProcessing.
        (Err(e), true) => {
            if e.status < 500 {
                let kept = format!("{KEPT_ERROR}{}", serde_json::to_string(&e).map_err(|_| ApiError::server_error())?);
                ctx.store.keep_idempotent_answer(ctx.account_id, action, token, &digest, &kept).map_err(db)?;
            }
            return Err(e);
        }
        // The same token's call on another node got there first: its answer stands.
        (Err(e), false) => return kept()?.ok_or(e),
    };
    ctx.store.keep_idempotent_answer(ctx.account_id, action, token, &digest, &answer.to_string()).map_err(db)?;
    Ok(answer)
}

/// How a kept answer that is a refusal begins (an answer is a JSON object, `{…}`).
const KEPT_ERROR: &str = "error:";

/// The answer kept for a token, if any (a refusal kept is answered again as the error). A call
/// whose write recorded the token but whose answer is not kept yet is finishing on another node
/// (its answer follows within milliseconds) or its node stopped between its commit and its
/// answer: it is waited for a little, then answered `IdempotentProcessing`, never run again.
fn kept_answer(ctx: &Ctx, action: &str, token: &str, digest: &str) -> Result<Option<Value>, ApiError> {
    const WAIT: std::time::Duration = std::time::Duration::from_millis(50);
    for _ in 0..40 {
        match ctx.store.idempotent_answer(ctx.account_id, action, token).map_err(db)? {
            Some((kept_digest, _)) if kept_digest != digest => return Err(ApiError::idempotent_mismatch()),
            Some((_, answer)) if answer.is_empty() => std::thread::sleep(WAIT),
            Some((_, answer)) => {
                let Some(refusal) = answer.strip_prefix(KEPT_ERROR) else {
                    return serde_json::from_str(&answer).map(Some).map_err(|_| ApiError::server_error());
                };
                return Err(serde_json::from_str(refusal).unwrap_or_else(|_| ApiError::server_error()));
            }
            None => return Ok(None),
        }
    }
    Err(ApiError::idempotent_processing())
}

/// The action's name as a metrics label: one of the actions, or `unknown`.
pub fn label(action: &str) -> &'static str {
    OPERATIONS.iter().find(|(name, _)| *name == action).map_or("unknown", |(name, _)| name)
}

/// The operation for an action name.
pub fn find(action: &str) -> Option<Op> {
    OPERATIONS.iter().find(|(name, _)| *name == action).map(|(_, op)| *op)
}

/// A store failure: logged with its cause, answered as an opaque `ServerError`, or as
/// `ServiceUnavailable` (503, retry later) when the database cannot be reached.
pub fn db(e: StoreError) -> ApiError {
    if e == StoreError::TokenUsed {
        // Another call with the same ClientToken got there first: [`run`] answers its answer.
        return ApiError::server_error();
    }
    tracing::error!(error = %e, error_type = "store", "store call failed");
    match e {
        StoreError::Unavailable(_) | StoreError::Contended(_) => ApiError::database_unavailable(),
        _ => ApiError::server_error(),
    }
}

/// A JSON object from its fields, moving each value in (`json!` would deep-copy a value that
/// is already built, such as the array of a listing).
pub(crate) fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// `PageInfo`.
pub(crate) fn page_info(count: usize, page: i64, size: i64, total: i64) -> Value {
    serde_json::json!({"Count": count, "CurrentPage": page, "PageSize": size, "TotalCount": total})
}

/// Parses a vendor given in either form; `name` is the parameter for the error.
pub(crate) fn vendor_param(value: Option<&String>, name: &str) -> Result<Option<Vendor>, ApiError> {
    match value.map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => Vendor::parse(v).map(Some).ok_or_else(|| ApiError::invalid_parameter(name)),
    }
}

/// Resolves an instance named by id and optionally vendor and region, within the account.
pub(crate) fn resolve_instance(
    ctx: &Ctx,
    instance_id: &str,
    region: Option<&str>,
    vendor: Option<Vendor>,
) -> Result<Instance, ApiError> {
    let found = ctx.store.find_instances(ctx.account_id, instance_id).map_err(db)?;
    unique_match(
        instance_id,
        found.iter().filter(|i| region.is_none_or(|r| i.region_id == r) && vendor.is_none_or(|v| i.vendor == v)),
    )
    .cloned()
}

/// The one instance among `matches`: none → `InvalidInstance.NotFound`, several →
/// `InvalidInstance.Ambiguous` (give Vendor and RegionId).
pub(crate) fn unique_match<'a>(
    instance_id: &str,
    mut matches: impl Iterator<Item = &'a Instance>,
) -> Result<&'a Instance, ApiError> {
    match (matches.next(), matches.next()) {
        (None, _) => Err(ApiError::instance_not_found(instance_id)),
        (Some(one), None) => Ok(one),
        (Some(_), Some(_)) => Err(ApiError::instance_ambiguous(instance_id)),
    }
}

/// Resolves instance ids to instances of the account (every instance with the id); an id that
/// matches none is `InvalidInstance.NotFound`.
pub(crate) fn instances_by_ids(ctx: &Ctx, ids: &[String]) -> Result<Vec<Instance>, ApiError> {
    let found = ctx.store.find_instances_by_ids(ctx.account_id, ids).map_err(db)?;
    match ids.iter().find(|id| !found.iter().any(|i| &i.instance_id == *id)) {
        Some(missing) => Err(ApiError::instance_not_found(missing)),
        None => Ok(found),
    }
}

/// The check item, or `InvalidCheckId.NotFound`.
pub(crate) fn known_check<'a>(ctx: &'a Ctx, id: i64) -> Result<&'a catalog::CheckDef, ApiError> {
    ctx.catalog().get(id).ok_or_else(|| ApiError::check_not_found(id))
}

/// The item as the caller's account set it (its custom configs' values in the rule, and as the
/// defaults of the repair parameters named like them).
pub(crate) fn account_view<'a>(
    ctx: &Ctx,
    check: &'a catalog::CheckDef,
) -> Result<std::borrow::Cow<'a, catalog::CheckDef>, ApiError> {
    let values = ctx.store.custom_values(ctx.account_id).map_err(db)?;
    Ok(check.customised(values.get(&check.id)))
}

/// A check item's name in the caller's language.
pub(crate) fn check_name(ctx: &Ctx, check_id: i64, lang: Lang) -> String {
    ctx.catalog().get(check_id).map(|c| c.name.get(lang).to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database that cannot be reached, or that aborted a write on each retry, is a 503 to
    /// retry later; any other store failure an opaque 500.
    #[test]
    fn store_failures_answer_retry_later_only_when_a_retry_can_succeed() {
        let answer = |e: StoreError| {
            let a = db(e);
            (a.status, a.code)
        };
        let later = (503, "ServiceUnavailable".to_string());
        assert_eq!(answer(StoreError::Unavailable("down".into())), later);
        assert_eq!(answer(StoreError::Contended("deadlock detected".into())), later);
        assert_eq!(answer(StoreError::Db("disk I/O error".into())), (500, "ServerError".to_string()));
    }
}
