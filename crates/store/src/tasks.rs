use crate::instances::{instance_from, INSTANCE_COLS};
use crate::selections::selected_instances;
use crate::sql::{args, skip_locked, Arg, Conn, Dialect, Row, Where};
use crate::whitelists::whitelisted_sql;
use crate::{counts, now_ms, task_id, Instance, Result, ResultUpdate, Selection, Store, StoreError};
use model::{DimensionType, RepairValues, Snapshot, SnapshotItem, TaskStatus, TaskType};
use std::sync::LazyLock;

/// Whether instance `i` is reached through its agent, as SQL (1 or 0 on either backend).
const VIA_AGENT: &str = "CASE WHEN i.locator = 'agent' THEN 1 ELSE 0 END";

/// One per-instance task of a submission.
#[derive(Clone, Debug)]
pub struct NewTask {
    /// Task id (32 hex).
    pub id: String,
    /// The instance.
    pub instance_pk: i64,
    /// For a rollback: the repair it undoes.
    pub repair_task_id: Option<String>,
    /// The values the repair runs with.
    pub params: RepairValues,
}

/// A SubmitOperationTask, written in one transaction.
#[derive(Clone, Debug)]
pub struct Submission {
    /// Root task id (32 hex).
    pub root_id: String,
    /// The check item.
    pub check_id: i64,
    /// Repair or rollback.
    pub kind: TaskType,
    /// How the instances were chosen.
    pub dimension: DimensionType,
    /// One per listed instance.
    pub tasks: Vec<NewTask>,
    /// REPAIR only: every instance of a selection too (whitelisted ones skipped).
    pub selection: Option<SelectionSource>,
    /// What the repair changes on each instance (the connector's scope of its steps). A
    /// rollback takes its repair's scope instead.
    pub scope: String,
    /// How far the change may spread (posture extensions; none by default).
    pub limits: RootLimits,
    /// Who submitted it (the AccessKeyId): its tasks' history starts with them.
    pub submitted_by: String,
}

/// One entry of a task's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskEvent {
    /// The status it entered.
    pub status: String,
    /// When (ms).
    pub at_ms: i64,
    /// Who drove it there: an AccessKeyId (a submission, a cancel), [`WORKER_ACTOR`],
    /// `agent:<AgentId>` or [`SERVICE_ACTOR`]; empty for what was recorded before schema 18.
    pub actor: String,
}

/// How far a root task's change may spread (SubmitOperationTask's posture extensions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RootLimits {
    /// Once this many of its tasks have failed, the others that changed nothing are cancelled.
    pub failure_threshold: Option<model::FailureThreshold>,
    /// Tasks of the root under way at once, at most.
    pub max_concurrency: Option<i64>,
    /// The first this many tasks run first; the others wait until those are verified, and are
    /// cancelled if one is not.
    pub canary_count: Option<i64>,
}

/// A ClientToken of a call, with the digest of the parameters it came with.
#[derive(Clone, Debug)]
pub struct ClientToken {
    /// The action.
    pub action: String,
    /// The token.
    pub token: String,
    /// Digest of the call's parameters.
    pub digest: String,
}

/// The instances of a selection that a submission adds, all with the same parameters.
#[derive(Clone, Debug)]
pub struct SelectionSource {
    /// The selection.
    pub selection: Selection,
    /// Only instances of this connector kind (the kind the check item applies to).
    pub connector: String,
    /// The values the repairs run with.
    pub params: RepairValues,
}

/// What a submission did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubmitOutcome {
    /// The root task and this many tasks were written.
    Created(i64),
    /// The root task and this many tasks were written, waiting for approval
    /// (`WAIT_APPROVAL`): the account, or this item of it, requires it.
    AwaitingApproval(i64),
    /// A trial account may not repair; nothing was written.
    TrialUnauthorized,
    /// The repair authorization does not cover it; nothing was written.
    QuotaExhausted,
    /// It would touch more instances than the account allows one submission; nothing was
    /// written.
    OverInstanceLimit {
        /// Instances it would touch.
        instances: i64,
        /// The account's limit.
        max: i64,
    },
}

/// Whether the tasks `a` and `b` may touch the same thing on their instance (the same scope, or
/// either one the whole instance).
macro_rules! overlap {
    ($a:literal, $b:literal) => {
        concat!("(", $a, ".scope = ", $b, ".scope OR ", $a, ".scope = '*' OR ", $b, ".scope = '*')")
    };
}
pub(crate) use overlap;

/// Task `$t`'s place in the order of changes of its instance: its creation, or its approval for
/// a task that waited for one (see `approvals.rs`).
macro_rules! pos {
    ($t:literal) => {
        concat!("COALESCE(", $t, ".approved_pos, ", $t, ".rowid * 1000000)")
    };
}

/// The latest change of the same scope after repair `?1` (and before task `?2`, the rollback,
/// when it exists) that still stands, on the same instance: a repair that has started (not
/// queued, not waiting for approval: those change nothing before the rollback, which goes
/// ahead of them, see [`RELEASE_WAITING`]), or applied and neither rolled back nor being
/// rolled back. While one exists, restoring `?1`'s snapshot would undo (or race) it, so the
/// rollback of `?1` is refused, naming it.
const STANDING_CHANGE_AFTER: &str = concat!(
    "SELECT n.id FROM tasks r JOIN tasks n ON n.instance_pk = r.instance_pk AND ",
    pos!("n"),
    " > ",
    pos!("r"),
    "
     WHERE r.id = ?1 AND ",
    pos!("n"),
    " < COALESCE((SELECT ",
    pos!("b"),
    " FROM tasks b WHERE b.id = ?2), 9223372036854775807)
       AND n.type = 'REPAIR' AND ",
    overlap!("n", "r"),
    " AND (({n.status IS ACTIVE} AND n.status NOT IN ('WAIT_APPROVAL', 'THROTTLING'))
            OR (n.status IN ('REPAIR_SUCCESS_VERIFIED', 'REPAIR_SUCCESS_UNVERIFIED')
                AND NOT EXISTS (SELECT 1 FROM tasks b WHERE b.repair_task_id = n.id AND b.type = 'ROLLBACK'
                                AND b.status <> 'ROLL_BACK_FAIL')))
     ORDER BY ",
    pos!("n"),
    " DESC LIMIT 1"
);

/// The status a new task on instance `{PK}` touching scope `{SCOPE}` starts in: `{STATUS}` (its
/// type's initial status), or THROTTLING while an earlier unfinished change of the instance may
/// touch the same thing; WAIT_APPROVAL as it is (it joins the queue once approved, see
/// `approvals.rs`). An expression inside the INSERT, so it costs no statement of its own.
const STATUS_OF_NEW: &str = "CASE WHEN {STATUS} = 'WAIT_APPROVAL' THEN {STATUS}
                             WHEN EXISTS (SELECT 1 FROM tasks x WHERE x.instance_pk = {PK} AND {x.status IS ACTIVE}
                                AND x.status <> 'WAIT_APPROVAL' AND (x.scope = {SCOPE} OR x.scope = '*' OR {SCOPE} = '*'))
                             THEN 'THROTTLING' ELSE {STATUS} END";

/// [`STATUS_OF_NEW`] with its parts filled in.
fn status_of_new(pk: &str, scope: &str, status: &str) -> String {
    crate::status_sets(STATUS_OF_NEW).replace("{PK}", pk).replace("{SCOPE}", scope).replace("{STATUS}", status)
}

