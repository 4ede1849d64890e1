//! Auto-remediation: after each check run, each rule of its account repairs the instances
//! failing its item, through the store's ordinary submission (approval, quota and limits
//! apply; its tasks' submitter is `auto:<RuleId>`). An instance where a person rolled back an
//! earlier automatic repair of the item is left alone. Each rule's action is recorded in the
//! audit trail, with what it left alone and why.

use model::{DimensionType, TaskType};
use serde_json::json;
use store::{AuditEntry, AutoRule, NewTask, StoreError, Submission, SubmitOutcome};

use crate::Engine;

impl Engine {
    /// Acts on every check run that ended since the last look (each run once, on any node);
    /// how many rules acted.
    pub(crate) fn auto_remediate_ended_runs(&self) -> store::Result<usize> {
        let mut acted = 0;
        while let Some((run_id, account_id)) = self.store.claim_ended_run()? {
            for rule in self.store.auto_rules(&account_id)? {
                if self.apply_rule(&account_id, &run_id, &rule)? {
                    acted += 1;
                }
            }
        }
        Ok(acted)
    }

    /// Submits the repairs a rule calls for now; whether it had anything to do.
    fn apply_rule(&self, account_id: &str, run_id: &str, rule: &AutoRule) -> store::Result<bool> {
        let Some(check) = self.catalog.get(rule.check_id) else { return Ok(false) };
        let found = self.store.auto_candidates(account_id, rule)?;
        if found.repair.is_empty() && found.left.is_empty() {
            return Ok(false);
        }
        let actor = store::auto_actor(&rule.id);
        let (mut outcome, mut root) = ("OK", None);
        if !found.repair.is_empty() {
            let scope = self
                .connector(&check.asset)
                .map_or_else(|| connectors::WHOLE_INSTANCE.to_string(), |c| c.scope(&check.render_steps(&rule.params)));
            let tasks = found
                .repair
                .iter()
                .map(|pk| NewTask {
                    id: store::task_id(),
                    instance_pk: *pk,
                    repair_task_id: None,
                    params: rule.params.clone(),
                })
                .collect();
            let submission = Submission {
                root_id: store::new_id(16),
                check_id: rule.check_id,
                kind: TaskType::Repair,
                dimension: DimensionType::Instance,
                tasks,
                selection: None,
                scope,
                limits: rule.limits,
                submitted_by: actor.clone(),
            };
            outcome = match self.store.submit(account_id, &submission) {
                Ok(SubmitOutcome::Created(_) | SubmitOutcome::AwaitingApproval(_)) => {
                    root = Some(submission.root_id.clone());
                    "OK"
                }
                Ok(SubmitOutcome::TrialUnauthorized) => "ActionTrialUnauthorized",
                Ok(SubmitOutcome::QuotaExhausted) => "AuthorizationExhaust",
                Ok(SubmitOutcome::OverInstanceLimit { .. }) => "InstanceLimitExceeded",
                // A task of the item started meanwhile: the next run tries again.
                Err(StoreError::Conflict) => "RepairTaskConflict",
                Err(e) => return Err(e),
            };
            self.wake();
        }
        let left: Vec<serde_json::Value> =
            found.left.iter().map(|(id, why)| json!({"InstanceId": id, "Reason": why})).collect();
        let params = json!({
            "RuleId": rule.id, "CheckId": rule.check_id, "RunId": run_id, "RootTaskId": root,
            "Instances": found.repair.len(), "LeftAlone": left,
        });
        let entry = AuditEntry {
            account_id: account_id.to_string(),
            at_ms: store::now_ms(),
            actor,
            source: "posture".into(),
            action: "AutoRemediation".into(),
            params: params.to_string(),
            outcome: outcome.into(),
            request_id: String::new(),
        };
        self.store.record_audit(&entry, None)?;
        tracing::info!(rule = %rule.id, check = rule.check_id, instances = found.repair.len(), left = found.left.len(), outcome, "auto-remediation");
        Ok(true)
    }
}
