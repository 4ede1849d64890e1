//! Approval: where an account (or one of its check items) requires it, a repair's tasks are
//! created `WAIT_APPROVAL` and change nothing until another key approves them. Approved, a
//! task joins the queue of what it changes (INIT, or THROTTLING behind a change under way);
//! rejected, or unanswered past the account's expiry, it ends `CANCELLED` and gives its
//! authorization back. Who may approve (a policy, never the submitting key) is the API's rule;
//! the store records who did.

use model::TaskStatus;

use crate::cancel::cancel_unstarted;
use crate::sql::{args, Conn};
use crate::tasks::{lock_account, overlap, record_event, SERVICE_ACTOR};
use crate::{now_ms, Result, Store, StoreError};

/// How long a task waits for approval by default: a day.
pub const DEFAULT_APPROVAL_EXPIRY_MS: i64 = 86_400_000;

/// An account's approval settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalConfig {
    /// Whether its repairs wait for approval (unless an item says otherwise).
    pub required: bool,
    /// How long a task waits before it is cancelled (`ApprovalExpired`).
    pub expiry_ms: i64,
    /// Items that say otherwise: (CheckId, required).
    pub overrides: Vec<(i64, bool)>,
}

/// A change of an account's approval settings: each part that is set is changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApprovalChange {
    /// The account's setting.
    pub required: Option<bool>,
    /// How long a task waits.
    pub expiry_ms: Option<i64>,
    /// An item's override: Some(required), or None to remove it (follow the account).
    pub item: Option<(i64, Option<bool>)>,
}

/// What an approval or a rejection did to one task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApprovalOutcome {
    /// Approved: it joined its queue.
    Approved,
    /// Rejected: CANCELLED.
    Rejected,
    /// It was not waiting for approval: left as it is.
    Unchanged,
}

impl ApprovalOutcome {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalOutcome::Approved => "APPROVED",
            ApprovalOutcome::Rejected => "REJECTED",
            ApprovalOutcome::Unchanged => "UNCHANGED",
        }
    }
}

/// Approvals.
pub trait Approvals: Send + Sync {
    /// The account's settings.
    fn approval_config(&self, account_id: &str) -> Result<ApprovalConfig>;

    /// Changes the account's settings; `NotFound` for an unknown account.
    fn set_approval(&self, account_id: &str, change: &ApprovalChange) -> Result<ApprovalConfig>;

    /// Who submitted the account's root task; `NotFound` if it has none such.
    fn root_submitter(&self, account_id: &str, root_id: &str) -> Result<String>;

    /// Approves (`approve`) or rejects the root's tasks waiting for approval (only `task_ids`
    /// when given), as `actor`: each task's id, instance key and outcome, in creation order.
    /// `NotFound` if the root, or one of `task_ids` in it, does not exist.
    fn decide(
        &self,
        account_id: &str,
        root_id: &str,
        task_ids: &[String],
        approve: bool,
        actor: &str,
    ) -> Result<Vec<(String, i64, ApprovalOutcome)>>;

    /// Cancels (`ApprovalExpired`) the tasks that have waited for approval longer than their
    /// account's expiry; how many.
    fn expire_approvals(&self) -> Result<usize>;
}

/// Whether a repair of `check_id` waits for approval in the account whose own setting is
/// `account_required` (an item's override wins).
pub(crate) fn required_in(tx: &Conn, account_id: &str, check_id: i64, account_required: bool) -> Result<bool> {
    let item: Option<bool> = tx.query_opt(
        "SELECT required FROM approval_overrides WHERE account_id = ? AND check_id = ?",
        args![account_id, check_id],
        |r| r.get(0),
    )?;
    Ok(item.unwrap_or(account_required))
}

