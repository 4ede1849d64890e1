//! Whitelist rules: a check item exempted on every instance, or on some, optionally until an
//! expiry. Results keep their evaluated status; `WHITELIST` is computed when they are read (see
//! [`whitelisted_sql`]), so an expired rule stops applying on its own.

use crate::counts::{exempted_at, lock_whitelisting, refresh_exemptions, Concerned, Tally};
use crate::sql::{args, Arg, Conn};
use crate::{now_ms, placeholders, Result, Store};

/// SQL that is true when the result of check `check` on instance `pk` of account `account` is
/// exempted by a rule in force now (column expressions of the enclosing query).
pub(crate) fn whitelisted_sql(account: &str, check: &str, pk: &str) -> String {
    exempted_at(account, check, pk, "CAST(unixepoch('subsec') * 1000 AS INTEGER)")
}

/// A rule to add.
#[derive(Clone, Debug, Default)]
pub struct NewWhitelist {
    /// The check item.
    pub check_id: i64,
    /// The instances (empty: every instance, now and later).
    pub instance_pks: Vec<i64>,
    /// `Remark`.
    pub remark: String,
    /// Why the risk is accepted (posture's extension).
    pub reason: String,
    /// When the rule stops applying (ms; None: never).
    pub expires_ms: Option<i64>,
}

/// A whitelist rule in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WhitelistRule {
    /// Its id.
    pub id: i64,
    /// The ids of the instances it exempts (at most 100 listed; empty: every instance).
    pub instance_ids: Vec<String>,
    /// How many instances it exempts (0: every instance).
    pub instance_count: i64,
    /// `Remark`.
    pub remark: String,
    /// Why the risk is accepted.
    pub reason: String,
    /// When it stops applying (ms; None: never).
    pub expires_ms: Option<i64>,
    /// When it was added (ms).
    pub created_ms: i64,
}

impl crate::Whitelists for Store {
    fn apply_due_expiries(&self) -> Result<usize> {
        self.settle_expiries(None)
    }

    fn whitelist_rules(&self, account_id: &str, check_id: i64, now_ms: i64) -> Result<Vec<WhitelistRule>> {
        self.read(|c| {
            let mut rules = c.query(
                "SELECT id, remark, reason, expires_ms, created_ms,
                        (SELECT COUNT(*) FROM whitelist_entries e WHERE e.rule_id = r.id)
                 FROM whitelist_rules r
                 WHERE account_id = ? AND check_id = ? AND (expires_ms IS NULL OR expires_ms > ?) ORDER BY id",
                args![account_id, check_id, now_ms],
                |r| {
                    Ok(WhitelistRule {
                        id: r.get(0)?,
                        remark: r.get(1)?,
                        reason: r.get(2)?,
                        expires_ms: r.get(3)?,
                        created_ms: r.get(4)?,
                        instance_count: r.get(5)?,
                        instance_ids: Vec::new(),
                    })
                },
            )?;
            for rule in &mut rules {
                rule.instance_ids = c.query(
                    "SELECT i.instance_id FROM whitelist_entries e JOIN instances i ON i.pk = e.instance_pk
                     WHERE e.rule_id = ? ORDER BY i.pk LIMIT 100",
                    args![rule.id],
                    |r| r.get(0),
                )?;
            }
            Ok(rules)
        })
    }

    fn add_whitelists(&self, account_id: &str, rules: &[NewWhitelist]) -> Result<Vec<i64>> {
        let account_id = account_id.to_string();
        let rules = rules.to_vec();
        let now = now_ms();
        self.write(move |tx| {
            lock_whitelisting(tx, &account_id, true)?;
            let mut tally = Tally::default();
            let mut ids = Vec::new();
            for r in &rules {
                // A rule already expired when made has nothing left to apply at its expiry.
                let expired = r.expires_ms.is_some_and(|e| e <= now);
                let id: i64 = tx.value(
                    "INSERT INTO whitelist_rules (account_id, check_id, whole_check, remark, reason, expires_ms, created_ms, expiry_applied)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    args![&account_id, r.check_id, r.instance_pks.is_empty(), &r.remark, &r.reason, r.expires_ms, now, expired],
                )?;
                for pk in &r.instance_pks {
                    tx.execute(
                        "INSERT INTO whitelist_entries (rule_id, instance_pk) VALUES (?, ?) ON CONFLICT DO NOTHING",
                        args![id, *pk],
                    )?;
                }
                let concerned = if r.instance_pks.is_empty() { Concerned::All } else { Concerned::ListedBy(id) };
                refresh_exemptions(tx, &account_id, r.check_id, concerned, now, &mut tally)?;
                ids.push(id);
            }
            tally.apply(tx, &account_id)?;
            Ok(ids)
        })
    }

