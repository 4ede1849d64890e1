//! SubmitOperationTask, ListOperationTask, ListOperationCheck. Every choice made where the
//! reference is silent is written down in docs/api.md ("SubmitOperationTask").

use std::collections::BTreeMap;
use store::{
    Instance, InstanceMatch, NewTask, RootLimits, SelectionSource, StoreError, Submission, SubmitOutcome, TaskFilter,
    TaskRow,
};

use catalog::CheckDef;
use model::{ApiError, DimensionType, ParamError, TaskStatus, TaskType};
use serde_json::{json, Value};

use super::{check_name, db, known_check, object, page_info, unique_match, vendor_param, Ctx};
use crate::params::Params;

/// One `OperationTaskInstances.N` entry, resolved.
pub(super) struct Named {
    pub instance: Instance,
    pub task_id: Option<String>,
}

fn named_instances(ctx: &Ctx, p: &Params) -> Result<Vec<Named>, ApiError> {
    struct Entry {
        id: String,
        region: Option<String>,
        vendor: Option<model::Vendor>,
        task_id: Option<String>,
    }
    let mut entries = Vec::new();
    for (n, o) in p.objects("OperationTaskInstances")?.iter().enumerate() {
        let field = |f: &str| format!("OperationTaskInstances.{}.{f}", n + 1);
        let non_empty = |f: &str| o.get(f).map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let id = non_empty("InstanceId").ok_or_else(|| ApiError::missing_parameter(&field("InstanceId")))?;
        let vendor = vendor_param(o.get("Vendor"), &field("Vendor"))?;
        entries.push(Entry { id, region: non_empty("RegionId"), vendor, task_id: non_empty("TaskId") });
    }
    // One query for all of them, then each entry is matched in memory.
    let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
    let known = ctx.store.find_instances_by_ids(ctx.account_id, &ids).map_err(db)?;
    let mut out: Vec<Named> = Vec::new();
    for e in entries {
        let instance = unique_match(
            &e.id,
            known.iter().filter(|i| {
                i.instance_id == e.id
                    && e.region.as_ref().is_none_or(|r| &i.region_id == r)
                    && e.vendor.is_none_or(|v| i.vendor == v)
            }),
        )?;
        // The same instance named twice is one task.
        if !out.iter().any(|x| x.instance.pk == instance.pk) {
            out.push(Named { instance: instance.clone(), task_id: e.task_id });
        }
    }
    Ok(out)
}

/// The repair's values: those given (`RepairTempParam`) and the defaults of the others, a
/// parameter named like a custom config defaulting to the account's threshold (`check` is the
/// item as the account set it). A value given that would not meet that threshold is refused:
/// the repair would write it and then fail its verification.
pub(super) fn repair_params(check: &CheckDef, p: &Params) -> Result<model::RepairValues, ApiError> {
    let mut given = Vec::new();
    for (n, o) in p.objects("RepairTempParam")?.iter().enumerate() {
        let name = o
            .get("Name")
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::missing_parameter(&format!("RepairTempParam.{}.Name", n + 1)))?;
        // A name is echoed in error codes (ErrorParamFormat.<Name>): no control character.
        if name.chars().any(char::is_control) {
            return Err(ApiError::invalid_parameter(&format!("RepairTempParam.{}.Name", n + 1)));
        }
        given.push((name.to_string(), o.get("Value").cloned().unwrap_or_default()));
    }
    let specs = check.repair.as_ref().map(|r| r.params.as_slice()).unwrap_or_default();
    let values = model::resolve_params(specs, &given).map_err(|e| match e {
        ParamError::Missing(name) => ApiError::param_not_customized(&name),
        ParamError::Format(name) => ApiError::param_format(&name),
        ParamError::Meaning(name, why) => ApiError::param_meaning(&name, &why),
    })?;
    for (name, value) in values.iter() {
        if let Some(why) = check.looser_than_threshold(name, value) {
            return Err(ApiError::param_meaning(name, &why));
        }
    }
    Ok(values)
}

