//! posture's durable state. SQLite in WAL mode is the embedded default; the schema is
//! `schema.sql`. All state lives here: the engine and the API keep no truth in memory.
//!
//! Rules the store enforces itself, so they hold under concurrency:
//! - at most one unfinished task per (account, check, instance): a unique partial index;
//! - a task moves only along `model::TaskStatus::next`, and only with the fence of its lease.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod accounts;
mod cloud;
mod idempotency;
mod instances;
mod nonces;
mod results;
mod runs;
mod seam;
mod secrets;
mod selections;
mod service_state;
mod tasks;
mod whitelists;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

pub use accounts::{AccessKey, Account, KeyInfo};
pub use cloud::{CloudAccount, CloudAccountChange, NewCloudAccount};
pub use instances::{Instance, NewInstance};
pub use nonces::{NewNonce, NonceWait};
pub use results::{ResultAggregate, ResultFilter, ResultRow, ResultUpdate};
pub use runs::{uuid_like, CheckRun, CheckRunDetail, DetailOutcome, RunFilter};
pub use seam::{
    Accounts, ApiStore, CheckRuns, CloudAccounts, Idempotency, Instances, Results, Selections, TaskQueue, Whitelists,
    WorkerStore,
};
pub use selections::{Criterion, Selection};
pub use service_state::{marks, Admin};
pub use tasks::{
    Claimed, InstanceMatch, NewTask, SelectionSource, Submission, SubmitOutcome, TaskFilter, TaskRow, Transition,
};
pub use whitelists::NewWhitelist;

/// Why a store call failed.
#[derive(Debug, PartialEq, Eq)]
pub enum StoreError {
    /// A uniqueness rule refused the write (e.g. a conflicting unfinished task).
    Conflict,
    /// Another rule of the schema refused the write (a foreign key, a CHECK, a NOT NULL): a
    /// bug in the caller, never a conflict a client could resolve.
    Constraint(String),
    /// Stored data could not be decoded (a corrupt row): an error, never a default.
    Corrupt(String),
    /// The row does not exist (in this account).
    NotFound,
    /// The caller's lease was lost (fence or status moved on); nothing was written.
    LeaseLost,
    /// The transition is not in the table.
    IllegalTransition(String),
    /// An instance id that matches no instance of the account.
    UnknownInstance(String),
    /// The account's repair authorization does not cover the submission.
    QuotaExhausted,
    /// A submission would create no task.
    NothingToDo,
    /// A rollback of `repair` while a later change of the same scope (`newer`) still stands.
    NotLatest {
        /// The repair asked to be rolled back.
        repair: String,
        /// The later repair to roll back first (or to let finish).
        newer: String,
    },
    /// The database failed.
    Db(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Conflict => f.write_str("conflict"),
            StoreError::Constraint(e) => write!(f, "a rule of the schema refused the write: {e}"),
            StoreError::Corrupt(e) => write!(f, "stored data cannot be read: {e}"),
            StoreError::NotFound => f.write_str("not found"),
            StoreError::LeaseLost => f.write_str("lease lost"),
            StoreError::IllegalTransition(t) => write!(f, "illegal transition {t}"),
            StoreError::UnknownInstance(id) => write!(f, "unknown instance {id}"),
            StoreError::QuotaExhausted => f.write_str("repair authorization exhausted"),
            StoreError::NothingToDo => f.write_str("nothing to do"),
            StoreError::NotLatest { repair, newer } => write!(f, "{repair} is not the latest change: {newer} stands"),
            StoreError::Db(e) => write!(f, "database: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            // Only a uniqueness rule is a conflict; a foreign key or a CHECK is a bug.
            rusqlite::Error::SqliteFailure(f, _)
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                StoreError::Conflict
            }
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                StoreError::Constraint(e.to_string())
            }
            rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => {
                StoreError::Corrupt(e.to_string())
            }
            rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
            _ => StoreError::Db(e.to_string()),
        }
    }
}

/// Store results.
pub type Result<T> = std::result::Result<T, StoreError>;

const READERS: usize = 4;

/// The writer connection's page cache, in KiB.
const WRITER_CACHE_KB: i64 = 64 * 1024;

/// The SQLite store: one writer connection owned by the committer thread (group commit, see
/// [`Store::write`]), a few readers (WAL lets them read while it writes).
pub struct Store {
    sealer: secrets::Sealer,
    jobs: Option<Mutex<mpsc::Sender<Box<dyn Job>>>>,
    committer: Option<JoinHandle<()>>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    /// The nonces of signed requests (`nonces.rs`).
    nonces: std::sync::Arc<nonces::Nonces>,
}

/// Most jobs one commit takes.
const MAX_BATCH: usize = 512;

/// A write waiting for the committer: run it inside the batch's transaction, then (after the
/// commit, or its failure) answer the caller.
trait Job: Send {
    fn run(&mut self, c: &Connection) -> bool;
    fn answer(self: Box<Self>, committed: std::result::Result<(), String>);
}

struct TypedJob<T, F> {
    work: Option<F>,
    result: Option<Result<T>>,
    reply: mpsc::Sender<Result<T>>,
}

