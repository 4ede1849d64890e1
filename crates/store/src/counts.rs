//! The results of each check item counted by vendor and effective status (`result_counts`), and
//! each item's latest evaluation (`result_latest`), kept current by every write that changes a
//! result or whether a rule exempts it — in that write's transaction, on both backends — so that
//! ListCheckResult reads a few counters, whatever the size of the fleet. The same writes keep
//! the results of each item counted per status and block of instances (`result_blocks`, a
//! block being [`BLOCK_BITS`] of `instance_pk`), from which a listing finds a deep page without
//! reading the rows before it.
//!
//! A result is counted under its evaluated status, or `WHITELIST` while a rule in force exempts
//! it (`check_results.whitelisted`, kept by the same writes). A rule's expiry is applied by
//! [`apply_due_expiries`]: by any node's engine as rules fall due, and by every read of the
//! counters before it reads (so a read after an expiry never counts the instance as
//! whitelisted, whether or not a job has run).
//!
//! On PostgreSQL, writes of results take the account's whitelisting lock shared and writes of
//! rules take it exclusively ([`lock_whitelisting`]): whether a new result is exempted, and which
//! results a rule change flips, are then decided against settled rules and results.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::LazyLock;

use model::CheckStatus;

use crate::results::ResultUpdate;
use crate::sql::{args, Arg, Conn, Dialect, Where};
use crate::{now_ms, Result, Store, StoreError};

/// Instances per block of `result_blocks`: `instance_pk >> BLOCK_BITS` (1,024; 4 in this
/// crate's tests, so that a handful of instances spans many blocks).
pub(crate) const BLOCK_BITS: u32 = if cfg!(test) { 2 } else { 10 };

/// `sql` with its `{BLOCK_BITS}` spelled out.
pub(crate) fn blocks_sql(sql: &str) -> String {
    sql.replace("{BLOCK_BITS}", &BLOCK_BITS.to_string())
}

/// Changes to the counters of one account, applied together at the end of a write (in key
/// order, so concurrent writers on PostgreSQL take the counter rows in one order).
#[derive(Default)]
pub(crate) struct Tally {
    deltas: BTreeMap<(i64, i64, &'static str), i64>,
    /// By (item, block, status).
    blocks: BTreeMap<(i64, i64, &'static str), i64>,
    latest: BTreeMap<i64, (i64, String)>,
    /// The items of the account with a rule in force, read once per write (most have none, and
    /// a new result of those needs no probe of the rules).
    ruled: Option<BTreeSet<i64>>,
    /// The items whose rules in force exempt one instance (the last asked about), read once
    /// for all of its new results: a statement per result was a round trip each on PostgreSQL.
    exempt: Option<(i64, BTreeSet<i64>)>,
}

impl Tally {
    /// A result of `check` on instance `pk` of `vendor` moved from one counted status to
    /// another (None: it did not exist, or no longer does).
    fn moved(&mut self, check: i64, vendor: i64, pk: i64, from: Option<&'static str>, to: Option<&'static str>) {
        if from == to {
            return;
        }
        let block = pk >> BLOCK_BITS;
        if let Some(from) = from {
            *self.deltas.entry((check, vendor, from)).or_default() -= 1;
            *self.blocks.entry((check, block, from)).or_default() -= 1;
        }
        if let Some(to) = to {
            *self.deltas.entry((check, vendor, to)).or_default() += 1;
            *self.blocks.entry((check, block, to)).or_default() += 1;
        }
    }

    /// `check` was evaluated at `at_ms` by `run_id`.
    fn evaluated(&mut self, check: i64, at_ms: i64, run_id: &str) {
        match self.latest.get_mut(&check) {
            // The results of one write mostly share their time and run: nothing to copy then.
            Some(e) if at_ms > e.0 || (at_ms == e.0 && e.1 != run_id) => *e = (at_ms, run_id.to_string()),
            Some(_) => {}
            None => {
                self.latest.insert(check, (at_ms, run_id.to_string()));
            }
        }
    }

    /// Whether a rule in force at `now` exempts a new result of `check` on instance `pk`.
    fn exempted(&mut self, tx: &Conn, account: &str, check: i64, pk: i64, now: i64) -> Result<bool> {
        if self.ruled.is_none() {
            let ruled = tx.query(
                "SELECT DISTINCT check_id FROM whitelist_rules WHERE account_id = ? AND (expires_ms IS NULL OR expires_ms > ?)",
                args![account, now],
                |r| r.get::<i64>(0),
            )?;
            self.ruled = Some(ruled.into_iter().collect());
        }
        if !self.ruled.as_ref().is_some_and(|r| r.contains(&check)) {
            return Ok(false);
        }
        if self.exempt.as_ref().is_none_or(|(of, _)| *of != pk) {
            let items = tx.query(
                &format!(
                    "SELECT DISTINCT r.check_id FROM whitelist_rules r WHERE r.account_id = ?1 AND {}",
                    exempted_at("?1", "r.check_id", "?2", "?3")
                ),
                args![account, pk, now],
                |r| r.get::<i64>(0),
            )?;
            self.exempt = Some((pk, items.into_iter().collect()));
        }
        Ok(self.exempt.as_ref().is_some_and(|(_, items)| items.contains(&check)))
    }

    /// Writes the changes to the counters of `account`.
    pub(crate) fn apply(self, tx: &Conn, account: &str) -> Result<()> {
        add_to_counters(tx, account, "result_counts", "vendor", self.deltas)?;
        add_to_counters(tx, account, "result_blocks", "block", self.blocks)?;
        for (check, (at_ms, run_id)) in self.latest {
            tx.execute(
                "INSERT INTO result_latest (account_id, check_id, last_ms, run_id) VALUES (?, ?, ?, ?)
                 ON CONFLICT (account_id, check_id) DO UPDATE SET last_ms = excluded.last_ms, run_id = excluded.run_id
                 WHERE excluded.last_ms >= result_latest.last_ms",
                args![account, check, at_ms, &run_id],
            )?;
        }
        Ok(())
    }
}

/// Adds `deltas`, keyed by (item, `middle`, status), to the counter table `table` of `account`.
fn add_to_counters(
    tx: &Conn,
    account: &str,
    table: &str,
    middle: &str,
    deltas: BTreeMap<(i64, i64, &'static str), i64>,
) -> Result<()> {
    let sql = format!(
        "INSERT INTO {table} (account_id, check_id, {middle}, status, n) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (account_id, check_id, {middle}, status) DO UPDATE SET n = {table}.n + excluded.n"
    );
    for ((check, key, status), n) in deltas {
        if n != 0 {
            tx.execute(&sql, args![account, check, key, status, n])?;
        }
    }
    Ok(())
}

/// The status a result is counted under.
fn counted(status: &str, whitelisted: bool) -> Result<&'static str> {
    if whitelisted {
        return Ok(CheckStatus::Whitelist.as_str());
    }
    CheckStatus::parse(status)
        .map(CheckStatus::as_str)
        .ok_or_else(|| StoreError::Corrupt(format!("check_results.status: {status}")))
}

/// SQL true when a rule in force at `{now}` exempts the result of check `{check}` on instance
/// `{pk}` of account `{account}` (column expressions or parameters of the enclosing statement).
pub(crate) fn exempted_at(account: &str, check: &str, pk: &str, now: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM whitelist_rules w WHERE w.account_id = {account} AND w.check_id = {check} \
         AND (w.expires_ms IS NULL OR w.expires_ms > {now}) \
         AND (w.whole_check = 1 OR EXISTS (SELECT 1 FROM whitelist_entries e WHERE e.rule_id = w.id AND e.instance_pk = {pk})))"
    )
}

