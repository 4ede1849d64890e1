//! Auto-remediation: after each check run, each rule of its account repairs the instances
//! failing its item, through the store's ordinary submission (approval, quota and limits
//! apply; its tasks' submitter is `auto:<RuleId>`). An instance where a person rolled back an
//! earlier automatic repair of the item is left alone. Each rule's action is recorded in the
//! audit trail, with what it left alone and why.

use model::{DimensionType, RunStatus, TaskType};
use serde_json::json;
use store::{AuditEntry, AuditFilter, AutoRule, CheckRun, NewTask, StoreError, Submission, SubmitOutcome};

use crate::Engine;

impl Engine {
    /// Acts on every check run that ended since the last look (each run once, on any node);
    /// how many rules acted. A rule that fails is logged and the others go on.
    pub(crate) fn auto_remediate_ended_runs(&self) -> store::Result<usize> {
        let mut acted = 0;
        while let Some(run) = self.store.claim_ended_run()? {
            // A run that did not complete says nothing reliable about what fails.
            if run.status != RunStatus::Completed {
                continue;
            }
            for rule in self.store.auto_rules(&run.account_id)? {
                // Only what the run checked: its items (none named: all of them) and, when it
                // named instances, those.
                if !run.check_ids.is_empty() && !run.check_ids.contains(&rule.check_id) {
                    continue;
                }
                match self.apply_rule(&run, &rule) {
                    Ok(true) => acted += 1,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(rule = %rule.id, run = %run.id, error = %e, "an auto-remediation rule could not act")
                    }
                }
            }
        }
        Ok(acted)
    }

    /// Submits the repairs a rule calls for after `run`; whether it had anything to do.
    fn apply_rule(&self, run: &CheckRun, rule: &AutoRule) -> store::Result<bool> {
        let account_id = &run.account_id;
        let Some(check) = self.catalog.get(rule.check_id) else { return Ok(false) };
        let mut found = self.store.auto_candidates(account_id, rule)?;
        if !run.instance_pks.is_empty() {
            let checked: std::collections::HashSet<i64> = run.instance_pks.iter().copied().collect();
            found.repair.retain(|pk| checked.contains(pk));
        }
        if found.repair.is_empty() && found.left.is_empty() {
            return Ok(false);
        }
        let actor = store::auto_actor(&rule.id);
        let (mut outcome, mut root, mut submitted) = ("OK", None, 0);
        if !found.repair.is_empty() && !self.store.rule_creator_active(account_id, &rule.created_by)? {
            // A rule acts for the key that made it: disabled or deleted, it acts no more.
            outcome = "RuleCreatorKeyInactive";
        } else if !found.repair.is_empty() {
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
            let mut submission = Submission {
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
            let mut submitted_now = self.store.submit(account_id, &submission);
            // More than the account lets one submission touch: the first that many (in key
            // order) now, the rest at the next runs.
            if let Ok(SubmitOutcome::OverInstanceLimit { max, .. }) = submitted_now {
                if max >= 1 {
                    submission.tasks.truncate(max as usize);
                    submission.root_id = store::new_id(16);
                    submitted_now = self.store.submit(account_id, &submission);
                }
            }
            outcome = match submitted_now {
                Ok(SubmitOutcome::Created(n) | SubmitOutcome::AwaitingApproval(n)) => {
                    (root, submitted) = (Some(submission.root_id.clone()), n);
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
        let what = json!({
            "RuleId": rule.id, "CheckId": rule.check_id, "Candidates": found.repair.len(), "Instances": submitted,
            "LeftAlone": left,
        });
        // Said once: a run that changes nothing of what the rule last recorded (the same
        // refusal, the same instances left alone) adds no record.
        if submitted == 0 && self.last_record_says(account_id, &actor, outcome, &what)? {
            return Ok(false);
        }
        let mut params = what;
        params["RunId"] = json!(run.id);
        params["RootTaskId"] = json!(root);
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
        tracing::info!(rule = %rule.id, check = rule.check_id, instances = submitted, left = found.left.len(), outcome, "auto-remediation");
        Ok(true)
    }

    /// Whether the rule's last record says `outcome` and `what` (the run and root aside).
    fn last_record_says(
        &self,
        account_id: &str,
        actor: &str,
        outcome: &str,
        what: &serde_json::Value,
    ) -> store::Result<bool> {
        let filter = AuditFilter { actor: Some(actor.to_string()), limit: 1, ..Default::default() };
        let (last, _) = self.store.list_audit(account_id, &filter)?;
        Ok(last.first().is_some_and(|r| {
            let mut said: serde_json::Value = serde_json::from_str(&r.entry.params).unwrap_or_default();
            if let serde_json::Value::Object(map) = &mut said {
                map.remove("RunId");
                map.remove("RootTaskId");
            }
            r.entry.outcome == outcome && &said == what
        }))
    }
}