impl<T: Send, F: FnOnce(&Connection) -> Result<T> + Send> Job for TypedJob<T, F> {
    fn run(&mut self, c: &Connection) -> bool {
        let Some(work) = self.work.take() else { return false };
        // A panicking job fails alone; the committer lives on.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(c)))
            .unwrap_or_else(|_| Err(StoreError::Db("a write panicked".into())));
        let ok = r.is_ok();
        self.result = Some(r);
        ok
    }

    fn answer(self: Box<Self>, committed: std::result::Result<(), String>) {
        let r = match (self.result, committed) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (_, Err(e)) => Err(StoreError::Db(format!("commit failed: {e}"))),
            (None, Ok(())) => Err(StoreError::Db("the write did not run".into())),
        };
        let _ = self.reply.send(r);
    }
}

/// The committer: takes every job waiting (up to MAX_BATCH), runs each in its own savepoint so
/// a failing one is undone alone, commits them together (one fsync for all), then answers.
/// Nobody is answered before the commit that holds their write.
fn committer_loop(c: Connection, jobs: mpsc::Receiver<Box<dyn Job>>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        if let Err(e) = c.execute_batch("BEGIN IMMEDIATE") {
            for j in batch {
                j.answer(Err(e.to_string()));
            }
            continue;
        }
        // Savepoint statements are prepared once: a batch runs thousands of them.
        let sql = |s: &str| c.prepare_cached(s).and_then(|mut st| st.execute([])).map(|_| ());
        for j in batch.iter_mut() {
            let ok = sql("SAVEPOINT job").is_ok() && j.run(&c);
            let end = if ok { sql("RELEASE job") } else { sql("ROLLBACK TO job").and_then(|_| sql("RELEASE job")) };
            if let Err(e) = end {
                tracing::error!(error = %e, stage = "savepoint", "a savepoint could not be closed");
            }
        }
        let committed = c.execute_batch("COMMIT").map_err(|e| e.to_string());
        if committed.is_err() {
            let _ = c.execute_batch("ROLLBACK");
        }
        for j in batch {
            j.answer(committed.clone());
        }
    }
}

/// Now, in Unix epoch milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A task id: 32 lower-case hex, the creation time in ms (12 hex) then 80 random bits. Ids in
/// creation order keep the primary-key index appending rather than inserting at random.
pub fn task_id() -> String {
    let mut b = [0u8; 10];
    getrandom::getrandom(&mut b).expect("the OS random source works");
    format!("{:012x}{}", now_ms() & 0xffff_ffff_ffff, hex::encode(b))
}

/// A new random id of `bytes` random bytes, lower-case hex (root task ids: 16 bytes, 32 hex).
pub fn new_id(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::getrandom(&mut b).expect("the OS random source works");
    hex::encode(b)
}

fn open_conn(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(std::time::Duration::from_secs(10))?;
    // rusqlite keeps 16 prepared statements per connection by default: fewer than the
    // operations use, so statements would be prepared again and again.
    c.set_prepared_statement_cache_capacity(256);
    // WAL for concurrent readers; synchronous=FULL so a committed task survives power loss.
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "FULL")?;
    c.pragma_update(None, "foreign_keys", "ON")?;
    Ok(c)
}

/// The schema version this posture writes.
pub const SCHEMA_VERSION: i64 = 6;

/// Brings the schema up to date in one IMMEDIATE transaction that reads the version inside
/// it, so two processes opening a new database at once cannot both migrate.
fn migrate(c: &Connection, sealer: &secrets::Sealer) -> Result<()> {
    c.execute_batch("BEGIN IMMEDIATE;")?;
    let result = (|| -> Result<()> {
        let version: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version < 1 {
            c.execute_batch(&format!("{} PRAGMA user_version = 1;", schema_sql()))?;
        }
        if version < 2 {
            c.execute_batch(include_str!("migration_2.sql"))?;
            // Seal the secrets a version-1 database kept in plain text.
            let plain: Vec<(String, String)> = c
                .prepare("SELECT id, secret FROM access_keys WHERE secret <> ''")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            for (id, secret) in plain {
                c.execute(
                    "UPDATE access_keys SET sealed_secret = ?, secret = '' WHERE id = ?",
                    rusqlite::params![sealer.seal(&id, &secret), id],
                )?;
            }
            c.execute_batch("PRAGMA user_version = 2;")?;
        }
        if version < 3 {
            c.execute_batch(&format!("{} PRAGMA user_version = 3;", include_str!("migration_3.sql")))?;
        }
        if version < 4 {
            c.execute_batch(&format!("{} PRAGMA user_version = 4;", include_str!("migration_4.sql")))?;
        }
        if version < 5 {
            c.execute_batch(&format!("{} PRAGMA user_version = 5;", include_str!("migration_5.sql")))?;
        }
        if version < 6 {
            c.execute_batch(&format!("{} PRAGMA user_version = 6;", status_lists(include_str!("migration_6.sql"))))?;
        }
        Ok(())
    })();
    c.execute_batch(if result.is_ok() { "COMMIT;" } else { "ROLLBACK;" })?;
    result
}

