use std::collections::BTreeMap;

use model::{CheckStatus, Vendor};

use crate::counts::BLOCK_BITS;
use crate::instances::{instance_from, INSTANCE_COLS};
use crate::sql::{args, Conn, Dialect, Row, Where};
use crate::whitelists::whitelisted_sql;
use crate::{Instance, Result, Store, StoreError};

/// A new result of one check item on one instance.
#[derive(Clone, Debug)]
pub struct ResultUpdate {
    /// The check item.
    pub check_id: i64,
    /// The instance.
    pub instance_pk: i64,
    /// The instance's vendor (part of its identity: it decides the result's counter).
    pub vendor: Vendor,
    /// The status.
    pub status: CheckStatus,
    /// Why, when not plain.
    pub status_message: String,
    /// Current values of the settings the item shows (JSON object name → value).
    pub config: String,
    /// The check run (or task) that produced it.
    pub run_id: String,
}

/// A stored result with its instance.
#[derive(Clone, Debug)]
pub struct ResultRow {
    /// Result id.
    pub id: i64,
    /// The instance.
    pub instance: Instance,
    /// Status.
    pub status: CheckStatus,
    /// Status message.
    pub status_message: String,
    /// Config JSON.
    pub config: String,
    /// First evaluated.
    pub first_ms: i64,
    /// Last evaluated.
    pub last_ms: i64,
}

/// The results of one check item, counted by status.
#[derive(Clone, Debug, Default)]
pub struct ResultAggregate {
    /// Instances per status.
    pub counts: BTreeMap<&'static str, i64>,
    /// Vendor codes of the instances counted: one, or (at least) two different ones.
    pub vendors: Vec<i64>,
    /// Latest evaluation.
    pub last_ms: i64,
    /// Latest run id.
    pub run_id: String,
}

/// Filters of ListCheckInstanceResult.
#[derive(Clone, Debug, Default)]
pub struct ResultFilter {
    /// Substring of the instance id.
    pub instance_id_key: Option<String>,
    /// Substring of the instance name.
    pub instance_name_key: Option<String>,
    /// Substring of the region.
    pub region_id_key: Option<String>,
    /// Exact instance ids.
    pub instance_ids: Vec<String>,
    /// Statuses.
    pub statuses: Vec<CheckStatus>,
    /// Failing first.
    pub sort_by_status: bool,
    /// Offset.
    pub offset: i64,
    /// Limit.
    pub limit: i64,
}

/// The status as read: `WHITELIST` while a rule in force exempts the result, else the
/// evaluated status.
pub(crate) fn effective_status_sql() -> String {
    format!(
        "(CASE WHEN {} THEN 'WHITELIST' ELSE r.status END)",
        whitelisted_sql("r.account_id", "r.check_id", "r.instance_pk")
    )
}

/// The status a result is counted under (see `counts`): once the account's due expiries are
/// applied (`Store::settle_expiries`), the same as [`effective_status_sql`], without a probe
/// of the rules per row.
const COUNTED_STATUS: &str = "(CASE WHEN r.whitelisted = 1 THEN 'WHITELIST' ELSE r.status END)";

/// The order of ListCheckInstanceResult's `SortTypes`: failing first.
const FAILING_FIRST: [CheckStatus; 6] = [
    CheckStatus::NotPass,
    CheckStatus::Failed,
    CheckStatus::Checking,
    CheckStatus::NotCheck,
    CheckStatus::Whitelist,
    CheckStatus::Pass,
];

/// A result's place in [`FAILING_FIRST`], in SQL.
fn failing_first_sql() -> String {
    let ranks: String = FAILING_FIRST.iter().enumerate().map(|(n, s)| format!(" WHEN '{s}' THEN {n}")).collect();
    format!("CASE {COUNTED_STATUS}{ranks} END")
}