    fn remove_whitelist_rule(&self, account_id: &str, rule_id: i64) -> Result<bool> {
        let account_id = account_id.to_string();
        let now = now_ms();
        self.write(move |tx| {
            lock_whitelisting(tx, &account_id, true)?;
            let rule: Option<(i64, bool)> = tx.query_opt(
                "SELECT check_id, whole_check FROM whitelist_rules WHERE account_id = ? AND id = ?",
                args![&account_id, rule_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let Some((check, whole)) = rule else { return Ok(false) };
            let listed: Vec<i64> =
                tx.query("SELECT instance_pk FROM whitelist_entries WHERE rule_id = ?", args![rule_id], |r| r.get(0))?;
            tx.execute("DELETE FROM whitelist_rules WHERE id = ?", args![rule_id])?;
            let mut tally = Tally::default();
            let concerned = if whole { Concerned::All } else { Concerned::Instances(&listed) };
            refresh_exemptions(tx, &account_id, check, concerned, now, &mut tally)?;
            tally.apply(tx, &account_id)?;
            Ok(true)
        })
    }

    fn remove_whitelists(&self, account_id: &str, check_ids: &[i64], instance_pks: &[i64]) -> Result<usize> {
        let account_id = account_id.to_string();
        let check_ids = check_ids.to_vec();
        let instance_pks = instance_pks.to_vec();
        if check_ids.is_empty() {
            return Ok(0);
        }
        let now = now_ms();
        self.write(move |tx| {
            lock_whitelisting(tx, &account_id, true)?;
            let removed = remove_rules(tx, &account_id, &check_ids, &instance_pks)?;
            let mut tally = Tally::default();
            for check in &check_ids {
                let concerned =
                    if instance_pks.is_empty() { Concerned::All } else { Concerned::Instances(&instance_pks) };
                refresh_exemptions(tx, &account_id, *check, concerned, now, &mut tally)?;
            }
            tally.apply(tx, &account_id)?;
            Ok(removed)
        })
    }

    fn whitelisted_among(&self, account_id: &str, check_id: i64, instance_pks: &[i64]) -> Result<Vec<i64>> {
        if instance_pks.is_empty() {
            return Ok(Vec::new());
        }
        self.read(|c| {
            let mut args: Vec<Arg> = instance_pks.iter().map(|p| Arg::from(*p)).collect();
            args.extend([Arg::from(account_id), Arg::from(check_id)]);
            c.query(
                &format!(
                    "SELECT i.pk FROM instances i WHERE i.pk IN ({}) AND {}",
                    placeholders(instance_pks.len()),
                    whitelisted_sql("?", "?", "i.pk")
                ),
                &args,
                |r| r.get(0),
            )
        })
    }
}

/// Deletes the rules of `check_ids` (all of them, or their entries for `instance_pks` and the
/// rules left with none); returns how many rules or entries went.
fn remove_rules(tx: &Conn, account_id: &str, check_ids: &[i64], instance_pks: &[i64]) -> Result<usize> {
    let checks = placeholders(check_ids.len());
    let mut args: Vec<Arg> = vec![account_id.into()];
    args.extend(check_ids.iter().map(|c| Arg::from(*c)));
    if instance_pks.is_empty() {
        return tx
            .execute(&format!("DELETE FROM whitelist_rules WHERE account_id = ? AND check_id IN ({checks})"), &args);
    }
    let rules =
        format!("SELECT id FROM whitelist_rules WHERE account_id = ? AND check_id IN ({checks}) AND whole_check = 0");
    let mut del_args = args.clone();
    del_args.extend(instance_pks.iter().map(|p| Arg::from(*p)));
    let n = tx.execute(
        &format!(
            "DELETE FROM whitelist_entries WHERE rule_id IN ({rules}) AND instance_pk IN ({})",
            placeholders(instance_pks.len())
        ),
        &del_args,
    )?;
    tx.execute(
        &format!("DELETE FROM whitelist_rules WHERE id IN ({rules}) AND NOT EXISTS (SELECT 1 FROM whitelist_entries e WHERE e.rule_id = whitelist_rules.id)"),
        &args,
    )?;
    Ok(n)
}
