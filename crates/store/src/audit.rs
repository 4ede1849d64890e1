//! The audit trail: one record per call that may change something (an API action, an agent's
//! enrolment, a `posture` administration command), written before the call is answered. The
//! store offers no way to change a record; the only deletion is the retention's.

use crate::sql::{args, Where};
use crate::{now_ms, Result, Store};

/// A call to record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditEntry {
    /// The account it acted for.
    pub account_id: String,
    /// When (ms since the epoch).
    pub at_ms: i64,
    /// Who: the AccessKeyId, `agent:<AgentId>` or `cli:<user>`.
    pub actor: String,
    /// From where: the client's address, or `local` for the command line.
    pub source: String,
    /// The action (`SubmitOperationTask`, `AgentEnroll`, `KeysCreate`, …).
    pub action: String,
    /// Its parameters as a JSON object, secrets redacted.
    pub params: String,
    /// `OK`, or the error code it was refused with.
    pub outcome: String,
    /// The request id the caller was answered with (empty for the command line).
    pub request_id: String,
}

/// A recorded call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// Its id: records of an account are numbered in the order they were written.
    pub id: i64,
    /// The call.
    pub entry: AuditEntry,
}

/// Which records to list (each part that is set must match).
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// The action.
    pub action: Option<String>,
    /// Who made the call.
    pub actor: Option<String>,
    /// `OK`, an error code, or `FAILED` (any error).
    pub outcome: Option<String>,
    /// At or after (ms).
    pub start_ms: Option<i64>,
    /// At or before (ms).
    pub end_ms: Option<i64>,
    /// The page.
    pub offset: i64,
    /// Its size.
    pub limit: i64,
}

/// The audit trail.
pub trait Audit: Send + Sync {
    /// Records a call; with `keep_ms`, removes the records older than that first.
    fn record_audit(&self, entry: &AuditEntry, keep_ms: Option<i64>) -> Result<()>;

    /// One page of an account's records, newest first, and how many match in all.
    fn list_audit(&self, account_id: &str, f: &AuditFilter) -> Result<(Vec<AuditRecord>, i64)>;
}

impl Audit for Store {
    fn record_audit(&self, entry: &AuditEntry, keep_ms: Option<i64>) -> Result<()> {
        let e = entry.clone();
        self.write(move |tx| {
            if let Some(keep) = keep_ms {
                tx.execute("DELETE FROM audit_log WHERE at_ms < ?", args![now_ms() - keep])?;
            }
            tx.execute(
                "INSERT INTO audit_log (account_id, at_ms, actor, source, action, params, outcome, request_id)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                args![&e.account_id, e.at_ms, &e.actor, &e.source, &e.action, &e.params, &e.outcome, &e.request_id],
            )?;
            Ok(())
        })
    }

    fn list_audit(&self, account_id: &str, f: &AuditFilter) -> Result<(Vec<AuditRecord>, i64)> {
        let wh = Where::new("account_id = ?", [account_id.into()])
            .and_some("action = ?", f.action.as_deref())
            .and_some("actor = ?", f.actor.as_deref())
            .and_some("at_ms >= ?", f.start_ms)
            .and_some("at_ms <= ?", f.end_ms);
        let wh = match f.outcome.as_deref() {
            Some("FAILED") => wh.and("outcome <> 'OK'", []),
            other => wh.and_some("outcome = ?", other),
        };
        self.read(|c| {
            let total: i64 = c.value(&format!("SELECT COUNT(*) FROM audit_log{}", wh.sql()), wh.args())?;
            let sql = format!(
                "SELECT id, account_id, at_ms, actor, source, action, params, outcome, request_id FROM audit_log{}
                 ORDER BY id DESC LIMIT ? OFFSET ?",
                wh.sql()
            );
            let rows = c.query(&sql, &wh.paged(f.limit, f.offset), |r| {
                Ok(AuditRecord {
                    id: r.get(0)?,
                    entry: AuditEntry {
                        account_id: r.get(1)?,
                        at_ms: r.get(2)?,
                        actor: r.get(3)?,
                        source: r.get(4)?,
                        action: r.get(5)?,
                        params: r.get(6)?,
                        outcome: r.get(7)?,
                        request_id: r.get(8)?,
                    },
                })
            })?;
            Ok((rows, total))
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::store;
    use crate::*;

    fn entry(account_id: &str, action: &str, outcome: &str, at_ms: i64) -> AuditEntry {
        AuditEntry {
            account_id: account_id.into(),
            at_ms,
            actor: "LTAIkey".into(),
            source: "127.0.0.1".into(),
            action: action.into(),
            params: "{}".into(),
            outcome: outcome.into(),
            request_id: "R".into(),
        }
    }

    crate::testutil::both_backends! {
        fn records_are_listed_newest_first_by_account_with_filters_and_retention() {
            let (_p, s) = store();
            let acct = s.create_account("audit").unwrap().id;
            let now = now_ms();
            s.record_audit(&entry(&acct, "SubmitOperationTask", "OK", now - 3_000), None).unwrap();
            s.record_audit(&entry(&acct, "CancelOperationTask", "InvalidTaskId.NotFound", now - 2_000), None).unwrap();
            s.record_audit(&entry("other", "SubmitOperationTask", "OK", now - 1_000), None).unwrap();
            s.record_audit(&entry(&acct, "SubmitOperationTask", "NoPermission", now), None).unwrap();
            let list = |f: AuditFilter| -> (Vec<String>, i64) {
                let (rows, total) = s.list_audit(&acct, &AuditFilter { limit: 10, ..f }).unwrap();
                (rows.into_iter().map(|r| format!("{}:{}", r.entry.action, r.entry.outcome)).collect(), total)
            };
            let (all, total) = list(AuditFilter::default());
            assert_eq!(total, 3, "another account's record is not listed");
            assert_eq!(all, ["SubmitOperationTask:NoPermission", "CancelOperationTask:InvalidTaskId.NotFound", "SubmitOperationTask:OK"]);
            assert_eq!(list(AuditFilter { outcome: Some("FAILED".into()), ..Default::default() }).1, 2);
            assert_eq!(list(AuditFilter { outcome: Some("OK".into()), ..Default::default() }).0, ["SubmitOperationTask:OK"]);
            assert_eq!(list(AuditFilter { action: Some("CancelOperationTask".into()), ..Default::default() }).1, 1);
            assert_eq!(list(AuditFilter { start_ms: Some(now - 2_500), end_ms: Some(now - 1), ..Default::default() }).1, 1);
            let (page, _) = s.list_audit(&acct, &AuditFilter { limit: 1, offset: 1, ..Default::default() }).unwrap();
            assert_eq!(page[0].entry.action, "CancelOperationTask");
            // The retention removes what is older than it, when the next record is written.
            s.record_audit(&entry(&acct, "ExportRecord", "OK", now), Some(2_500)).unwrap();
            assert_eq!(list(AuditFilter::default()).1, 3, "the record of 3 s ago is gone");
        }
    }
}
