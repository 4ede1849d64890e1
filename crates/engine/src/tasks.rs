//! Driving one task through the state machine. Each status is one step; each step ends in one
//! store transition. A step interrupted by a crash runs again under the next lease: backup is
//! re-taken only while nothing has been changed (IN_BACKUP), and a repair interrupted in
//! REPAIRING is re-applied on top of the snapshot taken before the first change.

use catalog::{live_differences, CheckDef, Outcome};
use connectors::{Connector, ConnectorError};
use model::{
    Apply, Change, ConnectorOp, Document, LiveReader, OpOutput, Snapshot, TaskStatus, TaskType, LIVE, LIVE_SYSTEM,
};
use store::{Claimed, StoreError, TaskRow, Transition};

use crate::assess::live_unread;
use crate::Engine;

use TaskStatus::*;

struct Ctx<'a> {
    claimed: &'a Claimed,
    check: &'a CheckDef,
    connector: &'a dyn Connector,
    change: Change,
}

impl Engine {
    /// Runs a claimed task until it is terminal or its lease is lost.
    pub(crate) fn drive(&self, claimed: Claimed) {
        let task = &claimed.task;
        let span =
            tracing::info_span!("task", task = %task.id, check = task.check_id, instance = %task.instance.instance_id);
        let _g = span.enter();
        let held = self.hold(&claimed);
        let outcome = self.try_drive(&claimed);
        drop(held);
        // Its end may have released tasks waiting for the same files.
        self.wake();
        match outcome {
            Ok(()) => {}
            Err(StoreError::LeaseLost) => {
                tracing::warn!(stage = "transition", "lease lost; another worker has the task")
            }
            Err(e) => {
                tracing::error!(error = %e, stage = "transition", "task step failed; it will be retried when its lease expires")
            }
        }
    }

    /// Ends the task in the failure status of `from`, or, for a transient error while leases
    /// remain, leaves it in `from` (returned unchanged) to be retried when the lease expires.
    pub(crate) fn fail(&self, claimed: &Claimed, from: TaskStatus, e: &ConnectorError) -> store::Result<TaskStatus> {
        metrics::global().connector_errors.inc(&[&claimed.task.instance.connector, e.code]);
        if e.retryable && claimed.task.attempts < self.config.max_attempts {
            tracing::warn!(code = e.code, error = %e.message, status = %from, attempt = claimed.task.attempts,
                "transient failure; the step is retried when the lease expires");
            return Ok(from);
        }
        // The failure status may be more than one edge away (RepairSuccess → Verifying → Unverified).
        let Some((&to, through)) = from.failure_path().split_last() else {
            // Terminal already, or a status no worker runs (a claim never returns one).
            tracing::error!(code = e.code, error = %e.message, status = %from, "a task in this status cannot be failed");
            return Ok(from);
        };
        let mut at = from;
        for &step in through {
            self.store.transition(claimed, at, step, Transition::default())?;
            at = step;
        }
        tracing::warn!(code = e.code, error = %e.message, from = %from, to = %to, "task failed");
        self.store.transition(
            claimed,
            at,
            to,
            Transition { error: Some((e.code, &e.message)), freed: e.freed, ..Default::default() },
        )?;
        Ok(to)
    }