/// `FailureThreshold`, `MaxConcurrency` and `CanaryCount` (posture extensions; docs/api.md).
pub(super) fn root_limits(p: &Params) -> Result<RootLimits, ApiError> {
    let failure_threshold = match p.str("FailureThreshold") {
        None => None,
        Some(v) => {
            Some(model::FailureThreshold::parse(v).ok_or_else(|| ApiError::invalid_parameter("FailureThreshold"))?)
        }
    };
    let positive = |name: &str| -> Result<Option<i64>, ApiError> {
        match p.int(name)? {
            Some(n) if n < 1 => Err(ApiError::invalid_parameter(name)),
            n => Ok(n),
        }
    };
    Ok(RootLimits {
        failure_threshold,
        max_concurrency: positive("MaxConcurrency")?,
        canary_count: positive("CanaryCount")?,
    })
}

/// A SubmitOperationTask request, resolved: what its submission (and its preview) act on.
pub(super) struct Asked<'c> {
    pub check_id: i64,
    pub kind: TaskType,
    pub dimension: DimensionType,
    /// The item as the catalog has it.
    pub check: &'c CheckDef,
    /// The selection a RelationKey names.
    pub relation: Option<store::Selection>,
    pub limits: RootLimits,
    /// The repair's values (the account's thresholds as defaults).
    pub params: model::RepairValues,
    /// The instances named (or, by CheckId, every failing one).
    pub named: Vec<Named>,
}

impl Asked<'_> {
    /// What the steps change on an instance: changes of the same scope are serialised.
    pub fn scope(&self, ctx: &Ctx) -> String {
        ctx.engine
            .connector(&self.check.asset)
            .map_or_else(|| connectors::WHOLE_INSTANCE.to_string(), |c| c.scope(&self.check.render_steps(&self.params)))
    }
}

/// Reads and checks SubmitOperationTask's parameters, and finds the instances they name.
pub(super) fn asked<'c>(ctx: &'c Ctx, p: &Params) -> Result<Asked<'c>, ApiError> {
    let check_id = p.required_int("CheckId")?;
    let kind = TaskType::parse(p.required("Type")?).ok_or_else(|| ApiError::invalid_parameter("Type"))?;
    let dimension = match p.str("DimensionType") {
        Some(d) => DimensionType::parse(d).ok_or_else(|| ApiError::invalid_parameter("DimensionType"))?,
        None => DimensionType::Instance,
    };
    let check = known_check(ctx, check_id)?;
    if check.repair.is_none() {
        return Err(ApiError::repair_not_supported(check_id));
    }
    if kind == TaskType::Rollback && !check.supports_rollback() {
        return Err(ApiError::rollback_not_supported(check_id));
    }
    // A RelationKey adds every instance of the selection bound to it (see docs/api.md).
    let relation = match p.str("RelationKey") {
        None => None,
        Some(_) if kind == TaskType::Rollback => return Err(ApiError::invalid_parameter("RelationKey")),
        Some(key) => Some(
            ctx.store
                .selection_by_business_type(ctx.account_id, key)
                .map_err(db)?
                .ok_or_else(|| ApiError::relation_key_not_found(key))?,
        ),
    };
    let limits = root_limits(p)?;
    // A rollback is never held back or cancelled: it is what keeps a repair undoable.
    if kind == TaskType::Rollback && limits != RootLimits::default() {
        let given = ["FailureThreshold", "MaxConcurrency", "CanaryCount"].into_iter().find(|n| p.str(n).is_some());
        return Err(ApiError::invalid_parameter(given.unwrap_or("FailureThreshold")));
    }
    let params = match kind {
        // An account's threshold is the default of the repair parameter named like it.
        TaskType::Repair => repair_params(&*super::account_view(ctx, check)?, p)?,
        TaskType::Rollback => model::RepairValues::default(),
    };
    let mut named = named_instances(ctx, p)?;
    if named.is_empty() && relation.is_none() {
        match (dimension, kind) {
            (DimensionType::Instance, _) => return Err(ApiError::missing_parameter("OperationTaskInstances")),
            (DimensionType::CheckId, TaskType::Rollback) => return Err(ApiError::rollback_task_required()),
            (DimensionType::CheckId, TaskType::Repair) => {
                named = ctx
                    .store
                    .failing_instances(ctx.account_id, check_id)
                    .map_err(db)?
                    .into_iter()
                    .map(|instance| Named { instance, task_id: None })
                    .collect();
                if named.is_empty() {
                    return Err(ApiError::no_instance_to_operate());
                }
            }
        }
    }
    Ok(Asked { check_id, kind, dimension, check, relation, limits, params, named })
}