/// Releases the waiting tasks of instance `?1` that no other unfinished task overlapping them
/// must go before: they go to their type's initial status, in the same transaction as the
/// change that ended. Changes go in the order they were submitted, but for the rollback a
/// cancel writes once a cancelled repair has finished its step
/// ([`crate::cancel::roll_back_if_cancelled`]): it goes before the repairs queued after that
/// repair (which would otherwise be built on the change it undoes, and make it "no longer the
/// latest"), and they wait for it. Rollbacks among themselves keep their order (the latest
/// change is undone first).
const RELEASE_WAITING: &str = concat!(
    "UPDATE tasks SET status = CASE type WHEN 'ROLLBACK' THEN 'ROLL_BACK_INIT' ELSE 'INIT' END, updated_ms = ?2
     WHERE instance_pk = ?1 AND {status IS ACTIVE} AND status = 'THROTTLING'
       AND NOT EXISTS (SELECT 1 FROM tasks o WHERE o.instance_pk = tasks.instance_pk AND {o.status IS ACTIVE}
                       AND o.status <> 'WAIT_APPROVAL' AND ",
    overlap!("o", "tasks"),
    "     AND ((",
    pos!("o"),
    " < ",
    pos!("tasks"),
    "
                             AND NOT (tasks.type = 'ROLLBACK' AND o.type = 'REPAIR' AND o.status = 'THROTTLING'
                                      AND ",
    pos!("o"),
    " > (SELECT ",
    pos!("r"),
    " FROM tasks r WHERE r.id = tasks.repair_task_id)))
                         OR (tasks.type = 'REPAIR' AND o.type = 'ROLLBACK' AND ",
    pos!("o"),
    " > ",
    pos!("tasks"),
    "
                             AND (SELECT ",
    pos!("r"),
    " FROM tasks r WHERE r.id = o.repair_task_id) < ",
    pos!("tasks"),
    ")))
     RETURNING id, status"
);

/// SQL run on every submission, transition or claim, built once: the committer runs it on its
/// one thread, and the statement cache is looked up by the text.
static STANDING_CHANGE_AFTER_SQL: LazyLock<String> = LazyLock::new(|| crate::status_sets(STANDING_CHANGE_AFTER));
static RELEASE_WAITING_SQL: LazyLock<String> = LazyLock::new(|| crate::status_sets(RELEASE_WAITING));
/// The INSERT of `rows` tasks of one root, in one statement: on PostgreSQL every statement is a
/// round trip, made while the submission holds its account's row lock ([`lock_account`]), so
/// a statement per task kept the lock ten times as long. Parameters: `?1` root, `?2` account,
/// `?3` check item, `?4` type, `?5` initial status, `?6` now; then five per task (see
/// [`task_rows_args`]): id, instance, repair undone, parameters, scope. A task's THROTTLING
/// test cannot see the others of its statement, and needs not: a root has one task per instance.
/// `rows` is 1 to [`TASKS_PER_INSERT`].
pub(crate) fn insert_tasks_sql(rows: usize) -> &'static str {
    // Built once for every size (1 to TASKS_PER_INSERT): the text is also the statement cache's
    // key.
    static BY_SIZE: LazyLock<Vec<String>> = LazyLock::new(|| (1..=TASKS_PER_INSERT).map(build_insert_tasks).collect());
    &BY_SIZE[rows - 1]
}

fn build_insert_tasks(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let at = |k: usize| format!("?{}", 7 + 5 * r + k);
            let (id, pk, repair, params, scope) = (at(0), at(1), at(2), at(3), at(4));
            format!(
                "({id}, ?1, ?2, ?3, {pk}, ?4, {}, {repair}, {params}, {scope}, ?6, ?6, (SELECT {VIA_AGENT} FROM instances i WHERE i.pk = {pk}))",
                status_of_new(&pk, &scope, "?5")
            )
        })
        .collect();
    format!(
        "INSERT INTO tasks (id, root_id, account_id, check_id, instance_pk, type, status, repair_task_id, params, scope, created_ms, updated_ms, agent)
         VALUES {}",
        values.join(",\n                ")
    )
}

/// The arguments of [`insert_tasks_sql`]: the root's, then each task's (id, instance, repair
/// undone, parameters as JSON, scope).
pub(crate) fn task_rows_args<'a>(
    root: [Arg<'a>; 6],
    tasks: impl IntoIterator<Item = (&'a str, i64, Option<&'a str>, String, &'a str)>,
) -> Vec<Arg<'a>> {
    let mut args = Vec::from(root);
    for (id, pk, repair, params, scope) in tasks {
        args.extend([id.into(), pk.into(), repair.into(), params.into(), scope.into()]);
    }
    args
}

/// Most tasks one INSERT writes: the sizes [`insert_tasks_sql`] builds once. (Larger statements
/// cost SQLite more per row: each row's THROTTLING test keeps its cursors open to the end.)
const TASKS_PER_INSERT: usize = 32;

static CLAIM_TASK_SQL: LazyLock<[String; 2]> = LazyLock::new(|| {
    skip_locked(format!(
        "UPDATE tasks SET lease_until_ms = CAST(?1 AS BIGINT) + ?2, fence = fence + 1, attempts = attempts + 1
         WHERE rowid = (SELECT rowid FROM tasks INDEXED BY tasks_due WHERE {} AND agent = 0 AND lease_until_ms < ?1 ORDER BY lease_until_ms, rowid LIMIT 1)
         RETURNING id, account_id, fence",
        crate::status_in("status", TaskStatus::is_claimable)
    ))
});

/// The change of the same scope after `repair_task_id` (and before `rollback_task_id`) that
/// still stands, if any.
fn standing_change_after(c: &Conn, repair_task_id: &str, rollback_task_id: &str) -> Result<Option<String>> {
    c.query_opt(&STANDING_CHANGE_AFTER_SQL, args![repair_task_id, rollback_task_id], |r| r.get(0))
}

/// On PostgreSQL, takes the account's row lock for the rest of the transaction. Whether a new
/// task waits (THROTTLING) is decided from the instance's unfinished tasks, and a change that
/// ends releases the tasks waiting for it: a submission and an ending change of one account
/// take turns, so a task can neither start beside the change it should wait for nor wait for
/// a change that has already released its queue. SQLite's one writer already takes turns.
pub(crate) fn lock_account(tx: &Conn, account_id: &str) -> Result<()> {
    if tx.dialect() == Dialect::Postgres {
        tx.query_opt(ACCOUNT_TERMS[1], args![account_id], |_| Ok(()))?;
    }
    Ok(())
}

/// A change of instance `pk` is over: the tasks waiting for it (and for nothing else) may go.
pub(crate) fn release_waiting(tx: &Conn, pk: i64, now: i64) -> Result<()> {
    let released: Vec<(String, String)> =
        tx.query(&RELEASE_WAITING_SQL, args![pk, now], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if !released.is_empty() {
        crate::pg::notify_work(tx)?;
    }
    for (id, status) in released {
        record_event(tx, &id, &status, now, SERVICE_ACTOR)?;
    }
    Ok(())
}

/// A repair that changed nothing (failed, or cancelled) gives its authorization back; see
/// [`COUNTED_REPAIRS`].
pub(crate) fn give_back_authorization(tx: &Conn, account_id: &str) -> Result<()> {
    tx.execute("UPDATE accounts SET repairs_used = repairs_used - 1 WHERE id = ?", args![account_id])?;
    Ok(())
}

/// Who drove a transition the service decided itself (a queue released, a threshold reached,
/// a canary's verdict, an offline agent's task failed).
pub const SERVICE_ACTOR: &str = "posture";

/// Who drives the transitions of a task a worker of the engine claimed.
pub const WORKER_ACTOR: &str = "worker";

/// Records that task `id` entered `status` at `now`, driven by `actor` (its history).
pub(crate) fn record_event(tx: &Conn, id: &str, status: &str, now: i64, actor: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO task_events (task_id, status, at_ms, actor) VALUES (?, ?, ?, ?)",
        args![id, status, now, actor],
    )?;
    Ok(())
}

/// Counts `created` new tasks of item `check_id` of an account: the account's task count (the
/// unfiltered listing's TotalCount; tasks are never deleted), the item's (`task_counts`, the
/// listing filtered by the item alone) and, for a repair, the authorizations it uses; returns
/// the authorizations used. On PostgreSQL the account's row is already locked by this write,
/// and it is one statement: one round trip under the lock.
pub(crate) fn count_new_tasks(tx: &Conn, account_id: &str, check_id: i64, created: i64, repair: bool) -> Result<i64> {
    const ITEM: &str = "INSERT INTO task_counts (account_id, check_id, n) VALUES (?3, ?4, ?1)
                        ON CONFLICT (account_id, check_id) DO UPDATE SET n = task_counts.n + excluded.n";
    const ACCOUNT: &str = "UPDATE accounts SET tasks_total = tasks_total + ?1,
                                  repairs_used = repairs_used + CASE WHEN ?2 THEN ?1 ELSE 0 END
                           WHERE id = ?3 RETURNING repairs_used";
    static WITH_ITEM: LazyLock<String> = LazyLock::new(|| format!("WITH item AS ({ITEM}) {ACCOUNT}"));
    if tx.dialect() == Dialect::Postgres {
        return tx.value(&WITH_ITEM, args![created, repair, account_id, check_id]);
    }
    tx.execute(ITEM, args![created, repair, account_id, check_id])?;
    tx.value(ACCOUNT, args![created, repair, account_id])
}

/// An account's repair quota, trial flag and instance limit, as read (SQLite) and as read under the account's
/// row lock ([`lock_account`]) on PostgreSQL: a submission takes the lock with this read.
const ACCOUNT_TERMS: [&str; 2] = [
    "SELECT repair_quota, trial, max_submission_instances, approval_required FROM accounts WHERE id = ?",
    "SELECT repair_quota, trial, max_submission_instances, approval_required FROM accounts WHERE id = ? FOR UPDATE",
];

/// Repair tasks that count against the authorization: every one but those that changed nothing.
const COUNTED_REPAIRS: &str = "type = 'REPAIR' AND status NOT IN ('FAIL', 'BACKUP_FAIL', 'REPAIR_FAIL', 'CANCELLED')";

/// A stored task with its instance.
#[derive(Clone, Debug)]
pub struct TaskRow {
    /// Task id.
    pub id: String,
    /// Root task id.
    pub root_id: String,
    /// Owner.
    pub account_id: String,
    /// The check item.
    pub check_id: i64,
    /// The instance.
    pub instance: Instance,
    /// Repair or rollback.
    pub kind: TaskType,
    /// Current status.
    pub status: TaskStatus,
    /// For a rollback: the repair it undoes.
    pub repair_task_id: Option<String>,
    /// The values the repair runs with; Err (the stored text, undecodable) for a corrupt row:
    /// such a task must fail, never run without them.
    pub params: std::result::Result<RepairValues, String>,
    /// Failure code.
    pub error_code: String,
    /// Failure message.
    pub error_msg: String,
    /// The instance was gone.
    pub instance_freed: bool,
    /// Leases taken so far.
    pub attempts: i64,
    /// Created.
    pub created_ms: i64,
    /// Last transition.
    pub updated_ms: i64,
    /// A repair with a rollback done or under way.
    pub rolled_back: bool,
    /// What its verification read (the file, the value in effect), or why no live step ran.
    pub verification: String,
}

/// A task a worker holds: it may write only with this fence.
#[derive(Clone, Debug)]
pub struct Claimed {
    /// The task as claimed.
    pub task: TaskRow,
    /// The fence of this lease.
    pub fence: i64,
    /// Who drives it under this lease (its history's actor): [`WORKER_ACTOR`],
    /// `agent:<AgentId>`, or [`SERVICE_ACTOR`].
    pub by: String,
}

/// What a transition writes besides the status.
#[derive(Default)]
pub struct Transition<'a> {
    /// Failure code and message.
    pub error: Option<(&'a str, &'a str)>,
    /// The instance is gone.
    pub freed: bool,
    /// Replaces the task's snapshot (taken, or completed with post-change digests).
    pub snapshot: Option<&'a Snapshot>,
    /// A check result to store with it.
    pub result: Option<&'a ResultUpdate>,
    /// What the verification read (kept when None).
    pub verification: Option<&'a str>,
}

