//! What PreviewOperationTask reads and writes: the changes already under way that a new
//! change of an instance would meet, and the preview requests of instances reached through
//! their agents. A request waits for the agent's next poll (it is work like a task's step, and
//! comes first); the agent plans the change on its own root and answers; the API call that
//! asked reads the answer. Requests are short-lived: each new batch removes those older than a
//! minute.

use model::RepairValues;

use crate::sql::{args, Arg};
use crate::{new_id, now_ms, placeholders, Result, Store, StoreError};

/// How long a preview waits for the agents of its instances, and so how long a request is
/// offered to its agent (no one reads a later answer). Well under the official SDKs' 10-second
/// read timeout.
pub const PREVIEW_WAIT_MS: i64 = 5_000;

/// Requests a preview could not remove itself (its node stopped) are removed by the next batch
/// once this old.
const FORGET_AFTER_MS: i64 = 12 * PREVIEW_WAIT_MS;

/// A preview asked of an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreviewRequest {
    /// The request.
    pub id: String,
    /// The check item whose repair is previewed.
    pub check_id: i64,
    /// The values it would run with.
    pub params: RepairValues,
}

/// A change under way on an instance that a new change of it would meet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveChange {
    /// The instance.
    pub instance_pk: i64,
    /// The task.
    pub task_id: String,
    /// Its check item.
    pub check_id: i64,
}

/// Previews.
pub trait Previews: Send + Sync {
    /// The unfinished tasks of the account on `instance_pks` that a repair of `check_id`
    /// touching `scope` would meet (the same item: a conflict; the same scope, unless it waits
    /// for approval and so holds no queue: it would queue behind them), oldest first.
    fn changes_under_way(
        &self,
        account_id: &str,
        check_id: i64,
        scope: &str,
        instance_pks: &[i64],
    ) -> Result<Vec<ActiveChange>>;

    /// Asks the agents of `instance_pks` to preview the repair of `check_id` with `params`:
    /// one request per instance, their ids in the same order.
    fn request_previews(
        &self,
        account_id: &str,
        check_id: i64,
        params: &RepairValues,
        instance_pks: &[i64],
    ) -> Result<Vec<String>>;

    /// The oldest request of an instance not yet answered (nor older than [`PREVIEW_WAIT_MS`]).
    fn next_preview(&self, instance_pk: i64) -> Result<Option<PreviewRequest>>;

    /// Records the answer (JSON) to a request of this instance; false if it has no such
    /// request waiting (answered already, removed, or another instance's).
    fn answer_preview(&self, instance_pk: i64, id: &str, answer: &str) -> Result<bool>;

    /// The answers given so far to these requests of the account: (id, answer JSON).
    fn preview_answers(&self, account_id: &str, ids: &[String]) -> Result<Vec<(String, String)>>;

    /// Removes these requests (their preview is over: an agent no longer takes them).
    fn forget_previews(&self, ids: &[String]) -> Result<()>;

    /// When the active agents of these instances of the account were last heard from:
    /// (instance key, ms).
    fn agents_last_seen(&self, account_id: &str, instance_pks: &[i64]) -> Result<Vec<(i64, i64)>>;
}

impl Previews for Store {
    fn changes_under_way(
        &self,
        account_id: &str,
        check_id: i64,
        scope: &str,
        instance_pks: &[i64],
    ) -> Result<Vec<ActiveChange>> {
        if instance_pks.is_empty() {
            return Ok(Vec::new());
        }
        let mut a: Vec<Arg> = vec![account_id.into()];
        a.extend(instance_pks.iter().map(|p| Arg::from(*p)));
        a.extend([check_id.into(), scope.into(), scope.into()]);
        let sql = format!(
            "SELECT instance_pk, id, check_id FROM tasks
             WHERE account_id = ? AND instance_pk IN ({}) AND {}
               AND (check_id = ? OR (status <> 'WAIT_APPROVAL' AND (scope = ? OR scope = '*' OR ? = '*')))
             ORDER BY rowid",
            placeholders(instance_pks.len()),
            crate::status_in("status", |s| !s.is_terminal())
        );
        self.read(|c| {
            c.query(&sql, &a, |r| Ok(ActiveChange { instance_pk: r.get(0)?, task_id: r.get(1)?, check_id: r.get(2)? }))
        })
    }

