//! The service's own first-start steps, each done once: the admin account with its key, and
//! marks for the steps around it that live outside the database (credentials.json written,
//! the demo fleet registered and checked). A start interrupted at any point is finished by the
//! next one; nothing is half made.

use crate::sql::{args, Conn};

use crate::{new_id, now_ms, AccessKey, Account, Accounts, Result, Store, StoreError};

/// Marks of `service_state`.
pub mod marks {
    /// credentials.json holds the admin key (written, fsynced, renamed into place).
    pub const CREDENTIALS_DELIVERED: &str = "credentials_delivered";
    /// The demo fleet's files are written, its instances registered and checked.
    pub const DEMO_SEEDED: &str = "demo_seeded";
}

/// The admin account and its key.
#[derive(Clone, Debug)]
pub struct Admin {
    /// The first account of the data directory.
    pub account: Account,
    /// Its first administrator key, secret opened (None once delivered keys were all deleted).
    pub key: Option<AccessKey>,
    /// Whether credentials.json was written for it (see [`marks::CREDENTIALS_DELIVERED`]).
    pub delivered: bool,
}

fn mark_in(c: &Conn, name: &str) -> Result<()> {
    c.execute(
        "INSERT INTO service_state (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        args![name, now_ms().to_string()],
    )?;
    Ok(())
}

impl Store {
    /// The admin account and its Admin key, both created in one transaction on the first start.
    /// An admin account left without any key by an older release interrupted between the two
    /// gets one in the same way; a key an operator deleted is never made again behind their
    /// back.
    pub fn admin(&self) -> Result<Admin> {
        let mut b = [0u8; 8];
        getrandom::getrandom(&mut b).expect("the OS random source works");
        let new_account = format!("1{:015}", u64::from_le_bytes(b) % 1_000_000_000_000_000);
        let (new_key, new_secret) = (format!("LTAI{}", &new_id(12)[..20]), new_id(15));
        let sealed = self.sealer.seal(&new_key, &new_secret);
        let (account_id, key_id, delivered): (String, Option<String>, bool) = self.write(move |tx| {
            let now = now_ms();
            // Nodes starting together on one PostgreSQL make one admin between them.
            crate::pg::first_start_lock(tx)?;
            let account: Option<String> =
                tx.query_opt("SELECT id FROM accounts ORDER BY rowid LIMIT 1", &[], |r| r.get(0))?;
            let account = match account {
                Some(id) => id,
                None => {
                    tx.execute(
                        "INSERT INTO accounts (id, name, created_ms) VALUES (?, 'admin', ?)",
                        args![&new_account, now],
                    )?;
                    new_account.clone()
                }
            };
            let key: Option<String> = tx.query_opt(
                "SELECT id FROM access_keys WHERE account_id = ? AND policy = 'Admin' ORDER BY rowid LIMIT 1",
                args![&account],
                |r| r.get(0),
            )?;
            let delivered: bool = tx.value(
                "SELECT EXISTS (SELECT 1 FROM service_state WHERE name = ?)",
                args![marks::CREDENTIALS_DELIVERED],
            )?;
            // A key is made only for a data directory that has none at all: a first start, or
            // one an older release interrupted between the account and its key.
            let no_keys: bool = tx.value("SELECT NOT EXISTS (SELECT 1 FROM access_keys)", &[])?;
            let key = match key {
                Some(id) => Some(id),
                None if delivered || !no_keys => None,
                None => {
                    tx.execute(
                        "INSERT INTO access_keys (id, account_id, secret, sealed_secret, policy, enabled, created_ms) VALUES (?, ?, '', ?, 'Admin', 1, ?)",
                        args![&new_key, &account, &sealed, now],
                    )?;
                    Some(new_key.clone())
                }
            };
            Ok((account, key, delivered))
        })?;
        let account = self.get_account(&account_id)?.ok_or(StoreError::NotFound)?;
        let key = match key_id {
            Some(id) => Some(self.get_key(&id)?.ok_or(StoreError::NotFound)?),
            None => None,
        };
        Ok(Admin { account, key, delivered })
    }

    /// Whether a first-start step is done.
    pub fn is_marked(&self, name: &str) -> Result<bool> {
        self.read(|c| c.value("SELECT EXISTS (SELECT 1 FROM service_state WHERE name = ?)", args![name]))
    }

    /// Marks a first-start step done.
    pub fn mark(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.write(move |tx| mark_in(tx, &name))
    }
}

#[cfg(test)]
mod tests {
    use super::marks;
    use crate::testutil::store;
    use crate::Accounts;

    crate::testutil::both_backends! {
        fn the_admin_and_its_key_come_together_once() {
            let (_d, s) = store();
            let first = s.admin().unwrap();
            assert!(!first.delivered);
            let key = first.key.clone().unwrap();
            assert_eq!((key.account_id.as_str(), key.policy.as_str()), (first.account.id.as_str(), "Admin"));
            let again = s.admin().unwrap();
            let again_key = again.key.unwrap();
            assert_eq!((again.account.id, again_key.id, again_key.secret), (first.account.id, key.id.clone(), key.secret));
            s.mark(marks::CREDENTIALS_DELIVERED).unwrap();
            assert!(s.admin().unwrap().delivered);
            assert_eq!(s.list_accounts().unwrap().len(), 1);
            // A delivered admin key deleted by an operator is not made again.
            s.delete_key(&key.id).unwrap();
            assert!(s.admin().unwrap().key.is_none());
            assert!(s.list_keys(None).unwrap().is_empty());
        }
        fn an_admin_account_left_without_a_key_gets_one() {
            let (_d, s) = store();
            let a = s.create_account("admin").unwrap();
            let admin = s.admin().unwrap();
            assert_eq!(admin.account.id, a.id);
            assert_eq!(s.list_keys(Some(&a.id)).unwrap().len(), 1);
        }
    }
}