    fn try_drive(&self, claimed: &Claimed) -> store::Result<()> {
        let task = &claimed.task;
        let mut status = task.status;
        // The item as its account set it: a verification judges by the account's thresholds.
        let check = self.account_check(&task.instance.account_id, task.check_id)?;
        let Some(check) = check.as_deref() else {
            self.fail(claimed, status, &fatal::check_not_found())?;
            return Ok(());
        };
        let Some(connector) = self.connector(&task.instance.connector) else {
            self.fail(
                claimed,
                status,
                &ConnectorError::new("ConnectorNotFound", format!("no connector for {}", task.instance.connector)),
            )?;
            return Ok(());
        };
        // Decoded strictly: a repair run without the values it was given could expose the
        // very thing it was meant to close.
        let params = match &task.params {
            Ok(params) => params,
            Err(text) => {
                let change = Change { steps: Vec::new(), effect: check.effect() };
                return self.give_up(claimed, connector.as_ref(), &change, status, &fatal::corrupt_params(text));
            }
        };
        let ctx = Ctx { claimed, check, connector: connector.as_ref(), change: check.change(params) };
        if task.attempts > self.config.max_attempts && !status.is_terminal() {
            let e = fatal::too_many_attempts(task.attempts);
            return self.give_up(claimed, connector.as_ref(), &ctx.change, status, &e);
        }
        while !status.is_terminal() {
            let started = std::time::Instant::now();
            let next = self.step(&ctx, status);
            metrics::global().step_seconds.observe(&[ctx.connector.kind()], started.elapsed());
            let next = next?;
            if next == status {
                return Ok(()); // deferred: a transient failure, retried under the next lease
            }
            status = next;
        }
        tracing::info!(status = %status, "task finished");
        Ok(())
    }

    /// Ends a task that cannot go on, whatever its step. A change may be half made in
    /// REPAIRING: the snapshot is put back first. If that cannot be done now (the files do not
    /// answer), the task is not ended: ending it would release the changes queued behind it
    /// while this one may still be in progress. It is tried again under the next lease.
    fn give_up(
        &self,
        claimed: &Claimed,
        connector: &dyn Connector,
        change: &Change,
        status: TaskStatus,
        e: &ConnectorError,
    ) -> store::Result<()> {
        let task = &claimed.task;
        if status == Repairing {
            let snap = self.store.get_snapshot(&task.id)?;
            if let Err(e) = self.target(&task.instance).and_then(|target| connector.restore(&target, change, &snap)) {
                if e.retryable {
                    tracing::warn!(code = e.code, error = %e.message, "the snapshot could not be put back yet; the task waits for the next lease");
                    return Ok(());
                }
            }
        }
        self.fail(claimed, status, e)?;
        Ok(())
    }

    /// The snapshot a step works from: a repair's own, or for a rollback its repair's. An empty
    /// one is an error: nothing is changed, or restored, without a backup.
    fn snapshot_of(&self, task: &TaskRow) -> store::Result<Result<Snapshot, ConnectorError>> {
        let id = match task.kind {
            TaskType::Repair => task.id.as_str(),
            TaskType::Rollback => task.repair_task_id.as_deref().unwrap_or_default(),
        };
        let snap = self.store.get_snapshot(id)?;
        Ok(if snap.items.is_empty() {
            Err(ConnectorError::new("BackUpMissing", "no snapshot was stored; nothing is changed without one"))
        } else {
            Ok(snap)
        })
    }

    /// What the step of `status` needs: a transition alone, the connector's work, or to fail.
    pub(crate) fn need(&self, task: &TaskRow, status: TaskStatus) -> store::Result<Need> {
        let op = |snapshot: Result<Snapshot, ConnectorError>, op: fn(Snapshot) -> ConnectorOp| match snapshot {
            Ok(snapshot) => Need::Op(op(snapshot)),
            Err(e) => Need::Fail(e),
        };
        Ok(match status {
            Init => Need::Move(InBackup),
            InBackup => Need::Op(ConnectorOp::Backup),
            BackedUp => Need::Move(Repairing),
            Repairing => op(self.snapshot_of(task)?, |snapshot| ConnectorOp::Apply { snapshot }),
            RepairSuccess => Need::Move(RepairSuccessVerifying),
            RepairSuccessVerifying => Need::Op(ConnectorOp::Fetch),
            RollBackInit => {
                // Submission refused this rollback while a later change of the same file stood;
                // one queued ahead of it may since have failed to be rolled back.
                let repair = task.repair_task_id.as_deref().unwrap_or_default();
                match self.store.standing_change_after(repair, &task.id)? {
                    Some(newer) => Need::Fail(ConnectorError::new(
                        "RollbackNotLatest",
                        format!("the later repair {newer} of the same files still stands; roll it back first"),
                    )),
                    None => Need::Move(RollBacking),
                }
            }
            RollBacking => op(self.snapshot_of(task)?, |snapshot| ConnectorOp::Restore { snapshot }),
            RollBacked => Need::Move(RollBackVerifying),
            RollBackVerifying => op(self.snapshot_of(task)?, |snapshot| ConnectorOp::MatchesAndFetch { snapshot }),
            terminal => Need::Move(terminal),
        })
    }