/// An instance filter entry: each part that is set must match.
#[derive(Clone, Debug, Default)]
pub struct InstanceMatch {
    /// Instance id.
    pub instance_id: Option<String>,
    /// Region.
    pub region_id: Option<String>,
    /// Vendor code.
    pub vendor: Option<i64>,
}

/// Filters of ListOperationTask / ListOperationCheck.
#[derive(Clone, Debug, Default)]
pub struct TaskFilter {
    /// Check item.
    pub check_id: Option<i64>,
    /// Task id.
    pub task_id: Option<String>,
    /// Root task id.
    pub root_id: Option<String>,
    /// Repair or rollback.
    pub kind: Option<TaskType>,
    /// Statuses.
    pub statuses: Vec<TaskStatus>,
    /// Instances (any of them).
    pub instances: Vec<InstanceMatch>,
    /// Created at or after.
    pub start_ms: Option<i64>,
    /// Created at or before.
    pub end_ms: Option<i64>,
    /// Offset.
    pub offset: i64,
    /// Limit.
    pub limit: i64,
}

/// The task's columns, and whether it is a repair with a rollback done or under way (read off
/// the partial index `tasks_one_rollback`, whose own terms it states).
const TASK_COLS: &str = "t.id, t.root_id, t.account_id, t.check_id, t.type, t.status, t.repair_task_id, t.params, t.error_code, t.error_msg, t.instance_freed, t.attempts, t.created_ms, t.updated_ms, t.verification,
    EXISTS (SELECT 1 FROM tasks b WHERE b.repair_task_id = t.id AND b.type = 'ROLLBACK' AND b.status <> 'ROLL_BACK_FAIL')";

fn task_from(r: &Row) -> Result<TaskRow> {
    let kind: String = r.get(4)?;
    let status: String = r.get(5)?;
    Ok(TaskRow {
        id: r.get(0)?,
        root_id: r.get(1)?,
        account_id: r.get(2)?,
        check_id: r.get(3)?,
        kind: TaskType::parse(&kind).unwrap_or(TaskType::Repair),
        status: TaskStatus::parse(&status).unwrap_or(TaskStatus::Fail),
        repair_task_id: r.get(6)?,
        params: {
            let text: String = r.get(7)?;
            RepairValues::from_json(&text).map_err(|_| text)
        },
        error_code: r.get(8)?,
        error_msg: r.get(9)?,
        instance_freed: r.get(10)?,
        attempts: r.get(11)?,
        created_ms: r.get(12)?,
        updated_ms: r.get(13)?,
        verification: r.get(14)?,
        rolled_back: r.get(15)?,
        instance: instance_from(r, 16)?,
    })
}