/// On PostgreSQL, takes the account's whitelisting lock for the rest of the transaction: shared
/// by writes of results, exclusive for writes of rules (see the module's documentation).
pub(crate) fn lock_whitelisting(tx: &Conn, account: &str, exclusive: bool) -> Result<()> {
    if tx.dialect() == Dialect::Postgres {
        let f = if exclusive { "pg_advisory_xact_lock" } else { "pg_advisory_xact_lock_shared" };
        // Keyed by the account's hash, in a space of its own (the first argument).
        tx.value::<Option<i64>>(
            &format!("SELECT CAST(NULL AS BIGINT) FROM {f}(1886352244, hashtext(?))"),
            args![account],
        )?;
    }
    Ok(())
}

/// Writes a new result of an item on an instance (created, or replacing the last one) and
/// tallies the counter it leaves and the one it joins.
pub(crate) fn write_result(tx: &Conn, account: &str, u: &ResultUpdate, now: i64, tally: &mut Tally) -> Result<()> {
    write_results(tx, account, std::slice::from_ref(u), now, tally)
}

/// Writes new results of items on **one** instance by **one** run (a check run's results of a
/// host) and tallies their counters.
///
/// The instance's stamp (`result_stamps`, schema 25) is taken first: it is the SHA-256 of the
/// results the last write gave one run, that run, and the last run that found them again. A
/// write whose results hash the same (most hosts of a scheduled check) only moves the stamp;
/// every read of a result's time and run takes the stamp's for the results still carrying the
/// run that wrote them (`EFFECTIVE_LAST_MS` in results.rs). Otherwise the instance's earlier
/// results are read once (one range of the key, schema 22): a changed one is updated by id (a
/// plain write costs SQLite half what an upsert with `RETURNING` does, docs/performance.md),
/// the unchanged ones get their time and run by one statement, new ones are inserted many to a
/// statement.
///
/// On PostgreSQL, taking the stamp locks it until the commit: every write of the instance's
/// results takes it first (deletions too), so the rows read are the rows replaced, as with
/// SQLite's one writer. Commits of several instances take them in key order (`finish_details`);
/// nothing else locks a stamp, so no other order can meet it.
pub(crate) fn write_results(
    tx: &Conn,
    account: &str,
    results: &[ResultUpdate],
    now: i64,
    tally: &mut Tally,
) -> Result<()> {
    let Some(first) = results.first() else { return Ok(()) };
    debug_assert!(results.iter().all(|u| u.instance_pk == first.instance_pk && u.run_id == first.run_id));
    let pk = first.instance_pk;
    let digest = results_digest(results);
    let (base, seen_run, seen_ms, unchanged): (Option<String>, Option<String>, Option<i64>, i64) = tx.query_one(
        "INSERT INTO result_stamps (instance_pk) VALUES (?1)
         ON CONFLICT (instance_pk) DO UPDATE SET
           results_seen_run = CASE WHEN result_stamps.results_digest = ?2 THEN ?3 ELSE result_stamps.results_seen_run END,
           results_seen_ms = CASE WHEN result_stamps.results_digest = ?2 THEN ?4 ELSE result_stamps.results_seen_ms END
         RETURNING results_run, results_seen_run, results_seen_ms, CASE WHEN results_digest = ?2 THEN 1 ELSE 0 END",
        args![pk, &digest, &first.run_id, now],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    if unchanged == 1 {
        // Found as the last write left them: only the stamp moved, no counter does.
        for u in results {
            tally.evaluated(u.check_id, now, &u.run_id);
        }
        return Ok(());
    }
    let mut earlier: HashMap<i64, Earlier> = HashMap::new();
    tx.query(
        "SELECT check_id, id, status, whitelisted, status_message, config, check_run_id FROM check_results
         WHERE instance_pk = ? AND account_id = ?",
        args![pk, account],
        |r| {
            let e = Earlier {
                id: r.get(1)?,
                status: r.get(2)?,
                whitelisted: r.get(3)?,
                message: r.get(4)?,
                config: r.get(5)?,
                run: r.get(6)?,
            };
            earlier.insert(r.get(0)?, e);
            Ok(())
        },
    )?;
    let mut created: Vec<(&ResultUpdate, bool)> = Vec::new();
    let mut unchanged = Vec::new();
    for u in results {
        match earlier.remove(&u.check_id) {
            Some(e) => {
                let same = e.status == u.status.as_str() && e.message == u.status_message && e.config == u.config;
                if same {
                    unchanged.push(e.id);
                } else {
                    tx.execute(
                        "UPDATE check_results SET status = ?, status_message = ?, config = ?, last_ms = ?, check_run_id = ?
                         WHERE id = ?",
                        args![u.status.as_str(), &u.status_message, &u.config, now, &u.run_id, e.id],
                    )?;
                }
                result_written(tx, account, u, Some(e.status), e.whitelisted, now, tally)?;
            }
            None => created.push((u, tally.exempted(tx, account, u.check_id, u.instance_pk, now)?)),
        }
    }
    stamp(tx, pk, &unchanged, now, &first.run_id)?;
    // New results (a first check writes all of an instance's) go many to a statement.
    for rows in created.chunks(RESULTS_PER_INSERT) {
        tx.execute(results_sql(rows.len()), &result_rows_args(account, pk, now, rows))?;
        for (u, whitelisted) in rows {
            result_written(tx, account, u, None, *whitelisted, now, tally)?;
        }
    }
    // The results this write left alone keep what the last check that found them unchanged
    // gave them (again, if they carry it already), before the stamp forgets it. The digest
    // vouches for the results this write gave its run: none if results it left alone carry
    // that run too (a run that wrote the instance before, or found it unchanged).
    let stamped = match (&base, &seen_run, seen_ms) {
        (Some(base), Some(seen_run), Some(seen_ms)) => {
            let vouched: Vec<i64> = earlier.values().filter(|e| e.run == *base).map(|e| e.id).collect();
            stamp(tx, pk, &vouched, seen_ms, seen_run)?;
            Some((base, seen_run))
        }
        _ => None,
    };
    let repeat = earlier.values().any(|e| match stamped {
        Some((base, seen_run)) if e.run == *base => *seen_run == first.run_id,
        _ => e.run == first.run_id,
    });
    let digest = Some(digest).filter(|_| !repeat);
    let run = digest.as_ref().map(|_| first.run_id.as_str());
    tx.execute(
        "UPDATE result_stamps SET results_run = ?, results_seen_run = ?, results_seen_ms = ?, results_digest = ?
         WHERE instance_pk = ?",
        args![run, run, digest.as_ref().map(|_| now), digest, pk],
    )?;
    Ok(())
}

/// Gives results of instance `pk` (by id) the time and run of a check that found them
/// unchanged. The instance narrows the statement to its range of the key: by ids alone,
/// PostgreSQL joined the list with every result (1.4 ms a write of 200 hosts' results).
fn stamp(tx: &Conn, pk: i64, ids: &[i64], at_ms: i64, run: &str) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let list = serde_json::to_string(ids).map_err(|e| StoreError::Db(e.to_string()))?;
    let sql = tx.pick(
        "SELECT value FROM json_each(?3)",
        "SELECT CAST(value AS BIGINT) FROM json_array_elements_text(CAST(?3 AS JSON))",
    );
    tx.execute(
        &format!("UPDATE check_results SET last_ms = ?1, check_run_id = ?2 WHERE instance_pk = ?4 AND id IN ({sql})"),
        args![at_ms, run, list, pk],
    )?;
    Ok(())
}

