use crate::sql::{args, Row};

use crate::{new_id, now_ms, Result, Store, StoreError};

/// An account (tenant).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Its id (16 digits, like an Alibaba Cloud account id).
    pub id: String,
    /// Its name.
    pub name: String,
    /// How many repairs it may run in all (None: unlimited).
    pub repair_quota: Option<i64>,
    /// A trial account may look but not repair.
    pub trial: bool,
    /// The most instances one submission may touch (None: no limit).
    pub max_submission_instances: Option<i64>,
}

/// An AccessKey, with its secret opened (only the gateway needs it).
#[derive(Clone, Debug)]
pub struct AccessKey {
    /// `AccessKeyId`.
    pub id: String,
    /// The account it acts for.
    pub account_id: String,
    /// `AccessKeySecret`, the HMAC key.
    pub secret: String,
    /// The policy name that says which actions it may call.
    pub policy: String,
    /// Disabled keys are refused by the gateway.
    pub enabled: bool,
}

/// An AccessKey as listed: never its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// `AccessKeyId`.
    pub id: String,
    /// The account it acts for.
    pub account_id: String,
    /// Its policy.
    pub policy: String,
    /// Enabled or not.
    pub enabled: bool,
    /// Created.
    pub created_ms: i64,
}

const ACCOUNT_COLS: &str = "id, name, repair_quota, trial, max_submission_instances";

fn account_from(r: &Row) -> Result<Account> {
    Ok(Account {
        id: r.get(0)?,
        name: r.get(1)?,
        repair_quota: r.get(2)?,
        trial: r.get(3)?,
        max_submission_instances: r.get(4)?,
    })
}