    /// Does the work of `status` here, through the instance's connector, and writes the
    /// transition; returns the new status.
    fn step(&self, ctx: &Ctx, status: TaskStatus) -> store::Result<TaskStatus> {
        if status.is_terminal() {
            return Ok(status);
        }
        match self.need(&ctx.claimed.task, status)? {
            Need::Move(to) => self.move_to(ctx.claimed, status, to, Transition::default()),
            Need::Fail(e) => self.fail(ctx.claimed, status, &e),
            Need::Op(op) => {
                let out = self
                    .target(&ctx.claimed.task.instance)
                    .and_then(|target| connectors::execute(ctx.connector, &target, &ctx.change, op));
                self.conclude(ctx.claimed, ctx.check, status, out)
            }
        }
    }

    pub(crate) fn move_to(
        &self,
        claimed: &Claimed,
        from: TaskStatus,
        to: TaskStatus,
        extra: Transition,
    ) -> store::Result<TaskStatus> {
        self.store.transition(claimed, from, to, extra)?;
        Ok(to)
    }

    /// Ends a verification in `to`, with why it is not verified (if so), the instance's result
    /// as read, and what was read.
    fn end_verification(
        &self,
        claimed: &Claimed,
        from: TaskStatus,
        to: TaskStatus,
        error: Option<(&str, &str)>,
        update: &store::ResultUpdate,
        verification: &str,
    ) -> store::Result<TaskStatus> {
        let extra = Transition { error, result: Some(update), verification: Some(verification), ..Default::default() };
        self.move_to(claimed, from, to, extra)
    }

    /// Writes the transition that the outcome of the step of `status` calls for (wherever the
    /// connector's work ran); returns the new status.
    pub(crate) fn conclude(
        &self,
        claimed: &Claimed,
        check: &CheckDef,
        status: TaskStatus,
        out: Result<OpOutput, ConnectorError>,
    ) -> store::Result<TaskStatus> {
        let task = &claimed.task;
        let out = match out {
            Ok(out) => out,
            Err(e) => return self.fail(claimed, status, &e),
        };
        let with_snapshot = |snapshot| Transition { snapshot: Some(snapshot), ..Default::default() };
        match (status, out) {
            (InBackup, OpOutput::Snapshot { snapshot }) => {
                self.move_to(claimed, status, BackedUp, with_snapshot(&snapshot))
            }
            (Repairing, OpOutput::Snapshot { snapshot }) => {
                self.move_to(claimed, status, RepairSuccess, with_snapshot(&snapshot))
            }
            (RepairSuccessVerifying, OpOutput::Document { document }) => {
                let (outcome, update) = self.evaluate_doc(check, &task.instance, &document, &task.id);
                let verification = verification(check, &document);
                let failure = match outcome {
                    Outcome::Pass => live_unread(check, &document).map(|msg| ("LiveValueUnread", msg)),
                    Outcome::NotPass(keys) if keys.iter().all(|k| k.starts_with(LIVE)) => Some((
                        "LiveValueMismatch",
                        format!(
                            "the file was changed, but the value in effect is still the old one: {}",
                            live_differences(check, &document).join("; ")
                        ),
                    )),
                    Outcome::NotPass(keys) => {
                        Some(("VerifyFailed", format!("the check still fails after the repair: {}", keys.join(", "))))
                    }
                    Outcome::NotApplicable => {
                        Some(("VerifyFailed", "the check no longer applies to the instance".to_string()))
                    }
                };
                let (to, error) = match &failure {
                    None => (RepairSuccessVerified, None),
                    Some((code, msg)) => (RepairSuccessUnverified, Some((*code, msg.as_str()))),
                };
                self.end_verification(claimed, status, to, error, &update, &verification)
            }
            (RollBacking, OpOutput::Done) => self.move_to(claimed, status, RollBacked, Transition::default()),
            (RollBackVerifying, OpOutput::Matches { matches, document }) => {
                // Whatever the files say now is the instance's result again.
                let (_, update) = self.evaluate_doc(check, &task.instance, &document, &task.id);
                let verification = verification(check, &document);
                let (to, error) = if matches {
                    (RollBackVerified, None)
                } else {
                    let msg =
                        "the configuration (or the value in effect) does not match the snapshot after the restore";
                    (RollBackUnverified, Some(("RollbackVerifyFailed", msg)))
                };
                self.end_verification(claimed, status, to, error, &update, &verification)
            }
            (status, out) => {
                let got = serde_json::to_value(&out).ok().and_then(|v| v.get("output").cloned()).unwrap_or_default();
                let e = ConnectorError::new(
                    "UnexpectedOutcome",
                    format!("the step of {status} cannot conclude from a `{}` outcome", got.as_str().unwrap_or("?")),
                );
                self.fail(claimed, status, &e)
            }
        }
    }
}

