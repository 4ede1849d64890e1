//! CancelOperationTask: what cancelling does to each task of a root task, decided and written
//! in one transaction (on PostgreSQL under the account's lock, as submissions and endings are).
//! A task that has changed nothing yet ends `CANCELLED` at once, its lease taken away (the
//! fence moves, so a worker or agent in the middle of its backup cannot write again); a repair
//! that is changing the configuration finishes its step and, once it has ended applied, is
//! rolled back from its snapshot by a ROLLBACK task its ending writes (see
//! [`roll_back_if_cancelled`]); a task that has ended, or a rollback under way, is left as it is.

use model::{TaskStatus, TaskType};

use crate::sql::{args, Conn};
use crate::tasks::{lock_account, release_waiting, INSERT_TASK_SQL};
use crate::{new_id, now_ms, task_id, Result, Store, StoreError};

/// What a cancel did to one task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It had changed nothing: it is `CANCELLED`.
    Cancelled,
    /// It is changing the configuration: it finishes its step and is then rolled back.
    RollbackAfterStep,
    /// It has ended, or is a rollback under way: left as it is.
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
        match status {
            s if s.can_move_to(Cancelled) => CancelOutcome::Cancelled,
            Repairing | RepairSuccess | RepairSuccessVerifying if kind == TaskType::Repair.as_str() => {
                CancelOutcome::RollbackAfterStep
            }
            _ => CancelOutcome::Unchanged,
        }
    }
}

/// Cancelling root tasks.
pub trait Cancels: Send + Sync {
    /// Cancels the tasks of the account's root task `root_id` (only `task_ids` when given):
    /// each task's id, instance key and outcome, in creation order. `NotFound` if the root, or
    /// one of `task_ids` in it, does not exist.
    fn cancel(&self, account_id: &str, root_id: &str, task_ids: &[String])
        -> Result<Vec<(String, i64, CancelOutcome)>>;
}

impl Cancels for Store {
    fn cancel(
        &self,
        account_id: &str,
        root_id: &str,
        task_ids: &[String],
    ) -> Result<Vec<(String, i64, CancelOutcome)>> {
        let (account_id, root_id, task_ids) = (account_id.to_string(), root_id.to_string(), task_ids.to_vec());
        self.write(move |tx| {
            lock_account(tx, &account_id)?;
            let tasks: Vec<(String, i64, String, String)> = tx.query(
                "SELECT id, instance_pk, type, status FROM tasks WHERE account_id = ? AND root_id = ? ORDER BY rowid",
                args![&account_id, &root_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?;
            if tasks.is_empty() || task_ids.iter().any(|id| !tasks.iter().any(|t| &t.0 == id)) {
                return Err(StoreError::NotFound);
            }
            let now = now_ms();
            let mut out = Vec::new();
            for (id, pk, kind, status) in tasks {
                if !task_ids.is_empty() && !task_ids.contains(&id) {
                    continue;
                }
                let status =
                    TaskStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("tasks.status: {status}")))?;
                let outcome = CancelOutcome::of(&kind, status);
                match outcome {
                    CancelOutcome::Cancelled => {
                        tx.execute(
                            "UPDATE tasks SET status = 'CANCELLED', fence = fence + 1, lease_until_ms = 0, updated_ms = ?,
                                    error_code = 'Cancelled', error_msg = 'cancelled before it changed anything'
                             WHERE id = ?",
                            args![now, &id],
                        )?;
                        tx.execute(
                            "INSERT INTO task_events (task_id, status, at_ms) VALUES (?, 'CANCELLED', ?)",
                            args![&id, now],
                        )?;
                        if kind == TaskType::Repair.as_str() {
                            // It changed nothing: its authorization is given back.
                            tx.execute(
                                "UPDATE accounts SET repairs_used = repairs_used - 1 WHERE id = ?",
                                args![&account_id],
                            )?;
                        }
                        release_waiting(tx, pk, now)?;
                    }
                    CancelOutcome::RollbackAfterStep => {
                        tx.execute("UPDATE tasks SET cancel_requested = 1 WHERE id = ?", args![&id])?;
                    }
                    CancelOutcome::Unchanged => {}
                }
                out.push((id, pk, outcome));
            }
            Ok(out)
        })
    }
}