/// SubmitOperationTask: one root task, one task per instance, written in one transaction.
pub fn submit_operation_task(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let asked = asked(ctx, p)?;
    let scope = asked.scope(ctx);
    let Asked { check_id, kind, dimension, check, relation, limits, params, named } = asked;
    let whitelisted = match kind {
        TaskType::Repair => {
            let pks: Vec<i64> = named.iter().map(|n| n.instance.pk).collect();
            ctx.store.whitelisted_among(ctx.account_id, check_id, &pks).map_err(db)?
        }
        TaskType::Rollback => Vec::new(),
    };
    let mut tasks = Vec::with_capacity(named.len());
    for n in &named {
        if n.instance.connector != check.asset {
            return Err(ApiError::instance_not_applicable(&n.instance.instance_id, check_id));
        }
        let repair_task_id = match kind {
            TaskType::Repair if whitelisted.contains(&n.instance.pk) => {
                return Err(ApiError::instance_whitelisted(&n.instance.instance_id, check_id))
            }
            TaskType::Repair => None,
            TaskType::Rollback => Some(rollback_target(ctx, check_id, n)?),
        };
        tasks.push(NewTask {
            id: store::task_id(),
            instance_pk: n.instance.pk,
            repair_task_id,
            params: params.clone(),
        });
    }
    let root_id = store::new_id(16);
    let selection =
        relation.map(|selection| SelectionSource { selection, connector: check.asset.clone(), params: params.clone() });
    // The answer is known before the tasks are written, so a ClientToken's answer is kept
    // whole in the same transaction (not only that the call ran): a retry after a crash
    // between the commit and the answer gets this RootTaskId.
    let answer = json!({"RootTaskId": root_id});
    store::answer_in_advance(&answer.to_string());
    let submitted_by = ctx.key_id.to_string();
    let submission = Submission { root_id, check_id, kind, dimension, tasks, selection, scope, limits, submitted_by };
    match ctx.store.submit(ctx.account_id, &submission) {
        Ok(SubmitOutcome::Created(_) | SubmitOutcome::AwaitingApproval(_)) => {
            ctx.engine.wake();
            Ok(answer)
        }
        Ok(SubmitOutcome::TrialUnauthorized) => Ok(json!({"OperateCode": "ActionTrialUnauthorized"})),
        Ok(SubmitOutcome::QuotaExhausted) => Ok(json!({"OperateCode": "AuthorizationExhaust"})),
        Ok(SubmitOutcome::OverInstanceLimit { instances, max }) => {
            Err(ApiError::instance_limit_exceeded(instances, max))
        }
        Err(StoreError::Conflict) => Err(ApiError::repair_task_conflict()),
        Err(StoreError::NothingToDo) => Err(ApiError::no_instance_to_operate()),
        Err(StoreError::NotLatest { repair, newer }) => Err(ApiError::rollback_not_latest(&repair, &newer)),
        // TokenUsed included: its twin kept an answer meanwhile (`ops::run` returns that one).
        Err(e) => Err(db(e)),
    }
}

/// Checks that a rollback names an applied repair of this check on this instance, not yet
/// rolled back. (That no later change of the same file stands is decided by the store, in the
/// transaction that writes the rollback.)
fn rollback_target(ctx: &Ctx, check_id: i64, n: &Named) -> Result<String, ApiError> {
    let task_id = n.task_id.as_deref().ok_or_else(ApiError::rollback_task_required)?;
    let repair =
        ctx.store.get_task(ctx.account_id, task_id).map_err(db)?.ok_or_else(|| ApiError::task_not_found(task_id))?;
    if repair.kind != TaskType::Repair || repair.check_id != check_id || repair.instance.pk != n.instance.pk {
        return Err(ApiError::rollback_task_mismatch(task_id));
    }
    if ctx.store.has_rollback(task_id).map_err(db)? {
        return Err(ApiError::repair_task_conflict());
    }
    if !repair.status.repair_applied() {
        return Err(ApiError::rollback_not_allowed(task_id, repair.status.as_str()));
    }
    Ok(task_id.to_string())
}

/// Most instances a listing filters by: each is a term of the query.
const MAX_INSTANCE_FILTERS: usize = 100;

fn instance_filters(p: &Params) -> Result<Vec<InstanceMatch>, ApiError> {
    p.objects_at_most("OperationTaskInstances", MAX_INSTANCE_FILTERS)?
        .iter()
        .enumerate()
        .map(|(n, o)| {
            let non_empty = |f: &str| o.get(f).map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
            let vendor = vendor_param(o.get("Vendor"), &format!("OperationTaskInstances.{}.Vendor", n + 1))?;
            Ok(InstanceMatch {
                instance_id: non_empty("InstanceId"),
                region_id: non_empty("RegionId"),
                vendor: vendor.map(|v| v.code()),
            })
        })
        .collect()
}

