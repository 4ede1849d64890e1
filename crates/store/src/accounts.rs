use rusqlite::{params, OptionalExtension};

use crate::{new_id, now_ms, Result, Store};

/// An account (tenant).
#[derive(Clone, Debug)]
pub struct Account {
    /// Its id (16 digits, like an Alibaba Cloud account id).
    pub id: String,
    /// Its name.
    pub name: String,
}

/// An AccessKey.
#[derive(Clone, Debug)]
pub struct AccessKey {
    /// `AccessKeyId`.
    pub id: String,
    /// The account it acts for.
    pub account_id: String,
    /// `AccessKeySecret` (the HMAC key; see docs/api.md for how it is kept).
    pub secret: String,
    /// The policy name that says which actions it may call.
    pub policy: String,
    /// Disabled keys are refused by the gateway.
    pub enabled: bool,
}

impl Store {
    /// Creates an account.
    pub fn create_account(&self, name: &str) -> Result<Account> {
        let mut b = [0u8; 8];
        getrandom::getrandom(&mut b).expect("the OS random source works");
        // 16 decimal digits, never starting with 0.
        let id = format!("1{:015}", u64::from_le_bytes(b) % 1_000_000_000_000_000);
        self.write(|tx| {
            tx.execute("INSERT INTO accounts (id, name, created_ms) VALUES (?, ?, ?)", params![id, name, now_ms()])?;
            Ok(())
        })?;
        Ok(Account { id, name: name.to_string() })
    }

    /// The first account created (the admin account of a fresh data directory).
    pub fn first_account(&self) -> Result<Option<Account>> {
        self.read(|c| {
            Ok(c.query_row("SELECT id, name FROM accounts ORDER BY rowid LIMIT 1", [], |r| {
                Ok(Account { id: r.get(0)?, name: r.get(1)? })
            })
            .optional()?)
        })
    }

    /// Creates an AccessKey for an account.
    pub fn create_key(&self, account_id: &str, policy: &str) -> Result<AccessKey> {
        let key = AccessKey {
            id: format!("LTAI{}", &new_id(12)[..20]),
            account_id: account_id.to_string(),
            secret: new_id(15),
            policy: policy.to_string(),
            enabled: true,
        };
        self.write(|tx| {
            tx.execute(
                "INSERT INTO access_keys (id, account_id, secret, policy, enabled, created_ms) VALUES (?, ?, ?, ?, 1, ?)",
                params![key.id, key.account_id, key.secret, key.policy, now_ms()],
            )?;
            Ok(())
        })?;
        Ok(key)
    }

    /// Looks an AccessKey up by id.
    pub fn get_key(&self, id: &str) -> Result<Option<AccessKey>> {
        self.read(|c| {
            Ok(c.query_row("SELECT id, account_id, secret, policy, enabled FROM access_keys WHERE id = ?", [id], |r| {
                Ok(AccessKey {
                    id: r.get(0)?,
                    account_id: r.get(1)?,
                    secret: r.get(2)?,
                    policy: r.get(3)?,
                    enabled: r.get(4)?,
                })
            })
            .optional()?)
        })
    }
}
