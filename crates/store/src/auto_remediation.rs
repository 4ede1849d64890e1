//! Auto-remediation rules: after each check run of an account, each of its rules repairs the
//! instances failing the rule's item (in the rule's selection, when it names one), through the
//! same submission as anyone's (so approval, quota and limits apply). An instance whose earlier
//! automatic repair of the item a person rolled back is never repaired again by a rule: the
//! service does not fight a human. What to do is the engine's; the store keeps the rules,
//! hands out each finished run once, and finds the candidates.

use model::{FailureThreshold, RepairValues};

use crate::sql::{args, Conn};
use crate::tasks::{RootLimits, SERVICE_ACTOR};
use crate::{new_id, now_ms, Result, Store, StoreError};

/// The submitter a rule's repairs are recorded with: `auto:<RuleId>`.
pub fn auto_actor(rule_id: &str) -> String {
    format!("auto:{rule_id}")
}

/// A rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoRule {
    /// `ar-…`.
    pub id: String,
    /// The check item it repairs.
    pub check_id: i64,
    /// Only instances of the selection bound to this RelationKey (None: every instance).
    pub relation_key: Option<String>,
    /// The repair's values.
    pub params: RepairValues,
    /// The blast-radius settings of each submission.
    pub limits: RootLimits,
    /// Who created it.
    pub created_by: String,
    /// When (ms).
    pub created_ms: i64,
}

/// What a rule would repair now: the instances' keys, and those it leaves alone with why
/// (instance id, reason).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AutoCandidates {
    /// To repair.
    pub repair: Vec<i64>,
    /// Left alone: a person rolled back an earlier automatic repair of the item there.
    pub left: Vec<(String, String)>,
}

/// Auto-remediation rules.
pub trait AutoRemediations: Send + Sync {
    /// Adds a rule (its id in `rule.id` is ignored; the new one is returned).
    fn create_auto_rule(&self, account_id: &str, rule: &AutoRule) -> Result<AutoRule>;

    /// The account's rules, oldest first.
    fn auto_rules(&self, account_id: &str) -> Result<Vec<AutoRule>>;

    /// Deletes a rule; false if the account has none such.
    fn delete_auto_rule(&self, account_id: &str, id: &str) -> Result<bool>;

    /// A check run that has ended and not been acted on yet, marked as acted on. Runs of
    /// accounts without rules are marked without being handed out.
    fn claim_ended_run(&self) -> Result<Option<crate::CheckRun>>;

    /// The instances failing `rule`'s item now (not whitelisted, in its selection, with no
    /// task of the item under way), but those where a person decided otherwise, or where
    /// the rule's last repair failed (see [`LEFT_ALONE`]).
    fn auto_candidates(&self, account_id: &str, rule: &AutoRule) -> Result<AutoCandidates>;

    /// Whether the key that created a rule still exists and is enabled (a rule acts for it).
    fn rule_creator_active(&self, account_id: &str, key_id: &str) -> Result<bool>;
}

fn rule_from(r: &crate::sql::Row) -> Result<AutoRule> {
    let params: String = r.get(4)?;
    let threshold: Option<String> = r.get(5)?;
    Ok(AutoRule {
        id: r.get(0)?,
        check_id: r.get(2)?,
        relation_key: r.get(3)?,
        params: RepairValues::from_json(&params).map_err(|e| StoreError::Corrupt(format!("auto rule params: {e}")))?,
        limits: RootLimits {
            failure_threshold: match threshold {
                Some(t) => Some(
                    FailureThreshold::parse(&t)
                        .ok_or_else(|| StoreError::Corrupt(format!("auto rule failure threshold: {t}")))?,
                ),
                None => None,
            },
            max_concurrency: r.get(6)?,
            canary_count: r.get(7)?,
        },
        created_by: r.get(8)?,
        created_ms: r.get(9)?,
    })
}

const RULE_COLS: &str = "id, account_id, check_id, relation_key, params, failure_threshold, max_concurrency, canary_count, created_by, created_ms";