    fn request_previews(
        &self,
        account_id: &str,
        check_id: i64,
        params: &RepairValues,
        instance_pks: &[i64],
    ) -> Result<Vec<String>> {
        let ids: Vec<String> = instance_pks.iter().map(|_| new_id(16)).collect();
        let (account_id, params, pks, out) =
            (account_id.to_string(), params.to_json(), instance_pks.to_vec(), ids.clone());
        self.write(move |tx| {
            let now = now_ms();
            tx.execute("DELETE FROM agent_previews WHERE created_ms < ?", args![now - FORGET_AFTER_MS])?;
            for (id, pk) in out.iter().zip(&pks) {
                tx.execute(
                    "INSERT INTO agent_previews (id, account_id, instance_pk, check_id, params, created_ms)
                     VALUES (?, ?, ?, ?, ?, ?)",
                    args![id, &account_id, *pk, check_id, &params, now],
                )?;
            }
            // The agents' waiting polls look for work (on every node).
            crate::pg::notify_work(tx)
        })?;
        Ok(ids)
    }

    fn next_preview(&self, instance_pk: i64) -> Result<Option<PreviewRequest>> {
        let row: Option<(String, i64, String)> = self.read(|c| {
            c.query_opt(
                "SELECT id, check_id, params FROM agent_previews
                 WHERE instance_pk = ? AND answer IS NULL AND created_ms >= ? ORDER BY created_ms LIMIT 1",
                args![instance_pk, now_ms() - PREVIEW_WAIT_MS],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
        })?;
        let Some((id, check_id, params)) = row else { return Ok(None) };
        let params = RepairValues::from_json(&params)
            .map_err(|e| StoreError::Corrupt(format!("the values of preview request {id}: {e}")))?;
        Ok(Some(PreviewRequest { id, check_id, params }))
    }

    fn answer_preview(&self, instance_pk: i64, id: &str, answer: &str) -> Result<bool> {
        let (id, answer) = (id.to_string(), answer.to_string());
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE agent_previews SET answer = ? WHERE id = ? AND instance_pk = ? AND answer IS NULL",
                args![&answer, &id, instance_pk],
            )?;
            Ok(n == 1)
        })
    }

    fn preview_answers(&self, account_id: &str, ids: &[String]) -> Result<Vec<(String, String)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut a: Vec<Arg> = vec![account_id.into()];
        a.extend(ids.iter().map(|id| Arg::from(id.as_str())));
        let sql = format!(
            "SELECT id, answer FROM agent_previews WHERE account_id = ? AND id IN ({}) AND answer IS NOT NULL",
            placeholders(ids.len())
        );
        self.read(|c| c.query(&sql, &a, |r| Ok((r.get(0)?, r.get(1)?))))
    }

    fn forget_previews(&self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let sql = format!("DELETE FROM agent_previews WHERE id IN ({})", placeholders(ids.len()));
        let ids = ids.to_vec();
        self.write(move |tx| {
            let a: Vec<Arg> = ids.iter().map(|id| Arg::from(id.as_str())).collect();
            tx.execute(&sql, &a).map(drop)
        })
    }

    fn agents_last_seen(&self, account_id: &str, instance_pks: &[i64]) -> Result<Vec<(i64, i64)>> {
        if instance_pks.is_empty() {
            return Ok(Vec::new());
        }
        let mut a: Vec<Arg> = vec![account_id.into()];
        a.extend(instance_pks.iter().map(|p| Arg::from(*p)));
        let sql = format!(
            "SELECT instance_pk, last_seen_ms FROM agents WHERE account_id = ? AND instance_pk IN ({}) AND revoked_ms IS NULL",
            placeholders(instance_pks.len())
        );
        self.read(|c| c.query(&sql, &a, |r| Ok((r.get(0)?, r.get(1)?))))
    }
}