fn schema_sql() -> String {
    status_lists(include_str!("schema.sql"))
}

/// The SQL list of the statuses for which `keep` holds: `'INIT', 'IN_BACKUP', …`.
pub(crate) fn status_list(keep: impl Fn(model::TaskStatus) -> bool) -> String {
    model::TaskStatus::ALL
        .iter()
        .filter(|s| keep(**s))
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Replaces `{ACTIVE}` (unfinished tasks) and `{CLAIMABLE}` (unfinished and not waiting) with
/// their status lists, taken from `model::TaskStatus`.
fn status_lists(sql: &str) -> String {
    sql.replace("{ACTIVE}", &status_list(|s| !s.is_terminal()))
        .replace("{CLAIMABLE}", &status_list(|s| s.is_claimable()))
}

impl Store {
    /// Opens (creating and migrating if needed) the database at `path`. The master key that
    /// seals secrets is `master.key` beside it; it is created with a new database, and required
    /// for one that already holds sealed secrets.
    pub fn open(path: &Path) -> Result<Store> {
        let writer = open_conn(path)?;
        // The writer's page cache holds the task indexes of a large submission (default: 2 MB).
        writer.pragma_update(None, "cache_size", -WRITER_CACHE_KB)?;
        let version: i64 = writer.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Db(format!(
                "the database is schema version {version}, newer than this posture ({SCHEMA_VERSION})"
            )));
        }
        let sealed_in = |table: &str| -> rusqlite::Result<bool> {
            writer.query_row(
                &format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE sealed_secret IS NOT NULL)"),
                [],
                |r| r.get(0),
            )
        };
        let has_sealed = (version >= 2 && sealed_in("access_keys")?) || (version >= 5 && sealed_in("cloud_accounts")?);
        let sealer = secrets::Sealer::load(&path.with_file_name("master.key"), !has_sealed)
            .map_err(|e| StoreError::Db(e.to_string()))?;
        migrate(&writer, &sealer)?;
        let nonces = nonces::Nonces::open(path)?;
        let readers = (0..READERS).map(|_| open_conn(path).map(Mutex::new)).collect::<rusqlite::Result<_>>()?;
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>();
        let committer = std::thread::Builder::new()
            .name("posture-committer".into())
            .spawn(move || committer_loop(writer, rx))
            .map_err(|e| StoreError::Db(e.to_string()))?;
        Ok(Store {
            sealer,
            jobs: Some(Mutex::new(tx)),
            committer: Some(committer),
            readers,
            next_reader: AtomicUsize::new(0),
            nonces,
        })
    }

    /// Runs `f` atomically and durably: it is all applied or (if it returns Err) not at all,
    /// and the answer comes after the commit that holds it. Writes of concurrent callers share
    /// one commit (group commit); `f` owns its data because the committer thread runs it.
    pub(crate) fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = mpsc::channel();
        if !self.send_job(Box::new(TypedJob { work: Some(f), result: None, reply })) {
            return Err(StoreError::Db("the store is closed".into()));
        }
        answer.recv().unwrap_or_else(|_| Err(StoreError::Db("the committer stopped".into())))
    }

    /// Hands a job to the committer; false if the store is closed.
    pub(crate) fn send_job(&self, job: Box<dyn Job>) -> bool {
        let sent = self.jobs.as_ref().map(|j| j.lock().unwrap_or_else(|p| p.into_inner()).send(job));
        matches!(sent, Some(Ok(())))
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

impl Drop for Store {
    fn drop(&mut self) {
        // The nonce flusher commits what is pending and ends; closing the queue ends the
        // committer after the writes already sent.
        self.nonces.close();
        self.jobs.take();
        if let Some(h) = self.committer.take() {
            let _ = h.join();
        }
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

#[cfg(test)]
mod migration_tests {
    use super::*;

    #[test]
    fn a_version_1_database_is_migrated_and_its_secrets_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("posture.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(&format!("BEGIN; {} PRAGMA user_version = 1; COMMIT;", schema_sql())).unwrap();
            c.execute("INSERT INTO accounts (id, name, created_ms) VALUES ('1000000000000001', 'old', 0)", []).unwrap();
            c.execute(
                "INSERT INTO access_keys (id, account_id, secret, policy, enabled, created_ms) VALUES ('LTAIold', '1000000000000001', 'plain-old-secret', 'Admin', 1, 0)",
                [],
            )
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.get_key("LTAIold").unwrap().unwrap().secret, "plain-old-secret");
        let plain: String = s
            .read(|c| Ok(c.query_row("SELECT secret FROM access_keys WHERE id = 'LTAIold'", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(plain, "", "the plain copy is gone");
        assert_eq!(s.get_account("1000000000000001").unwrap().unwrap().repair_quota, None);
        drop(s);
        // Opening again is a no-op; a newer schema is refused.
        Store::open(&path).unwrap();
        Connection::open(&path).unwrap().execute_batch("PRAGMA user_version = 99;").unwrap();
        assert!(Store::open(&path).err().unwrap().to_string().contains("newer"));
    }
}
