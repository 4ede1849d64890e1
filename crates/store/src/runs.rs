use std::sync::{Arc, LazyLock};

use crate::sql::{args, skip_locked, Conn, Row, Where};
use crate::{counts, new_id, now_ms, Result, ResultUpdate, Store, StoreError};
use model::{RunDetailStatus, RunStatus, Vendor};

/// A check run (SubmitCheck / VerifyCheckResult / VerifyCheckInstanceResult).
#[derive(Clone, Debug)]
pub struct CheckRun {
    /// Run id (UUID-like).
    pub id: String,
    /// Owner.
    pub account_id: String,
    /// `CHECK_ALL`, `CHECK_ITEM`, `CHECK_INSTANCE`, …
    pub task_type: String,
    /// `TaskSource`.
    pub task_source: String,
    /// Check items to run (empty: all).
    pub check_ids: Vec<i64>,
    /// Instances to run on (empty: all).
    pub instance_pks: Vec<i64>,
    /// Where it is.
    pub status: RunStatus,
    /// Instances to check.
    pub total: i64,
    /// Instances checked.
    pub finished: i64,
    /// Created.
    pub created_ms: i64,
    /// Started.
    pub started_ms: i64,
    /// Ended.
    pub ended_ms: i64,
    /// The fence of the lease this copy was claimed with (0 when read).
    pub fence: i64,
}

/// One instance of a run.
#[derive(Clone, Debug)]
pub struct CheckRunDetail {
    /// Detail id.
    pub id: String,
    /// Its run.
    pub run_id: String,
    /// The instance.
    pub instance_pk: i64,
    /// The instance's vendor.
    pub vendor: Vendor,
    /// Where it is.
    pub status: RunDetailStatus,
    /// Check items evaluated.
    pub check_ids: Vec<i64>,
    /// Created.
    pub created_ms: i64,
    /// Started.
    pub started_ms: i64,
    /// Ended.
    pub ended_ms: i64,
}

/// How one instance of a run ended.
#[derive(Clone, Debug)]
pub struct DetailOutcome {
    /// The detail.
    pub detail_id: String,
    /// Its instance (the order in which a commit writes its outcomes).
    pub instance_pk: i64,
    /// Succeeded or failed.
    pub status: RunDetailStatus,
    /// Results to store.
    pub results: Vec<ResultUpdate>,
    /// (check, instance) results to remove: the item no longer applies.
    pub removed: Vec<(i64, i64)>,
}

/// Filters of ListOperationProcess / ListOperationProcessDetail.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    /// Run ids.
    pub run_ids: Vec<String>,
    /// Task types.
    pub task_types: Vec<String>,
    /// Task sources.
    pub task_sources: Vec<String>,
    /// Statuses of runs (ListOperationProcess).
    pub run_statuses: Vec<RunStatus>,
    /// Statuses of run details (ListOperationProcessDetail).
    pub detail_statuses: Vec<RunDetailStatus>,
    /// Created at or after.
    pub start_ms: Option<i64>,
    /// Ended at or before.
    pub end_ms: Option<i64>,
    /// Offset.
    pub offset: i64,
    /// Limit.
    pub limit: i64,
}

pub(crate) const RUN_COLS: &str = "id, account_id, task_type, task_source, check_ids, instance_pks, status_code, total, finished, created_ms, started_ms, ended_ms, fence";

/// A stored id list, decoded strictly: a corrupt one is an error, never "every check" or
/// "every instance" (which is what an empty list means).
fn ids_at(r: &Row, i: usize) -> Result<Vec<i64>> {
    let text: String = r.get(i)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("column {i}: {e}")))
}

/// A stored code (a status, a vendor), decoded strictly.
fn code_at<T>(r: &Row, i: usize, from_code: fn(i64) -> Option<T>) -> Result<T> {
    let code: i64 = r.get(i)?;
    from_code(code).ok_or_else(|| StoreError::Corrupt(format!("column {i}: unknown code {code}")))
}