#[cfg(test)]
mod tests {
    use model::RepairValues;

    use crate::conformance::{host, repair_of};
    use crate::testutil::store;
    use crate::*;

    crate::testutil::both_backends! {
        fn a_preview_request_is_its_instances_work_until_answered_once() {
            let (_p, s) = store();
            let acct = s.create_account("previews").unwrap().id;
            let other = s.create_account("other").unwrap().id;
            s.upsert_instances(&acct, &[host(0), host(1)]).unwrap();
            s.upsert_instances(&other, &[host(2)]).unwrap();
            let pks: Vec<i64> = s.list_instances(&acct).unwrap().iter().map(|i| i.pk).collect();
            let theirs = s.list_instances(&other).unwrap()[0].pk;
            let values = RepairValues(vec![("Port".into(), "22".into())]);
            let ids = s.request_previews(&acct, 1001, &values, &pks).unwrap();
            assert_eq!(ids.len(), 2);
            assert!(s.agent_has_work(pks[0]).unwrap(), "a waiting request is work for the agent");
            assert!(!s.agent_has_work(theirs).unwrap());
            let asked = s.next_preview(pks[0]).unwrap().unwrap();
            assert_eq!((asked.id.as_str(), asked.check_id, &asked.params), (ids[0].as_str(), 1001, &values));
            // Only its own instance may answer it, and only once.
            assert!(!s.answer_preview(pks[1], &ids[0], "{}").unwrap());
            assert!(s.answer_preview(pks[0], &ids[0], r#"{"Changes":[]}"#).unwrap());
            assert!(!s.answer_preview(pks[0], &ids[0], "{}").unwrap());
            assert!(s.next_preview(pks[0]).unwrap().is_none());
            assert!(!s.agent_has_work(pks[0]).unwrap());
            assert_eq!(s.preview_answers(&acct, &ids).unwrap(), vec![(ids[0].clone(), r#"{"Changes":[]}"#.to_string())]);
            // Another account cannot read them.
            assert_eq!(s.preview_answers(&other, &ids).unwrap(), vec![]);
        }

        fn changes_under_way_are_those_of_the_item_or_the_scope() {
            let (_p, s) = store();
            let acct = s.create_account("under-way").unwrap().id;
            s.upsert_instances(&acct, &[host(0), host(1), host(2)]).unwrap();
            let pks: Vec<i64> = s.list_instances(&acct).unwrap().iter().map(|i| i.pk).collect();
            // 1001 on file:/etc/1001 of host 0; 1002 on file:/etc/1002 of host 1.
            s.submit(&acct, &repair_of(1001, &[pks[0]])).unwrap();
            s.submit(&acct, &repair_of(1002, &[pks[1]])).unwrap();
            let found = |check_id, scope: &str| -> Vec<(i64, i64)> {
                s.changes_under_way(&acct, check_id, scope, &pks)
                    .unwrap()
                    .into_iter()
                    .map(|c| (c.instance_pk, c.check_id))
                    .collect()
            };
            assert_eq!(found(1001, "file:/etc/other"), vec![(pks[0], 1001)], "the same item");
            assert_eq!(found(1003, "file:/etc/1002"), vec![(pks[1], 1002)], "the same file");
            assert_eq!(found(1003, "*"), vec![(pks[0], 1001), (pks[1], 1002)], "the whole instance");
            assert_eq!(found(1003, "file:/etc/other"), vec![]);
            assert_eq!(s.changes_under_way("nobody", 1001, "*", &pks).unwrap(), vec![]);
        }
    }
}
