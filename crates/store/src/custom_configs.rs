//! Each account's values of the items' custom configs (ChangeCheckCustomConfig). Which names an
//! item has, their types and defaults are the catalog's; the store keeps what accounts set.

use std::collections::BTreeMap;

use crate::sql::args;
use crate::{now_ms, Result, Store};

/// An account's values, by item then name.
pub type AccountCustomValues = BTreeMap<i64, BTreeMap<String, String>>;

/// Custom config values.
pub trait CustomConfigs: Send + Sync {
    /// Every value the account set.
    fn custom_values(&self, account_id: &str) -> Result<AccountCustomValues>;

    /// Sets `set` (name, value) and deletes `delete` (names) of one item, in one transaction.
    fn change_custom_values(
        &self,
        account_id: &str,
        check_id: i64,
        set: &[(String, String)],
        delete: &[String],
    ) -> Result<()>;
}

impl CustomConfigs for Store {
    fn custom_values(&self, account_id: &str) -> Result<AccountCustomValues> {
        let rows: Vec<(i64, String, String)> = self.read(|c| {
            c.query(
                "SELECT check_id, name, value FROM check_custom_configs WHERE account_id = ?",
                args![account_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
        })?;
        let mut out = AccountCustomValues::new();
        for (check, name, value) in rows {
            out.entry(check).or_default().insert(name, value);
        }
        Ok(out)
    }

    fn change_custom_values(
        &self,
        account_id: &str,
        check_id: i64,
        set: &[(String, String)],
        delete: &[String],
    ) -> Result<()> {
        let (account_id, set, delete) = (account_id.to_string(), set.to_vec(), delete.to_vec());
        self.write(move |tx| {
            for name in &delete {
                tx.execute(
                    "DELETE FROM check_custom_configs WHERE account_id = ? AND check_id = ? AND name = ?",
                    args![&account_id, check_id, name],
                )?;
            }
            for (name, value) in &set {
                tx.execute(
                    "INSERT INTO check_custom_configs (account_id, check_id, name, value, changed_ms) VALUES (?, ?, ?, ?, ?)
                     ON CONFLICT (account_id, check_id, name) DO UPDATE SET value = excluded.value, changed_ms = excluded.changed_ms",
                    args![&account_id, check_id, name, value, now_ms()],
                )?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::store;
    use crate::Accounts;

    crate::testutil::both_backends! {
        fn values_are_set_replaced_and_deleted_per_account() {
            let (_p, s) = store();
            let a = s.create_account("a").unwrap().id;
            let b = s.create_account("b").unwrap().id;
            assert!(s.custom_values(&a).unwrap().is_empty());
            s.change_custom_values(&a, 1009, &[("PassMaxDays".into(), "60".into())], &[]).unwrap();
            s.change_custom_values(&a, 1009, &[("PassMaxDays".into(), "90".into())], &[]).unwrap();
            s.change_custom_values(&a, 1010, &[("PassMinDays".into(), "2".into())], &[]).unwrap();
            let values = s.custom_values(&a).unwrap();
            assert_eq!(values[&1009]["PassMaxDays"], "90");
            assert_eq!(values[&1010]["PassMinDays"], "2");
            assert!(s.custom_values(&b).unwrap().is_empty(), "another account's");
            s.change_custom_values(&a, 1009, &[], &["PassMaxDays".into()]).unwrap();
            assert!(!s.custom_values(&a).unwrap().contains_key(&1009));
            assert!(s.change_custom_values("0000", 1009, &[("X".into(), "1".into())], &[]).is_err(), "no such account");
        }
    }
}