fn select_tasks() -> String {
    format!("SELECT {TASK_COLS}, {INSTANCE_COLS} FROM tasks t JOIN instances i ON i.pk = t.instance_pk")
}

/// A task's status is unfinished.
fn active() -> String {
    crate::status_in("status", |s| !s.is_terminal())
}

pub(crate) fn get_task_in(c: &Conn, account_id: &str, id: &str) -> Result<Option<TaskRow>> {
    c.query_opt(&format!("{} WHERE t.account_id = ? AND t.id = ?", select_tasks()), args![account_id, id], task_from)
}

impl crate::TaskQueue for Store {
    fn submit(&self, account_id: &str, s: &Submission) -> Result<SubmitOutcome> {
        let account_id = account_id.to_string();
        let s = s.clone();
        let now = now_ms();
        let repair = s.kind == TaskType::Repair;
        let result = self.write(move |tx| {
            let (quota, trial, limit, approval): (Option<i64>, bool, Option<i64>, bool) =
                tx.query_one(tx.pick(ACCOUNT_TERMS[0], ACCOUNT_TERMS[1]), args![&account_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?;
            if repair && trial {
                // Rolled back like the refusals below: the call's ClientToken is not recorded
                // with SubmitOperationTask's answer in advance (a RootTaskId never created).
                return Err(StoreError::TrialUnauthorized);
            }
            // Decided in the submission's transaction (on PostgreSQL under the account's lock),
            // so a change of the setting applies to whole submissions. A rollback never waits:
            // it is what keeps a repair undoable.
            let awaiting = repair && crate::approvals::required_in(tx, &account_id, s.check_id, approval)?;
            let status = if awaiting { TaskStatus::WaitApproval } else { TaskStatus::initial(s.kind) };
            tx.execute(
                "INSERT INTO root_tasks (id, account_id, check_id, type, dimension, created_ms, failure_threshold, max_concurrency, canary_count, submitted_by, awaited_approval)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                args![
                    &s.root_id,
                    &account_id,
                    s.check_id,
                    s.kind.as_str(),
                    s.dimension.as_str(),
                    now,
                    s.limits.failure_threshold.map(|f| f.as_string()),
                    s.limits.max_concurrency,
                    s.limits.canary_count,
                    &s.submitted_by,
                    awaiting
                ],
            )?;
            let mut scopes = Vec::with_capacity(s.tasks.len());
            for t in &s.tasks {
                scopes.push(match (&t.repair_task_id, s.kind) {
                    (Some(repair), TaskType::Rollback) => {
                        // Decided here, in the transaction that writes the rollback, so no
                        // later change can slip in between the check and the write.
                        if let Some(newer) = standing_change_after(tx, repair, &t.id)? {
                            return Err(StoreError::NotLatest { repair: repair.clone(), newer });
                        }
                        tx.query_opt("SELECT scope FROM tasks WHERE id = ?", args![repair], |r| r.get(0))?
                            .unwrap_or_else(|| s.scope.clone())
                    }
                    _ => s.scope.clone(),
                });
            }
            let mut created = 0i64;
            let listed: Vec<(&NewTask, &String)> = s.tasks.iter().zip(&scopes).collect();
            for chunk in listed.chunks(TASKS_PER_INSERT) {
                let root = [
                    s.root_id.as_str().into(),
                    account_id.as_str().into(),
                    s.check_id.into(),
                    s.kind.as_str().into(),
                    status.as_str().into(),
                    now.into(),
                ];
                let rows = chunk.iter().map(|(t, scope)| {
                    (t.id.as_str(), t.instance_pk, t.repair_task_id.as_deref(), t.params.to_json(), scope.as_str())
                });
                created += tx.execute(insert_tasks_sql(chunk.len()), &task_rows_args(root, rows))? as i64;
            }
            if let (Some(src), true) = (&s.selection, repair) {
                // One statement for the whole selection, however large.
                let (from, sel_args) = selected_instances(&account_id, &src.selection);
                let mut args: Vec<Arg> = vec![
                    s.root_id.as_str().into(), account_id.as_str().into(), s.check_id.into(),
                    s.scope.as_str().into(), status.as_str().into(), src.params.to_json().into(),
                    now.into(), now.into(),
                    // ?9: the ids' first 20 hex (below).
                    task_id()[..20].to_string().into(),
                ];
                args.extend(sel_args);
                args.push(src.connector.as_str().into());
                // Listed instances already have their task in this root.
                let listed = if s.tasks.is_empty() {
                    ""
                } else {
                    args.extend([account_id.as_str().into(), s.check_id.into(), s.root_id.as_str().into()]);
                    "AND NOT EXISTS (SELECT 1 FROM tasks x WHERE x.account_id = ? AND x.check_id = ? AND x.instance_pk = i.pk AND x.root_id = ?)"
                };
                // Whitelisted instances are skipped; when the account has no rule for the item,
                // the per-row probe is left out altogether.
                let has_rules: bool = tx.value(
                    "SELECT EXISTS (SELECT 1 FROM whitelist_rules WHERE account_id = ? AND check_id = ?)",
                    args![&account_id, s.check_id],
                )?;
                let skip_whitelisted = if has_rules {
                    args.extend([account_id.as_str().into(), s.check_id.into()]);
                    format!("AND NOT {}", whitelisted_sql("?", "?", "i.pk"))
                } else {
                    String::new()
                };
                // An instance with an unfinished change of the same scope waits (THROTTLING).
                let status_of = status_of_new("i.pk", "?4", "?5");
                // Ids shaped as `task_id()` shapes them (32 hex, the time first), the bits after
                // the time being 32 random ones shared by the submission, then the instance's
                // key: a fan-out's ids ascend, so the primary-key index appends instead of
                // taking each row at a random place (a third of a 200,000-task fan-out on
                // PostgreSQL). An instance has one task per root, so the ids stay unique.
                let new_id = tx.pick("?9 || printf('%012x', i.pk)", "?9 || lpad(to_hex(i.pk), 12, '0')");
                created += tx.execute(
                    &format!(
                        "INSERT INTO tasks (id, root_id, account_id, check_id, instance_pk, type, status, params, scope, created_ms, updated_ms, agent)
                         SELECT {new_id}, ?1, ?2, ?3, i.pk, 'REPAIR', {status_of},
                                ?6, ?4, ?7, ?8, {VIA_AGENT}{from}
                           AND i.connector = ? {listed} {skip_whitelisted}"
                    ),
                    &args,
                )? as i64;
            }
            if created == 0 {
                return Err(StoreError::NothingToDo);
            }
            if let Some(max) = limit.filter(|max| created > *max) {
                return Err(StoreError::OverLimit { instances: created, max }); // rolls it all back
            }
            crate::cancel::hold_beyond_first(tx, &s.root_id, &s.limits)?;
            let used = count_new_tasks(tx, &account_id, s.check_id, created, repair)?;
            if !awaiting {
                crate::pg::notify_work(tx)?;
            }
            if repair && quota.is_some_and(|q| used > q) {
                return Err(StoreError::QuotaExhausted); // rolls the whole submission back
            }
            Ok(if awaiting { SubmitOutcome::AwaitingApproval(created) } else { SubmitOutcome::Created(created) })
        });
        match result {
            Err(StoreError::QuotaExhausted) => Ok(SubmitOutcome::QuotaExhausted),
            Err(StoreError::TrialUnauthorized) => Ok(SubmitOutcome::TrialUnauthorized),
            Err(StoreError::OverLimit { instances, max }) => Ok(SubmitOutcome::OverInstanceLimit { instances, max }),
            other => other,
        }
    }

    fn repair_usage(&self, account_id: &str) -> Result<(i64, i64, i64)> {
        self.read(|c| {
            let (all, cn): (i64, i64) = c.query_one(
                &format!(
                    "SELECT COUNT(*), COUNT(*) FILTER (WHERE i.region_id LIKE 'cn-%') FROM tasks t JOIN instances i ON i.pk = t.instance_pk
                     WHERE t.account_id = ? AND t.{}",
                    COUNTED_REPAIRS.replace(" AND status", " AND t.status")
                ),
                args![account_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok((all, cn, all - cn))
        })
    }

    fn get_task(&self, account_id: &str, id: &str) -> Result<Option<TaskRow>> {
        self.read(|c| get_task_in(c, account_id, id))
    }

    fn list_tasks(&self, account_id: &str, f: &TaskFilter) -> Result<(Vec<TaskRow>, i64)> {
        let instances = f
            .instances
            .iter()
            .map(|InstanceMatch { instance_id, region_id, vendor }| {
                let mut all: Vec<(&str, Arg)> = Vec::new();
                all.extend(instance_id.as_ref().map(|v| ("i.instance_id = ?", v.into())));
                all.extend(region_id.as_ref().map(|v| ("i.region_id = ?", v.into())));
                all.extend(vendor.map(|v| ("i.vendor = ?", v.into())));
                all
            })
            .collect();
        let wh = Where::new("t.account_id = ?", [account_id.into()])
            .and_some("t.check_id = ?", f.check_id)
            .and_some("t.id = ?", f.task_id.as_ref())
            .and_some("t.root_id = ?", f.root_id.as_ref())
            .and_some("t.type = ?", f.kind.map(|k| k.as_str()))
            .and_in("t.status", f.statuses.iter().map(|s| s.as_str()))
            .and_some("t.created_ms >= ?", f.start_ms)
            .and_some("t.created_ms <= ?", f.end_ms)
            .and_any(instances);
        // Unfiltered, the total is the account's count kept by the submissions, and filtered by
        // the check item alone, the item's (`task_counts`); otherwise it is counted.
        let only_check_id = f.task_id.is_none()
            && f.root_id.is_none()
            && f.kind.is_none()
            && f.statuses.is_empty()
            && f.instances.is_empty()
            && f.start_ms.is_none()
            && f.end_ms.is_none();
        let counted =
            if f.instances.is_empty() { "tasks t" } else { "tasks t JOIN instances i ON i.pk = t.instance_pk" };
        self.read(|c| {
            let total: i64 = match (only_check_id, f.check_id) {
                (true, None) => c
                    .query_opt("SELECT tasks_total FROM accounts WHERE id = ?", args![account_id], |r| r.get(0))?
                    .unwrap_or(0),
                (true, Some(check_id)) => c
                    .query_opt(
                        "SELECT n FROM task_counts WHERE account_id = ? AND check_id = ?",
                        args![account_id, check_id],
                        |r| r.get(0),
                    )?
                    .unwrap_or(0),
                (false, _) => c.value(&format!("SELECT COUNT(*) FROM {counted}{}", wh.sql()), wh.args())?,
            };
            let rows = c.query(
                &format!("{}{} ORDER BY t.rowid DESC LIMIT ? OFFSET ?", select_tasks(), wh.sql()),
                &wh.paged(f.limit, f.offset),
                task_from,
            )?;
            Ok((rows, total))
        })
    }

    fn standing_change_after(&self, repair_task_id: &str, rollback_task_id: &str) -> Result<Option<String>> {
        self.read(|c| standing_change_after(c, repair_task_id, rollback_task_id))
    }

    fn has_rollback(&self, repair_task_id: &str) -> Result<bool> {
        self.read(|c| {
            Ok(c.query_opt(
                "SELECT 1 FROM tasks WHERE repair_task_id = ? AND type = 'ROLLBACK' AND status <> 'ROLL_BACK_FAIL'",
                args![repair_task_id],
                |_| Ok(()),
            )?
            .is_some())
        })
    }

    fn claim_task(&self, lease_ms: i64) -> Result<Option<Claimed>> {
        let now = now_ms();
        self.write(move |tx| {
            let [sqlite, postgres] = &*CLAIM_TASK_SQL;
            let got: Option<(String, String, i64)> =
                tx.query_opt(tx.pick(sqlite, postgres), args![now, lease_ms], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
            let Some((id, account, fence)) = got else {
                return Ok(None);
            };
            let task = get_task_in(tx, &account, &id)?.ok_or(StoreError::NotFound)?;
            Ok(Some(Claimed { task, fence, by: WORKER_ACTOR.to_string() }))
        })
    }

    fn extend_lease(&self, claimed: &Claimed, lease_ms: i64) -> Result<()> {
        let (id, fence) = (claimed.task.id.clone(), claimed.fence);
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE tasks SET lease_until_ms = ? WHERE id = ? AND fence = ? AND lease_until_ms > 0",
                args![now_ms() + lease_ms, &id, fence],
            )?;
            if n == 0 {
                return Err(StoreError::LeaseLost);
            }
            Ok(())
        })
    }

    fn watch_work(&self, wake: Box<dyn Fn() + Send + Sync>) -> Result<()> {
        match &self.db {
            crate::Db::Lite(lite) => {
                lite.watchers.lock().unwrap_or_else(|e| e.into_inner()).push(wake);
                Ok(())
            }
            crate::Db::Pg(pool) => pool.watch_work(wake),
        }
    }

    fn transition(&self, claimed: &Claimed, from: TaskStatus, to: TaskStatus, extra: Transition) -> Result<()> {
        let claimed = claimed.clone();
        if !from.can_move_to(to) {
            return Err(StoreError::IllegalTransition(format!("{from} -> {to}")));
        }
        let now = now_ms();
        let error = extra.error.map(|(c, m)| (c.to_string(), m.to_string()));
        let (freed, snapshot, result) = (extra.freed, extra.snapshot.cloned(), extra.result.cloned());
        let verification = extra.verification.map(str::to_string);
        self.write(move |tx| {
            let t = &claimed.task;
            let (code, msg) = error.clone().unwrap_or_default();
            // The whitelisting lock before the account's row, as a rule's write takes them (its
            // foreign key reads the account's row): the other way round, the two deadlocked.
            if result.is_some() {
                counts::lock_whitelisting(tx, &t.account_id, false)?;
            }
            if to.is_terminal() {
                lock_account(tx, &t.account_id)?;
            }
            let n = tx.execute(
                "UPDATE tasks SET status = ?, updated_ms = ?, error_code = ?, error_msg = ?, instance_freed = ?,
                        lease_until_ms = CASE WHEN ? THEN 0 ELSE lease_until_ms END,
                        verification = COALESCE(?, verification)
                 WHERE id = ? AND fence = ? AND status = ?",
                args![
                    to.as_str(),
                    now,
                    &code,
                    &msg,
                    freed,
                    to.is_terminal(),
                    &verification,
                    &t.id,
                    claimed.fence,
                    from.as_str()
                ],
            )?;
            if n == 0 {
                return Err(StoreError::LeaseLost);
            }
            record_event(tx, &t.id, to.as_str(), now, &claimed.by)?;
            if to.repair_applied() {
                // Cancelled while it changed the configuration: its rollback is written now.
                crate::cancel::roll_back_if_cancelled(tx, &t.id, now)?;
            }
            if to.is_failure() {
                crate::cancel::stop_at_failure_threshold(tx, &t.id, now)?;
            }
            if to.is_terminal() {
                crate::cancel::release_held(tx, &t.id, now)?;
                release_waiting(tx, t.instance.pk, now)?;
                crate::webhooks::task_ended(tx, &t.account_id, &t.id)?;
            }
            if matches!(to, TaskStatus::Fail | TaskStatus::BackupFail | TaskStatus::RepairFail) {
                give_back_authorization(tx, &t.account_id)?;
            }
            if let Some(snap) = &snapshot {
                tx.execute("DELETE FROM snapshots WHERE task_id = ?", args![&t.id])?;
                for (seq, item) in snap.items.iter().enumerate() {
                    let meta = serde_json::to_string(&item.meta).map_err(|e| StoreError::Db(e.to_string()))?;
                    tx.execute(
                        "INSERT INTO snapshots (task_id, seq, item_key, existed, has_content, data, meta, post_digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        args![&t.id, seq as i64, &item.key, item.existed, item.has_content, &item.data, meta, &item.post_digest],
                    )?;
                }
            }
            if let Some(r) = &result {
                let mut tally = counts::Tally::default();
                counts::write_result(tx, &t.account_id, r, now, &mut tally)?;
                tally.apply(tx, &t.account_id)?;
            }
            Ok(())
        })?;
        metrics::global().transitions.inc(&[to.as_str()]);
        Ok(())
    }

    fn get_snapshot(&self, task_id: &str) -> Result<Snapshot> {
        self.read(|c| {
            let items = c.query(
                "SELECT item_key, existed, has_content, data, meta, post_digest FROM snapshots WHERE task_id = ? ORDER BY seq",
                args![task_id],
                |r| {
                let meta: String = r.get(4)?;
                Ok(SnapshotItem {
                    key: r.get(0)?,
                    existed: r.get(1)?,
                    has_content: r.get(2)?,
                    data: r.get(3)?,
                    meta: serde_json::from_str(&meta).unwrap_or_default(),
                    post_digest: r.get(5)?,
                })
            })?;
            Ok(Snapshot { items })
        })
    }

    fn task_events(&self, task_id: &str) -> Result<Vec<TaskEvent>> {
        self.read(|c| {
            let created: Option<(String, String, i64, Option<String>, bool)> = c.query_opt(
                "SELECT t.type, t.status, t.created_ms, r.submitted_by, r.awaited_approval FROM tasks t
                 JOIN root_tasks r ON r.id = t.root_id WHERE t.id = ?",
                args![task_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )?;
            let Some((kind, status, at, by, awaited_approval)) = created else { return Ok(Vec::new()) };
            let rows: Vec<TaskEvent> = c.query(
                "SELECT status, at_ms, actor FROM task_events WHERE task_id = ? ORDER BY rowid",
                args![task_id],
                |r| {
                    Ok(TaskEvent {
                        status: r.get(0)?,
                        at_ms: r.get(1)?,
                        actor: r.get::<Option<String>>(2)?.unwrap_or_default(),
                    })
                },
            )?;
            // A task that waited was created THROTTLING: it is waiting still, or its first
            // event is its release to the type's initial status.
            let mut initial = TaskStatus::initial(TaskType::parse(&kind).unwrap_or(TaskType::Repair));
            if awaited_approval {
                initial = TaskStatus::WaitApproval;
            } else if status == TaskStatus::Throttling.as_str()
                || rows.first().is_some_and(|e| e.status == initial.as_str())
            {
                initial = TaskStatus::Throttling;
            }
            let mut out =
                vec![TaskEvent { status: initial.as_str().to_string(), at_ms: at, actor: by.unwrap_or_default() }];
            out.extend(rows);
            Ok(out)
        })
    }

    fn release_leases(&self) -> Result<i64> {
        self.write(move |tx| {
            let n =
                // Held tasks stay held: only a task of their root ending releases them.
                tx.execute(&format!("UPDATE tasks SET lease_until_ms = 0 WHERE {} AND held = 0", active()), &[])?;
            tx.execute(
                &format!(
                    "UPDATE check_runs SET lease_until_ms = 0 WHERE status_code IN ({})",
                    *crate::runs::UNFINISHED_RUNS
                ),
                &[],
            )?;
            Ok(n as i64)
        })
    }

    fn count_active_tasks(&self) -> Result<i64> {
        self.read(|c| c.value(&format!("SELECT COUNT(*) FROM tasks WHERE {}", active()), &[]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::store;
    use crate::Accounts;
    use crate::NewInstance;
    use crate::{Instances, TaskQueue};
    use model::Vendor;

    /// A host instance of this id, name and root.
    fn host(id: &str, name: &str, locator: &str) -> NewInstance {
        NewInstance {
            vendor: Vendor::Aliyun,
            region_id: "cn-hangzhou".into(),
            instance_id: id.into(),
            instance_name: name.into(),
            connector: "host".into(),
            locator: locator.into(),
            os_type: "linux".into(),
            live: None,
        }
    }

    fn setup(s: &Store) -> (String, i64) {
        let a = s.create_account("t").unwrap();
        let i = s.upsert_instance(&a.id, &host("i-1", "one", "/x")).unwrap();
        (a.id, i.pk)
    }

    fn submission(pk: i64, kind: TaskType, repair: Option<&str>) -> Submission {
        Submission {
            root_id: crate::new_id(16),
            check_id: 1001,
            kind,
            dimension: DimensionType::Instance,
            tasks: vec![NewTask {
                id: crate::new_id(16),
                instance_pk: pk,
                repair_task_id: repair.map(String::from),
                params: RepairValues::default(),
            }],
            selection: None,
            scope: "file:/etc/ssh/sshd_config".into(),
            limits: Default::default(),
            submitted_by: "LTAIsubmitter".into(),
        }
    }

    fn scoped(pk: i64, check_id: i64, scope: &str) -> Submission {
        Submission { check_id, scope: scope.into(), ..submission(pk, TaskType::Repair, None) }
    }

    /// Drives a claimed task along `path` (from its current status).
    fn drive(s: &Store, claimed: &Claimed, path: &[TaskStatus]) {
        let mut at = claimed.task.status;
        for &to in path {
            s.transition(claimed, at, to, Transition::default()).unwrap();
            at = to;
        }
    }

    const APPLIED: [TaskStatus; 6] = [
        TaskStatus::InBackup,
        TaskStatus::BackedUp,
        TaskStatus::Repairing,
        TaskStatus::RepairSuccess,
        TaskStatus::RepairSuccessVerifying,
        TaskStatus::RepairSuccessVerified,
    ];

    fn status_of(s: &Store, acct: &str, sub: &Submission) -> TaskStatus {
        s.get_task(acct, &sub.tasks[0].id).unwrap().unwrap().status
    }

    #[test]
    fn the_queue_and_rollback_queries_read_indexes_only() {
        let (_d, s) = store();
        let status_of = format!("SELECT {}", status_of_new("?1", "?2", "'INIT'"));
        for (sql, args) in [(STANDING_CHANGE_AFTER, 2), (status_of.as_str(), 2), (RELEASE_WAITING, 2)] {
            let plan: Vec<String> = s
                .read(|c| {
                    let args: Vec<Arg> = (0..args).map(|i| Arg::from(i as i64)).collect();
                    c.query(&format!("EXPLAIN QUERY PLAN {}", crate::status_sets(sql)), &args, |r| r.get::<String>(3))
                })
                .unwrap();
            assert!(
                plan.iter().all(|step| !step.starts_with("SCAN") || step == "SCAN CONSTANT ROW"),
                "a full scan: {plan:?}\n{sql}"
            );
            // The queue queries seek the instance's unfinished tasks (the conflict index, which
            // holds only those), never walk its history.
            if sql != STANDING_CHANGE_AFTER {
                let queue: Vec<_> = plan.iter().filter(|step| step.contains("tasks_one_active")).collect();
                assert!(
                    !queue.is_empty() && queue.iter().all(|step| step.contains("(instance_pk=?)")),
                    "the instance's history is read: {plan:?}\n{sql}"
                );
            }
        }
    }

    #[test]
    fn no_task_index_tests_a_status_set_with_an_in_list() {
        // An IN list of more than two values costs SQLite a temporary b-tree at every insert
        // and update of a task that evaluates it (`crate::status_in`).
        let (_d, s) = store();
        let defs: Vec<String> = s
            .read(|c| {
                c.query("SELECT sql FROM sqlite_master WHERE tbl_name = 'tasks' AND sql IS NOT NULL", &[], |r| r.get(0))
            })
            .unwrap();
        let indexes: Vec<&String> = defs.iter().filter(|d| d.starts_with("CREATE") && d.contains("INDEX")).collect();
        assert!(indexes.len() >= 8, "{indexes:?}");
        for def in indexes {
            assert!(!def.contains("status IN ("), "{def}");
        }
        let claim = &CLAIM_TASK_SQL[0];
        assert!(claim.contains("INDEXED BY tasks_due") && claim.contains("status = 'INIT' OR"), "{claim}");
    }

    crate::testutil::both_backends! {
        fn a_client_token_s_submission_is_written_once_with_its_answer() {
            let (place, s) = store();
            let (acct, pk) = setup(&s);
            let token = ClientToken { action: "SubmitOperationTask".into(), token: "t-1".into(), digest: "d".into() };
            let first = submission(pk, TaskType::Repair, None);
            // Its twin (another node, the same token): another check item, so no task conflict.
            let twin = Submission { check_id: 1003, ..submission(pk, TaskType::Repair, None) };
            let other = crate::testutil::reopen(&place);
            let call = |store: &Store, sub: &Submission, answer: &str| {
                crate::with_client_token(&acct, token.clone(), || {
                    crate::answer_in_advance(answer);
                    store.submit(&acct, sub)
                })
            };
            let (a, b) = std::thread::scope(|sc| {
                let a = sc.spawn(|| call(&s, &first, "{\"RootTaskId\":\"a\"}"));
                let b = sc.spawn(|| call(&other, &twin, "{\"RootTaskId\":\"b\"}"));
                (a.join().unwrap(), b.join().unwrap())
            });
            let winner = if a.0.is_ok() { "a" } else { "b" };
            let mut outcomes = [a, b];
            outcomes.sort_by_key(|o| o.0.is_err());
            // Only the winner's write committed with the token.
            assert_eq!(outcomes, [(Ok(SubmitOutcome::Created(1)), true), (Err(StoreError::TokenUsed), false)]);
            assert_eq!(s.count_active_tasks().unwrap(), 1, "the twin wrote nothing");
            let kept = crate::Idempotency::idempotent_answer(&s, &acct, "SubmitOperationTask", "t-1").unwrap().unwrap();
            assert_eq!(kept, ("d".to_string(), format!("{{\"RootTaskId\":\"{winner}\"}}")));
        }

        fn a_call_s_first_write_records_its_token_and_its_answer_follows() {
            use crate::{Accounts, Idempotency, Selections};
            let (_d, s) = store();
            let acct = s.create_account("t").unwrap().id;
            let token = ClientToken { action: "CreateAssetSelectionConfig".into(), token: "t-2".into(), digest: "d".into() };
            let run = |business: &str| {
                crate::with_client_token(&acct, token.clone(), || s.create_selection(&acct, business, "instance", "all"))
            };
            assert!(matches!(run("A"), (Ok(_), true)));
            // Written with the first write, before any answer: a retry finds the call done.
            let kept = s.idempotent_answer(&acct, "CreateAssetSelectionConfig", "t-2").unwrap();
            assert_eq!(kept, Some(("d".to_string(), String::new())));
            // The same token again (a retry that raced past the node's lock): nothing written.
            assert_eq!(run("B"), (Err(StoreError::TokenUsed), false));
            assert!(s.selection_by_business_type(&acct, "B").unwrap().is_none());
            // The answer is filled in once, and never replaced.
            s.keep_idempotent_answer(&acct, "CreateAssetSelectionConfig", "t-2", "d", "{\"x\":1}").unwrap();
            s.keep_idempotent_answer(&acct, "CreateAssetSelectionConfig", "t-2", "d", "{\"x\":2}").unwrap();
            let kept = s.idempotent_answer(&acct, "CreateAssetSelectionConfig", "t-2").unwrap();
            assert_eq!(kept, Some(("d".to_string(), "{\"x\":1}".to_string())));
            // Outside a call, writes record no token.
            s.create_selection(&acct, "C", "instance", "all").unwrap();
            assert!(s.idempotent_answer(&acct, "CreateAssetSelectionConfig", "t-3").unwrap().is_none());
        }

        fn changes_of_one_scope_wait_in_order_and_others_do_not() {
            let (_d, s) = store();
            let (acct, pk) = setup(&s);
            let first = scoped(pk, 1001, "file:/etc/ssh/sshd_config");
            let second = scoped(pk, 1006, "file:/etc/ssh/sshd_config");
            let third = scoped(pk, 1003, "file:/etc/ssh/sshd_config");
            let other = scoped(pk, 1009, "file:/etc/login.defs");
            for sub in [&first, &second, &third, &other] {
                s.submit(&acct, sub).unwrap();
            }
            assert_eq!(status_of(&s, &acct, &first), TaskStatus::Init);
            assert_eq!(status_of(&s, &acct, &second), TaskStatus::Throttling);
            assert_eq!(status_of(&s, &acct, &third), TaskStatus::Throttling);
            assert_eq!(status_of(&s, &acct, &other), TaskStatus::Init, "another file does not wait");
            // Only the two that may run are handed out.
            let a = s.claim_task(60_000).unwrap().unwrap();
            let b = s.claim_task(60_000).unwrap().unwrap();
            assert!(s.claim_task(60_000).unwrap().is_none());
            let sshd = if a.task.id == first.tasks[0].id { a } else { b };
            drive(&s, &sshd, &[TaskStatus::Fail]);
            // The end of the first releases the second only: the third waits for the second.
            assert_eq!(status_of(&s, &acct, &second), TaskStatus::Init);
            assert_eq!(status_of(&s, &acct, &third), TaskStatus::Throttling);
            let events = s.task_events(&second.tasks[0].id).unwrap();
            let seen: Vec<(&str, &str)> = events.iter().map(|e| (e.status.as_str(), e.actor.as_str())).collect();
            assert_eq!(seen, [("THROTTLING", "LTAIsubmitter"), ("INIT", SERVICE_ACTOR)], "submitted, then released");
            let next = s.claim_task(60_000).unwrap().unwrap();
            assert_eq!(next.task.id, second.tasks[0].id);
            drive(&s, &next, &APPLIED);
            assert_eq!(status_of(&s, &acct, &third), TaskStatus::Init);
        }
        fn a_whole_instance_change_waits_for_everything_and_everything_for_it() {
            let (_d, s) = store();
            let (acct, pk) = setup(&s);
            let file = scoped(pk, 1009, "file:/etc/login.defs");
            let whole = scoped(pk, 1020, "*");
            let after = scoped(pk, 1012, "sysctl");
            for sub in [&file, &whole, &after] {
                s.submit(&acct, sub).unwrap();
            }
            assert_eq!(status_of(&s, &acct, &whole), TaskStatus::Throttling);
            assert_eq!(status_of(&s, &acct, &after), TaskStatus::Throttling, "queued behind the whole-instance change");
            let c = s.claim_task(60_000).unwrap().unwrap();
            drive(&s, &c, &[TaskStatus::Fail]);
            assert_eq!(status_of(&s, &acct, &whole), TaskStatus::Init);
            assert_eq!(status_of(&s, &acct, &after), TaskStatus::Throttling);
        }
        fn a_rollback_waits_for_later_changes_of_its_scope_to_be_undone() {
            let (_d, s) = store();
            let (acct, pk) = setup(&s);
            let mode = scoped(pk, 1006, "file:/etc/ssh/sshd_config");
            let content = scoped(pk, 1001, "file:/etc/ssh/sshd_config");
            let other = scoped(pk, 1009, "file:/etc/login.defs");
            for sub in [&mode, &content, &other] {
                s.submit(&acct, sub).unwrap();
                while let Some(c) = s.claim_task(60_000).unwrap() {
                    drive(&s, &c, &APPLIED);
                }
            }
            let (mode_id, content_id) = (mode.tasks[0].id.clone(), content.tasks[0].id.clone());
            let undo =
                |id: &str, check: i64| Submission { check_id: check, ..submission(pk, TaskType::Rollback, Some(id)) };
            // The older repair of the file cannot be undone first; the later one is named. A later
            // change of another file does not matter.
            assert_eq!(
                s.submit(&acct, &undo(&mode_id, 1006)),
                Err(StoreError::NotLatest { repair: mode_id.clone(), newer: content_id.clone() })
            );
            // Once the later one's rollback is submitted, the older one's may be too: it waits.
            let undo_content = undo(&content_id, 1001);
            s.submit(&acct, &undo_content).unwrap();
            let undo_mode = undo(&mode_id, 1006);
            s.submit(&acct, &undo_mode).unwrap();
            assert_eq!(status_of(&s, &acct, &undo_mode), TaskStatus::Throttling);
            let c = s.claim_task(60_000).unwrap().unwrap();
            assert_eq!(c.task.id, undo_content.tasks[0].id);
            drive(
                &s,
                &c,
                &[
                    TaskStatus::RollBacking,
                    TaskStatus::RollBacked,
                    TaskStatus::RollBackVerifying,
                    TaskStatus::RollBackVerified,
                ],
            );
            assert_eq!(status_of(&s, &acct, &undo_mode), TaskStatus::RollBackInit);
            assert_eq!(s.standing_change_after(&mode_id, &undo_mode.tasks[0].id).unwrap(), None);
        }
        fn a_second_unfinished_task_conflicts_and_writes_nothing() {
            let (_d, s) = store();
            let (acct, pk) = setup(&s);
            s.submit(&acct, &submission(pk, TaskType::Repair, None)).unwrap();
            let second = submission(pk, TaskType::Repair, None);
            assert_eq!(s.submit(&acct, &second), Err(StoreError::Conflict));
            assert!(s.get_task(&acct, &second.tasks[0].id).unwrap().is_none(), "the root task was rolled back too");
            assert_eq!(s.count_active_tasks().unwrap(), 1);
        }
        fn leases_are_fenced_and_transitions_follow_the_table() {
            let (_d, s) = store();
            let (acct, pk) = setup(&s);
            s.submit(&acct, &submission(pk, TaskType::Repair, None)).unwrap();
            let first = s.claim_task(0).unwrap().unwrap(); // lease of 0 ms: expires at once
            assert!(matches!(
                s.transition(&first, TaskStatus::Init, TaskStatus::Repairing, Transition::default()),
                Err(StoreError::IllegalTransition(_))
            ));
            std::thread::sleep(std::time::Duration::from_millis(2));
            let second = s.claim_task(60_000).unwrap().unwrap();
            assert_eq!(second.task.id, first.task.id);
            assert!(second.fence > first.fence);
            // The worker that lost its lease cannot write.
            assert_eq!(
                s.transition(&first, TaskStatus::Init, TaskStatus::InBackup, Transition::default()),
                Err(StoreError::LeaseLost)
            );
            s.transition(&second, TaskStatus::Init, TaskStatus::InBackup, Transition::default()).unwrap();
            assert!(s.claim_task(60_000).unwrap().is_none(), "leased tasks are not handed out twice");
            let events = s.task_events(&second.task.id).unwrap();
            let seen: Vec<(&str, &str)> = events.iter().map(|e| (e.status.as_str(), e.actor.as_str())).collect();
            assert_eq!(seen, [("INIT", "LTAIsubmitter"), ("IN_BACKUP", WORKER_ACTOR)], "submitted, then a worker");
        }
        fn concurrent_submissions_for_one_instance_yield_exactly_one_task() {
            let (_d, s) = store();
            let (acct, pk) = setup(&s);
            let s = std::sync::Arc::new(s);
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (s, acct) = (s.clone(), acct.clone());
                    std::thread::spawn(move || s.submit(&acct, &submission(pk, TaskType::Repair, None)))
                })
                .collect();
            let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
            assert!(results.iter().filter(|r| r.is_err()).all(|r| *r == Err(StoreError::Conflict)));
            assert_eq!(s.count_active_tasks().unwrap(), 1);
        }

        fn a_submission_larger_than_one_insert_writes_every_task_with_its_own_status() {
            let (_d, s) = store();
            let (acct, first) = setup(&s);
            let mut pks = vec![first];
            for n in 1..1_001 {
                let i = host(&format!("i-more-{n}"), &format!("host {n}"), &format!("/x{n}"));
                pks.push(s.upsert_instance(&acct, &i).unwrap().pk);
            }
            // An unfinished change of the same file on one instance of the second statement:
            // only that instance's new task waits.
            let busy = pks[700];
            let earlier = Submission { check_id: 1003, ..submission(busy, TaskType::Repair, None) };
            s.submit(&acct, &earlier).unwrap();
            let mut sub = submission(first, TaskType::Repair, None);
            sub.tasks = pks
                .iter()
                .map(|&pk| NewTask {
                    id: crate::task_id(),
                    instance_pk: pk,
                    repair_task_id: None,
                    params: RepairValues::default(),
                })
                .collect();
            assert!(matches!(s.submit(&acct, &sub).unwrap(), SubmitOutcome::Created(1_001)));
            // Filtered by the item alone, the total is the item's count kept by the writes.
            for (check_id, n) in [(1001, 1_001), (1003, 1), (1004, 0)] {
                let filter = TaskFilter { check_id: Some(check_id), limit: 1, ..Default::default() };
                assert_eq!(s.list_tasks(&acct, &filter).unwrap().1, n, "{check_id}");
            }
            let filter = TaskFilter { root_id: Some(sub.root_id.clone()), limit: 2_000, ..Default::default() };
            let (tasks, total) = s.list_tasks(&acct, &filter).unwrap();
            assert_eq!((tasks.len(), total), (1_001, 1_001));
            for t in &tasks {
                let want = if t.instance.pk == busy { TaskStatus::Throttling } else { TaskStatus::Init };
                assert_eq!(t.status, want, "{}", t.instance.instance_id);
                assert_eq!((t.check_id, t.kind), (1001, TaskType::Repair));
            }
        }
    }
}