fn task_type(p: &Params) -> Result<Option<TaskType>, ApiError> {
    p.str("Type").map(|t| TaskType::parse(t).ok_or_else(|| ApiError::invalid_parameter("Type"))).transpose()
}

fn task_row(ctx: &Ctx, t: &TaskRow, lang: model::Lang) -> Value {
    let check = ctx.catalog().get(t.check_id);
    let support_type = check.map_or(0, |c| c.repair_support_type());
    let can_roll_back = t.kind == TaskType::Repair && support_type == 1 && t.status.repair_applied() && !t.rolled_back;
    json!({
        "TaskId": t.id,
        "RootTaskId": t.root_id,
        "Type": t.kind.as_str(),
        "Status": t.status.as_str(),
        "StatusShowName": t.status.show_name(lang),
        "CheckId": t.check_id,
        "CheckShowName": check_name(ctx, t.check_id, lang),
        "InstanceId": t.instance.instance_id,
        "InstanceName": t.instance.instance_name,
        "RegionId": t.instance.region_id,
        "Vendor": t.instance.vendor.name(),
        "InstanceFreed": t.instance_freed || t.instance.freed,
        "RiskLevel": check.map_or("", |c| c.risk.lower()),
        "RepairSupportType": support_type,
        "SupportRollBack": can_roll_back,
        "ErrorCode": t.error_code,
        "ErrorMsg": t.error_msg,
        // posture: what the verification read (the file, the value in effect) and how the
        // change took effect, or that no live step ran.
        "Verification": t.verification,
        "DealTime": t.updated_ms,
        "LastCheckTime": t.updated_ms,
    })
}

/// For the rows waiting for approval, who must act (posture: `Approval`): a key other than the
/// one that submitted the root task, whose policy allows ApproveOperationTask, by when.
fn add_who_must_approve(ctx: &Ctx, rows: &[TaskRow], out: &mut [Value]) -> Result<(), ApiError> {
    let mut expiry_ms = None;
    let mut submitters: BTreeMap<String, String> = BTreeMap::new();
    for (t, row) in rows.iter().zip(out) {
        if t.status != TaskStatus::WaitApproval {
            continue;
        }
        let expiry = match expiry_ms {
            Some(ms) => ms,
            None => *expiry_ms.insert(ctx.store.approval_config(ctx.account_id).map_err(db)?.expiry_ms),
        };
        let submitter = match submitters.get(&t.root_id) {
            Some(s) => s.clone(),
            None => {
                let s = ctx.store.root_submitter(ctx.account_id, &t.root_id).map_err(db)?;
                submitters.insert(t.root_id.clone(), s.clone());
                s
            }
        };
        row["Approval"] = json!({
            "SubmittedBy": submitter,
            "ApproverPolicy": "Admin, or a policy naming ApproveOperationTask; not the submitting key",
            "ExpiresAt": t.created_ms + expiry,
        });
    }
    Ok(())
}

/// ListOperationTask: one row per instance task, newest first.
pub fn list_operation_task(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let lang = p.lang();
    let (page, size, offset) = p.page(20, 100)?;
    let filter = TaskFilter {
        check_id: p.int("CheckId")?,
        task_id: p.str("TaskId").map(String::from),
        root_id: p.str("RootTaskId").map(String::from),
        kind: task_type(p)?,
        statuses: p.parsed_list("Statuses", TaskStatus::parse)?,
        instances: instance_filters(p)?,
        offset,
        limit: size,
        ..Default::default()
    };
    let (rows, total) = ctx.store.list_tasks(ctx.account_id, &filter).map_err(db)?;
    let mut tasks: Vec<Value> = rows.iter().map(|t| task_row(ctx, t, lang)).collect();
    add_who_must_approve(ctx, &rows, &mut tasks)?;
    Ok(object([("PageInfo", page_info(tasks.len(), page, size, total)), ("OperationTasks", Value::Array(tasks))]))
}

