//! posture's durable state. SQLite in WAL mode is the embedded default; the schema is
//! `schema.sql`. All state lives here: the engine and the API keep no truth in memory.
//!
//! Rules the store enforces itself, so they hold under concurrency:
//! - at most one unfinished task per (account, check, instance): a unique partial index;
//! - a task moves only along `model::TaskStatus::next`, and only with the fence of its lease.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod accounts;
mod agents;
mod approvals;
mod audit;
mod auto_remediation;
mod cancel;
mod cloud;
#[cfg(test)]
mod conformance;
mod console;
mod copy;
mod counts;
mod custom_configs;
mod exports;
mod idempotency;
mod instances;
mod nonces;
mod pg;
mod previews;
mod results;
mod runs;
mod schedules;
mod seam;
mod secrets;
mod selections;
mod service_state;
mod sql;
mod tasks;
#[doc(hidden)]
pub mod testing;
mod webhooks;
mod whitelists;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

use sql::{args, Conn};

pub use accounts::{AccessKey, Account, KeyInfo};
pub use agents::{Agent, Agents, EnrolRefusal, Enrolment};
pub use approvals::{ApprovalChange, ApprovalConfig, ApprovalOutcome, Approvals, DEFAULT_APPROVAL_EXPIRY_MS};
pub use audit::{audited, Audit, AuditEntry, AuditFilter, AuditRecord};
pub use auto_remediation::{auto_actor, AutoCandidates, AutoRemediations, AutoRule};
pub use cancel::{CancelOutcome, Cancels};
pub use cloud::{CloudAccount, CloudAccountChange, NewCloudAccount};
pub use console::{Console, ConsoleSession, SessionKind, TrendPoint};
pub use copy::CopyReport;
pub use custom_configs::{AccountCustomValues, CustomConfigs};
pub use exports::{ExportInfo, Exports, NewExport};
pub use idempotency::{answer_in_advance, with_client_token};
pub use instances::{Instance, NewInstance, AGENT_LOCATOR};
pub use nonces::{NewNonce, NonceWait};
pub use pg::DEFAULT_POOL;
pub use previews::{ActiveChange, PreviewRequest, Previews, PREVIEW_WAIT_MS};
pub use results::{ResultAggregate, ResultFilter, ResultRow, ResultUpdate};
pub use runs::{uuid_like, CheckRun, CheckRunDetail, DetailOutcome, RunFilter};
pub use schedules::{Schedule, Schedules, SCHEDULE_SOURCE};
pub use seam::{
    Accounts, ApiStore, CheckRuns, CloudAccounts, Idempotency, Instances, Results, Selections, TaskQueue, Whitelists,
    WorkerStore,
};
pub use selections::{Criterion, Selection};
pub use service_state::{marks, Admin};
pub use tasks::{
    Claimed, ClientToken, InstanceMatch, NewTask, RootLimits, SelectionSource, Submission, SubmitOutcome, TaskEvent,
    TaskFilter, TaskRow, Transition, SERVICE_ACTOR, WORKER_ACTOR,
};
pub use webhooks::{Delivery, DueDelivery, Webhook, Webhooks, EVENTS as WEBHOOK_EVENTS};
pub use whitelists::{NewWhitelist, WhitelistRule};

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
    /// The account is a trial, which may look but not repair (`TaskQueue::submit` answers it
    /// as an outcome; the transaction is rolled back).
    TrialUnauthorized,
    /// A submission would touch more instances than its account allows one (`TaskQueue::submit`
    /// answers it as an outcome; the transaction is rolled back).
    OverLimit {
        /// Instances it would touch.
        instances: i64,
        /// The account's limit.
        max: i64,
    },
    /// A submission would create no task.
    NothingToDo,
    /// A rollback of `repair` while a later change of the same scope (`newer`) still stands.
    NotLatest {
        /// The repair asked to be rolled back.
        repair: String,
        /// The later repair to roll back first (or to let finish).
        newer: String,
    },
    /// A call with the same ClientToken has kept its answer; nothing was written.
    TokenUsed,
    /// The database cannot be reached (a server that is down, a connection that broke): the
    /// call may be retried; whether a write in flight was committed is not known.
    Unavailable(String),
    /// PostgreSQL aborted the transaction to break a deadlock or a conflict of concurrent
    /// transactions (SQLSTATE 40P01, 40001): nothing was written; the call may be retried
    /// (`Store::write` already tried a write four times).
    Contended(String),
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
            StoreError::TrialUnauthorized => f.write_str("a trial account may not repair"),
            StoreError::OverLimit { instances, max } => {
                write!(f, "a submission of {instances} instances, over the account's limit of {max}")
            }
            StoreError::NothingToDo => f.write_str("nothing to do"),
            StoreError::NotLatest { repair, newer } => write!(f, "{repair} is not the latest change: {newer} stands"),
            StoreError::TokenUsed => f.write_str("the ClientToken was used by another call"),
            StoreError::Unavailable(e) => write!(f, "the database is unavailable: {e}"),
            StoreError::Contended(e) => write!(f, "the database aborted the transaction to break a deadlock: {e}"),
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

