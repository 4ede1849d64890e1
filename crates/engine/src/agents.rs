//! The server's half of work done by agents. An agent polls for its own instance; the engine
//! leases it a task (fenced, as a worker's claim is), moves the task through every step that
//! needs no connector, and hands the agent the [`ConnectorOp`] of the first step that does.
//! The agent runs it on its root and reports the outcome, which goes through the same
//! [`Engine::conclude`] as a worker's. Check runs hand agents their instance's details; the
//! agent reads its configuration and the engine evaluates it with the server's catalog.

use connectors::ConnectorError;
use model::{ConnectorOp, Document, OpOutput, PlannedChange, RepairValues, TaskStatus, TaskType};
use store::{CheckRun, CheckRunDetail, Claimed, Instance, PreviewRequest, StoreError};

use crate::preview::preview_answer_json;
use crate::tasks::{fatal, Need};
use crate::Engine;

use TaskStatus::{Repairing, RollBacking};

/// One piece of work for an agent.
#[derive(Clone, Debug)]
pub enum AgentWork {
    /// A step of a task, under the lease `fence`.
    Task {
        /// The task.
        task_id: String,
        /// The lease it is done under; its report must carry it.
        fence: i64,
        /// The status whose step this is.
        status: TaskStatus,
        /// Repair or rollback.
        kind: TaskType,
        /// The check item (the agent renders the steps from its own catalog).
        check_id: i64,
        /// The values the repair runs with.
        params: RepairValues,
        /// What the step asks of the host connector.
        op: ConnectorOp,
    },
    /// Read the configuration for a check run.
    Check {
        /// The run's detail of this instance.
        detail_id: String,
    },
    /// Plan a repair on the instance and say what it would change, changing nothing.
    Preview {
        /// The request; the answer names it.
        preview_id: String,
        /// The check item (the agent renders the steps from its own catalog).
        check_id: i64,
        /// The values the repair would run with.
        params: RepairValues,
    },
}

/// Why an agent's report was not taken.
#[derive(Debug)]
pub enum ReportRefusal {
    /// No such task or detail of the agent's own instance.
    NotYours,
    /// The lease the report was made under has expired or been taken over, or the task has
    /// moved on: the report is stale and nothing is written.
    Stale,
    /// The store failed.
    Store(StoreError),
}

impl From<StoreError> for ReportRefusal {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::LeaseLost => ReportRefusal::Stale,
            e => ReportRefusal::Store(e),
        }
    }
}

/// An agent as the actor of a task's history.
fn agent_actor(agent_id: &str) -> String {
    format!("agent:{agent_id}")
}

impl Engine {
    /// The next piece of work for the agent of `instance`: a preview first (someone waits for
    /// it), then a step of one of its tasks, else its part of a running check run; None when
    /// there is nothing to do. An agent too old to preview (`previews` false) has the
    /// requests of its instance answered for it with `AgentVersionUnsupported`.
    pub fn agent_next(&self, instance: &Instance, agent_id: &str, previews: bool) -> store::Result<Option<AgentWork>> {
        if !self.store.agent_has_work(instance.pk)? {
            return Ok(None);
        }
        while let Some(asked) = self.store.next_preview(instance.pk)? {
            if previews {
                let PreviewRequest { id, check_id, params } = asked;
                return Ok(Some(AgentWork::Preview { preview_id: id, check_id, params }));
            }
            let refused = ConnectorError::new(
                "AgentVersionUnsupported",
                "the instance's agent is too old to preview a change; upgrade it to preview",
            );
            self.store.answer_preview(instance.pk, &asked.id, &preview_answer_json(&Err(refused)))?;
        }
        while let Some(mut claimed) = self.store.claim_agent_task(instance.pk, self.config.lease_ms)? {
            claimed.by = agent_actor(agent_id);
            if let Some(work) = self.advance(claimed)? {
                return Ok(Some(work));
            }
        }
        Ok(self.store.agent_detail(instance.pk)?.map(|(_, d)| AgentWork::Check { detail_id: d.id }))
    }

    /// Takes an agent's report of a task's step and, if the task goes on, returns its next step
    /// under the same lease (renewed).
    pub fn agent_report(
        &self,
        instance: &Instance,
        agent_id: &str,
        task_id: &str,
        fence: i64,
        status: TaskStatus,
        out: Result<OpOutput, ConnectorError>,
    ) -> Result<Option<AgentWork>, ReportRefusal> {
        let task = self.store.get_task(&instance.account_id, task_id)?.ok_or(ReportRefusal::NotYours)?;
        if task.instance.pk != instance.pk || !task.instance.via_agent() {
            return Err(ReportRefusal::NotYours);
        }
        if task.status != status || !self.store.lease_held(task_id, fence)? {
            return Err(ReportRefusal::Stale);
        }
        let claimed = Claimed { task, fence, by: agent_actor(agent_id) };
        let check = self.account_check(&claimed.task.instance.account_id, claimed.task.check_id)?;
        let Some(check) = check.as_deref() else {
            self.fail(&claimed, status, &fatal::check_not_found())?;
            return Ok(None);
        };
        // No wake-up: the only work a step's end can release (the changes queued behind it on
        // the same files) is this agent's own, which it asks for next.
        let next = self.conclude(&claimed, check, status, out)?;
        if next == status || next.is_terminal() {
            return Ok(None); // retried under a later lease, or done
        }
        self.store.extend_lease(&claimed, self.config.lease_ms)?;
        let mut claimed = claimed;
        claimed.task.status = next;
        Ok(self.advance(claimed)?)
    }

