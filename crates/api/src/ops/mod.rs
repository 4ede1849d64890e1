//! The operations, one group per file. Each is a plain function from the caller's context and
//! the decoded parameters to a JSON answer or an [`ApiError`]; the gateway does the rest.

mod check_results;
mod check_runs;
mod operation_tasks;

use std::sync::Arc;

use catalog::Catalog;
use engine::Engine;
use model::{ApiError, Lang, Vendor};
use serde_json::Value;
use store::{Instance, Store, StoreError};

use crate::params::Params;

/// What an operation runs with.
pub struct Ctx<'a> {
    /// The store.
    pub store: &'a Store,
    /// The engine (to wake workers).
    pub engine: &'a Arc<Engine>,
    /// The caller's account: every query is scoped by it.
    pub account_id: &'a str,
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
    ("SubmitOperationTask", operation_tasks::submit_operation_task),
    ("ListOperationTask", operation_tasks::list_operation_task),
    ("ListOperationCheck", operation_tasks::list_operation_check),
    ("SubmitCheck", check_runs::submit_check),
    ("GetCheckProcess", check_runs::get_check_process),
    ("VerifyCheckResult", check_runs::verify_check_result),
    ("VerifyCheckInstanceResult", check_runs::verify_check_instance_result),
    ("ListOperationProcess", check_runs::list_operation_process),
    ("ListOperationProcessDetail", check_runs::list_operation_process_detail),
];

/// The operation for an action name.
pub fn find(action: &str) -> Option<Op> {
    OPERATIONS.iter().find(|(name, _)| *name == action).map(|(_, op)| *op)
}

/// A store failure: logged with its cause, answered as an opaque `ServerError`.
pub(crate) fn db(e: StoreError) -> ApiError {
    tracing::error!(error = %e, error_type = "store", "store call failed");
    ApiError::server_error()
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
    let matches: Vec<Instance> = ctx
        .store
        .find_instances(ctx.account_id, instance_id)
        .map_err(db)?
        .into_iter()
        .filter(|i| region.is_none_or(|r| i.region_id == r) && vendor.is_none_or(|v| i.vendor == v))
        .collect();
    match matches.len() {
        0 => Err(ApiError::instance_not_found(instance_id)),
        1 => Ok(matches.into_iter().next().expect("one")),
        _ => Err(ApiError::instance_ambiguous(instance_id)),
    }
}

/// A check item's name in the caller's language.
pub(crate) fn check_name(ctx: &Ctx, check_id: i64, lang: Lang) -> String {
    ctx.catalog().get(check_id).map(|c| c.name.get(lang).to_string()).unwrap_or_default()
}