/// Within the transaction that ends repair `repair_id` applied: if it was cancelled while it was
/// changing the configuration, writes the ROLLBACK task (a root of its own) that restores its
/// snapshot. Returns whether it did.
pub(crate) fn roll_back_if_cancelled(tx: &Conn, repair_id: &str, now: i64) -> Result<bool> {
    let row: Option<(String, i64, i64, String)> = tx.query_opt(
        "SELECT account_id, check_id, instance_pk, scope FROM tasks WHERE id = ? AND cancel_requested = 1",
        args![repair_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let Some((account_id, check_id, pk, scope)) = row else { return Ok(false) };
    let root_id = new_id(16);
    tx.execute(
        "INSERT INTO root_tasks (id, account_id, check_id, type, dimension, created_ms) VALUES (?, ?, ?, 'ROLLBACK', 'INSTANCE', ?)",
        args![&root_id, &account_id, check_id, now],
    )?;
    tx.execute(
        &INSERT_TASK_SQL,
        args![
            task_id(),
            &root_id,
            &account_id,
            check_id,
            pk,
            TaskType::Rollback.as_str(),
            TaskStatus::RollBackInit.as_str(),
            repair_id,
            model::RepairValues::default().to_json(),
            &scope,
            now,
            now
        ],
    )?;
    tx.execute("UPDATE accounts SET tasks_total = tasks_total + 1 WHERE id = ?", args![&account_id])?;
    crate::pg::notify_work(tx)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use model::{DimensionType, RepairValues, TaskStatus::*, TaskType, Vendor};

    use crate::testutil::store;
    use crate::*;

    fn walk(s: &Store, c: &Claimed, path: &[model::TaskStatus]) {
        for w in path.windows(2) {
            s.transition(c, w[0], w[1], Transition::default()).unwrap();
        }
    }

    crate::testutil::both_backends! {
        fn a_cancel_ends_what_changed_nothing_and_rolls_back_what_was_changing() {
            let (_p, s) = store();
            let acct = s.create_account("cancel").unwrap().id;
            let hosts: Vec<NewInstance> = (0..4)
                .map(|i| NewInstance {
                    vendor: Vendor::Aliyun,
                    region_id: "cn-hangzhou".into(),
                    instance_id: format!("i-{i}"),
                    instance_name: format!("h{i}"),
                    connector: "host".into(),
                    locator: format!("/fleet/{i}"),
                    os_type: "linux".into(),
                    live: None,
                })
                .collect();
            s.upsert_instances(&acct, &hosts).unwrap();
            let pks: Vec<i64> = s.list_instances(&acct).unwrap().iter().map(|i| i.pk).collect();
            let root = new_id(16);
            let tasks: Vec<NewTask> = pks
                .iter()
                .map(|pk| NewTask { id: task_id(), instance_pk: *pk, repair_task_id: None, params: RepairValues::default() })
                .collect();
            let ids: Vec<String> = tasks.iter().map(|t| t.id.clone()).collect();
            let sub = Submission {
                root_id: root.clone(),
                check_id: 1001,
                kind: TaskType::Repair,
                dimension: DimensionType::Instance,
                tasks,
                selection: None,
                scope: "file:/etc/ssh/sshd_config".into(),
            };
            s.submit(&acct, &sub).unwrap();
            // Task 0 stays INIT; 1 is backing up; 2 is changing the configuration; 3 is done.
            let claimed: Vec<Claimed> = (0..4).map(|_| s.claim_task(60_000).unwrap().unwrap()).collect();
            walk(&s, &claimed[1], &[Init, InBackup]);
            walk(&s, &claimed[2], &[Init, InBackup, BackedUp, Repairing]);
            walk(&s, &claimed[3], &[Init, InBackup, BackedUp, Repairing, RepairSuccess, RepairSuccessVerifying, RepairSuccessVerified]);
            assert_eq!(s.repair_usage(&acct).unwrap().0, 4);

            assert_eq!(s.cancel(&acct, &root, &["no-such-task".into()]), Err(StoreError::NotFound));
            assert_eq!(s.cancel("0000", &root, &[]), Err(StoreError::NotFound), "another account's root");
            let outcomes: Vec<CancelOutcome> = s.cancel(&acct, &root, &[]).unwrap().into_iter().map(|(.., o)| o).collect();
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
            assert!(!s.has_rollback(&ids[3]).unwrap(), "a verified repair is left as it is");
            // A second cancel changes nothing more.
            let again: Vec<CancelOutcome> = s.cancel(&acct, &root, &[]).unwrap().into_iter().map(|(.., o)| o).collect();
            assert_eq!(again, [O::Unchanged; 4]);
        }
    }
}