/// The SHA-256 of an instance's results as written (item, vendor, status, message, shown
/// values; in item order, each field with its length), which says whether a check found them
/// unchanged.
fn results_digest(results: &[ResultUpdate]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<&ResultUpdate> = results.iter().collect();
    sorted.sort_by_key(|u| u.check_id);
    let mut h = Sha256::new();
    for u in sorted {
        h.update(u.check_id.to_le_bytes());
        h.update(u.vendor.code().to_le_bytes());
        for field in [u.status.as_str(), &u.status_message, &u.config] {
            h.update((field.len() as u64).to_le_bytes());
            h.update(field.as_bytes());
        }
    }
    h.finalize().to_vec()
}

/// An instance's stored result, as a write reads it before replacing it.
struct Earlier {
    id: i64,
    status: String,
    whitelisted: bool,
    message: String,
    config: String,
    run: String,
}

/// Results inserted by one statement at most (a statement per result cost SQLite as much again
/// as the rows themselves, and PostgreSQL a round trip each).
const RESULTS_PER_INSERT: usize = 32;

/// The statement that inserts `rows` (1 to [`RESULTS_PER_INSERT`]) new results of one
/// instance: `?1` account, `?2` instance, `?3` now, then per result (see [`result_rows_args`])
/// its item, status, message, config, run, vendor and whether a rule exempts it.
fn results_sql(rows: usize) -> &'static str {
    // Built once for every size: the text is also the statement cache's key.
    static BY_SIZE: LazyLock<Vec<String>> = LazyLock::new(|| (1..=RESULTS_PER_INSERT).map(build_results_sql).collect());
    &BY_SIZE[rows - 1]
}

fn build_results_sql(rows: usize) -> String {
    const PER_ROW: usize = 7;
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let at = |k: usize| format!("?{}", 4 + PER_ROW * r + k);
            format!("(?1, {}, ?2, {}, {}, {}, ?3, ?3, {}, {}, {})", at(0), at(1), at(2), at(3), at(4), at(5), at(6))
        })
        .collect();
    format!(
        "INSERT INTO check_results (account_id, check_id, instance_pk, status, status_message, config, first_ms, last_ms, check_run_id, vendor, whitelisted)
         VALUES {}",
        values.join(", ")
    )
}

/// The arguments of [`results_sql`]: the instance's, then each result's with whether a rule
/// exempts it.
fn result_rows_args<'a>(
    account: &'a str,
    instance_pk: i64,
    now: i64,
    rows: &[(&'a ResultUpdate, bool)],
) -> Vec<Arg<'a>> {
    let mut a: Vec<Arg> = vec![account.into(), instance_pk.into(), now.into()];
    for (u, whitelisted) in rows {
        a.extend([
            u.check_id.into(),
            u.status.as_str().into(),
            u.status_message.as_str().into(),
            u.config.as_str().into(),
            u.run_id.as_str().into(),
            u.vendor.code().into(),
            i64::from(*whitelisted).into(),
        ]);
    }
    a
}

/// What follows a result's write: the regression event, and its counters.
fn result_written(
    tx: &Conn,
    account: &str,
    u: &ResultUpdate,
    previous: Option<String>,
    whitelisted: bool,
    now: i64,
    tally: &mut Tally,
) -> Result<()> {
    let status = u.status.as_str();
    if previous.as_deref() == Some("PASS") && status == "NOT_PASS" {
        crate::webhooks::check_failed(tx, account, u.check_id, u.instance_pk)?;
    }
    let from = previous.map(|p| counted(&p, whitelisted)).transpose()?;
    tally.moved(u.check_id, u.vendor.code(), u.instance_pk, from, Some(counted(status, whitelisted)?));
    tally.evaluated(u.check_id, now, &u.run_id);
    Ok(())
}

