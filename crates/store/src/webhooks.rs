//! Webhooks: an account's endpoints, and the deliveries of the events they hear. An event is
//! written as one delivery per webhook that hears it, in the transaction of the change it
//! reports (an outbox): it cannot be lost by a crash after the change, nor reported for a
//! change that was rolled back. Deliveries are leased (on PostgreSQL, skipping those another
//! node holds), so every node may deliver; a delivery may arrive more than once (after a lease
//! ran out), never with another id.

use serde_json::Value;

use crate::sql::{args, skip_locked, Arg, Conn};
use crate::{new_id, now_ms, Result, Store, StoreError};

/// The events a webhook may hear.
pub const EVENTS: [&str; 4] = ["task.finished", "root.finished", "check.failed", "agent.offline"];

/// How many of a webhook's latest deliveries ListWebhooks shows.
const SHOWN_DELIVERIES: i64 = 10;

/// A webhook (its secret is never read back: it is given once, at creation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    /// `wh-…`.
    pub id: String,
    /// Where deliveries are POSTed (`http://` or `https://`).
    pub url: String,
    /// The events it hears.
    pub events: Vec<String>,
    /// When it was created (ms).
    pub created_ms: i64,
}

/// One delivery, as ListWebhooks shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The delivery id (the same in every attempt: receivers de-duplicate by it).
    pub id: String,
    /// The event.
    pub event: String,
    /// When the event happened (ms).
    pub created_ms: i64,
    /// Attempts so far.
    pub attempts: i64,
    /// When it was last tried.
    pub last_attempt_ms: Option<i64>,
    /// What the last attempt got (`HTTP 200`, `connection refused`, …).
    pub last_result: Option<String>,
    /// When it was delivered (a 2xx answer).
    pub delivered_ms: Option<i64>,
    /// No attempt is made any more.
    pub given_up: bool,
}

/// A delivery due now, leased to the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueDelivery {
    /// The delivery id.
    pub id: String,
    /// Its webhook.
    pub webhook_id: String,
    /// Where to POST it.
    pub url: String,
    /// The webhook's secret (signs the body).
    pub secret: String,
    /// The event.
    pub event: String,
    /// The JSON body.
    pub body: String,
    /// Attempts before this one.
    pub attempts: i64,
}

/// Webhooks and their deliveries.
pub trait Webhooks: Send + Sync {
    /// Creates a webhook of the account hearing `events` (each one of [`EVENTS`]); its secret,
    /// returned here only. `NotFound` for an unknown account.
    fn create_webhook(&self, account_id: &str, url: &str, events: &[String]) -> Result<(Webhook, String)>;

    /// The account's webhooks, each with its latest deliveries (newest first).
    fn list_webhooks(&self, account_id: &str) -> Result<Vec<(Webhook, Vec<Delivery>)>>;

    /// Deletes a webhook of the account and its deliveries; false if it has none such.
    fn delete_webhook(&self, account_id: &str, id: &str) -> Result<bool>;

    /// Leases up to `limit` deliveries due now for `lease_ms`, oldest first, at most one per
    /// webhook and none of the webhooks in `busy` (a webhook's deliveries go one at a time on
    /// a node, so that a slow receiver holds only its own).
    fn claim_deliveries(&self, lease_ms: i64, limit: usize, busy: &[String]) -> Result<Vec<DueDelivery>>;

    /// Records an attempt: delivered, or to be tried again at `retry_at_ms` (None: given up).
    fn record_attempt(&self, id: &str, result: &str, delivered: bool, retry_at_ms: Option<i64>) -> Result<()>;

    /// Reports (`agent.offline`) each active agent not heard from for `offline_ms`, once until
    /// it is heard from again; how many.
    fn report_offline_agents(&self, offline_ms: i64) -> Result<usize>;

    /// Removes the deliveries made or given up that are older than `before_ms`; how many.
    fn prune_deliveries(&self, before_ms: i64) -> Result<usize>;
}