/// Times a write on PostgreSQL is tried when the database aborts it to break a deadlock
/// (`Store::write`), 20, 40 and 80 ms apart.
const WRITE_ATTEMPTS: u32 = 4;

/// The writer connection's page cache, in KiB.
const WRITER_CACHE_KB: i64 = 64 * 1024;

/// Where a store is: the data directory, and the database if it is not the SQLite file in it.
#[derive(Clone, Debug, Default)]
pub struct Location {
    /// The data directory (SQLite's `posture.db`, the nonce log, `master.key` by default).
    pub data: std::path::PathBuf,
    /// A `postgres://` URL; None for SQLite in the data directory.
    pub database: Option<String>,
    /// The master key file; None for `DATA/master.key`.
    pub master_key: Option<std::path::PathBuf>,
    /// PostgreSQL: the most connections this node keeps open (None: 16). The nodes' pools
    /// together should stay near what the database server runs well, a few per core of it.
    pub pool: Option<usize>,
}

/// The store: SQLite in the data directory (the embedded default) or PostgreSQL. Every method
/// of the seam is written once, against [`sql::Conn`]; the backends differ in how a write is
/// made atomic and durable ([`Store::write`]) and where a read runs ([`Store::read`]).
pub struct Store {
    sealer: secrets::Sealer,
    db: Db,
    /// The nonces of signed requests (`nonces.rs`).
    nonces: std::sync::Arc<nonces::Nonces>,
}

enum Db {
    Lite(Lite),
    Pg(Box<pg::Pool>),
}