/// Why a rule leaves instance `i.pk` alone for item `?2` (NULL: it does not), the first that
/// holds of:
/// - a person (a key: not a rule, not the service) rolled back a repair of the item there
///   that was automatic, or made since the rule was created (`?5`);
/// - a person cancelled or rejected an automatic repair of the item there;
/// - the latest automatic repair of the item there failed (a person looks first: a rule does
///   not retry a failing change at every run).
const LEFT_ALONE: &str = "COALESCE(
      (SELECT 'a repair of it was rolled back by ' || br.submitted_by FROM tasks r
         JOIN root_tasks rr ON rr.id = r.root_id
         JOIN tasks b ON b.repair_task_id = r.id AND b.type = 'ROLLBACK'
         JOIN root_tasks br ON br.id = b.root_id
        WHERE r.account_id = ?1 AND r.check_id = ?2 AND r.instance_pk = i.pk AND r.type = 'REPAIR'
          AND (rr.submitted_by LIKE 'auto:%' OR b.created_ms >= ?5)
          AND br.submitted_by NOT LIKE 'auto:%' AND br.submitted_by <> ?3
        LIMIT 1),
      (SELECT 'an automatic repair of it was cancelled or rejected by ' || e.actor FROM tasks r
         JOIN root_tasks rr ON rr.id = r.root_id
         JOIN task_events e ON e.task_id = r.id AND e.status = 'CANCELLED'
        WHERE r.account_id = ?1 AND r.check_id = ?2 AND r.instance_pk = i.pk AND r.type = 'REPAIR'
          AND rr.submitted_by LIKE 'auto:%' AND e.actor NOT LIKE 'auto:%' AND e.actor <> ?3
        LIMIT 1),
      (SELECT 'its last automatic repair failed (' || r.status || ' ' || r.error_code || ')' FROM tasks r
         JOIN root_tasks rr ON rr.id = r.root_id
        WHERE r.account_id = ?1 AND r.check_id = ?2 AND r.instance_pk = i.pk AND r.type = 'REPAIR'
          AND rr.submitted_by LIKE 'auto:%'
          AND r.rowid = (SELECT MAX(l.rowid) FROM tasks l JOIN root_tasks lr ON lr.id = l.root_id
                          WHERE l.account_id = ?1 AND l.check_id = ?2 AND l.instance_pk = i.pk AND l.type = 'REPAIR'
                            AND lr.submitted_by LIKE 'auto:%')
          AND r.status IN ('FAIL', 'BACKUP_FAIL', 'REPAIR_FAIL', 'REPAIR_SUCCESS_UNVERIFIED')))";