/// Writes the deliveries of `event` (its `body`) for the account's webhooks that hear it, in
/// the caller's transaction. Costs one index probe when the account has no webhook.
pub(crate) fn emit(tx: &Conn, account_id: &str, event: &str, body: &Value) -> Result<()> {
    let hooks: Vec<String> = tx.query(
        "SELECT id FROM webhooks WHERE account_id = ? AND (events = '*' OR ',' || events || ',' LIKE ?)",
        args![account_id, format!("%,{event},%")],
        |r| r.get(0),
    )?;
    if hooks.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    let mut body = body.clone();
    for hook in hooks {
        let id = new_id(16);
        if let Value::Object(map) = &mut body {
            map.insert("DeliveryId".into(), Value::String(id.clone()));
            map.insert("Event".into(), Value::String(event.into()));
            map.insert("Time".into(), Value::from(now));
        }
        tx.execute(
            "INSERT INTO webhook_deliveries (id, webhook_id, account_id, event, body, created_ms, next_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
            args![&id, &hook, account_id, event, body.to_string(), now, now],
        )?;
    }
    crate::pg::notify_work(tx)
}

/// After task `task_id` ended: `task.finished`, and `root.finished` when it was its root's last.
pub(crate) fn task_ended(tx: &Conn, account_id: &str, task_id: &str) -> Result<()> {
    if !tx.value::<bool>("SELECT EXISTS (SELECT 1 FROM webhooks WHERE account_id = ?)", args![account_id])? {
        return Ok(());
    }
    let row: Option<(String, i64, String, String, String, String, String)> = tx.query_opt(
        "SELECT t.root_id, t.check_id, t.type, t.status, t.error_code, i.instance_id, i.region_id
           FROM tasks t JOIN instances i ON i.pk = t.instance_pk WHERE t.id = ?",
        args![task_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
    )?;
    let Some((root_id, check_id, kind, status, error_code, instance_id, region_id)) = row else { return Ok(()) };
    let body = serde_json::json!({
        "TaskId": task_id, "RootTaskId": root_id, "CheckId": check_id, "Type": kind, "Status": status,
        "ErrorCode": error_code, "InstanceId": instance_id, "RegionId": region_id,
    });
    emit(tx, account_id, "task.finished", &body)?;
    let statuses: Vec<(String, i64)> =
        tx.query("SELECT status, COUNT(*) FROM tasks WHERE root_id = ? GROUP BY status", args![&root_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let unfinished = statuses.iter().any(|(s, _)| model::TaskStatus::parse(s).is_none_or(|s| !s.is_terminal()));
    if !unfinished {
        let counts: serde_json::Map<String, Value> = statuses.into_iter().map(|(s, n)| (s, Value::from(n))).collect();
        let body = serde_json::json!({"RootTaskId": root_id, "CheckId": check_id, "Type": kind, "Tasks": counts});
        emit(tx, account_id, "root.finished", &body)?;
    }
    Ok(())
}

/// A result that was PASS became NOT_PASS (a regression; a first result is not one).
pub(crate) fn check_failed(tx: &Conn, account_id: &str, check_id: i64, instance_pk: i64) -> Result<()> {
    if !tx.value::<bool>("SELECT EXISTS (SELECT 1 FROM webhooks WHERE account_id = ?)", args![account_id])? {
        return Ok(());
    }
    let instance: Option<(String, String)> =
        tx.query_opt("SELECT instance_id, region_id FROM instances WHERE pk = ?", args![instance_pk], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let Some((instance_id, region_id)) = instance else { return Ok(()) };
    let body = serde_json::json!({"CheckId": check_id, "InstanceId": instance_id, "RegionId": region_id,
                                  "Status": "NOT_PASS", "PreviousStatus": "PASS"});
    emit(tx, account_id, "check.failed", &body)
}

/// The claim of one due delivery of a webhook not among `n` excluded ones (`?3` …).
fn claim_delivery_sql(n: usize) -> [String; 2] {
    let excluded = match n {
        0 => String::new(),
        n => {
            format!("AND webhook_id NOT IN ({})", (0..n).map(|i| format!("?{}", i + 3)).collect::<Vec<_>>().join(", "))
        }
    };
    skip_locked(format!(
        "UPDATE webhook_deliveries SET lease_until_ms = ?1 + ?2
         WHERE rowid = (SELECT rowid FROM webhook_deliveries
                         WHERE delivered_ms IS NULL AND given_up = 0 AND next_ms <= ?1 AND lease_until_ms < ?1 {excluded}
                         ORDER BY next_ms LIMIT 1)
         RETURNING id, webhook_id, event, body, attempts"
    ))
}

impl Webhooks for Store {
    fn create_webhook(&self, account_id: &str, url: &str, events: &[String]) -> Result<(Webhook, String)> {
        let hook = Webhook {
            id: format!("wh-{}", new_id(12)),
            url: url.to_string(),
            events: events.to_vec(),
            created_ms: now_ms(),
        };
        let secret = new_id(24);
        let sealed = self.sealer.seal(&hook.id, &secret);
        let (account_id, row) = (account_id.to_string(), hook.clone());
        self.write(move |tx| {
            if !tx.value::<bool>("SELECT EXISTS (SELECT 1 FROM accounts WHERE id = ?)", args![&account_id])? {
                return Err(StoreError::NotFound);
            }
            tx.execute(
                "INSERT INTO webhooks (id, account_id, url, sealed_secret, events, created_ms) VALUES (?, ?, ?, ?, ?, ?)",
                args![&row.id, &account_id, &row.url, &sealed, row.events.join(","), row.created_ms],
            )?;
            Ok(())
        })?;
        Ok((hook, secret))
    }

    fn list_webhooks(&self, account_id: &str) -> Result<Vec<(Webhook, Vec<Delivery>)>> {
        self.read(|c| {
            let hooks: Vec<Webhook> = c.query(
                "SELECT id, url, events, created_ms FROM webhooks WHERE account_id = ? ORDER BY created_ms",
                args![account_id],
                |r| {
                    let events: String = r.get(2)?;
                    Ok(Webhook {
                        id: r.get(0)?,
                        url: r.get(1)?,
                        events: events.split(',').map(String::from).collect(),
                        created_ms: r.get(3)?,
                    })
                },
            )?;
            let mut out = Vec::with_capacity(hooks.len());
            for hook in hooks {
                let deliveries = c.query(
                    "SELECT id, event, created_ms, attempts, last_attempt_ms, last_result, delivered_ms, given_up
                       FROM webhook_deliveries WHERE webhook_id = ? ORDER BY created_ms DESC, id LIMIT ?",
                    args![&hook.id, SHOWN_DELIVERIES],
                    |r| {
                        Ok(Delivery {
                            id: r.get(0)?,
                            event: r.get(1)?,
                            created_ms: r.get(2)?,
                            attempts: r.get(3)?,
                            last_attempt_ms: r.get(4)?,
                            last_result: r.get(5)?,
                            delivered_ms: r.get(6)?,
                            given_up: r.get(7)?,
                        })
                    },
                )?;
                out.push((hook, deliveries));
            }
            Ok(out)
        })
    }

    fn delete_webhook(&self, account_id: &str, id: &str) -> Result<bool> {
        let (account_id, id) = (account_id.to_string(), id.to_string());
        self.write(move |tx| {
            let n = tx.execute("DELETE FROM webhooks WHERE account_id = ? AND id = ?", args![&account_id, &id])?;
            if n == 1 {
                tx.execute("DELETE FROM webhook_deliveries WHERE webhook_id = ?", args![&id])?;
            }
            Ok(n == 1)
        })
    }

    fn claim_deliveries(&self, lease_ms: i64, limit: usize, busy: &[String]) -> Result<Vec<DueDelivery>> {
        let mut out = Vec::new();
        let mut excluded = busy.to_vec();
        while out.len() < limit {
            let now = now_ms();
            let [sqlite, postgres] = claim_delivery_sql(excluded.len());
            let mut a: Vec<Arg> = vec![now.into(), lease_ms.into()];
            a.extend(excluded.iter().map(|w| Arg::from(w.clone())));
            let claimed: Option<(String, String, String, String, i64)> = self.write(move |tx| {
                tx.query_opt(tx.pick(&sqlite, &postgres), &a, |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
            })?;
            let Some((id, hook, event, body, attempts)) = claimed else { break };
            excluded.push(hook.clone());
            let found: Option<(String, Vec<u8>)> = self.read(|c| {
                c.query_opt("SELECT url, sealed_secret FROM webhooks WHERE id = ?", args![&hook], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
            })?;
            // Deleted meanwhile: its deliveries go with it.
            let Some((url, sealed)) = found else { continue };
            let secret = self
                .sealer
                .open(&hook, &sealed)
                .ok_or_else(|| StoreError::Db(format!("the secret of {hook} does not open with this master key")))?;
            out.push(DueDelivery { id, webhook_id: hook, url, secret, event, body, attempts });
        }
        Ok(out)
    }

    fn record_attempt(&self, id: &str, result: &str, delivered: bool, retry_at_ms: Option<i64>) -> Result<()> {
        let (id, result) = (id.to_string(), result.chars().take(300).collect::<String>());
        self.write(move |tx| {
            let now = now_ms();
            tx.execute(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, last_attempt_ms = ?, last_result = ?, lease_until_ms = 0,
                        delivered_ms = ?, next_ms = ?, given_up = ?
                 WHERE id = ? AND delivered_ms IS NULL",
                args![
                    now,
                    &result,
                    delivered.then_some(now),
                    retry_at_ms.unwrap_or(now),
                    !delivered && retry_at_ms.is_none(),
                    &id
                ],
            )?;
            Ok(())
        })
    }

    fn prune_deliveries(&self, before_ms: i64) -> Result<usize> {
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM webhook_deliveries WHERE created_ms < ? AND (delivered_ms IS NOT NULL OR given_up = 1)",
                args![before_ms],
            )
        })
    }

    fn report_offline_agents(&self, offline_ms: i64) -> Result<usize> {
        self.write(move |tx| {
            let gone: Vec<(String, String, String, i64)> = tx.query(
                "SELECT a.id, a.account_id, i.instance_id, a.last_seen_ms FROM agents a JOIN instances i ON i.pk = a.instance_pk
                  WHERE a.revoked_ms IS NULL AND a.offline_reported = 0 AND a.last_seen_ms < ?
                    AND EXISTS (SELECT 1 FROM webhooks w WHERE w.account_id = a.account_id)
                  LIMIT 500",
                args![now_ms() - offline_ms],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?;
            for (agent, account, instance, seen) in &gone {
                tx.execute("UPDATE agents SET offline_reported = 1 WHERE id = ?", args![agent])?;
                let body = serde_json::json!({"AgentId": agent, "InstanceId": instance, "LastSeenAt": seen});
                emit(tx, account, "agent.offline", &body)?;
            }
            Ok(gone.len())
        })
    }
}

#[cfg(test)]
mod tests {
    use model::{CheckStatus, TaskStatus::*};

    use crate::conformance::{host, repair_of};
    use crate::testutil::store;
    use crate::*;

    fn walk(s: &Store, c: &Claimed, path: &[model::TaskStatus]) {
        for w in path.windows(2) {
            s.transition(c, w[0], w[1], Transition::default()).unwrap();
        }
    }

    /// Every delivery due now (a claim takes at most one per webhook).
    fn claim_all(s: &Store) -> Result<Vec<DueDelivery>> {
        let mut all = Vec::new();
        loop {
            let some = s.claim_deliveries(60_000, 10, &[])?;
            if some.is_empty() {
                return Ok(all);
            }
            all.extend(some);
        }
    }

    crate::testutil::both_backends! {
        fn events_become_deliveries_in_the_transaction_of_the_change_and_are_retried() {
            let (_p, s) = store();
            let acct = s.create_account("hooks").unwrap().id;
            s.upsert_instances(&acct, &[host(0), host(1)]).unwrap();
            let pks: Vec<i64> = s.list_instances(&acct).unwrap().iter().map(|i| i.pk).collect();
            let (hook, secret) = s.create_webhook(&acct, "http://127.0.0.1:9/hook", &["task.finished".into(), "root.finished".into()]).unwrap();
            let (_, all_secret) = s.create_webhook(&acct, "http://127.0.0.1:9/all", &["*".into()]).unwrap();
            assert_eq!(s.create_webhook("nobody", "http://x/", &["*".into()]).unwrap_err(), StoreError::NotFound);

            let sub = repair_of(1001, &pks);
            s.submit(&acct, &sub).unwrap();
            let (a, b) = (s.claim_task(60_000).unwrap().unwrap(), s.claim_task(60_000).unwrap().unwrap());
            walk(&s, &a, &[Init, Fail]);
            let one = s.claim_deliveries(60_000, 10, std::slice::from_ref(&hook.id)).unwrap();
            assert_eq!(one.len(), 1, "a busy webhook's deliveries wait");
            assert_ne!(one[0].webhook_id, hook.id);
            let mut due = one;
            due.extend(claim_all(&s).unwrap());
            assert_eq!(due.iter().map(|d| d.event.as_str()).collect::<Vec<_>>(), ["task.finished", "task.finished"], "one per webhook");
            assert!(due.iter().any(|d| d.secret == secret) && due.iter().any(|d| d.secret == all_secret));
            let body: serde_json::Value = serde_json::from_str(&due[0].body).unwrap();
            assert_eq!((body["TaskId"].as_str(), body["Status"].as_str()), (Some(a.task.id.as_str()), Some("FAIL")));
            assert_eq!(body["DeliveryId"].as_str(), Some(due[0].id.as_str()));
            assert!(claim_all(&s).unwrap().is_empty(), "leased");
            walk(&s, &b, &[Init, Fail]);
            let last = claim_all(&s).unwrap();
            let events: Vec<&str> = last.iter().map(|d| d.event.as_str()).collect();
            assert_eq!(events.iter().filter(|e| **e == "root.finished").count(), 2, "the root's last task: {events:?}");

            // Failed attempts are retried when due; a delivered one never again.
            s.record_attempt(&due[0].id, "connection refused", false, Some(now_ms() - 1)).unwrap();
            s.record_attempt(&due[1].id, "HTTP 200", true, None).unwrap();
            let again = claim_all(&s).unwrap();
            assert_eq!(again.iter().map(|d| (d.id.as_str(), d.attempts)).collect::<Vec<_>>(), [(due[0].id.as_str(), 1)]);
            s.record_attempt(&due[0].id, "HTTP 500", false, None).unwrap();
            let listed = s.list_webhooks(&acct).unwrap();
            let shown: Vec<&Delivery> = listed.iter().flat_map(|(_, d)| d).filter(|d| d.id == due[0].id).collect();
            assert_eq!((shown[0].attempts, shown[0].given_up, shown[0].last_result.as_deref()), (2, true, Some("HTTP 500")));

            // A result that was PASS turning NOT_PASS is heard by the webhook of every event.
            for status in [CheckStatus::Pass, CheckStatus::NotPass] {
                crate::conformance::record_result(&s, &acct, 1003, pks[0], status);
            }
            let failed = claim_all(&s).unwrap();
            assert_eq!(failed.iter().map(|d| d.event.as_str()).collect::<Vec<_>>(), ["check.failed"]);
            assert_eq!(failed[0].secret, all_secret);

            // An agent not heard from is reported once, and again after it was heard from.
            let token = s.create_agent_token(&acct, None, 1, now_ms() + 60_000).unwrap();
            let (agent, _) = s.enroll_agent(&crate::agents::tests::enrolment(&token, "agent-h")).unwrap().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
            assert_eq!(s.report_offline_agents(1).unwrap(), 1);
            assert_eq!(s.report_offline_agents(1).unwrap(), 0, "once");
            let gone = claim_all(&s).unwrap();
            assert_eq!(gone.iter().map(|d| d.event.as_str()).collect::<Vec<_>>(), ["agent.offline"]);
            assert!(gone[0].body.contains(&agent.id) && gone[0].body.contains("agent-h"));
            s.agents_seen(&[(agent.id.clone(), now_ms())]).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
            assert_eq!(s.report_offline_agents(1).unwrap(), 1, "heard from, then gone again");

            // Made or given up, old deliveries go; those still due stay.
            let due_now = s.list_webhooks(&acct).unwrap().iter().flat_map(|(_, d)| d.clone()).filter(|d| d.delivered_ms.is_none() && !d.given_up).count();
            assert!(s.prune_deliveries(now_ms() + 1).unwrap() >= 2);
            let left: Vec<Delivery> = s.list_webhooks(&acct).unwrap().into_iter().flat_map(|(_, d)| d).collect();
            assert!(left.iter().all(|d| d.delivered_ms.is_none() && !d.given_up) && left.len() == due_now, "{left:?}");

            assert!(s.delete_webhook(&acct, &hook.id).unwrap());
            assert!(!s.delete_webhook(&acct, &hook.id).unwrap());
            assert_eq!(s.list_webhooks(&acct).unwrap().len(), 1);
        }
    }
}