/// What a verification read, and how the change took effect, in words for the task.
fn verification(check: &CheckDef, doc: &Document) -> String {
    let Some(effect) = check.effect() else {
        return "the resource's configuration, read back through its API".into();
    };
    if !doc.contains_key(LIVE_SYSTEM) {
        return "the file only: the instance is not a live system, so no live step ran \
                (nothing was validated by the service, reloaded or read in effect)"
            .into();
    }
    let applied = match effect.apply {
        Apply::ReloadSshd => "validated with sshd -t, then sshd reloaded",
        Apply::SysctlWrite => "written to /proc/sys",
        Apply::RedisConfigSet => "set in the running Redis with CONFIG SET",
        Apply::NextUse => "takes effect when it is next read (login.defs: by the account tools, for accounts and passwords changed from now on; PAM files: at the next login; modprobe.d: at the module's next load, a module loaded now staying loaded; journald.conf and auditd.conf: when the daemon restarts)",
        Apply::Immediate => "took effect at once",
    };
    let read = match effect.live {
        Some(LiveReader::SshdEffective) => "the file and the value in effect (sshd -T)",
        Some(LiveReader::ProcSys) => "the file and the value in effect (/proc/sys)",
        Some(LiveReader::RedisConfigGet) => "the file and the value in effect (CONFIG GET)",
        None => "the file",
    };
    format!("{applied}; verified: {read}")
}

/// Why a task cannot go on, the same whoever drives it (a worker, or the engine for an agent).
pub(crate) mod fatal {
    use connectors::ConnectorError;

    /// The task's check item is no longer in the catalog.
    pub fn check_not_found() -> ConnectorError {
        ConnectorError::new("CheckNotFound", "the check item is no longer in the catalog")
    }

    /// The task's stored repair parameters cannot be decoded (`text`: the decoder's error).
    pub fn corrupt_params(text: &str) -> ConnectorError {
        ConnectorError::new(
            "TaskRecordCorrupt",
            format!("the task's stored repair parameters cannot be read: {text:.200}"),
        )
    }

    /// The task was claimed `attempts` times (interrupted one time fewer).
    pub fn too_many_attempts(attempts: i64) -> ConnectorError {
        ConnectorError::new("TooManyAttempts", format!("the task was interrupted {} times", attempts - 1))
    }
}

/// What the step of a status needs.
pub(crate) enum Need {
    /// Only the transition to this status.
    Move(TaskStatus),
    /// The connector's work, then [`Engine::conclude`].
    Op(ConnectorOp),
    /// The task cannot go on.
    Fail(ConnectorError),
}