/// The rule's selection as a term on `i` (its key is `?4`), and that key.
fn selection_filter(c: &Conn, account_id: &str, relation_key: &Option<String>) -> Result<(&'static str, String)> {
    // The term always names `?4`, so that it has a type on PostgreSQL.
    let Some(key) = relation_key else { return Ok(("AND ?4 = ''", String::new())) };
    let selection: Option<(String, String)> = c.query_opt(
        "SELECT selection_key, target_type FROM selections WHERE account_id = ? AND business_type = ?",
        args![account_id, key],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(match selection {
        // No selection is bound to it any more: the rule selects nothing.
        None => ("AND ?4 = 'none'", String::new()),
        Some((key, kind)) if kind == "all_instance" => ("AND ?4 <> ''", key),
        Some((key, _)) => {
            ("AND EXISTS (SELECT 1 FROM selection_targets t WHERE t.selection_key = ?4 AND t.instance_pk = i.pk)", key)
        }
    })
}

impl AutoRemediations for Store {
    fn create_auto_rule(&self, account_id: &str, rule: &AutoRule) -> Result<AutoRule> {
        let rule = AutoRule { id: format!("ar-{}", new_id(12)), created_ms: now_ms(), ..rule.clone() };
        let (account_id, row) = (account_id.to_string(), rule.clone());
        self.write(move |tx| {
            tx.execute(
                &format!("INSERT INTO auto_remediations ({RULE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                args![
                    &row.id,
                    &account_id,
                    row.check_id,
                    &row.relation_key,
                    row.params.to_json(),
                    row.limits.failure_threshold.map(|f| f.as_string()),
                    row.limits.max_concurrency,
                    row.limits.canary_count,
                    &row.created_by,
                    row.created_ms
                ],
            )?;
            Ok(())
        })?;
        Ok(rule)
    }

    fn auto_rules(&self, account_id: &str) -> Result<Vec<AutoRule>> {
        self.read(|c| {
            c.query(
                &format!("SELECT {RULE_COLS} FROM auto_remediations WHERE account_id = ? ORDER BY created_ms, id"),
                args![account_id],
                rule_from,
            )
        })
    }

    fn delete_auto_rule(&self, account_id: &str, id: &str) -> Result<bool> {
        let (account_id, id) = (account_id.to_string(), id.to_string());
        self.write(move |tx| {
            Ok(tx.execute("DELETE FROM auto_remediations WHERE account_id = ? AND id = ?", args![&account_id, &id])?
                == 1)
        })
    }

    fn claim_ended_run(&self) -> Result<Option<crate::CheckRun>> {
        // Looked for by every node every few seconds: a read first, so that an idle service
        // writes nothing.
        let any: bool = self.read(|c| {
            c.value("SELECT EXISTS (SELECT 1 FROM check_runs WHERE auto_remediated = 0 AND ended_ms > 0)", &[])
        })?;
        if !any {
            return Ok(None);
        }
        self.write(|tx| {
            tx.execute(
                "UPDATE check_runs SET auto_remediated = 1 WHERE auto_remediated = 0 AND ended_ms > 0
                   AND NOT EXISTS (SELECT 1 FROM auto_remediations a WHERE a.account_id = check_runs.account_id)",
                &[],
            )?;
            tx.query_opt(
                "UPDATE check_runs SET auto_remediated = 1
                  WHERE id = (SELECT id FROM check_runs WHERE auto_remediated = 0 AND ended_ms > 0 ORDER BY ended_ms LIMIT 1)
                    AND auto_remediated = 0
                  RETURNING id, account_id",
                &[],
                |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)),
            )
        })
        .and_then(|claimed| match claimed {
            Some((id, account_id)) => crate::CheckRuns::get_run(self, &account_id, &id),
            None => Ok(None),
        })
    }

    fn rule_creator_active(&self, account_id: &str, key_id: &str) -> Result<bool> {
        self.read(|c| {
            c.value(
                "SELECT EXISTS (SELECT 1 FROM access_keys WHERE id = ? AND account_id = ? AND enabled = TRUE)",
                args![key_id, account_id],
            )
        })
    }

    fn auto_candidates(&self, account_id: &str, rule: &AutoRule) -> Result<AutoCandidates> {
        self.read(|c| {
            let (in_selection, selection_key) = selection_filter(c, account_id, &rule.relation_key)?;
            let sql = format!(
                "SELECT i.pk, i.instance_id, {LEFT_ALONE}{} AND i.freed = 0
                    AND NOT {} {in_selection}
                    AND NOT EXISTS (SELECT 1 FROM tasks x WHERE x.instance_pk = i.pk AND x.check_id = ?2 AND {})
                  ORDER BY i.pk",
                crate::results::failing_from(c, "?6", "?7"),
                crate::whitelists::whitelisted_sql("r.account_id", "r.check_id", "r.instance_pk"),
                crate::status_in("x.status", |s| !s.is_terminal())
            );
            let rows: Vec<(i64, String, Option<String>)> =
                crate::results::in_failing_blocks(c, account_id, rule.check_id, |first, next| {
                    let a =
                        args![account_id, rule.check_id, SERVICE_ACTOR, &selection_key, rule.created_ms, first, next];
                    c.query(&sql, a, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                })?;
            let mut out = AutoCandidates::default();
            for (pk, instance_id, undone_by) in rows {
                match undone_by {
                    None => out.repair.push(pk),
                    Some(why) => out.left.push((instance_id, why)),
                }
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use model::{RepairValues, TaskStatus::*, TaskType};

    use crate::conformance::host;
    use crate::testutil::store;
    use crate::*;

    fn walk(s: &Store, c: &Claimed, path: &[model::TaskStatus]) {
        for w in path.windows(2) {
            s.transition(c, w[0], w[1], Transition::default()).unwrap();
        }
    }

    crate::testutil::both_backends! {
        fn a_rule_leaves_alone_an_instance_where_a_person_undid_its_repair() {
            let (_p, s) = store();
            let acct = s.create_account("auto").unwrap().id;
            s.upsert_instances(&acct, &[host(0), host(1)]).unwrap();
            let pks: Vec<i64> = s.list_instances(&acct).unwrap().iter().map(|i| i.pk).collect();
            for pk in &pks {
                crate::conformance::record_result(&s, &acct, 1009, *pk, model::CheckStatus::NotPass);
            }
            let rule = s.create_auto_rule(&acct, &AutoRule {
                id: String::new(), check_id: 1009, relation_key: None, params: RepairValues::default(),
                limits: Default::default(), created_by: "LTAIadmin".into(), created_ms: 0,
            }).unwrap();
            assert_eq!(s.auto_rules(&acct).unwrap(), std::slice::from_ref(&rule));
            assert_eq!(s.auto_candidates(&acct, &rule).unwrap().repair, pks);

            // The rule repaired instance 0; a person rolled that repair back.
            let mut by_rule = crate::conformance::repair_of(1009, &pks[..1]);
            by_rule.submitted_by = auto_actor(&rule.id);
            s.submit(&acct, &by_rule).unwrap();
            assert_eq!(s.auto_candidates(&acct, &rule).unwrap().repair, pks[1..], "a task under way is not submitted again");
            let c = s.claim_task(60_000).unwrap().unwrap();
            walk(&s, &c, &[Init, InBackup, BackedUp, Repairing, RepairSuccess, RepairSuccessVerifying, RepairSuccessVerified]);
            let mut undo = crate::conformance::repair_of(1009, &pks[..1]);
            undo.kind = TaskType::Rollback;
            undo.tasks[0].repair_task_id = Some(by_rule.tasks[0].id.clone());
            undo.submitted_by = "LTAIperson".into();
            s.submit(&acct, &undo).unwrap();
            let c = s.claim_task(60_000).unwrap().unwrap();
            walk(&s, &c, &[RollBackInit, RollBacking, RollBacked, RollBackVerifying, RollBackVerified]);
            let found = s.auto_candidates(&acct, &rule).unwrap();
            assert_eq!(found.repair, pks[1..]);
            assert_eq!(found.left.len(), 1);
            assert!(found.left[0].1.contains("LTAIperson"), "{:?}", found.left);

            // The rule's repair of instance 1 failed: it is not tried again at every run.
            let mut again = crate::conformance::repair_of(1009, &pks[1..]);
            again.submitted_by = auto_actor(&rule.id);
            s.submit(&acct, &again).unwrap();
            let c = s.claim_task(60_000).unwrap().unwrap();
            walk(&s, &c, &[Init, InBackup, BackedUp, Repairing, RepairFail]);
            let found = s.auto_candidates(&acct, &rule).unwrap();
            assert_eq!((found.repair.len(), found.left.len()), (0, 2), "{found:?}");
            assert!(found.left[1].1.contains("last automatic repair failed"), "{:?}", found.left);

            // Each ended run is handed out once.
            assert!(s.claim_ended_run().unwrap().is_none());
            assert!(s.delete_auto_rule(&acct, &rule.id).unwrap());
            assert!(!s.delete_auto_rule(&acct, &rule.id).unwrap());
        }
    }
}