/// The codes of the statuses `keep` selects, for SQL (`status_code IN (...)`).
fn codes<T: Copy>(all: &[T], code: fn(T) -> i64, keep: fn(T) -> bool) -> String {
    all.iter().filter(|s| keep(**s)).map(|s| code(*s).to_string()).collect::<Vec<_>>().join(", ")
}

pub(crate) static UNFINISHED_RUNS: LazyLock<String> =
    LazyLock::new(|| codes(RunStatus::ALL, RunStatus::code, RunStatus::is_unfinished));

/// SQL run per claim and per finished instance, built once (the committer runs it on its one
/// thread, and the statement cache is looked up by the text).
static CLAIM_RUN_SQL: LazyLock<[String; 2]> = LazyLock::new(|| {
    skip_locked(format!(
        "UPDATE check_runs SET status_code = ?3, lease_until_ms = CAST(?1 AS BIGINT) + ?2, fence = fence + 1,
                started_ms = CASE started_ms WHEN 0 THEN ?1 ELSE started_ms END
         WHERE rowid = (SELECT rowid FROM check_runs WHERE status_code IN ({}) AND lease_until_ms < ?1 ORDER BY rowid LIMIT 1)
         RETURNING {RUN_COLS}",
        *UNFINISHED_RUNS
    ))
});
static FINISH_DETAIL_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE check_run_details SET status_code = ?, started_ms = ?, ended_ms = ? WHERE id = ? AND run_id = ? AND status_code IN ({})",
        codes(RunDetailStatus::ALL, RunDetailStatus::code, RunDetailStatus::is_unfinished)
    )
});
static DETAIL_COUNTS_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE status_code IN ({})) FROM check_run_details WHERE run_id = ?",
        codes(RunDetailStatus::ALL, RunDetailStatus::code, |s| !s.is_unfinished())
    )
});

pub(crate) const DETAIL_COLS: &str =
    "d.id, d.run_id, d.instance_pk, i.vendor, d.status_code, d.check_ids, d.created_ms, d.started_ms, d.ended_ms";

/// The unfinished details of a run after a position, in the order they were created.
static PENDING_DETAILS_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT d.rowid, {DETAIL_COLS} FROM check_run_details d JOIN instances i ON i.pk = d.instance_pk
         WHERE d.run_id = ? AND d.rowid > ? AND d.status_code IN ({}) ORDER BY d.rowid LIMIT ?",
        codes(RunDetailStatus::ALL, RunDetailStatus::code, RunDetailStatus::is_unfinished)
    )
});

/// A detail from [`DETAIL_COLS`] at `at`.
pub(crate) fn detail_from(r: &Row, at: usize) -> Result<CheckRunDetail> {
    Ok(CheckRunDetail {
        id: r.get(at)?,
        run_id: r.get(at + 1)?,
        instance_pk: r.get(at + 2)?,
        vendor: code_at(r, at + 3, Vendor::from_code)?,
        status: code_at(r, at + 4, RunDetailStatus::from_code)?,
        check_ids: ids_at(r, at + 5)?,
        created_ms: r.get(at + 6)?,
        started_ms: r.get(at + 7)?,
        ended_ms: r.get(at + 8)?,
    })
}

pub(crate) fn run_from(r: &Row) -> Result<CheckRun> {
    Ok(CheckRun {
        id: r.get(0)?,
        account_id: r.get(1)?,
        task_type: r.get(2)?,
        task_source: r.get(3)?,
        check_ids: ids_at(r, 4)?,
        instance_pks: ids_at(r, 5)?,
        status: code_at(r, 6, RunStatus::from_code)?,
        total: r.get(7)?,
        finished: r.get(8)?,
        created_ms: r.get(9)?,
        started_ms: r.get(10)?,
        ended_ms: r.get(11)?,
        fence: r.get(12)?,
    })
}

