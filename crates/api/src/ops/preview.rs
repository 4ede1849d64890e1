//! PreviewOperationTask (a posture extension): SubmitOperationTask's parameters, answered with
//! what the repair would change on each instance (a unified diff per file, before and after per
//! cloud aspect) and which instances it would skip and why; nothing is created or changed.
//! Each instance is planned by its connector against the instance as it is now (an agent plans
//! its own server). The choices are written down in docs/api.md ("PreviewOperationTask").

use std::time::{Duration, Instant};

use model::{ApiError, PlannedChange, TaskType};
use serde_json::{json, Value};
use store::Instance;

use super::operation_tasks::{asked, Asked};
use super::{db, page_info, Ctx};
use crate::params::Params;

/// How long a preview waits for the agents of its instances to answer (an agent answers at
/// its next poll, at once when it is idle).
pub const AGENT_WAIT: Duration = Duration::from_secs(10);

/// Instances planned at once (each plan reads files or calls a cloud API).
const PLANNERS: usize = 8;

/// What a preview found for one instance.
enum Outcome {
    /// The repair would change these.
    Changes(Vec<PlannedChange>),
    /// It would not be repaired here: (code, message, the task in the way).
    Skipped(String, String, Option<String>),
}

impl Outcome {
    fn skipped(e: ApiError) -> Outcome {
        Outcome::Skipped(e.code, e.message, None)
    }
}

/// PreviewOperationTask: one page of the instances a submission would act on (named ones
/// first, then those of the RelationKey's selection), each with its planned changes or the
/// reason it would be skipped.
pub fn preview_operation_task(ctx: &Ctx, p: &Params) -> Result<Value, ApiError> {
    let asked = asked(ctx, p)?;
    if asked.kind == TaskType::Rollback {
        return Err(ApiError::preview_type_unsupported());
    }
    let (page, size, offset) = p.page(20, 100)?;
    let (instances, total) = page_of_instances(ctx, &asked, offset, size)?;
    let mut outcomes = skips(ctx, &asked, &instances)?;
    let change = asked.check.change(&asked.params);
    let (direct, via_agent): (Vec<usize>, Vec<usize>) =
        (0..instances.len()).filter(|i| outcomes[*i].is_none()).partition(|i| !instances[*i].via_agent());
    let asked_agents = ask_agents(ctx, &asked, &instances, &via_agent)?;
    for (i, planned) in plan_each(ctx, &instances, &direct, &change) {
        outcomes[i] = Some(planned);
    }
    for (i, outcome) in wait_for_agents(ctx, asked_agents)? {
        outcomes[i] = Some(outcome);
    }
    let rows: Vec<Value> = instances.iter().zip(outcomes).map(|(i, o)| row(i, o.unwrap_or_else(no_answer))).collect();
    let params: Vec<Value> = asked.params.iter().map(|(n, v)| json!({"Name": n, "Value": v})).collect();
    Ok(json!({
        "CheckId": asked.check_id,
        "RepairParams": params,
        // How the change takes effect on a running system (the item's declaration); it runs on
        // the instances whose `Live` is true.
        "Effect": asked.check.effect().and_then(|e| serde_json::to_value(e).ok()),
        "PageInfo": page_info(rows.len(), page, size, total),
        "Instances": rows,
    }))
}

/// The page `offset..offset + size` of the instances named (or failing) followed by those of
/// the selection, and how many there are in all.
fn page_of_instances(ctx: &Ctx, asked: &Asked, offset: i64, size: i64) -> Result<(Vec<Instance>, i64), ApiError> {
    let named: Vec<&Instance> = asked.named.iter().map(|n| &n.instance).collect();
    let skip = usize::try_from(offset).unwrap_or(usize::MAX);
    let mut page: Vec<Instance> = named.iter().skip(skip).take(size as usize).map(|i| (*i).clone()).collect();
    let mut total = named.len() as i64;
    if let Some(selection) = &asked.relation {
        let from = (offset - named.len() as i64).max(0);
        let want = size - page.len() as i64;
        let (targets, in_selection) =
            ctx.store.list_selection_targets(ctx.account_id, selection, from, want.max(1)).map_err(db)?;
        total += in_selection;
        if want > 0 {
            let ids: Vec<String> = targets.into_iter().map(|(id, _)| id).collect();
            let found = ctx.store.find_instances_by_ids(ctx.account_id, &ids).map_err(db)?;
            for id in &ids {
                // The instances of the item's kind, each once (an instance named and selected
                // is one task).
                for i in found.iter().filter(|i| &i.instance_id == id && i.connector == asked.check.asset) {
                    if !named.iter().any(|n| n.pk == i.pk) && !page.iter().any(|p| p.pk == i.pk) {
                        page.push(i.clone());
                    }
                }
            }
        }
    }
    Ok((page, total))
}