/// An approved task's status: THROTTLING while another change under way on its instance may
/// touch the same thing, else INIT (a repair's initial status); and its place in the order of
/// changes, `?3`: after every change created before the approval.
const APPROVE: &str = concat!(
    "UPDATE tasks SET updated_ms = ?1, approved_pos = ?3, status = CASE WHEN EXISTS (
        SELECT 1 FROM tasks x WHERE x.instance_pk = tasks.instance_pk AND x.id <> tasks.id
          AND {x.status IS ACTIVE} AND x.status <> 'WAIT_APPROVAL' AND ",
    overlap!("x", "tasks"),
    ") THEN 'THROTTLING' ELSE 'INIT' END
     WHERE id = ?2 AND status = 'WAIT_APPROVAL'
     RETURNING status"
);

fn config_in(c: &Conn, account_id: &str) -> Result<ApprovalConfig> {
    let (required, expiry_ms): (bool, i64) = c
        .query_opt("SELECT approval_required, approval_expiry_ms FROM accounts WHERE id = ?", args![account_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .ok_or(StoreError::NotFound)?;
    let overrides = c.query(
        "SELECT check_id, required FROM approval_overrides WHERE account_id = ? ORDER BY check_id",
        args![account_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(ApprovalConfig { required, expiry_ms, overrides })
}

impl Approvals for Store {
    fn approval_config(&self, account_id: &str) -> Result<ApprovalConfig> {
        self.read(|c| config_in(c, account_id))
    }

    fn set_approval(&self, account_id: &str, change: &ApprovalChange) -> Result<ApprovalConfig> {
        let (account_id, change) = (account_id.to_string(), change.clone());
        self.write(move |tx| {
            config_in(tx, &account_id)?; // NotFound for an unknown account
            if let Some(required) = change.required {
                tx.execute("UPDATE accounts SET approval_required = ? WHERE id = ?", args![required, &account_id])?;
            }
            if let Some(expiry) = change.expiry_ms {
                tx.execute("UPDATE accounts SET approval_expiry_ms = ? WHERE id = ?", args![expiry, &account_id])?;
            }
            match change.item {
                None => {}
                Some((check_id, None)) => {
                    tx.execute(
                        "DELETE FROM approval_overrides WHERE account_id = ? AND check_id = ?",
                        args![&account_id, check_id],
                    )?;
                }
                Some((check_id, Some(required))) => {
                    tx.execute(
                        "INSERT INTO approval_overrides (account_id, check_id, required) VALUES (?, ?, ?)
                         ON CONFLICT (account_id, check_id) DO UPDATE SET required = excluded.required",
                        args![&account_id, check_id, required],
                    )?;
                }
            }
            config_in(tx, &account_id)
        })
    }

    fn root_submitter(&self, account_id: &str, root_id: &str) -> Result<String> {
        self.read(|c| {
            c.query_opt(
                "SELECT COALESCE(submitted_by, '') FROM root_tasks WHERE account_id = ? AND id = ?",
                args![account_id, root_id],
                |r| r.get(0),
            )?
            .ok_or(StoreError::NotFound)
        })
    }

    fn decide(
        &self,
        account_id: &str,
        root_id: &str,
        task_ids: &[String],
        approve: bool,
        actor: &str,
    ) -> Result<Vec<(String, i64, ApprovalOutcome)>> {
        let (account_id, root_id, task_ids, actor) =
            (account_id.to_string(), root_id.to_string(), task_ids.to_vec(), actor.to_string());
        let approve_sql = crate::status_sets(APPROVE);
        self.write(move |tx| {
            let tasks = crate::cancel::tasks_named(tx, &account_id, &root_id, &task_ids)?;
            let now = now_ms();
            let mut out = Vec::new();
            let mut approved = false;
            // Every task created so far (on PostgreSQL, of this account: under its lock) comes
            // before what is approved now; what is created later comes after.
            let mut next_pos: i64 = tx.value(
                tx.pick(
                    "SELECT MAX(COALESCE((SELECT MAX(rowid) FROM tasks), 0) * 1000000,
                                COALESCE((SELECT MAX(approved_pos) FROM tasks), 0)) + 1",
                    "SELECT GREATEST(COALESCE((SELECT MAX(rowid) FROM tasks), 0) * 1000000,
                                     COALESCE((SELECT MAX(approved_pos) FROM tasks), 0)) + 1",
                ),
                &[],
            )?;
            for (id, pk, kind, status) in tasks {
                let outcome = match (status == TaskStatus::WaitApproval.as_str(), approve) {
                    (false, _) => ApprovalOutcome::Unchanged,
                    (true, true) => {
                        let to: Option<String> = tx.query_opt(&approve_sql, args![now, &id, next_pos], |r| r.get(0))?;
                        next_pos += 1;
                        match to {
                            Some(to) => {
                                record_event(tx, &id, &to, now, &actor)?;
                                approved = true;
                                ApprovalOutcome::Approved
                            }
                            None => ApprovalOutcome::Unchanged,
                        }
                    }
                    (true, false) => {
                        let why = ("ApprovalRejected", format!("rejected by {actor}"));
                        let done = cancel_unstarted(
                            tx,
                            &account_id,
                            &id,
                            pk,
                            &kind,
                            TaskStatus::WaitApproval,
                            (why.0, &why.1),
                            now,
                            &actor,
                        )?;
                        if done {
                            ApprovalOutcome::Rejected
                        } else {
                            ApprovalOutcome::Unchanged
                        }
                    }
                };
                out.push((id, pk, outcome));
            }
            if approved {
                crate::pg::notify_work(tx)?;
            }
            // A canary rejected, or a task of a limited root ended: what it held back may go
            // (or is cancelled, for a canary).
            if let Some((first, ..)) = out.iter().find(|(.., o)| *o == ApprovalOutcome::Rejected) {
                crate::cancel::release_held(tx, first, now)?;
            }
            Ok(out)
        })
    }

    fn expire_approvals(&self) -> Result<usize> {
        self.write(|tx| {
            let due: Vec<(String, String, i64, String)> = tx.query(
                "SELECT t.id, t.account_id, t.instance_pk, t.type FROM tasks t JOIN accounts a ON a.id = t.account_id
                 WHERE t.status = 'WAIT_APPROVAL' AND t.created_ms < ? - a.approval_expiry_ms
                 ORDER BY t.created_ms LIMIT 500",
                args![now_ms()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?;
            let now = now_ms();
            let mut n = 0;
            for (id, account_id, pk, kind) in due {
                lock_account(tx, &account_id)?;
                let why = ("ApprovalExpired", "no one approved it within the account's approval expiry");
                if cancel_unstarted(tx, &account_id, &id, pk, &kind, TaskStatus::WaitApproval, why, now, SERVICE_ACTOR)?
                {
                    crate::cancel::release_held(tx, &id, now)?;
                    n += 1;
                }
            }
            Ok(n)
        })
    }
}

#[cfg(test)]
mod tests {
    use model::TaskStatus::*;

    use crate::conformance::{host, repair_of};
    use crate::testutil::store;
    use crate::*;

    crate::testutil::both_backends! {
        fn a_repair_waits_for_approval_where_required_and_joins_its_queue_once_approved() {
            let (_p, s) = store();
            let acct = s.create_account("approval").unwrap().id;
            s.upsert_instances(&acct, &[host(0), host(1)]).unwrap();
            let pks: Vec<i64> = s.list_instances(&acct).unwrap().iter().map(|i| i.pk).collect();
            let config = s.set_approval(&acct, &ApprovalChange { required: Some(true), ..Default::default() }).unwrap();
            assert_eq!((config.required, config.expiry_ms), (true, DEFAULT_APPROVAL_EXPIRY_MS));
            // An item that says otherwise does not wait.
            s.set_approval(&acct, &ApprovalChange { item: Some((1002, Some(false))), ..Default::default() }).unwrap();

            let waiting = repair_of(1001, &pks);
            assert_eq!(s.submit(&acct, &waiting).unwrap(), SubmitOutcome::AwaitingApproval(2));
            let status = |id: &str| s.get_task(&acct, id).unwrap().unwrap().status;
            assert_eq!(status(&waiting.tasks[0].id), WaitApproval);
            assert!(s.claim_task(0).unwrap().is_none(), "a task waiting for approval is never claimed");
            assert_eq!(s.submit(&acct, &repair_of(1001, &pks[..1])), Err(StoreError::Conflict), "one task of an item");
            // A change of the same file, not waiting, goes ahead of it (it holds no queue).
            let mut other = repair_of(1002, &pks[..1]);
            other.scope = waiting.scope.clone();
            assert_eq!(s.submit(&acct, &other).unwrap(), SubmitOutcome::Created(1));
            assert_eq!(status(&other.tasks[0].id), Init);

            assert_eq!(s.root_submitter(&acct, &waiting.root_id).unwrap(), "LTAIsubmitter");
            assert_eq!(s.root_submitter("nobody", &waiting.root_id), Err(StoreError::NotFound));
            let decided = s.decide(&acct, &waiting.root_id, &[waiting.tasks[0].id.clone()], true, "LTAIapprover").unwrap();
            assert_eq!(decided.iter().map(|d| d.2).collect::<Vec<_>>(), [ApprovalOutcome::Approved]);
            // Approved, it queues behind the change under way on its file; the other instance's
            // task still waits.
            assert_eq!(status(&waiting.tasks[0].id), Throttling);
            assert_eq!(status(&waiting.tasks[1].id), WaitApproval);
            let history: Vec<(String, String)> =
                s.task_events(&waiting.tasks[0].id).unwrap().into_iter().map(|e| (e.status, e.actor)).collect();
            assert_eq!(
                history,
                [("WAIT_APPROVAL".into(), "LTAIsubmitter".into()), ("THROTTLING".into(), "LTAIapprover".into())]
            );

            let used = s.repair_usage(&acct).unwrap().0;
            let rejected = s.decide(&acct, &waiting.root_id, &[], false, "LTAIapprover").unwrap();
            assert_eq!(rejected.iter().map(|d| d.2).collect::<Vec<_>>(), [ApprovalOutcome::Unchanged, ApprovalOutcome::Rejected]);
            let task = s.get_task(&acct, &waiting.tasks[1].id).unwrap().unwrap();
            assert_eq!((task.status, task.error_code.as_str()), (Cancelled, "ApprovalRejected"));
            assert_eq!(s.repair_usage(&acct).unwrap().0, used - 1, "a rejected repair gives its authorization back");
            assert_eq!(s.decide(&acct, &waiting.root_id, &["nope".into()], true, "k"), Err(StoreError::NotFound));
        }

        fn an_approved_change_takes_its_place_when_approved() {
            let (_p, s) = store();
            let acct = s.create_account("approval-order").unwrap().id;
            s.upsert_instances(&acct, &[host(0)]).unwrap();
            let pk = s.list_instances(&acct).unwrap()[0].pk;
            s.set_approval(&acct, &ApprovalChange { required: Some(true), ..Default::default() }).unwrap();
            s.set_approval(&acct, &ApprovalChange { item: Some((1004, Some(false))), ..Default::default() }).unwrap();
            s.set_approval(&acct, &ApprovalChange { item: Some((1003, Some(false))), ..Default::default() }).unwrap();
            let on_file = |check_id| {
                let mut sub = repair_of(check_id, &[pk]);
                sub.scope = "file:/etc/ssh/sshd_config".into();
                sub
            };
            let applied = [Init, InBackup, BackedUp, Repairing, RepairSuccess, RepairSuccessVerifying, RepairSuccessVerified];
            let walk = |c: &Claimed, path: &[model::TaskStatus]| {
                for w in path.windows(2) {
                    s.transition(c, w[0], w[1], Transition::default()).unwrap();
                }
            };
            // A waits; R is submitted after it and applied; A is approved and applied after R.
            let a = on_file(1001);
            s.submit(&acct, &a).unwrap();
            let r = on_file(1004);
            s.submit(&acct, &r).unwrap();
            walk(&s.claim_task(60_000).unwrap().unwrap(), &applied);
            s.decide(&acct, &a.root_id, &[], true, "LTAIapprover").unwrap();
            walk(&s.claim_task(60_000).unwrap().unwrap(), &applied);
            // A is the latest change of the file: it may be rolled back, R may not.
            assert_eq!(s.standing_change_after(&a.tasks[0].id, "").unwrap(), None);
            assert_eq!(s.standing_change_after(&r.tasks[0].id, "").unwrap(), Some(a.tasks[0].id.clone()));

            // A change approved while another is under way comes after it: rolling back what
            // came before that one is refused while it stands (no queue that waits in a circle).
            let y = on_file(1005);
            s.submit(&acct, &y).unwrap();
            let r2 = on_file(1003);
            s.submit(&acct, &r2).unwrap();
            walk(&s.claim_task(60_000).unwrap().unwrap(), &applied);
            s.decide(&acct, &y.root_id, &[], true, "LTAIapprover").unwrap();
            let running = s.claim_task(60_000).unwrap().unwrap();
            walk(&running, &[Init, InBackup, BackedUp, Repairing]);
            let mut undo = repair_of(1003, &[pk]);
            undo.kind = model::TaskType::Rollback;
            undo.tasks[0].repair_task_id = Some(r2.tasks[0].id.clone());
            assert_eq!(
                s.submit(&acct, &undo),
                Err(StoreError::NotLatest { repair: r2.tasks[0].id.clone(), newer: y.tasks[0].id.clone() })
            );
        }

        fn a_rejected_or_expired_task_releases_what_its_root_held_back() {
            let (_p, s) = store();
            let acct = s.create_account("approval-held").unwrap().id;
            s.upsert_instances(&acct, &[host(0), host(1), host(2)]).unwrap();
            let pks: Vec<i64> = s.list_instances(&acct).unwrap().iter().map(|i| i.pk).collect();
            s.set_approval(&acct, &ApprovalChange { required: Some(true), ..Default::default() }).unwrap();
            let mut sub = repair_of(1001, &pks);
            sub.limits.max_concurrency = Some(1);
            s.submit(&acct, &sub).unwrap();
            s.decide(&acct, &sub.root_id, &[sub.tasks[0].id.clone()], false, "LTAIapprover").unwrap();
            s.decide(&acct, &sub.root_id, &[], true, "LTAIapprover").unwrap();
            let next = s.claim_task(60_000).unwrap().expect("the rejection released the next task");
            assert_eq!(next.task.id, sub.tasks[1].id);
        }

        fn an_unanswered_wait_expires_cancelled() {
            let (_p, s) = store();
            let acct = s.create_account("expiry").unwrap().id;
            s.upsert_instances(&acct, &[host(0)]).unwrap();
            let pk = s.list_instances(&acct).unwrap()[0].pk;
            s.set_approval(&acct, &ApprovalChange { required: Some(true), expiry_ms: Some(1), ..Default::default() })
                .unwrap();
            let sub = repair_of(1001, &[pk]);
            assert_eq!(s.submit(&acct, &sub).unwrap(), SubmitOutcome::AwaitingApproval(1));
            std::thread::sleep(std::time::Duration::from_millis(20));
            assert_eq!(s.expire_approvals().unwrap(), 1);
            assert_eq!(s.expire_approvals().unwrap(), 0);
            let task = s.get_task(&acct, &sub.tasks[0].id).unwrap().unwrap();
            assert_eq!((task.status, task.error_code.as_str()), (Cancelled, "ApprovalExpired"));
            // Turned off, a repair runs at once again.
            s.set_approval(&acct, &ApprovalChange { required: Some(false), ..Default::default() }).unwrap();
            assert_eq!(s.submit(&acct, &repair_of(1001, &[pk])).unwrap(), SubmitOutcome::Created(1));
        }
    }
}