/// A UUID-shaped id, like the reference's check task ids.
pub fn uuid_like() -> String {
    let h = new_id(16);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// Writes a new check run (workers on every node hear of it) and returns its id.
pub(crate) fn insert_run(
    tx: &Conn,
    account_id: &str,
    task_type: &str,
    source: &str,
    check_ids: &[i64],
    instance_pks: &[i64],
) -> Result<String> {
    let id = uuid_like();
    tx.execute(
        "INSERT INTO check_runs (id, account_id, task_type, task_source, check_ids, instance_pks, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
        args![&id, account_id, task_type, source, json(check_ids), json(instance_pks), now_ms()],
    )?;
    crate::pg::notify_work(tx)?;
    Ok(id)
}

fn json(v: &[i64]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

impl crate::CheckRuns for Store {
    fn create_run(
        &self,
        account_id: &str,
        task_type: &str,
        source: &str,
        check_ids: &[i64],
        instance_pks: &[i64],
    ) -> Result<CheckRun> {
        let account_id = account_id.to_string();
        let task_type = task_type.to_string();
        let source = source.to_string();
        let check_ids = check_ids.to_vec();
        let instance_pks = instance_pks.to_vec();
        self.write(move |tx| {
            let id = insert_run(tx, &account_id, &task_type, &source, &check_ids, &instance_pks)?;
            Ok((account_id.clone(), id))
        })
        .and_then(|(account_id, id)| self.get_run(&account_id, &id)?.ok_or(StoreError::NotFound))
    }

    fn get_run(&self, account_id: &str, id: &str) -> Result<Option<CheckRun>> {
        self.read(|c| {
            c.query_opt(
                &format!("SELECT {RUN_COLS} FROM check_runs WHERE account_id = ? AND id = ?"),
                args![account_id, id],
                run_from,
            )
        })
    }

    fn claim_run(&self, lease_ms: i64) -> Result<Option<CheckRun>> {
        let now = now_ms();
        self.write(move |tx| {
            let [sqlite, postgres] = &*CLAIM_RUN_SQL;
            tx.query_opt(tx.pick(sqlite, postgres), args![now, lease_ms, RunStatus::Checking.code()], run_from)
        })
    }

    fn set_run_details(&self, run: &CheckRun, details: Vec<(i64, Arc<[i64]>)>) -> Result<()> {
        let run_id = run.id.clone();
        let now = now_ms();
        self.write(move |tx| {
            let existing: i64 = tx.value("SELECT COUNT(*) FROM check_run_details WHERE run_id = ?", args![&run_id])?;
            if existing == 0 {
                for (pk, checks) in &details {
                    tx.execute(
                        "INSERT INTO check_run_details (id, run_id, instance_pk, check_ids, created_ms) VALUES (?, ?, ?, ?, ?)",
                        args![uuid_like(), &run_id, *pk, json(checks), now],
                    )?;
                }
                tx.execute("UPDATE check_runs SET total = ? WHERE id = ?", args![details.len() as i64, &run_id])?;
                // Agents waiting on other nodes may have details in this run now.
                crate::pg::notify_work(tx)?;
            }
            Ok(())
        })
    }

    fn pending_details(&self, run: &CheckRun, after: i64, limit: i64) -> Result<Vec<(i64, CheckRunDetail)>> {
        self.read(|c| {
            c.query(&PENDING_DETAILS_SQL, args![&run.id, after, limit], |r| Ok((r.get(0)?, detail_from(r, 1)?)))
        })
    }

    fn finish_details(&self, run: &CheckRun, mut done: Vec<DetailOutcome>) -> Result<()> {
        let (run_id, account_id) = (run.id.clone(), run.account_id.clone());
        let now = now_ms();
        // In instance order, whatever order the readers finished in: on PostgreSQL a commit
        // locks each detail's row and its instance's results as it writes them, and two commits
        // over the same instances (two runs side by side, or a run's two lease holders one of
        // which failed a detail the other checked) taking them in different orders deadlocked,
        // failing one whole.
        done.sort_by_key(|d| d.instance_pk);
        self.write(move |tx| {
            counts::lock_whitelisting(tx, &account_id, false)?;
            let mut tally = counts::Tally::default();
            let mut finished = 0i64;
            for d in &done {
                let n = tx.execute(&FINISH_DETAIL_SQL, args![d.status.code(), now, now, &d.detail_id, &run_id])?;
                if n == 0 {
                    continue;
                }
                counts::write_results(tx, &account_id, &d.results, now, &mut tally)?;
                for (check_id, pk) in &d.removed {
                    counts::delete_result(tx, &account_id, *check_id, *pk, &mut tally)?;
                }
                finished += 1;
            }
            if finished > 0 {
                tx.execute("UPDATE check_runs SET finished = finished + ? WHERE id = ?", args![finished, &run_id])?;
            }
            tally.apply(tx, &account_id)?;
            // The last instance ends the run, whoever checked it: a worker, or an agent that
            // reports after the worker has left the run to its agents.
            let completed = tx.execute(
                "UPDATE check_runs SET status_code = ?, ended_ms = ?, lease_until_ms = 0
                 WHERE id = ? AND status_code = ? AND total > 0 AND finished >= total",
                args![RunStatus::Completed.code(), now, &run_id, RunStatus::Checking.code()],
            )?;
            if completed > 0 {
                crate::console::record_summary(tx, &run_id, &account_id)?;
            }
            Ok(())
        })
    }

    fn last_verification(
        &self,
        account_id: &str,
        check_ids: &[i64],
        instance_pks: &[i64],
        since_ms: i64,
    ) -> Result<Option<i64>> {
        let recent: Vec<(i64, String, String)> = self.read(|c| {
            c.query(
                "SELECT created_ms, check_ids, instance_pks FROM check_runs
                 WHERE account_id = ? AND task_type IN ('CHECK_ITEM', 'CHECK_INSTANCE') AND created_ms > ? ORDER BY created_ms DESC",
                args![account_id, since_ms],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
        })?;
        Ok(recent.into_iter().find_map(|(at, checks, pks)| {
            let checks: Vec<i64> = serde_json::from_str(&checks).unwrap_or_default();
            let pks: Vec<i64> = serde_json::from_str(&pks).unwrap_or_default();
            let same_item = checks.iter().any(|c| check_ids.contains(c));
            let same_instance =
                pks.is_empty() || instance_pks.is_empty() || pks.iter().any(|p| instance_pks.contains(p));
            (same_item && same_instance).then_some(at)
        }))
    }

    fn extend_run_lease(&self, run: &CheckRun, lease_ms: i64) -> Result<()> {
        let (id, fence) = (run.id.clone(), run.fence);
        self.write(move |tx| {
            tx.execute(
                "UPDATE check_runs SET lease_until_ms = ? WHERE id = ? AND fence = ? AND status_code = ?",
                args![now_ms() + lease_ms, &id, fence, RunStatus::Checking.code()],
            )?;
            Ok(())
        })
    }

    fn finish_run(&self, run: &CheckRun) -> Result<()> {
        let run = run.clone();
        self.write(move |tx| {
            let completed = tx.execute(
                "UPDATE check_runs SET status_code = ?, ended_ms = ?, lease_until_ms = 0 WHERE id = ? AND fence = ? AND status_code <> ?",
                args![RunStatus::Completed.code(), now_ms(), &run.id, run.fence, RunStatus::Completed.code()],
            )?;
            if completed > 0 {
                crate::console::record_summary(tx, &run.id, &run.account_id)?;
            }
            Ok(())
        })
    }

    fn list_runs(&self, account_id: &str, f: &RunFilter) -> Result<(Vec<CheckRun>, i64)> {
        let wh = run_where(account_id, f);
        self.read(|c| {
            let total: i64 = c.value(&format!("SELECT COUNT(*) FROM check_runs{}", wh.sql()), wh.args())?;
            let rows = c.query(
                &format!("SELECT {RUN_COLS} FROM check_runs{} ORDER BY rowid DESC LIMIT ? OFFSET ?", wh.sql()),
                &wh.paged(f.limit, f.offset),
                run_from,
            )?;
            Ok((rows, total))
        })
    }

    fn run_detail_counts(&self, run_id: &str) -> Result<(i64, i64)> {
        self.read(|c| c.query_one(&DETAIL_COUNTS_SQL, args![run_id], |r| Ok((r.get(0)?, r.get(1)?))))
    }

    fn list_details(&self, account_id: &str, f: &RunFilter) -> Result<(Vec<CheckRunDetail>, i64)> {
        let wh = Where::new("r.account_id = ?", [account_id.into()])
            .and_in("d.run_id", &f.run_ids)
            .and_in("d.status_code", f.detail_statuses.iter().map(|s| s.code()))
            .and_some("d.created_ms >= ?", f.start_ms)
            .and_some("d.created_ms <= ?", f.end_ms);
        let from =
            " FROM check_run_details d JOIN check_runs r ON r.id = d.run_id JOIN instances i ON i.pk = d.instance_pk";
        self.read(|c| {
            let total: i64 = c.value(&format!("SELECT COUNT(*){from}{}", wh.sql()), wh.args())?;
            let sql = format!("SELECT {DETAIL_COLS}{from}{} ORDER BY d.rowid LIMIT ? OFFSET ?", wh.sql());
            let rows = c.query(&sql, &wh.paged(f.limit, f.offset), |r| detail_from(r, 0))?;
            Ok((rows, total))
        })
    }
}

fn run_where<'a>(account_id: &'a str, f: &'a RunFilter) -> Where<'a> {
    Where::new("account_id = ?", [account_id.into()])
        .and_in("id", &f.run_ids)
        .and_in("task_type", &f.task_types)
        .and_in("task_source", &f.task_sources)
        .and_in("status_code", f.run_statuses.iter().map(|s| s.code()))
        .and_some("created_ms >= ?", f.start_ms)
        .and_some("ended_ms <= ? AND ended_ms > 0", f.end_ms)
}

#[cfg(test)]
mod tests {
    use crate::testutil::store;
    use crate::Accounts;
    use crate::CheckRuns;
    use crate::StoreError;

    crate::testutil::both_backends! {
        fn a_corrupt_stored_list_is_an_error_never_every_check() {
            let (_d, s) = store();
            let account = s.create_account("t").unwrap().id;
            let run = s.create_run(&account, "CHECK_ITEM", "", &[1001], &[]).unwrap();
            assert_eq!(run.check_ids, [1001]);
            for (column, value) in [("check_ids", "'[1001'"), ("instance_pks", "'not json'"), ("status_code", "9")] {
                let id = run.id.clone();
                let sql = format!("UPDATE check_runs SET {column} = {value} WHERE id = ?");
                s.write(move |tx| tx.execute(&sql, crate::sql::args![&id])).unwrap();
                assert!(matches!(s.get_run(&account, &run.id), Err(StoreError::Corrupt(_))), "{column}");
                let id = run.id.clone();
                s.write(move |tx| {
                    tx.execute(
                        "UPDATE check_runs SET check_ids = '[1001]', instance_pks = '[]', status_code = 0 WHERE id = ?",
                        crate::sql::args![&id],
                    )
                })
                .unwrap();
            }
            assert_eq!(s.get_run(&account, &run.id).unwrap().unwrap().check_ids, [1001]);
        }
        fn only_a_uniqueness_rule_is_a_conflict() {
            let (_d, s) = store();
            // An instance of an account that does not exist: a foreign key, not a conflict.
            let broken = s.write(move |tx| {
                tx.execute(
                    "INSERT INTO instances (account_id, vendor, region_id, instance_id, instance_name, connector, locator, created_ms)
                     VALUES ('no-account', 0, 'r', 'i-1', 'n', 'host', '/', 0)",
                    &[],
                )
            });
            assert!(matches!(broken, Err(StoreError::Constraint(_))), "{broken:?}");
            let again =
                s.write(|tx| tx.execute("INSERT INTO accounts (id, name, created_ms) VALUES ('x', 'a', 0), ('x', 'b', 0)", &[]));
            assert_eq!(again, Err(StoreError::Conflict));
        }

        /// Two runs over the same instances (two nodes, or a full check beside a check of one
        /// item) commit their outcomes side by side, each in the order its readers finished;
        /// and a run's two lease holders (the first outlived its lease) commit the same details,
        /// one having failed some that the other checked. On PostgreSQL each commit locks each
        /// detail's row and its instance's results as it writes them: commits taking them in
        /// different orders deadlocked, and one failed whole.
        fn overlapping_runs_commit_side_by_side_in_any_order() {
            use crate::{Instances, ResultUpdate};
            use model::{CheckStatus, RunDetailStatus, Vendor};
            let (_d, s) = store();
            let account = s.create_account("t").unwrap().id;
            let hosts: Vec<_> = (0..48).map(crate::conformance::host).collect();
            s.upsert_instances(&account, &hosts).unwrap();
            let pks: Vec<i64> = s.list_instances(&account).unwrap().iter().map(|i| i.pk).collect();
            let s = std::sync::Arc::new(s);
            for round in 0..8 {
                // Both commits' details, claimed and planned before either commits: two runs'
                // (rounds 0-3), or one run's twice (rounds 4-7).
                let runs: Vec<(crate::CheckRun, Vec<crate::CheckRunDetail>)> = (0..if round < 4 { 2 } else { 1 })
                    .map(|_| {
                        s.create_run(&account, "CHECK_ITEM", "", &[1001, 1002], &pks).unwrap();
                        let run = s.claim_run(60_000).unwrap().unwrap();
                        let items: std::sync::Arc<[i64]> = vec![1001, 1002].into();
                        s.set_run_details(&run, pks.iter().map(|pk| (*pk, items.clone())).collect()).unwrap();
                        let details = s.pending_details(&run, 0, 100).unwrap().into_iter().map(|(_, d)| d).collect();
                        (run, details)
                    })
                    .collect();
                let commits = if round < 4 { runs } else { vec![runs[0].clone(), runs[0].clone()] };
                let start = std::sync::Arc::new(std::sync::Barrier::new(2));
                let commits: Vec<_> = commits
                    .into_iter()
                    .enumerate()
                    .map(|(n, (run, mut details))| {
                        if n == 1 && round < 4 {
                            details.reverse();
                        }
                        let (s, start) = (s.clone(), start.clone());
                        std::thread::spawn(move || {
                            let status = if (round + n) % 2 == 0 { CheckStatus::Pass } else { CheckStatus::NotPass };
                            let done = details
                                .iter()
                                .enumerate()
                                .map(|(k, d)| {
                                    let failed = round >= 4 && n == 0 && k % 3 == 2;
                                    crate::DetailOutcome {
                                        detail_id: d.id.clone(),
                                        instance_pk: d.instance_pk,
                                        status: if failed { RunDetailStatus::Failed } else { RunDetailStatus::Succeeded },
                                        results: if failed { Vec::new() } else {
                                            [1001, 1002]
                                                .map(|check_id| ResultUpdate {
                                                    check_id,
                                                    instance_pk: d.instance_pk,
                                                    vendor: Vendor::Aliyun,
                                                    status,
                                                    status_message: String::new(),
                                                    config: "{}".into(),
                                                    run_id: run.id.clone(),
                                                })
                                                .to_vec()
                                        },
                                        removed: Vec::new(),
                                    }
                                })
                                .collect();
                            start.wait();
                            s.finish_details(&run, done)
                        })
                    })
                    .collect();
                for commit in commits {
                    commit.join().unwrap().unwrap_or_else(|e| panic!("round {round}: {e}"));
                }
            }
            let agg = crate::Results::aggregate_results(&*s, &account, &[], &[], &[]).unwrap();
            assert_eq!(agg[&1001].counts.values().sum::<i64>(), pks.len() as i64);
        }
    }
}