/// When a result was last checked, and by which run: a check that found all of its instance's
/// results unchanged stamps the instance (`result_stamps`, schemas 24 and 25), not the results,
/// so a result still carrying the run that wrote them takes the stamp's. Needs the stamp as
/// `st` (see [`results_from`]).
const EFFECTIVE_LAST_MS: &str = "CASE WHEN r.check_run_id = st.results_run THEN st.results_seen_ms ELSE r.last_ms END";
pub(crate) const EFFECTIVE_RUN: &str =
    "CASE WHEN r.check_run_id = st.results_run THEN st.results_seen_run ELSE r.check_run_id END";
/// The stamp of the instance `i`, as `st` (an instance whose results were never written has
/// none).
macro_rules! stamps {
    () => {
        " LEFT JOIN result_stamps st ON st.instance_pk = i.pk"
    };
}

static SELECT_RESULTS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT r.id, {COUNTED_STATUS}, r.status_message, r.config, r.first_ms, {EFFECTIVE_LAST_MS}, {INSTANCE_COLS}"
    )
});
/// Results with their instances, found through the instances (results are keyed by instance
/// since schema 22): SQLite is told to loop over the instances (`CROSS JOIN` fixes the order),
/// each probing its result of the item by key; and each instance's stamp, as `st`.
pub(crate) fn results_from(c: &Conn) -> &'static str {
    match c.dialect() {
        Dialect::Sqlite => concat!(" FROM instances i CROSS JOIN check_results r ON r.instance_pk = i.pk", stamps!()),
        Dialect::Postgres => concat!(" FROM instances i JOIN check_results r ON r.instance_pk = i.pk", stamps!()),
    }
}

fn result_from(r: &Row) -> Result<ResultRow> {
    let status: String = r.get(1)?;
    Ok(ResultRow {
        id: r.get(0)?,
        status: CheckStatus::parse(&status).unwrap_or(CheckStatus::Failed),
        status_message: r.get(2)?,
        config: r.get(3)?,
        first_ms: r.get(4)?,
        last_ms: r.get(5)?,
        instance: instance_from(r, 6)?,
    })
}

/// A block's instances with their results on SQLite, which would rather find an account's
/// instances by its index and sort them: it is told to step through the block's keys (`NOT
/// INDEXED` leaves it the rowid alone), each probing its result by key.
const SQLITE_BLOCK_FROM: &str =
    concat!(" FROM instances i NOT INDEXED CROSS JOIN check_results r ON r.instance_pk = i.pk", stamps!());

/// The first instance key of a block (see `result_blocks`) and the first of the next.
fn block_keys(block: i64) -> (i64, i64) {
    (block << BLOCK_BITS, (block + 1) << BLOCK_BITS)
}

/// The query of a page of an item's results with one of `statuses` in one block of instances
/// (`LIMIT ? OFFSET ?` last), in instance order or its reverse: each of the block's instances
/// probes its result by key.
fn block_page<'a>(
    c: &Conn,
    account_id: &'a str,
    check_id: i64,
    block: i64,
    statuses: &[&'a str],
    reverse: bool,
) -> (String, Where<'a>) {
    let (first, next) = block_keys(block);
    let wh = Where::new(
        "i.account_id = ? AND r.check_id = ? AND i.pk >= ? AND i.pk < ?",
        [account_id.into(), check_id.into(), first.into(), next.into()],
    )
    .and_in(COUNTED_STATUS, statuses.iter().copied());
    let from = match c.dialect() {
        Dialect::Sqlite => SQLITE_BLOCK_FROM,
        Dialect::Postgres => results_from(c),
    };
    let order = if reverse { "DESC" } else { "ASC" };
    (format!("{}{from}{} ORDER BY i.pk {order} LIMIT ? OFFSET ?", *SELECT_RESULTS, wh.sql()), wh)
}

