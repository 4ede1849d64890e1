//! The audit trail: one record per call that may change something (an API action, an agent's
//! enrolment, a `posture` administration command), written before the call is answered. The
//! store offers no way to change a record, except that a record written with its call's first
//! write (see [`audited`]) gets its outcome once, when the call fails after that write; the
//! only deletion is the retention's.
//!
//! An API call's record rides the call's first write, like its ClientToken
//! (`idempotency`): it is inserted in that write's transaction, so a call that changes
//! something waits for one commit, not for a second one of its record. A call that writes
//! nothing (a refusal, a replayed ClientToken) is recorded by a write of its own afterwards.

use std::cell::RefCell;

use crate::sql::{args, Conn, Where};
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

/// Writes a record in a transaction (after the retention's deletion, with `keep_ms`); its id.
fn insert(tx: &Conn, e: &AuditEntry, keep_ms: Option<i64>) -> Result<i64> {
    if let Some(keep) = keep_ms {
        tx.execute("DELETE FROM audit_log WHERE at_ms < ?", args![now_ms() - keep])?;
    }
    tx.value(
        "INSERT INTO audit_log (account_id, at_ms, actor, source, action, params, outcome, request_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        args![&e.account_id, e.at_ms, &e.actor, &e.source, &e.action, &e.params, &e.outcome, &e.request_id],
    )
}

/// A call's record waiting for the call's first write ([`audited`]): its outcome `OK`, and the
/// retention to apply.
#[derive(Clone)]
pub(crate) struct Waiting {
    entry: AuditEntry,
    keep_ms: Option<i64>,
}

/// The record of the call this thread runs.
enum Riding {
    Waiting(Waiting),
    /// Written with the call's first write: its id.
    Written(i64),
}

thread_local! {
    static RIDING: RefCell<Option<Riding>> = const { RefCell::new(None) };
}

/// The record waiting for this thread's next write, taken (only a call's first write takes it).
pub(crate) fn take_waiting() -> Option<Waiting> {
    RIDING.with(|r| {
        let mut r = r.borrow_mut();
        match r.take() {
            Some(Riding::Waiting(w)) => Some(w),
            other => {
                *r = other;
                None
            }
        }
    })
}

/// Inserts a waiting record in a write's transaction; its id.
pub(crate) fn ride(tx: &Conn, w: &Waiting) -> Result<i64> {
    insert(tx, &w.entry, w.keep_ms)
}

/// After the write that carried it: written with that write's commit (`Some(id)`), or
/// waiting again for the next one (the write failed, so its record was undone with it).
pub(crate) fn after_write(w: Waiting, written: Option<i64>) {
    RIDING.with(|r| *r.borrow_mut() = Some(written.map_or(Riding::Waiting(w), Riding::Written)));
}

/// Runs `op`, one call to record as `entry` (its outcome is set here), so that its record is
/// written with the call's first write (see the module's documentation); `outcome` names what
/// the call's answer was (`OK` or its error code). Recording may fail while the call did not:
/// the second value says so.
pub fn audited<T>(
    store: &Store,
    entry: AuditEntry,
    keep_ms: Option<i64>,
    op: impl FnOnce() -> T,
    outcome: impl FnOnce(&T) -> String,
) -> (T, Result<()>) {
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            RIDING.with(|r| r.borrow_mut().take());
        }
    }
    let entry = AuditEntry { outcome: "OK".into(), ..entry };
    RIDING.with(|r| *r.borrow_mut() = Some(Riding::Waiting(Waiting { entry, keep_ms })));
    let clear = Clear;
    let answer = op();
    let outcome = outcome(&answer);
    let riding = RIDING.with(|r| r.borrow_mut().take());
    drop(clear);
    let recorded = match riding {
        Some(Riding::Waiting(w)) => store.record_audit(&AuditEntry { outcome, ..w.entry }, w.keep_ms),
        // Written as OK with the first write, and the call failed after it.
        Some(Riding::Written(id)) if outcome != "OK" => store.write(move |tx| {
            tx.execute("UPDATE audit_log SET outcome = ? WHERE id = ?", args![&outcome, id])?;
            Ok(())
        }),
        _ => Ok(()),
    };
    (answer, recorded)
}

impl Audit for Store {
    fn record_audit(&self, entry: &AuditEntry, keep_ms: Option<i64>) -> Result<()> {
        let e = entry.clone();
        self.write(move |tx| insert(tx, &e, keep_ms).map(|_| ()))
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

        fn an_audited_call_s_record_rides_its_first_write_and_gets_its_outcome_once() {
            let (_p, s) = store();
            let acct = s.create_account("riding").unwrap().id;
            let write = |fail: bool| {
                s.write(move |tx| {
                    tx.execute("INSERT INTO idempotency (account_id, action, client_token, params_digest, response, created_ms) VALUES ('x', 'a', ?, '', '', 0)", crate::sql::args![uuid_like()])?;
                    if fail { Err(StoreError::Db("refused".into())) } else { Ok(()) }
                })
            };
            let outcome = |r: &std::result::Result<(), String>| r.clone().err().unwrap_or_else(|| "OK".into());
            let records = || -> Vec<String> {
                let (rows, _) = s.list_audit(&acct, &AuditFilter { limit: 10, ..Default::default() }).unwrap();
                rows.into_iter().rev().map(|r| format!("{}:{}", r.entry.action, r.entry.outcome)).collect()
            };
            // A call that writes: recorded with that write, before the call even ends.
            let (_, rec) = audited(&s, entry(&acct, "Writes", "", now_ms()), None, || {
                write(false).unwrap();
                assert_eq!(records(), ["Writes:OK"], "committed with the call's first write");
                write(false).unwrap();
                Ok(())
            }, outcome);
            rec.unwrap();
            // Its first write refused: its record was undone with it, and is written alone.
            let (_, rec) = audited(&s, entry(&acct, "Refused", "", now_ms()), None, || {
                write(true).unwrap_err();
                Err("Refused.Code".to_string())
            }, outcome);
            rec.unwrap();
            // Failing after a write: the record's outcome is the failure's.
            let (_, rec) = audited(&s, entry(&acct, "FailsLate", "", now_ms()), None, || {
                write(false).unwrap();
                Err("Late.Code".to_string())
            }, outcome);
            rec.unwrap();
            // Writing nothing: recorded alone.
            let (_, rec) = audited(&s, entry(&acct, "Reads", "", now_ms()), None, || Ok(()), outcome);
            rec.unwrap();
            assert_eq!(records(), ["Writes:OK", "Refused:Refused.Code", "FailsLate:Late.Code", "Reads:OK"]);
            // Outside an audited call, writes carry no record.
            write(false).unwrap();
            assert_eq!(records().len(), 4);
        }
    }
}
