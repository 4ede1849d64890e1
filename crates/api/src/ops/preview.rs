//! PreviewOperationTask (a posture extension): SubmitOperationTask's parameters, answered with
//! what the repair would change on each instance (a unified diff per file, before and after per
//! cloud aspect) and which instances it would skip and why; nothing is created or changed.
//! Each instance is planned by its connector against the instance as it is now (an agent plans
//! its own server). The choices are written down in docs/api.md ("PreviewOperationTask").

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use model::{ApiError, PlannedChange, TaskType};
use serde_json::{json, Value};
use store::Instance;

use super::operation_tasks::{asked, Asked};
use super::{db, page_info, Ctx};
use crate::params::Params;

/// How long a preview waits for the agents of its instances to answer (an agent answers at
/// its next poll, at once when it is idle).
const AGENT_WAIT: Duration = Duration::from_millis(store::PREVIEW_WAIT_MS as u64);

/// Instances planned at once (each plan reads files or calls a cloud API).
const PLANNERS: usize = 8;

/// Previews waiting for agents at once, on this node: each holds a blocking thread while it
/// waits, so past this a preview does not ask agents (their instances are skipped, to be
/// previewed again shortly) rather than take threads the API and the agents need.
const MAX_WAITING: usize = 16;
static WAITING: AtomicUsize = AtomicUsize::new(0);

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
    if TaskType::parse(p.required("Type")?) == Some(TaskType::Rollback) {
        return Err(ApiError::preview_type_unsupported());
    }
    let asked = asked(ctx, p)?;
    let (page, size, offset) = p.page(20, 100)?;
    let (instances, total) = page_of_instances(ctx, &asked, offset, size)?;
    let mut outcomes = skips(ctx, &asked, &instances)?;
    let change = asked.check.change(&asked.params);
    let (direct, via_agent): (Vec<usize>, Vec<usize>) =
        (0..instances.len()).filter(|i| outcomes[*i].is_none()).partition(|i| !instances[*i].via_agent());
    let (asked_agents, unreachable) = ask_agents(ctx, &asked, &instances, &via_agent)?;
    for (i, outcome) in unreachable {
        outcomes[i] = Some(outcome);
    }
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

/// The page `offset..offset + size` of the instances a submission would act on — those named
/// (or failing), then those of the selection of the item's kind that are not named (an
/// instance named and selected is one task, as the submission makes it) — and how many there
/// are in all.
fn page_of_instances(ctx: &Ctx, asked: &Asked, offset: i64, size: i64) -> Result<(Vec<Instance>, i64), ApiError> {
    let named: Vec<&Instance> = asked.named.iter().map(|n| &n.instance).collect();
    let skip = usize::try_from(offset).unwrap_or(usize::MAX);
    let mut page: Vec<Instance> = named.iter().skip(skip).take(size as usize).map(|i| (*i).clone()).collect();
    let mut total = named.len() as i64;
    if let Some(selection) = &asked.relation {
        let from = (offset - named.len() as i64).max(0);
        let want = size - page.len() as i64;
        let named_pks: Vec<i64> = named.iter().map(|i| i.pk).collect();
        let (selected, in_selection) = ctx
            .store
            .selected_instances_page(ctx.account_id, selection, &asked.check.asset, &named_pks, from, want.max(1))
            .map_err(db)?;
        total += in_selection;
        if want > 0 {
            page.extend(selected);
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
        // A planner that panicked leaves its instances unplanned, said as such.
        handles
            .into_iter()
            .zip(which.chunks(chunk))
            .flat_map(|(h, part)| {
                h.join().unwrap_or_else(|_| {
                    let failed =
                        || Outcome::Skipped("PreviewError".into(), "planning failed unexpectedly".into(), None);
                    part.iter().map(|i| (*i, failed())).collect()
                })
            })
            .collect()
    })
}

/// The requests asked of agents: (instance index, request id), and the permit that lets this
/// preview wait for them.
struct Asking {
    requests: Vec<(usize, String)>,
    _permit: Option<WaitPermit>,
}

/// One of the [`MAX_WAITING`] previews that may wait for agents at once.
struct WaitPermit;

impl WaitPermit {
    fn take() -> Option<WaitPermit> {
        let taken = WAITING.fetch_add(1, Ordering::SeqCst) < MAX_WAITING;
        if taken {
            Some(WaitPermit)
        } else {
            WAITING.fetch_sub(1, Ordering::SeqCst);
            None
        }
    }
}

impl Drop for WaitPermit {
    fn drop(&mut self) {
        WAITING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Asks the agents of these instances that are online for their plans; those offline (not
/// heard from as DescribeAgents' `Online` counts) are skipped at once, as are all of them when
/// too many previews already wait for agents on this node.
fn ask_agents(
    ctx: &Ctx,
    asked: &Asked,
    instances: &[Instance],
    which: &[usize],
) -> Result<(Asking, Vec<(usize, Outcome)>), ApiError> {
    let mut skipped = Vec::new();
    if which.is_empty() {
        return Ok((Asking { requests: Vec::new(), _permit: None }, skipped));
    }
    let Some(permit) = WaitPermit::take() else {
        let busy = || {
            Outcome::Skipped(
                "AgentNoAnswer".into(),
                "too many previews are waiting for agents on this node; preview again shortly".into(),
                None,
            )
        };
        return Ok((Asking { requests: Vec::new(), _permit: None }, which.iter().map(|i| (*i, busy())).collect()));
    };
    let pks: Vec<i64> = which.iter().map(|i| instances[*i].pk).collect();
    let seen = ctx.store.agents_last_seen(ctx.account_id, &pks).map_err(db)?;
    let online_since = store::now_ms() - super::agents::ONLINE_MS;
    let mut online = Vec::new();
    for i in which {
        match seen.iter().find(|(pk, _)| *pk == instances[*i].pk) {
            Some((_, at)) if *at >= online_since => online.push(*i),
            _ => skipped.push((
                *i,
                Outcome::Skipped(
                    "AgentOffline".into(),
                    format!(
                        "the instance's agent has not been heard from for {} s; nothing is planned",
                        super::agents::ONLINE_MS / 1000
                    ),
                    None,
                ),
            )),
        }
    }
    let pks: Vec<i64> = online.iter().map(|i| instances[*i].pk).collect();
    let ids = match pks.is_empty() {
        true => Vec::new(),
        false => ctx.store.request_previews(ctx.account_id, asked.check_id, &asked.params, &pks).map_err(db)?,
    };
    ctx.engine.wake();
    Ok((Asking { requests: online.into_iter().zip(ids).collect(), _permit: Some(permit) }, skipped))
}

/// The agents' answers, waiting up to [`AGENT_WAIT`] for all of them; an instance whose agent
/// has not answered by then is left out (see [`no_answer`]). The requests are removed at the
/// end, answered or not: no agent takes an abandoned one.
fn wait_for_agents(ctx: &Ctx, asking: Asking) -> Result<Vec<(usize, Outcome)>, ApiError> {
    let all: Vec<String> = asking.requests.iter().map(|(_, id)| id.clone()).collect();
    let done = collect_answers(ctx, asking.requests);
    if let Err(e) = ctx.store.forget_previews(&all) {
        tracing::warn!(error = %e, "preview requests could not be removed; the next preview removes them");
    }
    done
}

fn collect_answers(ctx: &Ctx, mut waiting: Vec<(usize, String)>) -> Result<Vec<(usize, Outcome)>, ApiError> {
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
