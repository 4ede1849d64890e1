//! `posture store copy`: moves an installation from SQLite to PostgreSQL. Every row of every
//! table is copied as stored — secrets stay sealed (the nodes use the same master key), tasks
//! keep their order of creation (SQLite's rowid becomes the `rowid` column) — in one
//! PostgreSQL transaction, so a copy that fails leaves the target as it was.

use crate::sql::{Arg, Conn};
use crate::{Db, Result, Store, StoreError};

/// The tables in an order that satisfies their foreign keys. A PostgreSQL column named
/// `rowid` receives SQLite's implicit rowid.
const TABLES: &[&str] = &[
    "accounts",
    "access_keys",
    "cloud_accounts",
    "instances",
    "result_stamps",
    "agent_tokens",
    "agents",
    "check_results",
    "root_tasks",
    "tasks",
    "task_counts",
    "task_events",
    "snapshots",
    "check_runs",
    "check_run_details",
    "selections",
    "selection_targets",
    "whitelist_rules",
    "whitelist_entries",
    "result_counts",
    "result_latest",
    "result_blocks",
    "idempotency",
    "nonces",
    "service_state",
    "check_schedules",
    "exports",
    "check_custom_configs",
    "agent_previews",
    "audit_log",
    "approval_overrides",
    "webhooks",
    "console_sessions",
    "webhook_deliveries",
    "auto_remediations",
];

/// Rows copied, per table.
pub type CopyReport = Vec<(&'static str, i64)>;

impl Store {
    /// Copies everything this SQLite store holds into `target`, a PostgreSQL store with no
    /// account yet; `progress` hears each table as it is done.
    pub fn copy_into(&self, target: &Store, mut progress: impl FnMut(&str, i64)) -> Result<CopyReport> {
        let (Db::Lite(_), Db::Pg(pool)) = (&self.db, &target.db) else {
            return Err(StoreError::Db("a copy goes from SQLite to PostgreSQL".into()));
        };
        pool.transaction(|to| {
            if to.value::<bool>("SELECT EXISTS (SELECT 1 FROM accounts)", &[])? {
                return Err(StoreError::Db("the target database already holds posture data".into()));
            }
            let mut report = Vec::new();
            for table in TABLES {
                let columns = pg_columns(to, table)?;
                let n = self.read(|from| copy_table(from, to, table, &columns))?;
                progress(table, n);
                report.push((*table, n));
            }
            // Identities (as the schema declares them) continue after the copied rows.
            let identities: Vec<(String, String)> = to.query(
                "SELECT table_name, column_name FROM information_schema.columns
                 WHERE table_schema = current_schema() AND is_identity = 'YES'",
                &[],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            for (table, column) in identities {
                to.value::<Option<i64>>(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), GREATEST(MAX({column}), 1)) FROM {table}"
                    ),
                    &[],
                )?;
            }
            Ok(report)
        })
    }
}

/// The columns of a PostgreSQL table, in order.
fn pg_columns(to: &Conn, table: &str) -> Result<Vec<String>> {
    to.query(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ?
         ORDER BY ordinal_position",
        crate::sql::args![table],
        |r| r.get(0),
    )
}

/// Copies one table's rows; returns how many.
fn copy_table(from: &Conn, to: &Conn, table: &str, columns: &[String]) -> Result<i64> {
    let Conn::Lite(lite) = from else { unreachable!("the source is SQLite") };
    let list = columns.join(", ");
    let insert = format!(
        "INSERT INTO {table} ({list}) OVERRIDING SYSTEM VALUE VALUES ({}) ON CONFLICT DO NOTHING",
        crate::placeholders(columns.len())
    );
    let mut st = lite.prepare(&format!("SELECT {list} FROM {table} ORDER BY 1"))?;
    let mut rows = st.query([])?;
    let mut n = 0;
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(columns.len());
        for i in 0..columns.len() {
            use rusqlite::types::ValueRef;
            values.push(match row.get_ref(i)? {
                ValueRef::Null => Arg::Null,
                ValueRef::Integer(v) => Arg::Int(v),
                ValueRef::Text(t) => Arg::Text(String::from_utf8_lossy(t).into_owned().into()),
                ValueRef::Blob(b) => Arg::Blob(b.to_vec().into()),
                ValueRef::Real(_) => return Err(StoreError::Corrupt(format!("{table}: a REAL where none is stored"))),
            });
        }
        n += to.execute(&insert, &values)? as i64;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use crate::counts::tests::{fleet, raw_rows, read_back, update, whole, write_at};
    use model::CheckStatus;

    /// Results a check found unchanged (their instance stamped, not their rows) read the same
    /// after a copy to PostgreSQL, which keeps the stamps as SQLite does; a later write there by
    /// a run that comes back is read with its own time, and a check there that finds nothing
    /// changed writes no result row.
    #[test]
    fn stamped_results_read_the_same_after_a_copy() {
        if std::env::var("POSTURE_TEST_DATABASE_URL").is_err() {
            drop(crate::testing::TestDatabase::create()); // says why, or fails in CI
            return;
        }
        let (_lite_place, lite) = crate::testutil::store();
        let (account, pks, vendors) = fleet(&lite, "copy", 2, 2);
        for (run, at) in [("run-1", 100), ("task", 200), ("task", 300)] {
            for pk in &pks {
                let items = if run == "task" { &[1002][..] } else { &[1001, 1002, 1003][..] };
                let u = items.iter().map(|c| update(*c, *pk, vendors[pk], CheckStatus::Pass, "", run)).collect();
                write_at(&lite, &account, u, at);
            }
        }
        crate::testutil::ON_POSTGRES.set(true);
        let (_pg_place, pg) = crate::testutil::store();
        lite.copy_into(&pg, |_, _| {}).unwrap();
        assert_eq!(read_back(&pg, &account), read_back(&lite, &account));
        assert_eq!(read_back(&pg, &account).0[&(1002, pks[0])].2, 300);
        let u = vec![update(1002, pks[0], vendors[&pks[0]], CheckStatus::Pass, "", "task")];
        write_at(&pg, &account, u, 400);
        assert_eq!(read_back(&pg, &account).0[&(1002, pks[0])].2, 400);
        let written = raw_rows(&pg);
        for (run, at) in [("run-2", 500), ("run-3", 600)] {
            write_at(&pg, &account, whole(pks[1], vendors[&pks[1]], CheckStatus::Pass, run), at);
        }
        assert_ne!(raw_rows(&pg), written, "run-2 wrote the results the stamp then vouched for");
        let written = raw_rows(&pg);
        write_at(&pg, &account, whole(pks[1], vendors[&pks[1]], CheckStatus::Pass, "run-4"), 700);
        assert_eq!(raw_rows(&pg), written, "found unchanged: no result row written");
        assert_eq!(
            read_back(&pg, &account).0[&(1003, pks[1])],
            (CheckStatus::Pass, String::new(), 700, "run-4".to_string())
        );
    }

    /// Every table of the SQLite schema is copied (a table added by a migration and left out
    /// of the list would be lost in a move to PostgreSQL).
    #[test]
    fn every_table_is_copied() {
        let (_dir, s) = crate::testutil::store();
        let mut tables: Vec<String> = s
            .read(|c| {
                c.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'", &[], |r| {
                    r.get(0)
                })
            })
            .unwrap();
        tables.sort();
        let mut copied: Vec<String> = super::TABLES.iter().map(|t| t.to_string()).collect();
        copied.sort();
        assert_eq!(tables, copied);
    }
}
