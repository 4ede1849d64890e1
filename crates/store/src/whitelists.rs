//! Whitelist rules: a check item exempted on every instance, or on some, optionally until an
//! expiry. Results keep their evaluated status; `WHITELIST` is computed when they are read (see
//! [`whitelisted_sql`]), so an expired rule stops applying on its own.

use crate::sql::{args, Arg};
use crate::{now_ms, placeholders, Result, Store};

/// SQL that is true when the result of check `check` on instance `pk` of account `account` is
/// exempted by a rule in force now (column expressions of the enclosing query).
pub(crate) fn whitelisted_sql(account: &str, check: &str, pk: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM whitelist_rules w WHERE w.account_id = {account} AND w.check_id = {check} \
         AND (w.expires_ms IS NULL OR w.expires_ms > CAST(unixepoch('subsec') * 1000 AS INTEGER)) \
         AND (w.whole_check = 1 OR EXISTS (SELECT 1 FROM whitelist_entries e WHERE e.rule_id = w.id AND e.instance_pk = {pk})))"
    )
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

impl crate::Whitelists for Store {
    fn add_whitelists(&self, account_id: &str, rules: &[NewWhitelist]) -> Result<Vec<i64>> {
        let account_id = account_id.to_string();
        let rules = rules.to_vec();
        let now = now_ms();
        self.write(move |tx| {
            let mut ids = Vec::new();
            for r in rules {
                let id: i64 = tx.value(
                    "INSERT INTO whitelist_rules (account_id, check_id, whole_check, remark, reason, expires_ms, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)
                     RETURNING id",
                    args![&account_id, r.check_id, r.instance_pks.is_empty(), &r.remark, &r.reason, r.expires_ms, now],
                )?;
                for pk in &r.instance_pks {
                    tx.execute(
                        "INSERT INTO whitelist_entries (rule_id, instance_pk) VALUES (?, ?) ON CONFLICT DO NOTHING",
                        args![id, *pk],
                    )?;
                }
                ids.push(id);
            }
            Ok(ids)
        })
    }

    fn remove_whitelist_rule(&self, account_id: &str, rule_id: i64) -> Result<bool> {
        let account_id = account_id.to_string();
        self.write(move |tx| {
            Ok(tx
                .execute("DELETE FROM whitelist_rules WHERE account_id = ? AND id = ?", args![&account_id, rule_id])?
                > 0)
        })
    }

    fn remove_whitelists(&self, account_id: &str, check_ids: &[i64], instance_pks: &[i64]) -> Result<usize> {
        let account_id = account_id.to_string();
        let check_ids = check_ids.to_vec();
        let instance_pks = instance_pks.to_vec();
        if check_ids.is_empty() {
            return Ok(0);
        }
        let checks = placeholders(check_ids.len());
        self.write(move |tx| {
            let mut args: Vec<Arg> = vec![account_id.as_str().into()];
            args.extend(check_ids.iter().map(|c| Arg::from(*c)));
            if instance_pks.is_empty() {
                return tx.execute(
                    &format!("DELETE FROM whitelist_rules WHERE account_id = ? AND check_id IN ({checks})"),
                    &args,
                );
            }
            let rules = format!("SELECT id FROM whitelist_rules WHERE account_id = ? AND check_id IN ({checks}) AND whole_check = 0");
            let mut del_args = args.clone();
            del_args.extend(instance_pks.iter().map(|p| Arg::from(*p)));
            let n = tx.execute(
                &format!("DELETE FROM whitelist_entries WHERE rule_id IN ({rules}) AND instance_pk IN ({})", placeholders(instance_pks.len())),
                &del_args,
            )?;
            tx.execute(
                &format!("DELETE FROM whitelist_rules WHERE id IN ({rules}) AND NOT EXISTS (SELECT 1 FROM whitelist_entries e WHERE e.rule_id = whitelist_rules.id)"),
                &args,
            )?;
            Ok(n)
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
