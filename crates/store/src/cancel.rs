//! CancelOperationTask: what cancelling does to each task of a root task, decided and written
//! in one transaction (on PostgreSQL under the account's lock, as submissions and endings are).
//! A task that has changed nothing yet ends `CANCELLED` at once, its lease taken away (the
//! fence moves, so a worker or agent in the middle of its backup cannot write again); a repair
//! that is changing the configuration finishes its step and, once it has ended applied, is
//! rolled back from its snapshot by a ROLLBACK task its ending writes (see
//! [`roll_back_if_cancelled`]); a task that has ended, and every rollback, is left as it is.

use model::{TaskStatus, TaskType};

use crate::sql::{args, Conn};
use crate::tasks::{
    count_new_tasks, give_back_authorization, insert_tasks_sql, lock_account, record_event, release_waiting,
    task_rows_args, RootLimits, SERVICE_ACTOR,
};
use crate::{new_id, now_ms, task_id, Result, Store, StoreError};

/// What a cancel did to one task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It had changed nothing: it is `CANCELLED`.
    Cancelled,
    /// It is changing the configuration: it finishes its step and is then rolled back.
    RollbackAfterStep,
    /// It has ended, or is a rollback: left as it is.
    Unchanged,
}

impl CancelOutcome {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CancelOutcome::Cancelled => "CANCELLED",
            CancelOutcome::RollbackAfterStep => "ROLLBACK_AFTER_STEP",
            CancelOutcome::Unchanged => "UNCHANGED",
        }
    }

    fn of(kind: &str, status: TaskStatus) -> CancelOutcome {
        use TaskStatus::*;
        // A rollback is left to restore, queued or not: cancelled, it would leave its repair
        // applied and block every later rollback of it.
        if kind != TaskType::Repair.as_str() {
            return CancelOutcome::Unchanged;
        }
        match status {
            s if s.can_move_to(Cancelled) => CancelOutcome::Cancelled,
            Repairing | RepairSuccess | RepairSuccessVerifying => CancelOutcome::RollbackAfterStep,
            _ => CancelOutcome::Unchanged,
        }
    }
}

/// Cancelling root tasks.
pub trait Cancels: Send + Sync {
    /// Cancels the tasks of the account's root task `root_id` (only `task_ids` when given):
    /// each task's id, instance key and outcome, in creation order. `NotFound` if the root, or
    /// one of `task_ids` in it, does not exist.
    /// `actor` (the AccessKeyId) is recorded as who cancelled them, and as who submitted the
    /// rollbacks the cancel leads to.
    fn cancel(
        &self,
        account_id: &str,
        root_id: &str,
        task_ids: &[String],
        actor: &str,
    ) -> Result<Vec<(String, i64, CancelOutcome)>>;
}

impl Cancels for Store {
    fn cancel(
        &self,
        account_id: &str,
        root_id: &str,
        task_ids: &[String],
        actor: &str,
    ) -> Result<Vec<(String, i64, CancelOutcome)>> {
        let (account_id, root_id, task_ids, actor) =
            (account_id.to_string(), root_id.to_string(), task_ids.to_vec(), actor.to_string());
        self.write(move |tx| {
            let tasks = tasks_named(tx, &account_id, &root_id, &task_ids)?;
            let now = now_ms();
            let mut out = Vec::new();
            for (id, pk, kind, status) in tasks {
                let status =
                    TaskStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("tasks.status: {status}")))?;
                let mut outcome = CancelOutcome::of(&kind, status);
                if outcome == CancelOutcome::Cancelled {
                    let why = ("Cancelled", "cancelled before it changed anything");
                    if !cancel_unstarted(tx, &account_id, &id, pk, &kind, status, why, now, &actor)? {
                        // On PostgreSQL a worker moved it on meanwhile (to REPAIRING): it is
                        // changing the configuration now.
                        let moved: String = tx.value("SELECT status FROM tasks WHERE id = ?", args![&id])?;
                        outcome =
                            TaskStatus::parse(&moved).map_or(CancelOutcome::Unchanged, |s| CancelOutcome::of(&kind, s));
                    }
                }
                if outcome == CancelOutcome::RollbackAfterStep {
                    tx.execute(
                        "UPDATE tasks SET cancel_requested = 1, cancelled_by = ? WHERE id = ?",
                        args![&actor, &id],
                    )?;
                }
                out.push((id, pk, outcome));
            }
            if let Some((first, ..)) = out.first() {
                // A cancelled canary is not a verified one: what it held back is cancelled too.
                release_held(tx, first, now)?;
            }
            Ok(out)
        })
    }
}