    /// Takes an agent's answer to a preview request of its instance.
    pub fn agent_preview(
        &self,
        instance: &Instance,
        preview_id: &str,
        answer: Result<Vec<PlannedChange>, ConnectorError>,
    ) -> Result<(), ReportRefusal> {
        match self.store.answer_preview(instance.pk, preview_id, &preview_answer_json(&answer))? {
            true => Ok(()),
            false => Err(ReportRefusal::NotYours),
        }
    }

    /// Takes an agent's reading of its configuration for a check run's detail.
    pub fn agent_check(
        &self,
        instance: &Instance,
        detail_id: &str,
        doc: Result<Document, ConnectorError>,
    ) -> Result<(), ReportRefusal> {
        let (run, detail) = self.store.detail_by_id(detail_id)?.ok_or(ReportRefusal::NotYours)?;
        if detail.instance_pk != instance.pk || run.account_id != instance.account_id {
            return Err(ReportRefusal::NotYours);
        }
        if !detail.status.is_unfinished() {
            return Err(ReportRefusal::Stale);
        }
        self.finish_agent_detail(&run, instance, &detail, doc)?;
        Ok(())
    }

    fn finish_agent_detail(
        &self,
        run: &CheckRun,
        instance: &Instance,
        detail: &CheckRunDetail,
        doc: Result<Document, ConnectorError>,
    ) -> store::Result<()> {
        let checks = self.account_checks(&run.account_id)?;
        let (outcome, _) = self.assess_one(run, &checks, Some(instance), detail, Some(doc));
        self.store.finish_details(run, vec![outcome])
    }

    /// Moves a leased agent task through the steps that need no connector; returns the step
    /// its agent must do next, or None when the task has ended (or waits for a later lease).
    fn advance(&self, claimed: Claimed) -> store::Result<Option<AgentWork>> {
        let task = &claimed.task;
        let mut status = task.status;
        let check = self.catalog.get(task.check_id);
        let fatal = match (&check, &task.params) {
            (None, _) => Some(fatal::check_not_found()),
            (_, Err(text)) => Some(fatal::corrupt_params(text)),
            // The agent resumes an interrupted change from its snapshot, however often it was
            // interrupted: giving up halfway would leave its server half-changed.
            _ if task.attempts > self.config.max_attempts && !matches!(status, Repairing | RollBacking) => {
                Some(fatal::too_many_attempts(task.attempts))
            }
            _ => None,
        };
        if let Some(e) = fatal {
            if matches!(status, Repairing | RollBacking) {
                tracing::error!(task = %task.id, code = e.code, error = %e.message, "an agent's task cannot go on halfway through a change; it waits");
                return Ok(None);
            }
            self.fail(&claimed, status, &e)?;
            return Ok(None);
        }
        let params = task.params.clone().unwrap_or_default();
        loop {
            if status.is_terminal() {
                return Ok(None);
            }
            match self.need(task, status)? {
                Need::Move(to) => status = self.move_to(&claimed, status, to, Default::default())?,
                Need::Fail(e) => {
                    let to = self.fail(&claimed, status, &e)?;
                    if to == status {
                        return Ok(None);
                    }
                    status = to;
                }
                Need::Op(op) => {
                    return Ok(Some(AgentWork::Task {
                        task_id: task.id.clone(),
                        fence: claimed.fence,
                        status,
                        kind: task.kind,
                        check_id: task.check_id,
                        params,
                        op,
                    }))
                }
            }
        }
    }

    /// Fails the tasks of agents not heard from for the deadline that have not changed
    /// anything yet (`AgentOffline`); returns how many.
    pub fn fail_offline_agent_tasks(&self) -> store::Result<usize> {
        let mut n = 0;
        while let Some(claimed) =
            self.store.claim_stale_agent_task(self.config.agent_deadline_ms, self.config.lease_ms)?
        {
            let e = ConnectorError::new(
                "AgentOffline",
                format!(
                    "the instance's agent was not heard from for {} s; nothing was changed",
                    self.config.agent_deadline_ms / 1000
                ),
            );
            match self.fail(&claimed, claimed.task.status, &e) {
                Ok(_) | Err(StoreError::LeaseLost) => n += 1,
                Err(e) => return Err(e),
            }
        }
        if n > 0 {
            self.wake();
        }
        Ok(n)
    }
}