impl crate::Accounts for Store {
    fn create_account(&self, name: &str) -> Result<Account> {
        let mut b = [0u8; 8];
        getrandom::getrandom(&mut b).expect("the OS random source works");
        // 16 decimal digits, never starting with 0.
        let id = format!("1{:015}", u64::from_le_bytes(b) % 1_000_000_000_000_000);
        let (owned_id, owned_name) = (id.clone(), name.to_string());
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO accounts (id, name, created_ms) VALUES (?, ?, ?)",
                args![&owned_id, &owned_name, now_ms()],
            )?;
            Ok(())
        })?;
        Ok(Account { id, name: name.to_string(), repair_quota: None, trial: false, max_submission_instances: None })
    }

    fn first_account(&self) -> Result<Option<Account>> {
        self.read(|c| {
            c.query_opt(&format!("SELECT {ACCOUNT_COLS} FROM accounts ORDER BY rowid LIMIT 1"), &[], account_from)
        })
    }

    fn get_account(&self, id: &str) -> Result<Option<Account>> {
        self.read(|c| {
            c.query_opt(&format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE id = ?"), args![id], account_from)
        })
    }

    fn list_accounts(&self) -> Result<Vec<Account>> {
        self.read(|c| c.query(&format!("SELECT {ACCOUNT_COLS} FROM accounts ORDER BY rowid"), &[], account_from))
    }

    fn set_quota(&self, account_id: &str, repairs: Option<i64>, trial: Option<bool>) -> Result<Account> {
        let account_id = account_id.to_string();
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE accounts SET repair_quota = ?, trial = COALESCE(?, trial) WHERE id = ?",
                args![repairs, trial, &account_id],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            tx.query_one(&format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE id = ?"), args![&account_id], account_from)
        })
    }

    fn set_limits(&self, account_id: &str, max_submission_instances: Option<i64>) -> Result<Account> {
        let account_id = account_id.to_string();
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE accounts SET max_submission_instances = ? WHERE id = ?",
                args![max_submission_instances, &account_id],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            tx.query_one(&format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE id = ?"), args![&account_id], account_from)
        })
    }

    fn create_key(&self, account_id: &str, policy: &str) -> Result<AccessKey> {
        let key = AccessKey {
            id: format!("LTAI{}", &new_id(12)[..20]),
            account_id: account_id.to_string(),
            secret: new_id(15),
            policy: policy.to_string(),
            enabled: true,
        };
        let sealed = self.sealer.seal(&key.id, &key.secret);
        let row = key.clone();
        self.write(move |tx| {
            let key = &row;
            let exists: bool = tx.value("SELECT EXISTS (SELECT 1 FROM accounts WHERE id = ?)", args![&key.account_id])?;
            if !exists {
                return Err(StoreError::NotFound);
            }
            tx.execute(
                "INSERT INTO access_keys (id, account_id, secret, sealed_secret, policy, enabled, created_ms) VALUES (?, ?, '', ?, ?, 1, ?)",
                args![&key.id, &key.account_id, &sealed, &key.policy, now_ms()],
            )?;
            Ok(())
        })?;
        Ok(key)
    }

    fn get_key(&self, id: &str) -> Result<Option<AccessKey>> {
        let row: Option<(String, Option<Vec<u8>>, String, bool)> = self.read(|c| {
            c.query_opt(
                "SELECT account_id, sealed_secret, policy, enabled FROM access_keys WHERE id = ?",
                args![id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
        })?;
        let Some((account_id, sealed, policy, enabled)) = row else { return Ok(None) };
        let secret = sealed
            .and_then(|s| self.sealer.open(id, &s))
            .ok_or_else(|| StoreError::Db(format!("the secret of {id} does not open with this master key")))?;
        Ok(Some(AccessKey { id: id.to_string(), account_id, secret, policy, enabled }))
    }

    fn list_keys(&self, account_id: Option<&str>) -> Result<Vec<KeyInfo>> {
        self.read(|c| {
            c.query(
                "SELECT id, account_id, policy, enabled, created_ms FROM access_keys
                 WHERE CAST(?1 AS TEXT) IS NULL OR account_id = ?1 ORDER BY rowid",
                args![account_id],
                |r| {
                    Ok(KeyInfo {
                        id: r.get(0)?,
                        account_id: r.get(1)?,
                        policy: r.get(2)?,
                        enabled: r.get(3)?,
                        created_ms: r.get(4)?,
                    })
                },
            )
        })
    }

    fn set_key_enabled(&self, key_id: &str, enabled: bool) -> Result<()> {
        let key_id = key_id.to_string();
        self.write(move |tx| {
            if tx.execute("UPDATE access_keys SET enabled = ? WHERE id = ?", args![enabled, &key_id])? == 0 {
                return Err(StoreError::NotFound);
            }
            // A disabled key's console sessions and sign-in link end with it (enabling it again
            // brings none back).
            if !enabled {
                tx.execute("DELETE FROM console_sessions WHERE key_id = ?", args![&key_id])?;
            }
            Ok(())
        })
    }

    fn delete_key(&self, key_id: &str) -> Result<()> {
        let key_id = key_id.to_string();
        self.write(move |tx| {
            tx.execute("DELETE FROM console_sessions WHERE key_id = ?", args![&key_id])?;
            match tx.execute("DELETE FROM access_keys WHERE id = ?", args![&key_id])? {
                0 => Err(StoreError::NotFound),
                _ => Ok(()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::store;
    use crate::Accounts;

    #[test]
    fn a_copy_of_the_database_alone_hands_out_no_key() {
        let (dir, s) = store();
        let a = s.create_account("a").unwrap();
        let k = s.create_key(&a.id, "Admin").unwrap();
        assert_eq!(s.get_key(&k.id).unwrap().unwrap().secret, k.secret);
        drop(s);
        let db = std::fs::read(dir.path().join("posture.db")).unwrap();
        let wal = std::fs::read(dir.path().join("posture.db-wal")).unwrap_or_default();
        for bytes in [db, wal] {
            assert!(!bytes.windows(k.secret.len()).any(|w| w == k.secret.as_bytes()), "the secret is not in the files");
        }
        // The database copied elsewhere without master.key does not open.
        let copy = tempfile::tempdir().unwrap();
        for f in ["posture.db", "posture.db-wal", "posture.db-shm"] {
            let _ = std::fs::copy(dir.path().join(f), copy.path().join(f));
        }
        let err = crate::Store::open(&copy.path().join("posture.db")).err().expect("refused");
        assert!(err.to_string().contains("master.key"), "{err}");
    }

    crate::testutil::both_backends! {
        fn keys_list_disable_delete() {
            let (_d, s) = store();
            let a = s.create_account("a").unwrap();
            let k = s.create_key(&a.id, "ReadOnly").unwrap();
            assert_eq!(s.list_keys(Some(&a.id)).unwrap().len(), 1);
            s.set_key_enabled(&k.id, false).unwrap();
            assert!(!s.get_key(&k.id).unwrap().unwrap().enabled);
            s.delete_key(&k.id).unwrap();
            assert!(s.get_key(&k.id).unwrap().is_none());
            assert_eq!(s.delete_key(&k.id), Err(crate::StoreError::NotFound));
            assert_eq!(s.create_key("0000", "Admin").err(), Some(crate::StoreError::NotFound));
        }
    }
}