/// SQLite: one writer connection owned by the committer thread (group commit, see
/// [`Store::write`]), a few readers (WAL lets them read while it writes).
struct Lite {
    /// Told after a commit that announced work (`pg::notify_work`): SQLite's counterpart of
    /// PostgreSQL's NOTIFY, for this process (the only one writing).
    watchers: Watchers,
    jobs: Option<Mutex<mpsc::Sender<Box<dyn Job>>>>,
    committer: Option<JoinHandle<()>>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
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

impl<T: Send, F: FnOnce(&Conn) -> Result<T> + Send> Job for TypedJob<T, F> {
    fn run(&mut self, c: &Connection) -> bool {
        let Some(work) = self.work.take() else { return false };
        // A panicking job fails alone; the committer lives on.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&Conn::Lite(c))))
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

/// Who hears that a commit announced work.
type Watchers = std::sync::Arc<Mutex<Vec<Box<dyn Fn() + Send + Sync>>>>;

thread_local! {
    /// Set on the committer's thread by a write that announced work (`pg::notify_work`).
    pub(crate) static ANNOUNCED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Tells the watchers on a thread of their own: a watcher may hold the last reference to what
/// owns this store, which must never be dropped on the committer's own thread.
fn notifier(watchers: Watchers) -> mpsc::Sender<()> {
    let (tx, rx) = mpsc::channel::<()>();
    let spawned = std::thread::Builder::new().name("posture-work-news".into()).spawn(move || {
        while rx.recv().is_ok() {
            while rx.try_recv().is_ok() {} // one call for every announcement waiting
            for watch in watchers.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                watch();
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "work announcements will not wake the engine; it looks every idle_poll");
    }
    tx
}

/// The committer: takes every job waiting (up to MAX_BATCH), runs each in its own savepoint so
/// a failing one is undone alone, commits them together (one fsync for all), then answers.
/// Nobody is answered before the commit that holds their write; the watchers hear after it.
fn committer_loop(c: Connection, jobs: mpsc::Receiver<Box<dyn Job>>, watchers: Watchers) {
    let news = notifier(watchers);
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
        if ANNOUNCED.take() && committed.is_ok() {
            let _ = news.send(());
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
pub const SCHEMA_VERSION: i64 = 25;

/// Brings the schema up to date in one IMMEDIATE transaction that reads the version inside
/// it, so two processes opening a new database at once cannot both migrate.
fn migrate(c: &Connection, sealer: &secrets::Sealer) -> Result<()> {
    Conn::Lite(c).in_transaction("BEGIN IMMEDIATE", || {
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
        if version < 7 {
            // Schema 7 changed PostgreSQL's task indexes only (pg/migration_7.sql).
            c.execute_batch("PRAGMA user_version = 7;")?;
        }
        if version < 8 {
            c.execute_batch(&format!("{} PRAGMA user_version = 8;", include_str!("migration_8.sql")))?;
        }
        if version < 9 {
            c.execute_batch(&format!(
                "{} PRAGMA user_version = 9;",
                counts::blocks_sql(include_str!("migration_9.sql"))
            ))?;
        }
        if version < 10 {
            c.execute_batch(&format!("{} PRAGMA user_version = 10;", status_lists(include_str!("migration_10.sql"))))?;
        }
        if version < 11 {
            c.execute_batch(&format!("{} PRAGMA user_version = 11;", include_str!("migration_11.sql")))?;
        }
        if version < 12 {
            c.execute_batch(&format!("{} PRAGMA user_version = 12;", include_str!("migration_12.sql")))?;
        }
        if version < 13 {
            c.execute_batch(&format!("{} PRAGMA user_version = 13;", include_str!("migration_13.sql")))?;
        }
        if version < 14 {
            c.execute_batch(&format!("{} PRAGMA user_version = 14;", include_str!("migration_14.sql")))?;
        }
        if version < 15 {
            c.execute_batch(&format!("{} PRAGMA user_version = 15;", include_str!("migration_15.sql")))?;
        }
        if version < 16 {
            c.execute_batch(&format!("{} PRAGMA user_version = 16;", include_str!("migration_16.sql")))?;
        }
        if version < 17 {
            c.execute_batch(&format!("{} PRAGMA user_version = 17;", include_str!("migration_17.sql")))?;
        }
        if version < 18 {
            c.execute_batch(&format!("{} PRAGMA user_version = 18;", status_lists(include_str!("migration_18.sql"))))?;
        }
        if version < 19 {
            c.execute_batch(&format!("{} PRAGMA user_version = 19;", include_str!("migration_19.sql")))?;
        }
        if version < 20 {
            c.execute_batch(&format!("{} PRAGMA user_version = 20;", status_sets(include_str!("migration_20.sql"))))?;
        }
        if version < 21 {
            c.execute_batch(&format!("{} PRAGMA user_version = 21;", status_sets(include_str!("migration_21.sql"))))?;
        }
        if version < 22 {
            if version > 0 {
                tracing::info!(
                    from = version,
                    "upgrading the schema: the check results are rewritten keyed by instance (about a minute per ten million results)"
                );
            }
            c.execute_batch(&format!("{} PRAGMA user_version = 22;", include_str!("migration_22.sql")))?;
        }
        if version < 23 {
            c.execute_batch(&format!("{} PRAGMA user_version = 23;", include_str!("migration_23.sql")))?;
        }
        if version < 24 {
            c.execute_batch(&format!("{} PRAGMA user_version = 24;", include_str!("migration_24.sql")))?;
        }
        if version < 25 {
            c.execute_batch(&format!("{} PRAGMA user_version = 25;", include_str!("migration_25.sql")))?;
        }
        Ok(())
    })
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

/// Whether `column` holds one of the statuses for which `keep` holds:
/// `(column = 'INIT' OR column = 'IN_BACKUP' OR …)`.
///
/// Not `column IN ('INIT', …)`: SQLite builds a temporary b-tree for an IN list of more than
/// two values each time it evaluates one, and the conditions of four task indexes are evaluated
/// at every insert and update of a task, while an OR of equalities is tested in place (100,000
/// inserts into a table with three such indexes: 1.32 s with IN lists, 0.36 s with ORs).
/// PostgreSQL reads both alike and proves its partial indexes (still written with IN lists)
/// from either.
pub(crate) fn status_in(column: &str, keep: impl Fn(model::TaskStatus) -> bool) -> String {
    let terms: Vec<String> =
        model::TaskStatus::ALL.iter().filter(|s| keep(**s)).map(|s| format!("{column} = '{}'", s.as_str())).collect();
    format!("({})", terms.join(" OR "))
}

/// Which statuses a set holds.
type StatusSet = fn(model::TaskStatus) -> bool;

/// The status sets SQL text names as `{<column> IS <SET>}` (see [`status_sets`]).
const STATUS_SETS: [(&str, StatusSet); 2] =
    [(" IS ACTIVE", |s| !s.is_terminal()), (" IS CLAIMABLE", model::TaskStatus::is_claimable)];

/// Replaces `{<column> IS ACTIVE}` and `{<column> IS CLAIMABLE}` with
/// [`status_in`] of that column; other braces are left as they are.
pub(crate) fn status_sets(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() * 2);
    let mut rest = sql;
    while let Some(open) = rest.find('{') {
        let Some(len) = rest[open..].find('}') else { break };
        let inner = &rest[open + 1..open + len];
        out.push_str(&rest[..open]);
        let set = STATUS_SETS.iter().find_map(|(suffix, keep)| inner.strip_suffix(suffix).map(|c| (c, keep)));
        match set {
            Some((column, keep)) => out.push_str(&status_in(column, keep)),
            None => out.push_str(&rest[open..=open + len]),
        }
        rest = &rest[open + len + 1..];
    }
    out.push_str(rest);
    out
}

impl Store {
    /// Opens the store a command was given: PostgreSQL at `database` (a `postgres://` URL), or
    /// else SQLite at `DATA/posture.db`. Secrets are sealed with the master key at
    /// `master_key` (default `DATA/master.key`).
    pub fn connect(at: &Location) -> Result<Store> {
        let master_key = at.master_key.clone().unwrap_or_else(|| at.data.join("master.key"));
        let store = match &at.database {
            Some(url) => Store::open_postgres(url, at.pool.unwrap_or(pg::DEFAULT_POOL), &master_key, &at.data)?,
            None => Store::open_with_key(&at.data.join("posture.db"), &master_key)?,
        };
        store.check_master_key()?;
        Ok(store)
    }

    /// Opens (creating and migrating if needed) the SQLite database at `path`, its master key
    /// `master.key` beside it.
    pub fn open(path: &Path) -> Result<Store> {
        Store::open_with_key(path, &path.with_file_name("master.key"))
    }

    /// Opens (creating and migrating if needed) the SQLite database at `path`. The master key
    /// that seals secrets is created with a new database, and required for one that already
    /// holds sealed secrets.
    fn open_with_key(path: &Path, master_key: &Path) -> Result<Store> {
        let writer = open_conn(path)?;
        // The writer's page cache holds the task indexes of a large submission (default: 2 MB).
        writer.pragma_update(None, "cache_size", -WRITER_CACHE_KB)?;
        let version: i64 = writer.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(newer_schema(version));
        }
        let has_sealed = version >= 2 && has_sealed_secrets(&Conn::Lite(&writer), version)?;
        let sealer = secrets::Sealer::load(master_key, !has_sealed).map_err(|e| StoreError::Db(e.to_string()))?;
        migrate(&writer, &sealer)?;
        let nonces = nonces::Nonces::open(path)?;
        let readers = (0..READERS).map(|_| open_conn(path).map(Mutex::new)).collect::<rusqlite::Result<_>>()?;
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>();
        let watchers = Watchers::default();
        let heard = watchers.clone();
        let committer = std::thread::Builder::new()
            .name("posture-committer".into())
            .spawn(move || committer_loop(writer, rx, heard))
            .map_err(|e| StoreError::Db(e.to_string()))?;
        let lite = Lite {
            watchers,
            jobs: Some(Mutex::new(tx)),
            committer: Some(committer),
            readers,
            next_reader: AtomicUsize::new(0),
        };
        Ok(Store { sealer, db: Db::Lite(lite), nonces })
    }

    /// Opens the PostgreSQL database at `url`, bringing its schema up to date under an advisory
    /// lock (nodes starting together take turns). `master_key` seals secrets; `data` holds the
    /// files of this node (the nonce log).
    fn open_postgres(url: &str, pool: usize, master_key: &Path, data: &Path) -> Result<Store> {
        let pool = pg::Pool::new(url, pool)?;
        let has_sealed = pool.with(|c| {
            let version = pg::schema_version(c)?;
            if version > SCHEMA_VERSION {
                return Err(newer_schema(version));
            }
            Ok(version > 0 && has_sealed_secrets(c, version)?)
        })?;
        std::fs::create_dir_all(data).map_err(|e| StoreError::Db(format!("{}: {e}", data.display())))?;
        let sealer = secrets::Sealer::load(master_key, !has_sealed).map_err(|e| StoreError::Db(e.to_string()))?;
        pool.with(pg::migrate)?;
        let nonces = nonces::Nonces::open(&data.join("posture.db"))?;
        Ok(Store { sealer, db: Db::Pg(Box::new(pool)), nonces })
    }

    /// Refuses a master key other than the one the database's secrets are sealed with: the
    /// database keeps a value sealed with it (written by the first start), which only the same
    /// key opens. Several nodes on one database must share one key; a wrong one is caught at
    /// start, not at the first request that needs a secret.
    fn check_master_key(&self) -> Result<()> {
        const AAD: &str = "master-key-check";
        let sealed = self.sealer.seal(AAD, AAD);
        let kept: Vec<u8> = self.write(move |tx| {
            tx.execute(
                "INSERT INTO service_state (name, value) VALUES ('master_key_check', ?) ON CONFLICT DO NOTHING",
                args![hex::encode(&sealed)],
            )?;
            let kept: String = tx.value("SELECT value FROM service_state WHERE name = 'master_key_check'", &[])?;
            hex::decode(kept).map_err(|e| StoreError::Corrupt(format!("master_key_check: {e}")))
        })?;
        match self.sealer.open(AAD, &kept) {
            Some(_) => Ok(()),
            None => Err(StoreError::Db(
                "the master key does not match this database: its secrets are sealed with another key \
                 (every node must use the same --master-key file)"
                    .into(),
            )),
        }
    }

    /// Gauges of the store for `GET /metrics`: connections open and idle (PostgreSQL's pool;
    /// SQLite's fixed readers and one writer).
    pub fn connection_gauges(&self) -> (usize, usize) {
        match &self.db {
            Db::Lite(lite) => (lite.readers.len() + 1, lite.readers.iter().filter(|r| r.try_lock().is_ok()).count()),
            Db::Pg(pool) => pool.gauges(),
        }
    }

    /// Whether the database answers (`GET /healthz`).
    pub fn ping(&self) -> Result<()> {
        self.read(|c| c.value::<i64>("SELECT 1", &[]).map(drop))
    }

    /// Which backend this store runs on: "sqlite" or "postgres".
    pub fn backend(&self) -> &'static str {
        match self.db {
            Db::Lite(_) => "sqlite",
            Db::Pg(_) => "postgres",
        }
    }

    /// Runs `f` atomically and durably: it is all applied or (if it returns Err) not at all,
    /// and the answer comes after the commit that holds it. On SQLite, writes of concurrent
    /// callers share one commit (group commit) made by the committer thread, which is why `f`
    /// owns its data; on PostgreSQL, `f` runs in its own transaction on a pooled connection.
    /// Inside an API call that carries a ClientToken, the call's first write also records the
    /// token (see `idempotency`), and inside an audited call, the call's record (`audit`).
    pub(crate) fn write<T: Send + 'static>(&self, f: impl Fn(&Conn) -> Result<T> + Send + 'static) -> Result<T> {
        let token = idempotency::take_pending();
        let with_token = token.is_some();
        let audit = audit::take_waiting();
        let carried = audit.clone();
        let f = move |tx: &Conn| {
            if let Some(token) = &token {
                idempotency::record(tx, token)?;
            }
            let written = carried.as_ref().map(|record| audit::ride(tx, record)).transpose()?;
            Ok((f(tx)?, written))
        };
        let done = match &self.db {
            Db::Lite(_) => {
                let (reply, answer) = mpsc::channel();
                if self.send_job(Box::new(TypedJob { work: Some(f), result: None, reply })) {
                    answer.recv().unwrap_or_else(|_| Err(StoreError::Db("the committer stopped".into())))
                } else {
                    Err(StoreError::Db("the store is closed".into()))
                }
            }
            Db::Pg(pool) => {
                // A deadlock PostgreSQL broke by aborting this transaction: the same again, a
                // little later, meets the other transaction committed. Every lock order known
                // is made consistent (finish_details, transition, add_whitelists); this keeps a
                // cycle not yet found from failing a commit whole (a check run's would then
                // wait for its lease to run out).
                let mut attempt = 1;
                loop {
                    match pool.transaction(&f) {
                        Err(StoreError::Contended(e)) if attempt < WRITE_ATTEMPTS => {
                            tracing::warn!(error = %e, attempt, "the database aborted a write; retrying it");
                            std::thread::sleep(Duration::from_millis(10 << attempt));
                            attempt += 1;
                        }
                        done => break done,
                    }
                }
            }
        };
        if with_token && done.is_ok() {
            idempotency::committed_with_token();
        }
        // A record that did not ride (the write failed, or never reached the committer) waits
        // for the call's next write, or is written alone at the call's end.
        if let Some(audit) = audit {
            audit::after_write(audit, done.as_ref().ok().and_then(|(_, written)| *written));
        }
        done.map(|(v, _)| v)
    }

    /// Hands a job to the SQLite committer; false if the store is closed (or is not SQLite).
    pub(crate) fn send_job(&self, job: Box<dyn Job>) -> bool {
        let Db::Lite(lite) = &self.db else { return false };
        let sent = lite.jobs.as_ref().map(|j| j.lock().unwrap_or_else(|p| p.into_inner()).send(job));
        matches!(sent, Some(Ok(())))
    }

    /// Runs `f` on a reader connection.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Conn) -> Result<T>) -> Result<T> {
        match &self.db {
            Db::Lite(lite) => {
                let start = lite.next_reader.fetch_add(1, Ordering::Relaxed);
                for i in 0..lite.readers.len() {
                    if let Ok(c) = lite.readers[(start + i) % lite.readers.len()].try_lock() {
                        return f(&Conn::Lite(&c));
                    }
                }
                let c = lite.readers[start % lite.readers.len()].lock().unwrap_or_else(|p| p.into_inner());
                f(&Conn::Lite(&c))
            }
            Db::Pg(pool) => pool.with(f),
        }
    }
}

fn newer_schema(version: i64) -> StoreError {
    StoreError::Db(format!("the database is schema version {version}, newer than this posture ({SCHEMA_VERSION})"))
}

/// Whether a database of this schema version holds sealed secrets (it then needs its master key).
fn has_sealed_secrets(c: &Conn, version: i64) -> Result<bool> {
    let sealed_in = |table: &str| {
        c.value::<bool>(&format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE sealed_secret IS NOT NULL)"), &[])
    };
    Ok(sealed_in("access_keys")? || (version >= 5 && sealed_in("cloud_accounts")?))
}

impl Drop for Store {
    fn drop(&mut self) {
        // The nonce flusher commits what is pending and ends; closing the queue ends the
        // committer after the writes already sent.
        self.nonces.close();
        if let Db::Lite(lite) = &mut self.db {
            lite.jobs.take();
            if let Some(h) = lite.committer.take() {
                let _ = h.join();
            }
        }
    }
}

/// Most keys passed in one `IN (…)` list: far below either backend's parameter limit, and a
/// long list of keys is sent in lists of this length, so they share one cached statement.
pub(crate) const IN_LIST_MAX: usize = 500;

/// `?, ?, ?` for `n` parameters.
pub(crate) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// The backend `store()` opens in this test (see [`both_backends`]).
        pub static ON_POSTGRES: Cell<bool> = const { Cell::new(false) };
    }