/// ListOperationCheck: per instance, the history of repair (or rollback) tasks of a check item.
pub fn list_operation_check(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let lang = p.lang();
    let check_id = p.required_int("CheckId")?;
    let kind = TaskType::parse(p.required("Type")?).ok_or_else(|| ApiError::invalid_parameter("Type"))?;
    let filters = instance_filters(p)?;
    if filters.is_empty() {
        return Err(ApiError::missing_parameter("OperationTaskInstances"));
    }
    let check = known_check(ctx, check_id)?;
    let specs = check.repair.as_ref().map(|r| r.params.as_slice()).unwrap_or_default();
    let (rows, _) = ctx
        .store
        .list_tasks(
            ctx.account_id,
            &TaskFilter {
                check_id: Some(check_id),
                kind: Some(kind),
                instances: filters,
                start_ms: p.int("StartTime")?,
                end_ms: p.int("EndTime")?,
                offset: 0,
                limit: 1000,
                ..Default::default()
            },
        )
        .map_err(db)?;
    let mut by_instance: BTreeMap<i64, (Instance, Vec<Value>)> = BTreeMap::new();
    for t in &rows {
        // A corrupt row shows no values (its task fails as TaskRecordCorrupt).
        let used = t.params.clone().unwrap_or_default();
        let configs: Vec<Value> = specs
            .iter()
            .map(|s| {
                let value = used.iter().find(|(n, _)| n == &s.name).map(|(_, v)| v.clone()).unwrap_or_default();
                json!({"FlowId": format!("posture-{}", check.key), "Name": s.name, "ShowName": s.show_name.get(lang), "TypeDefine": s.kind.type_define(), "Value": value})
            })
            .collect();
        by_instance.entry(t.instance.pk).or_insert_with(|| (t.instance.clone(), Vec::new())).1.push(json!({
            "TaskId": t.id,
            "Status": t.status.as_str(),
            "StatusShowName": t.status.show_name(lang),
            "OperateTime": t.created_ms,
            "RepairConfigs": configs,
        }));
    }
    let details: Vec<Value> = by_instance
        .into_values()
        .map(|(i, repairs)| {
            json!({"CheckId": check_id, "InstanceId": i.instance_id, "RegionId": i.region_id, "Type": kind.as_str(), "Repair": repairs})
        })
        .collect();
    Ok(object([("OperationTaskInstanceDetails", Value::Array(details))]))
}

/// CancelOperationTask (a posture extension): `RootTaskId`, optionally `TaskIds.N` of it. Each
/// task that has changed nothing yet ends CANCELLED; a repair changing the configuration
/// finishes its step and is then rolled back from its snapshot; the others are left as they
/// are. The answer says which, task by task.
pub fn cancel_operation_task(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let root = p.required("RootTaskId")?;
    let task_ids = p.list("TaskIds")?;
    let done = match ctx.store.cancel(ctx.account_id, root, &task_ids, ctx.key_id) {
        Ok(done) => done,
        Err(StoreError::NotFound) => {
            let missing = task_ids.first().map_or(root, String::as_str);
            return Err(ApiError::task_not_found(missing));
        }
        Err(e) => return Err(db(e)),
    };
    // Workers waiting on the files the cancelled tasks held may go on.
    ctx.engine.wake();
    let pks: Vec<i64> = done.iter().map(|(_, pk, _)| *pk).collect();
    let instances = ctx.store.instances_by_pks(ctx.account_id, &pks).map_err(db)?;
    let tasks: Vec<Value> = done
        .into_iter()
        .map(|(id, pk, outcome)| {
            let instance = instances.iter().find(|i| i.pk == pk).map_or("", |i| i.instance_id.as_str());
            json!({"TaskId": id, "InstanceId": instance, "Cancel": outcome.as_str()})
        })
        .collect();
    Ok(json!({"RootTaskId": root, "Tasks": tasks}))
}

/// DescribeOperationTaskHistory (a posture extension): every status a task of the caller's
/// account went through, with when, oldest first (its creation first).
pub fn describe_operation_task_history(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let id = p.required("TaskId")?;
    // Another account's task is as unknown as one that does not exist.
    ctx.store.get_task(ctx.account_id, id).map_err(db)?.ok_or_else(|| ApiError::task_not_found(id))?;
    let history: Vec<Value> = ctx
        .store
        .task_events(id)
        .map_err(db)?
        .into_iter()
        .map(|e| json!({"Status": e.status, "Time": e.at_ms, "Actor": e.actor}))
        .collect();
    Ok(json!({"TaskId": id, "History": history}))
}