/// A page of an item's results filtered by status only, in instance order (failing first
/// when asked): the counters per block of instances (`result_blocks`) say which blocks hold
/// the page and how many rows of the first come before it, so only those blocks are read —
/// one counter row per status and 1,024 instances, and at most half a block of instances
/// besides the page's.
fn page_by_blocks(c: &Conn, account_id: &str, check_id: i64, f: &ResultFilter) -> Result<Vec<ResultRow>> {
    let wanted = |s: &CheckStatus| f.statuses.is_empty() || f.statuses.contains(s);
    // The statuses listed together, group after group.
    let groups: Vec<Vec<&str>> = if f.sort_by_status {
        FAILING_FIRST.iter().filter(|s| wanted(s)).map(|s| vec![s.as_str()]).collect()
    } else {
        vec![CheckStatus::ALL.iter().filter(|s| wanted(s)).map(|s| s.as_str()).collect()]
    };
    // Counter rows read at a time (a few in tests, so that they read several batches).
    const BATCH: i64 = if cfg!(test) { 2 } else { 256 };
    let (mut skip, mut left) = (f.offset.max(0), f.limit.max(0));
    let mut rows = Vec::new();
    for group in &groups {
        let mut after = i64::MIN;
        while left > 0 {
            let blocks = Where::new(
                "account_id = ? AND check_id = ? AND block > ?",
                [account_id.into(), check_id.into(), after.into()],
            )
            .and_in("status", group.iter().copied());
            let counts: Vec<(i64, i64)> = c.query(
                &format!(
                    "SELECT block, CAST(SUM(n) AS BIGINT) FROM result_blocks{} GROUP BY block HAVING SUM(n) > 0 ORDER BY block LIMIT {BATCH}",
                    blocks.sql()
                ),
                blocks.args(),
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            for &(block, n) in &counts {
                after = block;
                if skip >= n {
                    skip -= n;
                    continue;
                }
                // A block's rows are found by probing its instances one by one, those skipped
                // too: rows from the middle of the block on are read from its end.
                let got = if 2 * skip >= n {
                    let take = left.min(n - skip);
                    let (sql, wh) = block_page(c, account_id, check_id, block, group, true);
                    let mut got = c.query(&sql, &wh.paged(take, n - skip - take), result_from)?;
                    got.reverse();
                    got
                } else {
                    let (sql, wh) = block_page(c, account_id, check_id, block, group, false);
                    c.query(&sql, &wh.paged(left, skip), result_from)?
                };
                // Rows written since the counters were read may make a block hold fewer.
                skip = 0;
                left -= got.len() as i64;
                rows.extend(got);
                if left == 0 {
                    break;
                }
            }
            if (counts.len() as i64) < BATCH {
                break;
            }
        }
    }
    Ok(rows)
}

impl Store {
    /// The aggregate counted from the results themselves (the named instances' only, when
    /// ListCheckResult names some; and the recount the counters are tested against).
    pub(crate) fn count_results(
        &self,
        account_id: &str,
        instance_ids: &[String],
        vendors: &[i64],
        check_ids: &[i64],
    ) -> Result<BTreeMap<i64, ResultAggregate>> {
        // Grouped by (item, status) only; the vendors of a group are summarised by their
        // smallest and largest code (the answer needs only "one vendor, or several").
        let wh = Where::new("i.account_id = ?", [account_id.into()])
            .and_in("i.instance_id", instance_ids)
            .and_in("i.vendor", vendors.iter().copied())
            .and_in("r.check_id", check_ids.iter().copied());
        let sql = format!(
            "SELECT r.check_id, {{STATUS}} AS st, COUNT(*), MAX({EFFECTIVE_LAST_MS}), MAX({EFFECTIVE_RUN}), MIN(i.vendor), MAX(i.vendor)
             {{FROM}}{} GROUP BY r.check_id, st",
            wh.sql()
        );
        self.read(|c| {
            let mut out: BTreeMap<i64, ResultAggregate> = BTreeMap::new();
            let sql = sql.replace("{STATUS}", COUNTED_STATUS).replace("{FROM}", results_from(c));
            c.query(&sql, wh.args(), |r| {
                let status: String = r.get(1)?;
                let Some(status) = CheckStatus::parse(&status) else {
                    return Ok(());
                };
                let agg = out.entry(r.get(0)?).or_default();
                *agg.counts.entry(status.as_str()).or_default() += r.get::<i64>(2)?;
                for vendor in [r.get::<i64>(5)?, r.get::<i64>(6)?] {
                    if !agg.vendors.contains(&vendor) {
                        agg.vendors.push(vendor);
                    }
                }
                let last: i64 = r.get(3)?;
                if last >= agg.last_ms {
                    agg.last_ms = last;
                    agg.run_id = r.get(4)?;
                }
                Ok(())
            })?;
            Ok(out)
        })
    }
}

/// The rows `block_rows` gives for each block of instances (see `result_blocks`) that holds a
/// failing result of an item, or a whitelisted one (which may be failing too), block after
/// block; it is given the block's first key and the first of the next. No index of the
/// results starts with the item (schema 23): an item's failing instances are found in these
/// blocks only.
pub(crate) fn in_failing_blocks<T>(
    c: &Conn,
    account_id: &str,
    check_id: i64,
    mut block_rows: impl FnMut(i64, i64) -> Result<Vec<T>>,
) -> Result<Vec<T>> {
    let blocks: Vec<i64> = c.query(
        "SELECT block FROM result_blocks WHERE account_id = ? AND check_id = ? AND status IN ('NOT_PASS', 'WHITELIST')
         GROUP BY block HAVING SUM(n) > 0 ORDER BY block",
        args![account_id, check_id],
        |r| r.get(0),
    )?;
    let mut rows = Vec::new();
    for block in blocks {
        let (first, next) = block_keys(block);
        rows.extend(block_rows(first, next)?);
    }
    Ok(rows)
}

/// An item's failing results with their instances in one block, for a query to select from
/// and filter further: `?1` the account, `?2` the item, `first` and `next` the placeholders of
/// the block's keys (see [`in_failing_blocks`]). Each of the block's instances probes its
/// result by key, as a listing's page does (see `block_page`), the range being a parameter:
/// with the ranges computed inside one query from the blocks, PostgreSQL scanned every
/// result. On PostgreSQL
/// the probe is a lateral subquery with `OFFSET 0` (kept as a subquery): as a plain join it
/// chose, on 100,000 instances, a parallel scan of every instance for each block (8–10 ms a
/// block instead of 1.3).
pub(crate) fn failing_from(c: &Conn, first: &str, next: &str) -> String {
    let range = format!("i.pk >= {first} AND i.pk < {next} AND i.account_id = ?1");
    match c.dialect() {
        Dialect::Sqlite => format!("{SQLITE_BLOCK_FROM} WHERE {range} AND r.check_id = ?2 AND r.status = 'NOT_PASS'"),
        Dialect::Postgres => format!(
            " FROM instances i CROSS JOIN LATERAL
                (SELECT * FROM check_results r WHERE r.instance_pk = i.pk AND r.check_id = ?2 AND r.status = 'NOT_PASS' OFFSET 0) r
             WHERE {range}"
        ),
    }
}

/// An item's failing instances in one block (`?3`, `?4` its keys) that no whitelist exempts,
/// in instance order.
fn failing_sql(c: &Conn) -> String {
    format!(
        "SELECT {INSTANCE_COLS}{} AND NOT {} ORDER BY i.pk",
        failing_from(c, "?3", "?4"),
        whitelisted_sql("r.account_id", "r.check_id", "r.instance_pk")
    )
}

impl crate::Results for Store {
    fn aggregate_results(
        &self,
        account_id: &str,
        instance_ids: &[String],
        vendors: &[i64],
        check_ids: &[i64],
    ) -> Result<BTreeMap<i64, ResultAggregate>> {
        self.settle_expiries(Some(account_id))?;
        if !instance_ids.is_empty() {
            return self.count_results(account_id, instance_ids, vendors, check_ids);
        }
        // The counters kept by the writes: a row per (item, vendor, status) with results.
        let wh = Where::new("account_id = ? AND n <> 0", [account_id.into()])
            .and_in("vendor", vendors.iter().copied())
            .and_in("check_id", check_ids.iter().copied());
        let latest = Where::new("account_id = ?", [account_id.into()]).and_in("check_id", check_ids.iter().copied());
        self.read(|c| {
            let mut out: BTreeMap<i64, ResultAggregate> = BTreeMap::new();
            c.query(
                &format!("SELECT check_id, vendor, status, n FROM result_counts{} ORDER BY check_id, vendor", wh.sql()),
                wh.args(),
                |r| {
                    let status: String = r.get(2)?;
                    let status = CheckStatus::parse(&status)
                        .ok_or_else(|| StoreError::Corrupt(format!("result_counts.status: {status}")))?;
                    let agg = out.entry(r.get(0)?).or_default();
                    *agg.counts.entry(status.as_str()).or_default() += r.get::<i64>(3)?;
                    let vendor: i64 = r.get(1)?;
                    if !agg.vendors.contains(&vendor) {
                        agg.vendors.push(vendor);
                    }
                    Ok(())
                },
            )?;
            // The item's latest evaluation, on any vendor.
            c.query(
                &format!("SELECT check_id, last_ms, run_id FROM result_latest{}", latest.sql()),
                latest.args(),
                |r| {
                    if let Some(agg) = out.get_mut(&r.get::<i64>(0)?) {
                        agg.last_ms = r.get(1)?;
                        agg.run_id = r.get(2)?;
                    }
                    Ok(())
                },
            )?;
            Ok(out)
        })
    }

    fn list_results(&self, account_id: &str, check_id: i64, f: &ResultFilter) -> Result<(Vec<ResultRow>, i64)> {
        self.settle_expiries(Some(account_id))?;
        // Filtered by item and status only (the common listing, however large the fleet): the
        // total and the page come from the counters; a search by instance counts and steps
        // over the rows it matches.
        let by_counters = f.instance_ids.is_empty()
            && [&f.instance_id_key, &f.instance_name_key, &f.region_id_key]
                .iter()
                .all(|k| k.as_deref().unwrap_or("").is_empty());
        let wh = Where::new("i.account_id = ? AND r.check_id = ?", [account_id.into(), check_id.into()])
            .and_contains("i.instance_id", f.instance_id_key.as_deref())
            .and_contains("i.instance_name", f.instance_name_key.as_deref())
            .and_contains("i.region_id", f.region_id_key.as_deref())
            .and_in("i.instance_id", &f.instance_ids)
            .and_in(COUNTED_STATUS, f.statuses.iter().map(|s| s.as_str()));
        self.read(|c| {
            if by_counters {
                let counted = Where::new("account_id = ? AND check_id = ?", [account_id.into(), check_id.into()])
                    .and_in("status", f.statuses.iter().map(|s| s.as_str()));
                let total = c.value(
                    &format!("SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM result_counts{}", counted.sql()),
                    counted.args(),
                )?;
                return Ok((page_by_blocks(c, account_id, check_id, f)?, total));
            }
            let from = results_from(c);
            let total: i64 = c.value(&format!("SELECT COUNT(*){from}{}", wh.sql()), wh.args())?;
            let order = if f.sort_by_status { format!("{}, i.pk", failing_first_sql()) } else { "i.pk".into() };
            let sql = format!("{}{from}{} ORDER BY {order} LIMIT ? OFFSET ?", *SELECT_RESULTS, wh.sql());
            let rows = c.query(&sql, &wh.paged(f.limit, f.offset), result_from)?;
            Ok((rows, total))
        })
    }

    fn failing_instances(&self, account_id: &str, check_id: i64) -> Result<Vec<Instance>> {
        self.read(|c| {
            let sql = failing_sql(c);
            in_failing_blocks(c, account_id, check_id, |first, next| {
                c.query(&sql, args![account_id, check_id, first, next], |r| instance_from(r, 0))
            })
        })
    }

    fn result_status(&self, account_id: &str, check_id: i64, instance_pk: i64) -> Result<Option<CheckStatus>> {
        self.read(|c| {
            let s: Option<String> = c.query_opt(
                &format!(
                    "SELECT {} FROM check_results r WHERE account_id = ? AND check_id = ? AND instance_pk = ?",
                    effective_status_sql()
                ),
                args![account_id, check_id, instance_pk],
                |r| r.get(0),
            )?;
            Ok(s.and_then(|s| CheckStatus::parse(&s)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::Arg;
    use crate::testutil::store;
    use crate::NewWhitelist;

    fn plan(s: &Store, sql: &str, args: &[Arg]) -> Vec<String> {
        s.read(|c| c.query(&format!("EXPLAIN QUERY PLAN {sql}"), args, |r| r.get::<String>(3))).unwrap()
    }

    crate::testutil::both_backends! {
        /// The failing instances found through the block counters are those a scan of every
        /// result finds: across blocks, with another account's instances in the same blocks,
        /// exemptions, and results that stopped failing.
        fn an_items_failing_instances_are_those_a_full_scan_finds() {
            use crate::{Accounts, Instances, Whitelists};
            let (_d, s) = store();
            let (a, b) = (s.create_account("a").unwrap().id, s.create_account("b").unwrap().id);
            // Interleaved, so that the two accounts share blocks.
            for i in 0..24 {
                s.upsert_instances(if i % 3 == 0 { &b } else { &a }, &[crate::conformance::host(i)]).unwrap();
            }
            let pks = |acct: &str| -> Vec<i64> { s.list_instances(acct).unwrap().iter().map(|i| i.pk).collect() };
            let (in_a, in_b) = (pks(&a), pks(&b));
            let mut seed = 7u64;
            let mut next = || {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                seed >> 33
            };
            for round in 0..3 {
                for (acct, pks) in [(&a, &in_a), (&b, &in_b)] {
                    for pk in pks {
                        for check in [1001, 1002] {
                            let status = match next() % 3 {
                                0 => CheckStatus::NotPass,
                                1 => CheckStatus::Pass,
                                _ if round == 0 => CheckStatus::NotPass,
                                _ => continue,
                            };
                            crate::conformance::record_result(&s, acct, check, *pk, status);
                        }
                    }
                }
                if round == 1 {
                    let exempt = NewWhitelist { check_id: 1001, instance_pks: in_a[..4].to_vec(), ..Default::default() };
                    s.add_whitelists(&a, &[exempt]).unwrap();
                }
                for (acct, check) in [(&a, 1001), (&a, 1002), (&b, 1001), (&b, 1002)] {
                    let scanned: Vec<i64> = s
                        .read(|c| {
                            c.query(
                                &format!(
                                    "SELECT r.instance_pk FROM check_results r WHERE r.account_id = ? AND r.check_id = ? AND r.status = 'NOT_PASS' AND NOT {} ORDER BY r.instance_pk",
                                    whitelisted_sql("r.account_id", "r.check_id", "r.instance_pk")
                                ),
                                args![acct, check],
                                |r| r.get(0),
                            )
                        })
                        .unwrap();
                    let found: Vec<i64> =
                        crate::Results::failing_instances(&s, acct, check).unwrap().iter().map(|i| i.pk).collect();
                    assert_eq!(found, scanned, "round {round}, item {check}");
                    assert!(!found.is_empty() || round > 0, "round {round}, item {check}: some fail");
                }
            }
        }

        /// PostgreSQL plans an item's failing instances in a block as SQLite is told to: the
        /// block's instances by key, each probing its result (with the range computed in the
        /// query from the blocks instead, it scanned every result). On a fleet large enough
        /// for the planner to choose.
        fn a_blocks_failing_instances_are_probed_by_key_on_either_backend() {
            use crate::{Accounts, Instances};
            let (_d, s) = store();
            let a = s.create_account("a").unwrap().id;
            let hosts: Vec<_> = (0..2000).map(crate::conformance::host).collect();
            s.upsert_instances(&a, &hosts).unwrap();
            let pks: Vec<i64> = s.list_instances(&a).unwrap().iter().map(|i| i.pk).collect();
            fn failing(pk: i64) -> bool {
                pk % 97 == 0
            }
            let (account, all) = (a.clone(), pks.clone());
            s.write(move |tx| {
                let mut tally = crate::counts::Tally::default();
                for pk in &all {
                    let results: Vec<ResultUpdate> = [1001, 1002, 1003]
                        .map(|check_id| ResultUpdate {
                            check_id,
                            instance_pk: *pk,
                            vendor: Vendor::Aliyun,
                            status: if failing(*pk) { CheckStatus::NotPass } else { CheckStatus::Pass },
                            status_message: String::new(),
                            config: "{}".into(),
                            run_id: "r".into(),
                        })
                        .to_vec();
                    crate::counts::write_results(tx, &account, &results, crate::now_ms(), &mut tally)?;
                }
                tally.apply(tx, &account)?;
                if tx.dialect() == Dialect::Postgres {
                    tx.batch("ANALYZE")?;
                }
                Ok(())
            })
            .unwrap();
            let found: Vec<i64> = crate::Results::failing_instances(&s, &a, 1002).unwrap().iter().map(|i| i.pk).collect();
            assert_eq!(found, pks.iter().copied().filter(|pk| failing(*pk)).collect::<Vec<_>>());
            let (first, next) = block_keys(found[1] >> BLOCK_BITS);
            let plan = s
                .read(|c| {
                    let sql = failing_sql(c);
                    let a = args![&a, 1002, first, next];
                    match c.dialect() {
                        Dialect::Sqlite => c.query(&format!("EXPLAIN QUERY PLAN {sql}"), a, |r| r.get::<String>(3)),
                        Dialect::Postgres => c.query(&format!("EXPLAIN {sql}"), a, |r| r.get::<String>(0)),
                    }
                })
                .unwrap()
                .join("\n");
            let scans = ["Seq Scan on check_results", "Seq Scan on instances", "SCAN r", "SCAN i"];
            assert!(!scans.iter().any(|scan| plan.contains(scan)), "{plan}");
            assert!(plan.contains("instance_pk"), "{plan}");
            // A page of the item's listing, with its instances' stamps.
            let plan = s
                .read(|c| {
                    let (sql, wh) = block_page(c, &a, 1002, found[1] >> BLOCK_BITS, &["PASS", "NOT_PASS"], false);
                    let a = wh.paged(20, 0);
                    match c.dialect() {
                        Dialect::Sqlite => c.query(&format!("EXPLAIN QUERY PLAN {sql}"), &a, |r| r.get::<String>(3)),
                        Dialect::Postgres => c.query(&format!("EXPLAIN {sql}"), &a, |r| r.get::<String>(0)),
                    }
                })
                .unwrap()
                .join("\n");
            let scans = [scans.as_slice(), &["Seq Scan on result_stamps", "SCAN st"]].concat();
            assert!(!scans.iter().any(|scan| plan.contains(scan)), "{plan}");
        }
    }

    /// No index of the results starts with the item (schemas 22 and 23): an item's listing
    /// loops over a block of instances, each seeking its result by key, and its failing
    /// instances do the same in the blocks whose counters hold a failing result. Neither reads
    /// the other results of the fleet.
    #[test]
    fn an_items_results_are_read_through_their_instances() {
        let (_d, s) = store();
        let (sql, wh) = s.read(|c| Ok(block_page(c, "a", 1001, 3, &["PASS", "NOT_PASS"], true))).unwrap();
        let by_instance = |steps: &[String]| {
            assert!(
                steps.iter().any(|p| p.starts_with("SEARCH i USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)")),
                "{steps:?}"
            );
            assert!(
                steps
                    .iter()
                    .any(|p| p.contains("SEARCH r USING INDEX") && p.contains("(instance_pk=? AND check_id=?)")),
                "{steps:?}"
            );
        };
        let steps = plan(&s, &sql, &wh.paged(20, 0));
        by_instance(&steps);
        assert!(!steps.iter().any(|p| p.starts_with("SCAN")), "{steps:?}");
        let steps = plan(&s, &s.read(|c| Ok(failing_sql(c))).unwrap(), args!["a", 1001, 12, 16]);
        by_instance(&steps);
        assert!(!steps.iter().any(|p| p.starts_with("SCAN") || p.contains("TEMP B-TREE")), "{steps:?}");
    }
}