/// The instances a submission would refuse or leave waiting, as SubmitOperationTask decides
/// them: not of the item's kind, whitelisted, a repair of the item already under way, or
/// queued behind another change of the same file (or aspect).
fn skips(ctx: &Ctx, asked: &Asked, instances: &[Instance]) -> Result<Vec<Option<Outcome>>, ApiError> {
    let pks: Vec<i64> = instances.iter().map(|i| i.pk).collect();
    let whitelisted = ctx.store.whitelisted_among(ctx.account_id, asked.check_id, &pks).map_err(db)?;
    let scope = asked.scope(ctx);
    let under_way = ctx.store.changes_under_way(ctx.account_id, asked.check_id, &scope, &pks).map_err(db)?;
    Ok(instances
        .iter()
        .map(|i| {
            if i.connector != asked.check.asset {
                return Some(Outcome::skipped(ApiError::instance_not_applicable(&i.instance_id, asked.check_id)));
            }
            if whitelisted.contains(&i.pk) {
                return Some(Outcome::skipped(ApiError::instance_whitelisted(&i.instance_id, asked.check_id)));
            }
            let mut theirs = under_way.iter().filter(|c| c.instance_pk == i.pk);
            let first = theirs.clone().next()?;
            Some(match theirs.find(|c| c.check_id == asked.check_id) {
                Some(same) => Outcome::Skipped(
                    "RepairTaskConflict".into(),
                    format!("a task of check item {} is already under way on this instance", asked.check_id),
                    Some(same.task_id.clone()),
                ),
                None => Outcome::Skipped(
                    "QueuedBehindChange".into(),
                    format!(
                        "the repair would wait for task {} (check item {}), which changes the same configuration; \
                         what it changes then depends on that task",
                        first.task_id, first.check_id
                    ),
                    Some(first.task_id.clone()),
                ),
            })
        })
        .collect())
}

/// Plans the change on the instances this node reaches itself, a few at a time.
fn plan_each(ctx: &Ctx, instances: &[Instance], which: &[usize], change: &model::Change) -> Vec<(usize, Outcome)> {
    if which.is_empty() {
        return Vec::new();
    }
    let chunk = which.len().div_ceil(PLANNERS);
    std::thread::scope(|s| {
        let handles: Vec<_> = which
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|i| {
                            let outcome = match ctx.engine.preview(&instances[*i], change) {
                                Ok(changes) => Outcome::Changes(changes),
                                Err(e) => Outcome::Skipped(e.code.to_string(), e.message, None),
                            };
                            (*i, outcome)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    })
}

/// Asks the agents of these instances for their plans: (instance index, request id).
fn ask_agents(
    ctx: &Ctx,
    asked: &Asked,
    instances: &[Instance],
    which: &[usize],
) -> Result<Vec<(usize, String)>, ApiError> {
    if which.is_empty() {
        return Ok(Vec::new());
    }
    let pks: Vec<i64> = which.iter().map(|i| instances[*i].pk).collect();
    let ids = ctx.store.request_previews(ctx.account_id, asked.check_id, &asked.params, &pks).map_err(db)?;
    ctx.engine.wake();
    Ok(which.iter().copied().zip(ids).collect())
}

/// The agents' answers, waiting up to [`AGENT_WAIT`] for all of them; an instance whose agent
/// has not answered by then is left out (see [`no_answer`]).
fn wait_for_agents(ctx: &Ctx, mut waiting: Vec<(usize, String)>) -> Result<Vec<(usize, Outcome)>, ApiError> {
    let until = Instant::now() + AGENT_WAIT;
    let mut done = Vec::new();
    while !waiting.is_empty() {
        let ids: Vec<String> = waiting.iter().map(|(_, id)| id.clone()).collect();
        for (id, answer) in ctx.store.preview_answers(ctx.account_id, &ids).map_err(db)? {
            if let Some(at) = waiting.iter().position(|(_, w)| *w == id) {
                let (i, _) = waiting.swap_remove(at);
                let outcome = match engine::preview_answer_of(&answer) {
                    Ok(changes) => Outcome::Changes(changes),
                    Err((code, message)) => Outcome::Skipped(code, message, None),
                };
                done.push((i, outcome));
            }
        }
        if waiting.is_empty() || Instant::now() >= until {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(done)
}

fn no_answer() -> Outcome {
    Outcome::Skipped(
        "AgentNoAnswer".into(),
        format!(
            "the instance's agent did not answer within {} s (it is offline, or busy with a long step)",
            AGENT_WAIT.as_secs()
        ),
        None,
    )
}

fn row(i: &Instance, outcome: Outcome) -> Value {
    let mut row = json!({
        "InstanceId": i.instance_id,
        "InstanceName": i.instance_name,
        "RegionId": i.region_id,
        "Vendor": i.vendor.name(),
        "Live": i.live.is_some(),
    });
    let fields = match outcome {
        Outcome::Changes(changes) => json!({
            "Outcome": if changes.is_empty() { "NO_CHANGE" } else { "CHANGE" },
            "Changes": changes.iter().map(change_json).collect::<Vec<_>>(),
        }),
        Outcome::Skipped(code, message, task) => json!({
            "Outcome": "SKIPPED",
            "SkipCode": code,
            "SkipMessage": message,
            "BlockingTaskId": task,
            "Changes": [],
        }),
    };
    if let (Value::Object(row), Value::Object(fields)) = (&mut row, fields) {
        row.extend(fields);
    }
    row
}

fn change_json(c: &PlannedChange) -> Value {
    match c {
        PlannedChange::FileContent { file, created, diff } => {
            json!({"Kind": "FILE_CONTENT", "File": file, "Created": created, "Diff": diff})
        }
        PlannedChange::FileMode { file, before, after } => {
            json!({"Kind": "FILE_MODE", "File": file, "Before": before, "After": after})
        }
        PlannedChange::CloudState { aspect, before, after } => {
            json!({"Kind": "CLOUD_STATE", "Aspect": aspect, "Before": before, "After": after})
        }
    }
}