/// The tasks of the account's root task `root_id` a decision about it acts on (only
/// `task_ids` when given), in creation order: (id, instance key, type, status), under the
/// account's lock. `NotFound` if the root, or one of `task_ids` in it, does not exist.
pub(crate) fn tasks_named(
    tx: &Conn,
    account_id: &str,
    root_id: &str,
    task_ids: &[String],
) -> Result<Vec<(String, i64, String, String)>> {
    lock_account(tx, account_id)?;
    let tasks: Vec<(String, i64, String, String)> = tx.query(
        "SELECT id, instance_pk, type, status FROM tasks WHERE account_id = ? AND root_id = ? ORDER BY rowid",
        args![account_id, root_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    if tasks.is_empty() || task_ids.iter().any(|id| !tasks.iter().any(|t| &t.0 == id)) {
        return Err(StoreError::NotFound);
    }
    Ok(tasks.into_iter().filter(|t| task_ids.is_empty() || task_ids.contains(&t.0)).collect())
}

/// A held task's lease: far in the future, so no claim (a worker's or an agent's) takes it.
const HELD_UNTIL: i64 = i64::MAX / 2;

/// Within a submission: holds the root's tasks beyond the first `min(MaxConcurrency,
/// CanaryCount)` (in creation order), to be released by [`release_held`].
pub(crate) fn hold_beyond_first(tx: &Conn, root_id: &str, limits: &RootLimits) -> Result<()> {
    let first = match (limits.max_concurrency, limits.canary_count) {
        (None, None) => return Ok(()),
        (max, canary) => max.unwrap_or(i64::MAX).min(canary.unwrap_or(i64::MAX)),
    };
    tx.execute(
        "UPDATE tasks SET held = 1, lease_until_ms = ? WHERE root_id = ?
           AND rowid NOT IN (SELECT rowid FROM tasks WHERE root_id = ? ORDER BY rowid LIMIT ?)",
        args![HELD_UNTIL, root_id, root_id, first],
    )?;
    Ok(())
}

/// Within the transaction that ends task `task_id` (or cancels tasks of its root): releases
/// what its root's limits now allow. While its canary tasks (the first `CanaryCount`) have not
/// all ended, only they may run; once they have, the others are released if every one was
/// verified, else cancelled (`CanaryFailed`). At most `MaxConcurrency` released tasks are
/// unfinished at once.
pub(crate) fn release_held(tx: &Conn, task_id: &str, now: i64) -> Result<()> {
    let root: Option<(String, String, Option<i64>, Option<i64>)> = tx.query_opt(
        "SELECT r.id, r.account_id, r.max_concurrency, r.canary_count FROM tasks t JOIN root_tasks r ON r.id = t.root_id WHERE t.id = ?",
        args![task_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let Some((root_id, account_id, max, canary)) = root else { return Ok(()) };
    if max.is_none() && canary.is_none() {
        return Ok(());
    }
    // (id, instance, type, status, held, cancel requested)
    type Row = (String, i64, String, String, bool, bool);
    let tasks: Vec<Row> = tx.query(
        "SELECT id, instance_pk, type, status, held, cancel_requested FROM tasks WHERE root_id = ? ORDER BY rowid",
        args![&root_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
    )?;
    let status = |s: &str| TaskStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("tasks.status: {s}")));
    let mut candidates: Vec<&Row> = tasks.iter().filter(|t| t.4).collect();
    if let Some(n) = canary {
        let canaries = &tasks[..(n as usize).min(tasks.len())];
        let ended: Vec<TaskStatus> = canaries.iter().map(|t| status(&t.3)).collect::<Result<_>>()?;
        // Verified, and not cancelled meanwhile (a cancelled one is being rolled back).
        let verified = ended
            .iter()
            .zip(canaries)
            .all(|(s, t)| matches!(s, TaskStatus::RepairSuccessVerified | TaskStatus::RollBackVerified) && !t.5);
        if ended.iter().any(|s| !s.is_terminal()) {
            candidates.retain(|t| canaries.iter().any(|c| c.0 == t.0));
        } else if !verified {
            let why = ("CanaryFailed", "a canary task of the root task was not verified");
            for (id, pk, kind, s, ..) in candidates {
                let s = status(s)?;
                if CancelOutcome::of(kind, s) == CancelOutcome::Cancelled {
                    cancel_unstarted(tx, &account_id, id, *pk, kind, s, why, now, SERVICE_ACTOR)?;
                }
            }
            return Ok(());
        }
    }
    let mut running = 0;
    for t in tasks.iter().filter(|t| !t.4) {
        if !status(&t.3)?.is_terminal() {
            running += 1;
        }
    }
    let free = max.map_or(usize::MAX, |m| (m - running).max(0) as usize);
    let mut released = 0;
    for (id, ..) in candidates.into_iter().take(free) {
        tx.execute("UPDATE tasks SET held = 0, lease_until_ms = 0, updated_ms = ? WHERE id = ?", args![now, id])?;
        released += 1;
    }
    if released > 0 {
        crate::pg::notify_work(tx)?;
    }
    Ok(())
}

/// Ends a task that has changed nothing, still in `status` (as read), `CANCELLED` with `why`
/// (code, message), taking its lease away (the fence moves), giving a repair's authorization
/// back and releasing what waited for it. False, and nothing written, if it is no longer in
/// `status` (on PostgreSQL a worker may have moved it on since it was read).
#[allow(clippy::too_many_arguments)]
pub(crate) fn cancel_unstarted(
    tx: &Conn,
    account_id: &str,
    id: &str,
    pk: i64,
    kind: &str,
    status: TaskStatus,
    why: (&str, &str),
    now: i64,
    actor: &str,
) -> Result<bool> {
    let n = tx.execute(
        "UPDATE tasks SET status = 'CANCELLED', fence = fence + 1, lease_until_ms = 0, held = 0, updated_ms = ?,
                error_code = ?, error_msg = ?
         WHERE id = ? AND status = ?",
        args![now, why.0, why.1, id, status.as_str()],
    )?;
    if n == 0 {
        return Ok(false);
    }
    record_event(tx, id, TaskStatus::Cancelled.as_str(), now, actor)?;
    crate::webhooks::task_ended(tx, account_id, id)?;
    if kind == TaskType::Repair.as_str() {
        give_back_authorization(tx, account_id)?;
    }
    release_waiting(tx, pk, now)?;
    Ok(true)
}

/// Within the transaction that ends task `task_id` failed: if its root's `FailureThreshold`
/// is reached, its tasks that have changed nothing end `CANCELLED` (`FailureThresholdReached`).
pub(crate) fn stop_at_failure_threshold(tx: &Conn, task_id: &str, now: i64) -> Result<()> {
    let root: Option<(String, String, Option<String>)> = tx.query_opt(
        "SELECT r.id, r.account_id, r.failure_threshold FROM tasks t JOIN root_tasks r ON r.id = t.root_id WHERE t.id = ?",
        args![task_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let Some((root_id, account_id, Some(threshold))) = root else { return Ok(()) };
    let threshold = model::FailureThreshold::parse(&threshold)
        .ok_or_else(|| StoreError::Corrupt(format!("root_tasks.failure_threshold: {threshold}")))?;
    let tasks: Vec<(String, i64, String, String)> = tx.query(
        "SELECT id, instance_pk, type, status FROM tasks WHERE root_id = ? ORDER BY rowid",
        args![&root_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let statuses: Vec<Option<TaskStatus>> = tasks.iter().map(|t| TaskStatus::parse(&t.3)).collect();
    let failed = statuses.iter().filter(|s| s.is_some_and(TaskStatus::is_failure)).count() as i64;
    if !threshold.reached(failed, tasks.len() as i64) {
        return Ok(());
    }
    let why = format!("the root task's FailureThreshold {} was reached ({failed} failed)", threshold.as_string());
    for ((id, pk, kind, _), status) in tasks.iter().zip(statuses) {
        if let Some(s) = status.filter(|s| CancelOutcome::of(kind, *s) == CancelOutcome::Cancelled) {
            cancel_unstarted(tx, &account_id, id, *pk, kind, s, ("FailureThresholdReached", &why), now, SERVICE_ACTOR)?;
        }
    }
    Ok(())
}

/// Within the transaction that ends repair `repair_id` applied: if it was cancelled while it was
/// changing the configuration, writes the ROLLBACK task (a root of its own) that restores its
/// snapshot. Returns whether it did.
pub(crate) fn roll_back_if_cancelled(tx: &Conn, repair_id: &str, now: i64) -> Result<bool> {
    let row: Option<(String, i64, i64, String, Option<String>)> = tx.query_opt(
        "SELECT account_id, check_id, instance_pk, scope, cancelled_by FROM tasks WHERE id = ? AND cancel_requested = 1",
        args![repair_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )?;
    let Some((account_id, check_id, pk, scope, cancelled_by)) = row else { return Ok(false) };
    let (root_id, rollback_id) = (new_id(16), task_id());
    tx.execute(
        "INSERT INTO root_tasks (id, account_id, check_id, type, dimension, created_ms, submitted_by)
         VALUES (?, ?, ?, 'ROLLBACK', 'INSTANCE', ?, ?)",
        args![&root_id, &account_id, check_id, now, cancelled_by.as_deref().unwrap_or(SERVICE_ACTOR)],
    )?;
    let root = [
        root_id.as_str().into(),
        account_id.as_str().into(),
        check_id.into(),
        TaskType::Rollback.as_str().into(),
        TaskStatus::RollBackInit.as_str().into(),
        now.into(),
    ];
    let row = (rollback_id.as_str(), pk, Some(repair_id), model::RepairValues::default().to_json(), scope.as_str());
    tx.execute(insert_tasks_sql(1), &task_rows_args(root, [row]))?;
    // The changes queued behind the repair (submitted while it ran) wait for this rollback:
    // see RELEASE_WAITING.
    count_new_tasks(tx, &account_id, check_id, 1, false)?;
    crate::pg::notify_work(tx)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use model::{TaskStatus::*, TaskType};

    use crate::testutil::store;
    use crate::*;

    fn walk(s: &Store, c: &Claimed, path: &[model::TaskStatus]) {
        for w in path.windows(2) {
            s.transition(c, w[0], w[1], Transition::default()).unwrap();
        }
    }

    /// A root of one REPAIR task on each of `n` new instances; their ids.
    fn root_of(s: &Store, acct: &str, n: usize, threshold: Option<model::FailureThreshold>) -> (String, Vec<String>) {
        root_with(s, acct, n, RootLimits { failure_threshold: threshold, ..Default::default() })
    }

    fn root_with(s: &Store, acct: &str, n: usize, limits: RootLimits) -> (String, Vec<String>) {
        // New instances each time, after those the account has.
        let first = s.list_instances(acct).unwrap().len();
        let hosts: Vec<NewInstance> = (first..first + n).map(crate::conformance::host).collect();
        s.upsert_instances(acct, &hosts).unwrap();
        let wanted: Vec<String> = hosts.iter().map(|h| h.instance_id.clone()).collect();
        let pks: Vec<i64> = s.find_instances_by_ids(acct, &wanted).unwrap().iter().map(|i| i.pk).collect();
        let mut sub = crate::conformance::repair_of(1001, &pks);
        sub.scope = "file:/etc/ssh/sshd_config".into();
        sub.limits = limits;
        let (root, ids) = (sub.root_id.clone(), sub.tasks.iter().map(|t| t.id.clone()).collect());
        s.submit(acct, &sub).unwrap();
        (root, ids)
    }

    crate::testutil::both_backends! {
        fn max_concurrency_holds_the_rest_until_a_task_ends() {
            let (_p, s) = store();
            let acct = s.create_account("concurrency").unwrap().id;
            let (_, ids) = root_with(&s, &acct, 4, RootLimits { max_concurrency: Some(2), ..Default::default() });
            let first = s.claim_task(60_000).unwrap().unwrap();
            let second = s.claim_task(60_000).unwrap().unwrap();
            assert_eq!((first.task.id.as_str(), second.task.id.as_str()), (ids[0].as_str(), ids[1].as_str()));
            assert!(s.claim_task(60_000).unwrap().is_none(), "two under way: the rest are held");
            walk(&s, &first, &[Init, InBackup, BackedUp, Repairing, RepairSuccess, RepairSuccessVerifying, RepairSuccessVerified]);
            let third = s.claim_task(60_000).unwrap().unwrap();
            assert_eq!(third.task.id, ids[2]);
            assert!(s.claim_task(60_000).unwrap().is_none());
            s.transition(&second, Init, Fail, Transition::default()).unwrap();
            assert_eq!(s.claim_task(60_000).unwrap().unwrap().task.id, ids[3]);
            // A restart frees leases, never a held task.
            let (_, more) = root_with(&s, &acct, 3, RootLimits { max_concurrency: Some(1), ..Default::default() });
            s.release_leases().unwrap();
            let claimed: Vec<String> = std::iter::from_fn(|| s.claim_task(60_000).unwrap()).map(|c| c.task.id).collect();
            assert!(claimed.contains(&more[0]) && !claimed.contains(&more[1]) && !claimed.contains(&more[2]), "{claimed:?}");
        }

        fn a_canary_holds_the_rest_until_verified_and_cancels_them_if_not() {
            let (_p, s) = store();
            let acct = s.create_account("canary").unwrap().id;
            let canary = RootLimits { canary_count: Some(1), ..Default::default() };
            let (_, ids) = root_with(&s, &acct, 3, canary);
            let c = s.claim_task(60_000).unwrap().unwrap();
            assert_eq!(c.task.id, ids[0]);
            assert!(s.claim_task(60_000).unwrap().is_none(), "held behind the canary");
            walk(&s, &c, &[Init, InBackup, BackedUp, Repairing, RepairSuccess, RepairSuccessVerifying, RepairSuccessVerified]);
            let released: Vec<String> = (0..2).map(|_| s.claim_task(60_000).unwrap().unwrap().task.id).collect();
            assert_eq!(released, ids[1..]);

            let (_, ids) = root_with(&s, &acct, 3, canary);
            let c = s.claim_task(60_000).unwrap().unwrap();
            walk(&s, &c, &[Init, InBackup, BackedUp, Repairing, RepairSuccess, RepairSuccessVerifying, RepairSuccessUnverified]);
            for id in &ids[1..] {
                let t = s.get_task(&acct, id).unwrap().unwrap();
                assert_eq!((t.status, t.error_code.as_str()), (Cancelled, "CanaryFailed"));
            }
            assert!(s.claim_task(0).unwrap().is_none());
        }

        fn a_failure_threshold_cancels_what_has_not_started_once_reached() {
            let (_p, s) = store();
            let acct = s.create_account("threshold").unwrap().id;
            for (threshold, failures_to_stop) in [(model::FailureThreshold::Count(1), 1), (model::FailureThreshold::Percent(50), 2)] {
                let (_, ids) = root_of(&s, &acct, 4, Some(threshold));
                for i in 0..failures_to_stop {
                    let c = s.claim_task(60_000).unwrap().unwrap();
                    assert_eq!(c.task.id, ids[i]);
                    let still_waiting = s.get_task(&acct, &ids[3]).unwrap().unwrap().status;
                    assert_eq!(still_waiting, Init, "{threshold:?}: not reached before failure {}", i + 1);
                    s.transition(&c, Init, Fail, Transition { error: Some(("X", "y")), ..Default::default() }).unwrap();
                }
                for id in &ids[failures_to_stop..] {
                    let t = s.get_task(&acct, id).unwrap().unwrap();
                    assert_eq!((t.status, t.error_code.as_str()), (Cancelled, "FailureThresholdReached"), "{threshold:?}");
                }
                assert!(s.claim_task(0).unwrap().is_none());
            }
            // Without a threshold, a failure stops nothing.
            let (_, ids) = root_of(&s, &acct, 2, None);
            let c = s.claim_task(60_000).unwrap().unwrap();
            s.transition(&c, Init, Fail, Transition::default()).unwrap();
            assert_eq!(s.get_task(&acct, &ids[1]).unwrap().unwrap().status, Init);
        }

        fn a_cancel_ends_what_changed_nothing_and_rolls_back_what_was_changing() {
            let (_p, s) = store();
            let acct = s.create_account("cancel").unwrap().id;
            let (root, ids) = root_with(&s, &acct, 4, RootLimits::default());
            // Task 0 stays INIT; 1 is backing up; 2 is changing the configuration; 3 is done.
            let claimed: Vec<Claimed> = (0..4).map(|_| s.claim_task(60_000).unwrap().unwrap()).collect();
            walk(&s, &claimed[1], &[Init, InBackup]);
            walk(&s, &claimed[2], &[Init, InBackup, BackedUp, Repairing]);
            walk(&s, &claimed[3], &[Init, InBackup, BackedUp, Repairing, RepairSuccess, RepairSuccessVerifying, RepairSuccessVerified]);
            assert_eq!(s.repair_usage(&acct).unwrap().0, 4);

            assert_eq!(s.cancel(&acct, &root, &["no-such-task".into()], "LTAIcanceller"), Err(StoreError::NotFound));
            assert_eq!(s.cancel("0000", &root, &[], "LTAIcanceller"), Err(StoreError::NotFound), "another account's root");
            let outcomes: Vec<CancelOutcome> = s.cancel(&acct, &root, &[], "LTAIcanceller").unwrap().into_iter().map(|(.., o)| o).collect();
            use CancelOutcome as O;
            assert_eq!(outcomes, [O::Cancelled, O::Cancelled, O::RollbackAfterStep, O::Unchanged]);
            let status = |i: usize| s.get_task(&acct, &ids[i]).unwrap().unwrap().status;
            assert_eq!((status(0), status(1), status(2), status(3)), (Cancelled, Cancelled, Repairing, RepairSuccessVerified));
            // The backup under way cannot write any more: its lease was taken with the cancel.
            assert_eq!(s.transition(&claimed[1], InBackup, BackedUp, Transition::default()), Err(StoreError::LeaseLost));
            assert!(s.claim_task(0).unwrap().is_none(), "nothing cancelled is claimed");
            assert_eq!(s.repair_usage(&acct).unwrap().0, 2, "what changed nothing is not counted");

            // The one that was changing finishes its step, and its ending writes its rollback.
            assert!(!s.has_rollback(&ids[2]).unwrap());
            walk(&s, &claimed[2], &[Repairing, RepairSuccess, RepairSuccessVerifying, RepairSuccessVerified]);
            assert!(s.has_rollback(&ids[2]).unwrap());
            let rollback = s.claim_task(60_000).unwrap().unwrap();
            assert_eq!((rollback.task.kind, rollback.task.status), (TaskType::Rollback, RollBackInit));
            assert_eq!(rollback.task.repair_task_id.as_deref(), Some(ids[2].as_str()));
            // Who did what: the canceller cancelled, and the rollback is theirs.
            let history = |id: &str| -> Vec<(String, String)> {
                s.task_events(id).unwrap().into_iter().map(|e| (e.status, e.actor)).collect()
            };
            assert_eq!(history(&ids[0]), [("INIT".into(), "LTAIsubmitter".into()), ("CANCELLED".into(), "LTAIcanceller".into())]);
            assert_eq!(history(&rollback.task.id), [("ROLL_BACK_INIT".into(), "LTAIcanceller".into())]);
            assert!(!s.has_rollback(&ids[3]).unwrap(), "a verified repair is left as it is");
            // A rollback is never cancelled: it keeps its repair undoable.
            let theirs: Vec<CancelOutcome> =
                s.cancel(&acct, &rollback.task.root_id, &[], "LTAIcanceller").unwrap().into_iter().map(|(.., o)| o).collect();
            assert_eq!(theirs, [O::Unchanged]);
            // A second cancel changes nothing more.
            let again: Vec<CancelOutcome> = s.cancel(&acct, &root, &[], "LTAIcanceller").unwrap().into_iter().map(|(.., o)| o).collect();
            assert_eq!(again, [O::Unchanged; 4]);
            // The rollback the cancel wrote is counted with its item's tasks.
            let filter = crate::TaskFilter { check_id: Some(rollback.task.check_id), limit: 1, ..Default::default() };
            assert_eq!(s.list_tasks(&acct, &filter).unwrap().1, 5);
        }

        fn a_cancelled_change_is_rolled_back_before_the_changes_queued_behind_it() {
            let (_p, s) = store();
            let acct = s.create_account("cancel-queue").unwrap().id;
            let (root, ids) = root_with(&s, &acct, 1, RootLimits::default());
            let pk = s.get_task(&acct, &ids[0]).unwrap().unwrap().instance.pk;
            let first = s.claim_task(60_000).unwrap().unwrap();
            walk(&s, &first, &[Init, InBackup, BackedUp, Repairing]);
            // Another item of the same file, submitted while the first changes it, waits.
            let mut queued = crate::conformance::repair_of(1003, &[pk]);
            queued.scope = "file:/etc/ssh/sshd_config".into(); // root_with's
            s.submit(&acct, &queued).unwrap();
            let queued_id = queued.tasks[0].id.clone();
            assert_eq!(s.get_task(&acct, &queued_id).unwrap().unwrap().status, Throttling);

            assert_eq!(s.cancel(&acct, &root, &[], "LTAIcanceller").unwrap()[0].2, CancelOutcome::RollbackAfterStep);
            walk(&s, &first, &[Repairing, RepairSuccess, RepairSuccessVerifying, RepairSuccessVerified]);
            // The rollback goes first; the queued change waits for it, and does not make it
            // "no longer the latest change".
            let rollback = s.claim_task(60_000).unwrap().unwrap();
            assert_eq!((rollback.task.kind, rollback.task.status), (TaskType::Rollback, RollBackInit));
            assert_eq!(s.get_task(&acct, &queued_id).unwrap().unwrap().status, Throttling);
            assert_eq!(s.standing_change_after(&ids[0], &rollback.task.id).unwrap(), None);
            assert!(s.claim_task(60_000).unwrap().is_none(), "the queued change is not claimable yet");
            walk(&s, &rollback, &[RollBackInit, RollBacking, RollBacked, RollBackVerifying, RollBackVerified]);
            assert_eq!(s.get_task(&acct, &queued_id).unwrap().unwrap().status, Init, "released once it has ended");
            assert_eq!(s.claim_task(60_000).unwrap().unwrap().task.id, queued_id);
        }

        fn a_change_queued_behind_two_cancelled_repairs_waits_for_both_rollbacks() {
            let (_p, s) = store();
            let acct = s.create_account("cancel-two").unwrap().id;
            s.upsert_instances(&acct, &[crate::conformance::host(0)]).unwrap();
            let pk = s.list_instances(&acct).unwrap()[0].pk;
            let scoped = |check_id, scope: &str| {
                let mut sub = crate::conformance::repair_of(check_id, &[pk]);
                sub.scope = scope.into();
                sub
            };
            // Two repairs of two files change them; a change of the whole instance queues.
            let (first, second) = (scoped(1009, "file:/etc/login.defs"), scoped(1001, "file:/etc/ssh/sshd_config"));
            s.submit(&acct, &first).unwrap();
            s.submit(&acct, &second).unwrap();
            let (a, b) = (s.claim_task(60_000).unwrap().unwrap(), s.claim_task(60_000).unwrap().unwrap());
            walk(&s, &a, &[Init, InBackup, BackedUp, Repairing]);
            walk(&s, &b, &[Init, InBackup, BackedUp, Repairing]);
            let whole = scoped(9100, "*");
            s.submit(&acct, &whole).unwrap();
            let status = |id: &str| s.get_task(&acct, id).unwrap().unwrap().status;
            assert_eq!(status(&whole.tasks[0].id), Throttling);
            s.cancel(&acct, &first.root_id, &[], "k").unwrap();
            s.cancel(&acct, &second.root_id, &[], "k").unwrap();
            let done = [Repairing, RepairSuccess, RepairSuccessVerifying, RepairSuccessVerified];
            walk(&s, &a, &done);
            let undo_a = s.claim_task(60_000).unwrap().unwrap();
            assert_eq!(undo_a.task.repair_task_id.as_deref(), Some(first.tasks[0].id.as_str()));
            walk(&s, &undo_a, &[RollBackInit, RollBacking]); // holds login.defs
            walk(&s, &b, &done);
            let undo_b = s.claim_task(60_000).unwrap().unwrap();
            assert_eq!(undo_b.task.repair_task_id.as_deref(), Some(second.tasks[0].id.as_str()));
            walk(&s, &undo_b, &[RollBackInit, RollBacking, RollBacked, RollBackVerifying, RollBackVerified]);
            assert_eq!(status(&whole.tasks[0].id), Throttling, "the first rollback is still restoring");
            assert_eq!(s.standing_change_after(&first.tasks[0].id, &undo_a.task.id).unwrap(), None);
            walk(&s, &undo_a, &[RollBacking, RollBacked, RollBackVerifying, RollBackVerified]);
            assert_eq!(status(&whole.tasks[0].id), Init, "released once both are undone");
        }
    }
}