    /// What a test store lives in: its data directory, and its PostgreSQL database if any.
    pub struct Place {
        dir: tempfile::TempDir,
        db: Option<testing::TestDatabase>,
    }

    /// The store of `place` opened again (a restart, or another node).
    pub fn reopen(place: &Place) -> Store {
        let database = place.db.as_ref().map(|d| d.url.clone());
        Store::connect(&Location { data: place.dir.path().to_path_buf(), database, master_key: None, pool: None })
            .unwrap()
    }

    impl Place {
        pub fn path(&self) -> &Path {
            self.dir.path()
        }
    }

    /// A new empty store on this test's backend.
    pub fn store() -> (Place, Store) {
        let dir = tempfile::tempdir().unwrap();
        if ON_POSTGRES.get() {
            let db = testing::TestDatabase::create().expect("checked by both_backends");
            let at = Location {
                data: dir.path().to_path_buf(),
                database: Some(db.url.clone()),
                master_key: None,
                pool: None,
            };
            let s = Store::connect(&at).unwrap();
            return (Place { dir, db: Some(db) }, s);
        }
        let s = Store::open(&dir.path().join("posture.db")).unwrap();
        (Place { dir, db: None }, s)
    }

    /// Runs each test twice, as `sqlite::name` and `postgres::name`: the conformance suite
    /// of the seam. The tests open their stores with [`store`].
    macro_rules! both_backends {
        ($($(#[$meta:meta])* fn $name:ident() $body:block)*) => {
            mod sqlite {
                #[allow(unused_imports)]
                use super::*;
                $($(#[$meta])* #[test] fn $name() { $body })*
            }
            mod postgres {
                #[allow(unused_imports)]
                use super::*;
                $($(#[$meta])* #[test] fn $name() {
                    if std::env::var("POSTURE_TEST_DATABASE_URL").is_err() {
                        drop($crate::testing::TestDatabase::create()); // says why, or fails in CI
                        return;
                    }
                    $crate::testutil::ON_POSTGRES.set(true);
                    $body
                })*
            }
        };
    }
    pub(crate) use both_backends;
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
        let plain: String = s.read(|c| c.value("SELECT secret FROM access_keys WHERE id = 'LTAIold'", &[])).unwrap();
        assert_eq!(plain, "", "the plain copy is gone");
        assert_eq!(s.get_account("1000000000000001").unwrap().unwrap().repair_quota, None);
        drop(s);
        // Opening again is a no-op; a newer schema is refused.
        Store::open(&path).unwrap();
        Connection::open(&path).unwrap().execute_batch("PRAGMA user_version = 99;").unwrap();
        assert!(Store::open(&path).err().unwrap().to_string().contains("newer"));
    }
}