/// Deletes the result of an item on an instance (the item no longer applies to it).
pub(crate) fn delete_result(tx: &Conn, account: &str, check: i64, pk: i64, tally: &mut Tally) -> Result<()> {
    // Most items a check finds no longer apply had no result (the item never applied).
    let exists: bool = tx.value(
        "SELECT EXISTS (SELECT 1 FROM check_results WHERE account_id = ? AND check_id = ? AND instance_pk = ?)",
        args![account, check, pk],
    )?;
    if !exists {
        return Ok(());
    }
    // The instance's results are no longer the whole its digest vouches for; on PostgreSQL this
    // also takes its stamp, before any of its rows, as every write of its results does.
    tx.execute(
        "INSERT INTO result_stamps (instance_pk) VALUES (?) ON CONFLICT (instance_pk) DO UPDATE SET results_digest = NULL",
        args![pk],
    )?;
    let gone: Option<(String, bool, i64)> = tx.query_opt(
        "DELETE FROM check_results WHERE account_id = ? AND check_id = ? AND instance_pk = ? RETURNING status, whitelisted, vendor",
        args![account, check, pk],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    if let Some((status, whitelisted, vendor)) = gone {
        tally.moved(check, vendor, pk, Some(counted(&status, whitelisted)?), None);
    }
    Ok(())
}

/// Which results of an item a rule change may concern.
pub(crate) enum Concerned<'a> {
    /// Every result of the item.
    All,
    /// The results on these instances.
    Instances(&'a [i64]),
    /// The results on the instances a rule lists.
    ListedBy(i64),
}

/// Decides again, at `now`, whether each concerned result of `check` is exempted, and moves the
/// results whose answer changed between their counters.
pub(crate) fn refresh_exemptions(
    tx: &Conn,
    account: &str,
    check: i64,
    concerned: Concerned,
    now: i64,
    tally: &mut Tally,
) -> Result<()> {
    let flip = |scope: &str, extra: Vec<Arg>, tally: &mut Tally| -> Result<()> {
        // `scope` comes last: its bare `?` are numbered after ?3.
        let mut a: Vec<Arg> = vec![account.into(), check.into(), now.into()];
        a.extend(extra);
        tx.query(
            &format!(
                "UPDATE check_results SET whitelisted = 1 - whitelisted
                 WHERE account_id = ?1 AND check_id = ?2 AND whitelisted <> CASE WHEN {} THEN 1 ELSE 0 END {scope}
                 RETURNING status, whitelisted, vendor, instance_pk",
                exempted_at("?1", "?2", "check_results.instance_pk", "?3")
            ),
            &a,
            |r| {
                let (status, now_exempted, vendor): (String, bool, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
                tally.moved(
                    check,
                    vendor,
                    r.get(3)?,
                    Some(counted(&status, !now_exempted)?),
                    Some(counted(&status, now_exempted)?),
                );
                Ok(())
            },
        )?;
        Ok(())
    };
    match concerned {
        // The item's results are found through the account's instances (the results are keyed
        // by instance since schema 22).
        Concerned::All => {
            flip("AND instance_pk IN (SELECT pk FROM instances WHERE account_id = ?1)", Vec::new(), tally)
        }
        Concerned::ListedBy(rule) => flip(
            "AND instance_pk IN (SELECT instance_pk FROM whitelist_entries WHERE rule_id = ?4)",
            vec![rule.into()],
            tally,
        ),
        Concerned::Instances(pks) => {
            for chunk in pks.chunks(crate::IN_LIST_MAX) {
                let scope = format!("AND instance_pk IN ({})", crate::placeholders(chunk.len()));
                flip(&scope, chunk.iter().map(|p| Arg::from(*p)).collect(), tally)?;
            }
            Ok(())
        }
    }
}

/// Applies the expiry of every rule (of `account`, or of all accounts) that has fallen due by
/// `now` and is not applied yet: its results stop counting as whitelisted unless another rule
/// in force exempts them. Returns how many rules it applied.
pub(crate) fn apply_due_expiries(tx: &Conn, account: Option<&str>, now: i64) -> Result<usize> {
    let wh = due_rules(account, now);
    let due: Vec<(i64, String, i64, bool)> = tx.query(
        &format!(
            "SELECT id, account_id, check_id, whole_check FROM whitelist_rules{} ORDER BY account_id, id",
            wh.sql()
        ),
        wh.args(),
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let mut by_account: BTreeMap<String, Vec<(i64, i64, bool)>> = BTreeMap::new();
    for (id, acct, check, whole) in &due {
        by_account.entry(acct.clone()).or_default().push((*id, *check, *whole));
    }
    for (acct, rules) in by_account {
        lock_whitelisting(tx, &acct, true)?;
        let mut tally = Tally::default();
        for (id, check, whole) in rules {
            let concerned = if whole { Concerned::All } else { Concerned::ListedBy(id) };
            refresh_exemptions(tx, &acct, check, concerned, now, &mut tally)?;
            tx.execute("UPDATE whitelist_rules SET expiry_applied = 1 WHERE id = ?", args![id])?;
        }
        tally.apply(tx, &acct)?;
    }
    Ok(due.len())
}

/// The rules (of `account`, or of every account) whose expiry has fallen due by `now` and is
/// not applied yet.
fn due_rules(account: Option<&str>, now: i64) -> Where<'_> {
    Where::new("expires_ms IS NOT NULL AND expiry_applied = 0 AND expires_ms <= ?", [now.into()])
        .and_some("account_id = ?", account)
}

impl Store {
    /// Applies the expiries (of `account`'s rules, or of every account's) that have fallen due:
    /// a cheap read when none has, a write when some have. Before a read of the counters, so a
    /// read after an expiry never counts the instance as whitelisted; and by the engine's job.
    pub(crate) fn settle_expiries(&self, account: Option<&str>) -> Result<usize> {
        let now = now_ms();
        let due = due_rules(account, now);
        if !self.read(|c| {
            c.value::<bool>(&format!("SELECT EXISTS (SELECT 1 FROM whitelist_rules{})", due.sql()), due.args())
        })? {
            return Ok(0);
        }
        let account = account.map(str::to_string);
        self.write(move |tx| apply_due_expiries(tx, account.as_deref(), now))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use model::{CheckStatus, Vendor};

    use super::{
        apply_due_expiries, blocks_sql, delete_result, exempted_at, lock_whitelisting, write_result, write_results,
        Tally,
    };
    use crate::sql::args;
    use crate::testutil::store;
    use crate::{
        now_ms, Accounts, Instances, NewInstance, NewWhitelist, ResultFilter, ResultUpdate, Results, Store, Whitelists,
    };

    /// A small deterministic generator (xorshift64*), so a failing sequence can be replayed.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
        }
    }

    const CHECKS: [i64; 3] = [1001, 1002, 1003];
    const STATUSES: [CheckStatus; 4] =
        [CheckStatus::Pass, CheckStatus::NotPass, CheckStatus::Failed, CheckStatus::NotCheck];

    type Counts = BTreeMap<(i64, i64, String), i64>;

    /// An account of `n` hosts, every `aws_every`-th on AWS and the others on Alibaba Cloud;
    /// returns the account, the hosts' keys and their vendors.
    pub(crate) fn fleet(
        s: &Store,
        name: &str,
        n: usize,
        aws_every: usize,
    ) -> (String, Vec<i64>, BTreeMap<i64, Vendor>) {
        let account = s.create_account(name).unwrap().id;
        let hosts: Vec<NewInstance> = (0..n)
            .map(|i| NewInstance {
                vendor: if i % aws_every == 0 { Vendor::Aws } else { Vendor::Aliyun },
                region_id: "r".into(),
                instance_id: format!("i-{i}"),
                instance_name: format!("h{i}"),
                connector: "host".into(),
                locator: format!("/h/{i}"),
                os_type: "linux".into(),
                live: None,
            })
            .collect();
        s.upsert_instances(&account, &hosts).unwrap();
        let hosts = s.list_instances(&account).unwrap();
        (account, hosts.iter().map(|i| i.pk).collect(), hosts.iter().map(|i| (i.pk, i.vendor)).collect())
    }

    /// The counters as kept, once the expiries due at `now` are applied.
    fn maintained(s: &Store, account: &str, now: i64) -> Counts {
        let acct = account.to_string();
        s.write(move |tx| apply_due_expiries(tx, Some(&acct), now)).unwrap();
        s.read(|c| {
            c.query(
                "SELECT check_id, vendor, status, n FROM result_counts WHERE account_id = ? AND n <> 0",
                args![account],
                |r| Ok(((r.get(0)?, r.get(1)?, r.get(2)?), r.get(3)?)),
            )
        })
        .unwrap()
        .into_iter()
        .collect()
    }

    /// The same counts, recounted from every result and every rule in force at `now`.
    fn recount(s: &Store, account: &str, now: i64) -> Counts {
        let sql = format!(
            "SELECT r.check_id, i.vendor, CASE WHEN {} THEN 'WHITELIST' ELSE r.status END AS st, COUNT(*)
             FROM check_results r JOIN instances i ON i.pk = r.instance_pk WHERE r.account_id = ?1
             GROUP BY r.check_id, i.vendor, st",
            exempted_at("r.account_id", "r.check_id", "r.instance_pk", "?2")
        );
        s.read(|c| c.query(&sql, args![account, now], |r| Ok(((r.get(0)?, r.get(1)?, r.get(2)?), r.get(3)?))))
            .unwrap()
            .into_iter()
            .collect()
    }

    /// The counters per block as kept, and recounted from the results (after `maintained`).
    fn blocks(s: &Store, account: &str) -> (Counts, Counts) {
        let read = |sql: &str| -> Counts {
            s.read(|c| c.query(sql, args![account], |r| Ok(((r.get(0)?, r.get(1)?, r.get(2)?), r.get(3)?))))
                .unwrap()
                .into_iter()
                .collect()
        };
        let kept = read("SELECT check_id, block, status, n FROM result_blocks WHERE account_id = ? AND n <> 0");
        let counted = read(&blocks_sql(
            "SELECT check_id, instance_pk >> {BLOCK_BITS} AS b, CASE WHEN whitelisted = 1 THEN 'WHITELIST' ELSE status END AS st, COUNT(*)
             FROM check_results WHERE account_id = ? GROUP BY check_id, b, st",
        ));
        (kept, counted)
    }

    /// Every page of `size` of an item's listing, filtered by status only (read through the
    /// counters per block), concatenated; and the same listing read row after row (a search
    /// that matches every instance).
    fn pages(
        s: &Store,
        account: &str,
        check: i64,
        statuses: &[CheckStatus],
        sort_by_status: bool,
        size: i64,
    ) -> (Vec<i64>, Vec<i64>) {
        let f = ResultFilter { statuses: statuses.to_vec(), sort_by_status, limit: size, ..Default::default() };
        let mut paged = Vec::new();
        for page in 0.. {
            let (rows, _) = s.list_results(account, check, &ResultFilter { offset: page * size, ..f.clone() }).unwrap();
            if rows.is_empty() {
                break;
            }
            paged.extend(rows.iter().map(|r| r.id));
        }
        let all = ResultFilter { instance_id_key: Some("i-".into()), limit: 10_000, ..f };
        (paged, s.list_results(account, check, &all).unwrap().0.iter().map(|r| r.id).collect())
    }

    /// Random sequences of result writes and deletions, rules added (whole item or some
    /// instances; without expiry, expired, expiring within milliseconds, or later) and removed
    /// (by id, by item and instances), and time passing: after every step the counters equal a
    /// full recount, and the public aggregate equals one counted from the results.
    fn random_writes_keep_the_counters_equal_to_a_recount(seed: u64, steps: usize) {
        let (_d, s) = store();
        let (account, pks, vendors) = fleet(&s, "counts", 8, 3);
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut latest_expiry = 0;
        for step in 0..steps {
            let check = CHECKS[rng.below(CHECKS.len())];
            let pk = pks[rng.below(pks.len())];
            let some = |rng: &mut Rng| -> Vec<i64> { pks.iter().copied().filter(|_| rng.below(3) == 0).collect() };
            let op = rng.below(100);
            match op {
                0..=39 => {
                    // The results of some items on one instance, written together as a check
                    // writes them (new ones and replacements in one call).
                    let items: Vec<i64> = CHECKS.iter().copied().filter(|c| *c == check || rng.below(3) == 0).collect();
                    let updates: Vec<ResultUpdate> = items
                        .iter()
                        .map(|c| ResultUpdate {
                            check_id: *c,
                            instance_pk: pk,
                            vendor: vendors[&pk],
                            status: STATUSES[rng.below(STATUSES.len())],
                            status_message: String::new(),
                            config: "{}".into(),
                            run_id: format!("run-{step}"),
                        })
                        .collect();
                    let acct = account.clone();
                    s.write(move |tx| {
                        lock_whitelisting(tx, &acct, false)?;
                        let mut tally = Tally::default();
                        write_results(tx, &acct, &updates, now_ms(), &mut tally)?;
                        tally.apply(tx, &acct)
                    })
                    .unwrap();
                }
                40..=47 => delete(&s, &account, check, pk),
                48..=67 => {
                    let now = now_ms();
                    let expires_ms = match rng.below(10) {
                        0..=3 => None,
                        4 => Some(now - 1_000),
                        5..=8 => Some(now + 2 + rng.below(25) as i64),
                        _ => Some(now + 3_600_000),
                    };
                    if let Some(e) = expires_ms.filter(|e| *e < now + 1_000) {
                        latest_expiry = latest_expiry.max(e);
                    }
                    let instance_pks = if rng.below(3) == 0 { Vec::new() } else { some(&mut rng) };
                    if !instance_pks.is_empty() || rng.below(2) == 0 {
                        let rule = NewWhitelist { check_id: check, instance_pks, expires_ms, ..Default::default() };
                        s.add_whitelists(&account, &[rule]).unwrap();
                    }
                }
                68..=77 => {
                    let rules: Vec<i64> = s
                        .read(|c| {
                            c.query("SELECT id FROM whitelist_rules WHERE account_id = ?", args![&account], |r| {
                                r.get(0)
                            })
                        })
                        .unwrap();
                    if !rules.is_empty() {
                        assert!(s.remove_whitelist_rule(&account, rules[rng.below(rules.len())]).unwrap());
                    }
                }
                78..=85 => {
                    let instance_pks = if rng.below(2) == 0 { Vec::new() } else { some(&mut rng) };
                    s.remove_whitelists(&account, &[check], &instance_pks).unwrap();
                }
                _ => std::thread::sleep(std::time::Duration::from_millis(rng.below(12) as u64)),
            }
            let now = now_ms();
            assert_eq!(maintained(&s, &account, now), recount(&s, &account, now), "seed {seed}, step {step}, op {op}");
            let (kept, counted) = blocks(&s, &account);
            assert_eq!(kept, counted, "per block: seed {seed}, step {step}, op {op}");
        }
        // Once every short expiry has passed, the public aggregate (which applies due expiries
        // itself) agrees with one counted from the results and the rules in force.
        while now_ms() <= latest_expiry {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let kept = s.aggregate_results(&account, &[], &[], &[]).unwrap();
        let counted = s.count_results(&account, &[], &[], &[]).unwrap();
        assert_eq!(kept.keys().collect::<Vec<_>>(), counted.keys().collect::<Vec<_>>());
        for (check, k) in &kept {
            let c = &counted[check];
            assert_eq!(k.counts, c.counts, "seed {seed}, item {check}");
            assert_eq!(k.vendors.len() > 1, c.vendors.len() > 1, "seed {seed}, item {check}");
            // The latest evaluation may be of a result since deleted.
            assert!(k.last_ms >= c.last_ms, "seed {seed}, item {check}");
        }
        // Every page read through the counters per block equals the listing read row by row.
        for check in CHECKS {
            for statuses in [&[][..], &[CheckStatus::Pass], &[CheckStatus::NotPass, CheckStatus::Whitelist]] {
                for sort in [false, true] {
                    for size in [1, 3, 20] {
                        let (paged, read) = pages(&s, &account, check, statuses, sort, size);
                        assert_eq!(
                            paged, read,
                            "seed {seed}, item {check}, {statuses:?}, sorted {sort}, pages of {size}"
                        );
                    }
                }
            }
        }
        // A listing's TotalCount by item and status comes from the counters: it equals the rows.
        for check in CHECKS {
            for status in [CheckStatus::Pass, CheckStatus::NotPass, CheckStatus::Whitelist] {
                let f = ResultFilter { statuses: vec![status], limit: 1000, ..Default::default() };
                let (rows, total) = s.list_results(&account, check, &f).unwrap();
                assert_eq!(rows.len() as i64, total, "seed {seed}, item {check}, {status:?}");
                assert!(rows.iter().all(|r| r.status == status));
            }
        }
    }

    /// Writes results of one instance as a check run does, at a given time.
    pub(crate) fn write_at(s: &Store, account: &str, updates: Vec<ResultUpdate>, now: i64) {
        let acct = account.to_string();
        s.write(move |tx| {
            let mut tally = Tally::default();
            write_results(tx, &acct, &updates, now, &mut tally)?;
            tally.apply(tx, &acct)
        })
        .unwrap();
    }

    /// Deletes a result as a check whose item stopped applying does.
    fn delete(s: &Store, account: &str, check: i64, pk: i64) {
        let acct = account.to_string();
        s.write(move |tx| {
            let mut tally = Tally::default();
            delete_result(tx, &acct, check, pk, &mut tally)?;
            tally.apply(tx, &acct)
        })
        .unwrap();
    }

    pub(crate) fn update(
        check_id: i64,
        pk: i64,
        vendor: Vendor,
        status: CheckStatus,
        message: &str,
        run: &str,
    ) -> ResultUpdate {
        ResultUpdate {
            check_id,
            instance_pk: pk,
            vendor,
            status,
            status_message: message.into(),
            config: format!("{{\"v\":\"{message}\"}}"),
            run_id: run.into(),
        }
    }

    /// A check of every item of [`CHECKS`] on one instance by `run`, all with one status.
    pub(crate) fn whole(pk: i64, vendor: Vendor, status: CheckStatus, run: &str) -> Vec<ResultUpdate> {
        CHECKS.map(|c| update(c, pk, vendor, status, "", run)).to_vec()
    }

    /// Every result as read (listing: status, message, time; its run as the aggregates read
    /// it), keyed by item and instance; and the latest time by item (aggregate).
    pub(crate) type Read = (BTreeMap<(i64, i64), (CheckStatus, String, i64, String)>, BTreeMap<i64, i64>);

    pub(crate) fn read_back(s: &Store, account: &str) -> Read {
        let runs: BTreeMap<(i64, i64), String> = s
            .read(|c| {
                c.query(
                    &format!(
                        "SELECT r.check_id, r.instance_pk, {}{}",
                        crate::results::EFFECTIVE_RUN,
                        crate::results::results_from(c)
                    ),
                    &[],
                    |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)),
                )
            })
            .unwrap()
            .into_iter()
            .collect();
        let mut rows = BTreeMap::new();
        for check in CHECKS {
            let f = ResultFilter { limit: 1000, ..Default::default() };
            for r in s.list_results(account, check, &f).unwrap().0 {
                let run = runs[&(check, r.instance.pk)].clone();
                rows.insert((check, r.instance.pk), (r.status, r.status_message, r.last_ms, run));
            }
        }
        let latest = s.count_results(account, &[], &[], &[]).unwrap().into_iter().map(|(c, a)| (c, a.last_ms));
        (rows, latest.collect())
    }

    /// Every result row's own time and run as stored (not as read: the stamps not applied), in
    /// the order written.
    pub(crate) fn raw_rows(s: &Store) -> Vec<(i64, String)> {
        s.read(|c| {
            c.query("SELECT last_ms, check_run_id FROM check_results ORDER BY id", &[], |r| Ok((r.get(0)?, r.get(1)?)))
        })
        .unwrap()
    }

    /// Every instance's digest hashes the results that carry the run it names.
    pub(crate) fn assert_digests_hold(s: &Store) {
        let kept: Vec<(i64, String, Vec<u8>, i64)> = s
            .read(|c| {
                c.query(
                    "SELECT i.pk, st.results_run, st.results_digest, i.vendor FROM result_stamps st JOIN instances i ON i.pk = st.instance_pk
                     WHERE st.results_digest IS NOT NULL",
                    &[],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
            })
            .unwrap();
        for (pk, run, digest, vendor) in kept {
            let rows: Vec<ResultUpdate> = s
                .read(|c| {
                    c.query(
                        "SELECT check_id, status, status_message, config FROM check_results WHERE instance_pk = ? AND check_run_id = ?",
                        args![pk, &run],
                        |r| {
                            let status: String = r.get(1)?;
                            Ok(ResultUpdate {
                                check_id: r.get(0)?,
                                instance_pk: pk,
                                vendor: Vendor::from_code(vendor).unwrap(),
                                status: CheckStatus::parse(&status).unwrap(),
                                status_message: r.get(2)?,
                                config: r.get(3)?,
                                run_id: run.clone(),
                            })
                        },
                    )
                })
                .unwrap();
            assert_eq!(super::results_digest(&rows), digest, "instance {pk}, run {run}");
        }
    }

    /// What plain row writes leave: each result as last written, and by item the latest time.
    fn model_read(model: &BTreeMap<(i64, i64), (CheckStatus, String, i64, String)>) -> Read {
        let mut latest: BTreeMap<i64, i64> = BTreeMap::new();
        for ((check, _), (_, _, at, _)) in model {
            let e = latest.entry(*check).or_insert(i64::MIN);
            *e = (*e).max(*at);
        }
        (model.clone(), latest)
    }

    /// Random checks of whole instances (mostly finding what the last one found), checks of
    /// some items, single results (a repair's verification) and deletions, by new runs and
    /// by runs that come back: after every step,
    /// every result reads back as plain row writes would have left it, although a check that
    /// finds an instance unchanged writes only the instance's row.
    fn unchanged_checks_read_as_written(seed: u64, steps: usize) {
        let (_d, s) = store();
        let (account, pks, vendors) = fleet(&s, "stamps", 3, 2);
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut model: BTreeMap<(i64, i64), (CheckStatus, String, i64, String)> = BTreeMap::new();
        let pick = |rng: &mut Rng, model: &BTreeMap<_, (CheckStatus, String, i64, String)>, key| match (
            model.get(&key),
            rng.below(8),
        ) {
            (Some((st, m, _, _)), 0..=5) => (*st, m.clone()),
            (_, n) => ([CheckStatus::Pass, CheckStatus::NotPass][n % 2], ["", "m"][rng.below(2)].to_string()),
        };
        for step in 0..steps {
            let now = 1_000 + step as i64;
            let pk = pks[rng.below(pks.len())];
            let items: Vec<i64> = match rng.below(10) {
                0..=5 => CHECKS.to_vec(),
                6 | 7 => CHECKS.iter().copied().filter(|_| rng.below(2) == 0).collect(),
                8 => vec![CHECKS[rng.below(CHECKS.len())]],
                _ => {
                    let check = CHECKS[rng.below(CHECKS.len())];
                    delete(&s, &account, check, pk);
                    model.remove(&(check, pk));
                    Vec::new()
                }
            };
            // Some runs come back (a repair's verifications share their task's id).
            let run = match rng.below(4) {
                0 => ["task-a", "task-b"][rng.below(2)].to_string(),
                _ => format!("run-{step:04}"),
            };
            let updates: Vec<ResultUpdate> = items
                .iter()
                .map(|c| {
                    let (status, message) = pick(&mut rng, &model, (*c, pk));
                    model.insert((*c, pk), (status, message.clone(), now, run.clone()));
                    update(*c, pk, vendors[&pk], status, &message, &run)
                })
                .collect();
            if !updates.is_empty() {
                write_at(&s, &account, updates, now);
            }
            assert_eq!(read_back(&s, &account), model_read(&model), "seed {seed}, step {step}");
            assert_digests_hold(&s);
        }
    }

    crate::testutil::both_backends! {
        fn unchanged_checks_read_as_written_on_either_backend() {
            for seed in 1..=12 {
                unchanged_checks_read_as_written(seed, 60);
            }
        }

        /// Writers racing on the same instances (checks of whole instances and of some items,
        /// found unchanged or not, and deletions): none fails (PostgreSQL would abort one of two
        /// writes waiting for each other), and every digest kept still hashes the results that
        /// carry its run.
        fn racing_writes_keep_every_digest_true() {
            let (_d, s) = store();
            let (account, pks, vendors) = fleet(&s, "race", 2, 2);
            std::thread::scope(|scope| {
                for t in 0..4u64 {
                    let (s, account, pks, vendors) = (&s, &account, &pks, &vendors);
                    scope.spawn(move || {
                        let mut rng = Rng(t * 7919 + 1);
                        for step in 0..40 {
                            let pk = pks[rng.below(pks.len())];
                            let items: Vec<i64> = CHECKS.iter().copied().filter(|_| rng.below(4) > 0).collect();
                            let run = format!("t{t}-{step}");
                            let status = [CheckStatus::Pass, CheckStatus::NotPass][usize::from(rng.below(6) == 0)];
                            let u = items.iter().map(|c| update(*c, pk, vendors[&pk], status, "", &run)).collect::<Vec<_>>();
                            if rng.below(6) == 0 {
                                delete(s, account, CHECKS[rng.below(CHECKS.len())], pk);
                            } else if !u.is_empty() {
                                write_at(s, account, u, 1_000 + step);
                            }
                        }
                    });
                }
            });
            assert_digests_hold(&s);
        }

        /// A check that finds all of an instance's results as the last one left them writes no
        /// result row, only the instance's stamp: the rows keep the first run's time while
        /// every read gives the second's. A changed result is written again, and so are the
        /// others: the stamp then no longer holds for them.
        fn a_check_that_finds_nothing_changed_writes_no_result_row() {
            let (_d, s) = store();
            let (account, pks, vendors) = fleet(&s, "unchanged", 1, 1);
            let (pk, vendor) = (pks[0], vendors[&pks[0]]);
            let full = |run: &str, second: CheckStatus| {
                vec![
                    update(1001, pk, vendor, CheckStatus::Pass, "", run),
                    update(1002, pk, vendor, second, "", run),
                    update(1003, pk, vendor, CheckStatus::Pass, "", run),
                ]
            };
            let times = |s: &Store| -> Vec<i64> { read_back(s, &account).0.values().map(|v| v.2).collect() };
            write_at(&s, &account, full("run-1", CheckStatus::Pass), 100);
            write_at(&s, &account, full("run-2", CheckStatus::Pass), 200);
            assert_eq!(times(&s), [200, 200, 200]);
            assert_eq!(read_back(&s, &account).0[&(1002, pk)].3, "run-2");
            assert_eq!(raw_rows(&s), vec![(100, "run-1".to_string()); 3], "the rows were not written");
            // An item the check finds not applying, which had no result: the stamp still holds.
            delete(&s, &account, 1004, pk);
            write_at(&s, &account, full("run-2b", CheckStatus::Pass), 250);
            assert_eq!(raw_rows(&s), vec![(100, "run-1".to_string()); 3], "the rows were not written");
            assert_eq!(times(&s), [250, 250, 250]);
            write_at(&s, &account, full("run-3", CheckStatus::NotPass), 300);
            assert_eq!(raw_rows(&s), vec![(300, "run-3".to_string()); 3]);
            let (rows, _) = read_back(&s, &account);
            assert_eq!(rows[&(1002, pk)], (CheckStatus::NotPass, String::new(), 300, "run-3".to_string()));
            // A repair's verification of one item: the others keep the time the last check
            // gave them, even once the stamp is gone.
            write_at(&s, &account, full("run-4", CheckStatus::NotPass), 400);
            write_at(&s, &account, vec![update(1002, pk, vendor, CheckStatus::Pass, "", "verify")], 500);
            assert_eq!(times(&s), [400, 500, 400]);
            write_at(&s, &account, full("run-5", CheckStatus::Pass), 600);
            assert_eq!(times(&s), [600, 600, 600]);
            // A check of some items that finds them as the last such check left them is
            // stamped too; the others keep their time.
            write_at(&s, &account, vec![update(1002, pk, vendor, CheckStatus::NotPass, "", "run-6")], 700);
            write_at(&s, &account, vec![update(1002, pk, vendor, CheckStatus::NotPass, "", "run-7")], 800);
            assert_eq!(times(&s), [600, 800, 600]);
            assert_eq!(raw_rows(&s)[1], (700, "run-6".to_string()), "the row was not written");
            // A run that writes the instance twice (items apart): its digest would not vouch for
            // the items of its first write, so a later check of the second's is written out.
            write_at(&s, &account, full("run-8", CheckStatus::Pass)[..2].to_vec(), 900);
            write_at(&s, &account, full("run-8", CheckStatus::Pass)[2..].to_vec(), 1000);
            write_at(&s, &account, full("run-9", CheckStatus::Pass)[2..].to_vec(), 1100);
            assert_eq!(times(&s), [900, 900, 1100]);
        }

        /// Schema 25 moves the stamps from the instances' rows to a table of their own: what a
        /// schema-24 database read, it still reads, and a check that finds nothing changed
        /// still writes no result row.
        fn a_schema_24_databases_stamps_are_kept_by_the_migration() {
            let (place, s) = store();
            let (account, pks, vendors) = fleet(&s, "stamped", 3, 2);
            let check = |run: &str, pk: i64, status| whole(pk, vendors[&pk], status, run);
            for (run, at) in [("run-1", 100), ("run-2", 200)] {
                for pk in &pks {
                    write_at(&s, &account, check(run, *pk, CheckStatus::Pass), at);
                }
            }
            // One instance changed since: its stamp vouches for nothing.
            write_at(&s, &account, check("run-3", pks[0], CheckStatus::NotPass), 300);
            let before = read_back(&s, &account);
            assert_eq!(before.0[&(1001, pks[1])], (CheckStatus::Pass, String::new(), 200, "run-2".to_string()));
            // Back to schema 24.
            s.write(|tx| {
                let (blob, version) = match tx.dialect() {
                    crate::sql::Dialect::Sqlite => ("BLOB", "PRAGMA user_version = 24"),
                    crate::sql::Dialect::Postgres => ("BYTEA", "UPDATE schema_version SET version = 24"),
                };
                tx.batch(&format!(
                    "ALTER TABLE instances ADD COLUMN results_run TEXT; ALTER TABLE instances ADD COLUMN results_seen_run TEXT;
                     ALTER TABLE instances ADD COLUMN results_seen_ms BIGINT; ALTER TABLE instances ADD COLUMN results_digest {blob};
                     UPDATE instances SET results_run = (SELECT results_run FROM result_stamps WHERE instance_pk = pk),
                       results_seen_run = (SELECT results_seen_run FROM result_stamps WHERE instance_pk = pk),
                       results_seen_ms = (SELECT results_seen_ms FROM result_stamps WHERE instance_pk = pk),
                       results_digest = (SELECT results_digest FROM result_stamps WHERE instance_pk = pk);
                     DROP TABLE result_stamps; {version}"
                ))
            })
            .unwrap();
            drop(s);
            let s = crate::testutil::reopen(&place);
            assert_eq!(read_back(&s, &account), before);
            assert_digests_hold(&s);
            let written = raw_rows(&s);
            write_at(&s, &account, check("run-4", pks[1], CheckStatus::Pass), 400);
            assert_eq!(raw_rows(&s), written, "found unchanged: no result row written");
            assert_eq!(read_back(&s, &account).0[&(1002, pks[1])].2, 400);
        }

        fn a_schema_7_database_gets_its_counters_counted_once_by_the_migration() {
            let (place, s) = store();
            let (account, pks, vendors) = fleet(&s, "before", 6, 2);
            for (n, pk) in pks.iter().enumerate() {
                for check in CHECKS {
                    let u = ResultUpdate {
                        check_id: check,
                        instance_pk: *pk,
                        vendor: vendors[pk],
                        status: STATUSES[(n + check as usize) % STATUSES.len()],
                        status_message: String::new(),
                        config: "{}".into(),
                        run_id: "r1".into(),
                    };
                    let acct = account.clone();
                    s.write(move |tx| {
                        let mut tally = Tally::default();
                        write_result(tx, &acct, &u, now_ms(), &mut tally)?;
                        tally.apply(tx, &acct)
                    })
                    .unwrap();
                }
            }
            let now = now_ms();
            let rules = [
                NewWhitelist { check_id: 1001, ..Default::default() },
                NewWhitelist { check_id: 1002, instance_pks: pks[..3].to_vec(), ..Default::default() },
                NewWhitelist { check_id: 1003, instance_pks: pks[..2].to_vec(), expires_ms: Some(now + 10), ..Default::default() },
                NewWhitelist { check_id: 1003, instance_pks: pks[4..].to_vec(), expires_ms: Some(now + 3_600_000), ..Default::default() },
            ];
            s.add_whitelists(&account, &rules).unwrap();
            // Back to schema 7: what schemas 8 to 25 added is gone.
            s.write(|tx| {
                tx.batch(
                    "DROP INDEX whitelist_expiring; DROP TABLE result_counts; DROP TABLE result_latest; DROP TABLE result_blocks;
                     ALTER TABLE check_results DROP COLUMN vendor; ALTER TABLE check_results DROP COLUMN whitelisted;
                     ALTER TABLE check_results DROP COLUMN prev_status;
                     ALTER TABLE whitelist_rules DROP COLUMN expiry_applied; ALTER TABLE accounts DROP COLUMN tasks_total;
                     DROP TABLE agents; DROP TABLE agent_tokens; DROP INDEX tasks_agent_due; DROP INDEX tasks_due;
                     DROP INDEX check_run_details_pending; ALTER TABLE tasks DROP COLUMN agent;
                     ALTER TABLE instances DROP COLUMN live; ALTER TABLE tasks DROP COLUMN verification;
                     DROP TABLE check_schedules; DROP TABLE exports; DROP TABLE check_custom_configs;
                     ALTER TABLE accounts DROP COLUMN max_submission_instances; ALTER TABLE tasks DROP COLUMN cancel_requested;
                     ALTER TABLE root_tasks DROP COLUMN failure_threshold; ALTER TABLE root_tasks DROP COLUMN max_concurrency;
                     ALTER TABLE root_tasks DROP COLUMN canary_count; ALTER TABLE tasks DROP COLUMN held;
                     DROP TABLE agent_previews;
                     DROP TABLE audit_log; ALTER TABLE task_events DROP COLUMN actor;
                     ALTER TABLE root_tasks DROP COLUMN submitted_by; ALTER TABLE tasks DROP COLUMN cancelled_by;
                     DROP TABLE approval_overrides; DROP INDEX tasks_waiting_approval;
                     ALTER TABLE accounts DROP COLUMN approval_required; ALTER TABLE accounts DROP COLUMN approval_expiry_ms;
                     ALTER TABLE root_tasks DROP COLUMN awaited_approval;
                     DROP TABLE webhook_deliveries; DROP TABLE webhooks; DROP TABLE auto_remediations;
                     DROP INDEX check_runs_to_remediate; ALTER TABLE check_runs DROP COLUMN auto_remediated;
                     DROP INDEX tasks_approved_pos; ALTER TABLE tasks DROP COLUMN approved_pos;
                     DROP TABLE console_sessions; DROP INDEX check_runs_trend; DROP TABLE task_counts; ALTER TABLE check_runs DROP COLUMN summary_pass;
                     ALTER TABLE check_runs DROP COLUMN summary_fail; ALTER TABLE check_runs DROP COLUMN summary_failing_items;
                     DROP TABLE result_stamps;",
                )?;
                // Schema 22's keys of the results undone too.
                match tx.dialect() {
                    crate::sql::Dialect::Sqlite => tx.batch(
                        "CREATE INDEX results_by_status ON check_results (account_id, check_id, status);
                         PRAGMA user_version = 7",
                    ),
                    crate::sql::Dialect::Postgres => tx.batch(
                        "ALTER TABLE check_results DROP CONSTRAINT check_results_instance_pk_check_id_key;
                         ALTER TABLE check_results ADD UNIQUE (account_id, check_id, instance_pk);
                         CREATE INDEX results_by_status ON check_results (account_id, check_id, status);
                         UPDATE schema_version SET version = 7",
                    ),
                }
            })
            .unwrap();
            drop(s);
            std::thread::sleep(std::time::Duration::from_millis(15)); // the short rule has expired
            let s = crate::testutil::reopen(&place);
            let now = now_ms();
            assert_eq!(maintained(&s, &account, now), recount(&s, &account, now));
            assert!(maintained(&s, &account, now).keys().any(|(_, _, st)| st == "WHITELIST"));
            let (kept, counted) = blocks(&s, &account);
            assert_eq!(kept, counted, "per block");
            assert!(kept.len() > CHECKS.len(), "several blocks per item: {kept:?}");
            let latest: i64 =
                s.read(|c| c.value("SELECT COUNT(*) FROM result_latest WHERE account_id = ?", args![&account])).unwrap();
            assert_eq!(latest, CHECKS.len() as i64);
        }

        fn the_counters_equal_a_full_recount_after_random_writes_and_expiries() {
            for seed in 1..=4 {
                random_writes_keep_the_counters_equal_to_a_recount(seed, 120);
            }
        }
    }
}
