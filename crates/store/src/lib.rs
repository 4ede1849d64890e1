//! posture's durable state. SQLite in WAL mode is the embedded default; the schema is
//! `schema.sql`. All state lives here: the engine and the API keep no truth in memory.
//!
//! Rules the store enforces itself, so they hold under concurrency:
//! - at most one unfinished task per (account, check, instance): a unique partial index;
//! - a task moves only along `model::TaskStatus::next`, and only with the fence of its lease.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod accounts;
mod instances;
mod results;
mod runs;
mod tasks;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

pub use accounts::{AccessKey, Account};
pub use instances::{Instance, NewInstance};
pub use results::{ResultAggregate, ResultFilter, ResultRow, ResultUpdate};
pub use runs::{uuid_like, CheckRun, CheckRunDetail, RunFilter};
pub use tasks::{Claimed, InstanceMatch, NewTask, Submission, TaskFilter, TaskRow, Transition};

/// Why a store call failed.
#[derive(Debug, PartialEq, Eq)]
pub enum StoreError {
    /// A uniqueness rule refused the write (e.g. a conflicting unfinished task).
    Conflict,
    /// The row does not exist (in this account).
    NotFound,
    /// The caller's lease was lost (fence or status moved on); nothing was written.
    LeaseLost,
    /// The transition is not in the table.
    IllegalTransition(String),
    /// The database failed.
    Db(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Conflict => f.write_str("conflict"),
            StoreError::NotFound => f.write_str("not found"),
            StoreError::LeaseLost => f.write_str("lease lost"),
            StoreError::IllegalTransition(t) => write!(f, "illegal transition {t}"),
            StoreError::Db(e) => write!(f, "database: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                StoreError::Conflict
            }
            rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
            _ => StoreError::Db(e.to_string()),
        }
    }
}

/// Store results.
pub type Result<T> = std::result::Result<T, StoreError>;

const READERS: usize = 4;

/// The SQLite store: one writer connection, a few readers (WAL lets them read while it writes).
pub struct Store {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

/// Now, in Unix epoch milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A new random id of `bytes` random bytes, lower-case hex (task ids: 16 bytes, 32 hex).
pub fn new_id(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::getrandom(&mut b).expect("the OS random source works");
    hex::encode(b)
}

fn open_conn(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(std::time::Duration::from_secs(10))?;
    // WAL for concurrent readers; synchronous=FULL so a committed task survives power loss.
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "FULL")?;
    c.pragma_update(None, "foreign_keys", "ON")?;
    Ok(c)
}

fn schema_sql() -> String {
    let active: Vec<String> =
        model::TaskStatus::ALL.iter().filter(|s| !s.is_terminal()).map(|s| format!("'{}'", s.as_str())).collect();
    include_str!("schema.sql").replace("{ACTIVE}", &active.join(", "))
}

impl Store {
    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        let writer = open_conn(path)?;
        let version: i64 = writer.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > 1 {
            return Err(StoreError::Db(format!(
                "the database is schema version {version}, newer than this posture (1)"
            )));
        }
        writer.execute_batch(&format!("BEGIN; {} PRAGMA user_version = 1; COMMIT;", schema_sql()))?;
        let readers = (0..READERS).map(|_| open_conn(path).map(Mutex::new)).collect::<rusqlite::Result<_>>()?;
        Ok(Store { writer: Mutex::new(writer), readers, next_reader: AtomicUsize::new(0) })
    }

    /// Runs `f` in one write transaction (committed if it returns Ok).
    pub(crate) fn write<T>(&self, f: impl FnOnce(&rusqlite::Transaction) -> Result<T>) -> Result<T> {
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f` on a reader connection.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.readers.len() {
            if let Ok(c) = self.readers[(start + i) % self.readers.len()].try_lock() {
                return f(&c);
            }
        }
        let c = self.readers[start % self.readers.len()].lock().unwrap_or_else(|p| p.into_inner());
        f(&c)
    }
}

/// `?, ?, ?` for `n` parameters.
pub(crate) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    pub fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("posture.db")).unwrap();
        (dir, s)
    }
}
