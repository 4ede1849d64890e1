//! The PostgreSQL backend: a small pool of connections, each write in its own transaction
//! (answered after its COMMIT), and the schema brought up to date under an advisory lock.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

mod tls;

use crate::sql::{args, Conn, PgClient};
use crate::{status_lists, Result, StoreError, SCHEMA_VERSION};

/// Most connections a store keeps open, unless told otherwise.
pub const DEFAULT_POOL: usize = 16;

/// The key of the advisory lock that migrations (and first-start steps) run under: any
/// constant shared by every posture node ("posture" in ASCII).
const MIGRATION_LOCK: i64 = 0x0070_6f73_7475_7265;

/// Connections to one database: idle ones are reused, new ones opened up to the limit.
pub(crate) struct Pool {
    config: postgres::Config,
    tls: tls::PgTls,
    state: Mutex<PoolState>,
    freed: Condvar,
    /// Ends the watcher's thread (set when the store is dropped).
    closing: Arc<AtomicBool>,
    /// A schema version newer than this binary's, once the watcher has seen one (0: none).
    /// Another node has upgraded the database: every call then fails as unavailable (503)
    /// rather than read or write a schema this node does not know.
    newer_schema: Arc<AtomicI64>,
    /// The most connections open at once.
    max_open: usize,
}

/// How often the watcher reads the schema version.
const SCHEMA_POLL: std::time::Duration = std::time::Duration::from_secs(2);

impl Drop for Pool {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::Relaxed);
    }
}

/// The channel new work is announced on.
const WORK_CHANNEL: &str = "posture_work";

/// Within a write: tells the watchers, once the transaction commits, that there is work (tasks
/// submitted or released, a check run created) — every node's on PostgreSQL (NOTIFY), this
/// process's on SQLite (the committer tells them after its commit).
pub(crate) fn notify_work(c: &Conn) -> Result<()> {
    match c.dialect() {
        crate::sql::Dialect::Postgres => c.batch(&format!("NOTIFY {WORK_CHANNEL}"))?,
        // The committer tells this process's watchers once the write is committed.
        crate::sql::Dialect::Sqlite => crate::ANNOUNCED.set(true),
    }
    Ok(())
}

/// An error and its causes (a TLS failure is the cause of the driver's "error performing TLS
/// handshake").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

/// Rows changed by one write from which it refreshes the table's planner statistics.
const BULK_ROWS: usize = 10_000;

/// After a write changed `rows` rows of `table`: on PostgreSQL, when they are many, refreshes
/// the table's planner statistics in the same transaction. Autovacuum would do it within a
/// minute or so; meanwhile a fan-out submitted right after a large selection was made is
/// planned as if the selection held one row (a nested loop: 1.4 s more per 100,000 tasks).
pub(crate) fn analyze_after_bulk(c: &Conn, table: &str, rows: usize) -> Result<()> {
    if c.dialect() == crate::sql::Dialect::Postgres && rows >= BULK_ROWS {
        c.batch(&format!("ANALYZE {table}"))?;
    }
    Ok(())
}

struct PoolState {
    idle: Vec<PgClient>,
    open: usize,
}

impl Pool {
    /// Checks the URL and opens a first connection (so a wrong address fails at start); at
    /// most `max_open` connections are kept (at least one; the watcher's is one more).
    pub(crate) fn new(url: &str, max_open: usize) -> Result<Pool> {
        let (config, tls) = tls::parse(url).map_err(StoreError::Db)?;
        let pool = Pool {
            config,
            tls,
            state: Mutex::new(PoolState { idle: Vec::new(), open: 0 }),
            freed: Condvar::new(),
            closing: Arc::new(AtomicBool::new(false)),
            newer_schema: Arc::new(AtomicI64::new(0)),
            max_open: max_open.max(1),
        };
        let first = pool.connect()?;
        tracing::info!(tls = pool.tls.enabled(), "connected to PostgreSQL");
        let mut st = pool.lock();
        st.open += 1;
        st.idle.push(first);
        drop(st);
        Ok(pool)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn connect(&self) -> Result<PgClient> {
        let client = self
            .config
            .connect(self.tls.clone())
            .map_err(|e| StoreError::Unavailable(format!("cannot connect: {}", error_chain(&e))))?;
        Ok(PgClient::new(client))
    }

    /// Takes a connection: an idle one, a new one while under the limit, or the next one freed.
    fn take(&self) -> Result<PgClient> {
        let mut st = self.lock();
        loop {
            if let Some(c) = st.idle.pop() {
                if !c.client.is_closed() {
                    return Ok(c);
                }
                st.open -= 1;
                continue;
            }
            if st.open < self.max_open {
                st.open += 1;
                drop(st);
                return self.connect().inspect_err(|_| self.lock().open -= 1);
            }
            st = self.freed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn give_back(&self, c: PgClient) {
        let mut st = self.lock();
        if c.client.is_closed() {
            st.open -= 1;
        } else {
            st.idle.push(c);
        }
        drop(st);
        self.freed.notify_one();
    }

    /// Listens for work announced by any node and calls `wake` for each announcement, from a
    /// thread with a connection of its own; a lost connection is opened again (the workers
    /// poll meanwhile). The same thread reads the schema version every [`SCHEMA_POLL`]: a
    /// newer one (another node upgraded the database) makes this node answer 503 until it is
    /// upgraded too.
    pub(crate) fn watch_work(&self, wake: Box<dyn Fn() + Send + Sync>) -> Result<()> {
        let (config, tls, closing, newer) =
            (self.config.clone(), self.tls.clone(), self.closing.clone(), self.newer_schema.clone());
        std::thread::Builder::new()
            .name("posture-db-watcher".into())
            .spawn(move || {
                while !closing.load(Ordering::Relaxed) {
                    let listened = (|| -> std::result::Result<(), postgres::Error> {
                        use postgres::fallible_iterator::FallibleIterator;
                        let mut client = config.connect(tls.clone())?;
                        client.batch_execute(&format!("LISTEN {WORK_CHANNEL}"))?;
                        wake(); // anything announced while it was not listening
                        let mut read_at = std::time::Instant::now() - SCHEMA_POLL;
                        while !closing.load(Ordering::Relaxed) {
                            if read_at.elapsed() >= SCHEMA_POLL {
                                let row = client.query_opt("SELECT version FROM schema_version", &[])?;
                                let version: i64 = row.map_or(0, |r| r.get(0));
                                let seen = if version > SCHEMA_VERSION { version } else { 0 };
                                if newer.swap(seen, Ordering::Relaxed) != seen && seen > 0 {
                                    tracing::error!(
                                        schema = seen,
                                        known = SCHEMA_VERSION,
                                        "{}",
                                        newer_schema_message(seen)
                                    );
                                }
                                read_at = std::time::Instant::now();
                            }
                            let mut notices = client.notifications();
                            let mut heard = notices.timeout_iter(std::time::Duration::from_secs(1));
                            while heard.next()?.is_some() {
                                wake();
                                if read_at.elapsed() >= SCHEMA_POLL {
                                    break; // a busy channel must not starve the schema poll
                                }
                            }
                        }
                        Ok(())
                    })();
                    if let Err(e) = listened {
                        tracing::warn!(error = %e, "the database watcher lost its connection; reconnecting");
                        std::thread::sleep(std::time::Duration::from_secs(1));
                    }
                }
            })
            .map_err(|e| StoreError::Db(e.to_string()))?;
        Ok(())
    }

    /// Connections open, and idle among them.
    pub(crate) fn gauges(&self) -> (usize, usize) {
        let st = self.lock();
        (st.open, st.idle.len())
    }

    /// Runs `f` on a connection, each statement on its own (reads).
    pub(crate) fn with<T>(&self, f: impl FnOnce(&Conn) -> Result<T>) -> Result<T> {
        /// Gives the connection back even if `f` panics (its slot would be lost otherwise); a
        /// connection left inside a transaction by a panic is closed instead.
        struct Lent<'a> {
            pool: &'a Pool,
            cell: Option<RefCell<PgClient>>,
        }
        impl Drop for Lent<'_> {
            fn drop(&mut self) {
                if let Some(cell) = self.cell.take() {
                    let c = cell.into_inner();
                    if std::thread::panicking() {
                        drop(c);
                        self.pool.lock().open -= 1;
                        self.pool.freed.notify_one();
                    } else {
                        self.pool.give_back(c);
                    }
                }
            }
        }
        let newer = self.newer_schema.load(Ordering::Relaxed);
        if newer > 0 {
            return Err(StoreError::Unavailable(newer_schema_message(newer)));
        }
        let lent = Lent { pool: self, cell: Some(RefCell::new(self.take()?)) };
        f(&Conn::Pg(lent.cell.as_ref().expect("lent until dropped")))
    }

    /// Runs `f` in one transaction: committed if it returns Ok, rolled back if not.
    pub(crate) fn transaction<T>(&self, f: impl FnOnce(&Conn) -> Result<T>) -> Result<T> {
        self.with(|c| c.in_transaction("BEGIN", || f(c)))
    }
}

fn newer_schema_message(version: i64) -> String {
    format!(
        "the database was upgraded to schema version {version}, newer than this node's ({SCHEMA_VERSION}): \
         upgrade this node (docs/deploy.md)"
    )
}

/// The schema version of the database (0 when it has no posture schema yet).
pub(crate) fn schema_version(c: &Conn) -> Result<i64> {
    if !c.value::<bool>("SELECT to_regclass('schema_version') IS NOT NULL", &[])? {
        return Ok(0);
    }
    Ok(c.query_opt("SELECT version FROM schema_version", &[], |r| r.get(0))?.unwrap_or(0))
}

/// Creates the schema if the database has none, in one transaction under the migration lock:
/// nodes starting together take turns, and the second finds it done. The lock is taken before
/// the transaction begins, not inside it: a transaction begun before another node's schema was
/// committed may still find "no such table" in its backend's catalog cache.
pub(crate) fn migrate(c: &Conn) -> Result<()> {
    c.value::<Option<i64>>("SELECT CAST(NULL AS BIGINT) FROM pg_advisory_lock(?)", args![MIGRATION_LOCK])?;
    let result = c.in_transaction("BEGIN", || {
        let version = schema_version(c)?;
        if version > SCHEMA_VERSION {
            return Err(crate::newer_schema(version));
        }
        // `schema.sql` is schema 7; version 6 was the first on PostgreSQL.
        if version == 0 {
            c.batch(&status_lists(include_str!("schema.sql")))?;
            c.execute("INSERT INTO schema_version (version) VALUES (7)", &[])?;
        } else if version < 7 {
            c.batch(&status_lists(include_str!("migration_7.sql")))?;
        }
        if version < 8 {
            c.batch(include_str!("migration_8.sql"))?;
        }
        if version < 9 {
            c.batch(&crate::counts::blocks_sql(include_str!("migration_9.sql")))?;
        }
        if version < 10 {
            c.batch(&status_lists(include_str!("migration_10.sql")))?;
        }
        if version < 11 {
            c.batch(include_str!("migration_11.sql"))?;
        }
        if version < 12 {
            c.batch(include_str!("migration_12.sql"))?;
        }
        if version < 13 {
            c.batch(include_str!("migration_13.sql"))?;
        }
        if version < 14 {
            c.batch(include_str!("migration_14.sql"))?;
        }
        if version < 15 {
            c.batch(include_str!("migration_15.sql"))?;
        }
        if version < 16 {
            c.batch(include_str!("migration_16.sql"))?;
        }
        if version < 17 {
            c.batch(include_str!("migration_17.sql"))?;
        }
        if version < 18 {
            c.batch(&status_lists(include_str!("migration_18.sql")))?;
        }
        if version < 19 {
            c.batch(include_str!("migration_19.sql"))?;
        }
        if version < 21 {
            c.batch(include_str!("migration_21.sql"))?;
        }
        if version < 22 {
            c.batch(include_str!("migration_22.sql"))?;
        }
        if version < 23 {
            c.batch(include_str!("migration_23.sql"))?;
        }
        if version < 24 {
            c.batch(include_str!("migration_24.sql"))?;
        }
        if version < 25 {
            c.batch(include_str!("migration_25.sql"))?;
        }
        c.execute("UPDATE schema_version SET version = ?", args![SCHEMA_VERSION])?;
        Ok(())
    });
    let unlocked = c.value::<bool>("SELECT pg_advisory_unlock(?)", args![MIGRATION_LOCK]);
    result.and(unlocked.map(drop))
}

/// Within a write: waits for the first-start lock on PostgreSQL, so that steps every node runs
/// at start (the admin account and its key) are done by one of them. SQLite has one writer.
pub(crate) fn first_start_lock(c: &Conn) -> Result<()> {
    if c.dialect() == crate::sql::Dialect::Postgres {
        c.value::<Option<i64>>("SELECT CAST(NULL AS BIGINT) FROM pg_advisory_xact_lock(?)", args![MIGRATION_LOCK])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// A node's store location on a test database.
    fn location(dir: &tempfile::TempDir, db: &crate::testing::TestDatabase) -> crate::Location {
        crate::Location { data: dir.path().to_path_buf(), database: Some(db.url.clone()), master_key: None, pool: None }
    }

    /// A write PostgreSQL aborts to break a deadlock is tried again, and then commits. The
    /// other transaction waits 300 ms before closing the cycle, so the write, waiting first,
    /// reaches its deadlock check first and is the one aborted.
    #[test]
    fn a_write_aborted_to_break_a_deadlock_is_tried_again() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::{mpsc, Arc, Mutex};
        let Some(db) = crate::testing::TestDatabase::create() else { return };
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::connect(&location(&dir, &db)).unwrap();
        let mut other = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
        other
            .batch_execute("CREATE TABLE probe (id INT PRIMARY KEY, v INT); INSERT INTO probe VALUES (1, 0), (2, 0)")
            .unwrap();
        // Its own deadlock check later than the write's, where the server lets it say so.
        let _ = other.batch_execute("SET deadlock_timeout = '10s'");
        let (holds_1, held_1) = mpsc::channel::<()>();
        let other = std::thread::spawn(move || {
            let mut tx = other.transaction().unwrap();
            tx.execute("UPDATE probe SET v = v + 100 WHERE id = 2", &[]).unwrap();
            held_1.recv().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(300));
            tx.execute("UPDATE probe SET v = v + 1000 WHERE id = 1", &[]).unwrap();
            tx.commit().unwrap();
        });
        let attempts = Arc::new(AtomicUsize::new(0));
        let (counted, holds_1) = (attempts.clone(), Mutex::new(holds_1));
        // Row 2 is the other's until it commits; row 1 is the write's until it is aborted.
        std::thread::sleep(std::time::Duration::from_millis(100));
        store
            .write(move |tx| {
                counted.fetch_add(1, Ordering::SeqCst);
                tx.execute("UPDATE probe SET v = v + 1 WHERE id = 1", &[])?;
                let _ = holds_1.lock().unwrap().send(());
                tx.execute("UPDATE probe SET v = v + 10 WHERE id = 2", &[])?;
                Ok(())
            })
            .unwrap();
        other.join().unwrap();
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
        let v: Vec<i64> =
            store.read(|c| c.query("SELECT CAST(v AS BIGINT) FROM probe ORDER BY id", &[], |r| r.get(0))).unwrap();
        assert_eq!(v, [1001, 110], "each committed once");
    }

    #[test]
    fn nodes_opening_a_new_database_together_create_its_schema_once() {
        let Some(db) = crate::testing::TestDatabase::create() else { return };
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("master.key");
        let opened: Vec<_> = std::thread::scope(|s| {
            let nodes: Vec<_> = (0..4)
                .map(|n| {
                    let at = crate::Location {
                        data: dir.path().join(format!("node-{n}")),
                        database: Some(db.url.clone()),
                        master_key: Some(key.clone()),
                        pool: None,
                    };
                    s.spawn(move || crate::Store::connect(&at).map(drop))
                })
                .collect();
            nodes.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(opened.iter().all(Result::is_ok), "{opened:?}");
    }

    #[test]
    fn work_submitted_on_one_node_wakes_the_workers_of_another() {
        use crate::{Accounts, CheckRuns, TaskQueue};
        let Some(db) = crate::testing::TestDatabase::create() else { return };
        let dir = tempfile::tempdir().unwrap();
        let at = location(&dir, &db);
        let (a, b) = (crate::Store::connect(&at).unwrap(), crate::Store::connect(&at).unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        b.watch_work(Box::new(move || {
            let _ = tx.lock().unwrap().send(());
        }))
        .unwrap();
        rx.recv_timeout(std::time::Duration::from_secs(10)).expect("woken once it listens");
        while rx.try_recv().is_ok() {}
        let account = a.create_account("a").unwrap().id;
        a.create_run(&account, "CHECK_ALL", "", &[], &[]).unwrap();
        rx.recv_timeout(std::time::Duration::from_secs(10)).expect("woken by the other node's work");
    }

    #[test]
    fn a_schema_6_database_is_migrated_to_the_current_schema() {
        let Some(db) = crate::testing::TestDatabase::create() else { return };
        let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
        c.batch_execute(&crate::status_lists(include_str!("schema_6.sql"))).unwrap();
        c.batch_execute(
            "INSERT INTO schema_version (version) VALUES (6);
             INSERT INTO accounts (id, name, created_ms) VALUES ('a', 'a', 0);
             INSERT INTO instances (pk, account_id, vendor, region_id, instance_id, instance_name, connector, locator, created_ms)
               VALUES (1, 'a', 0, 'r', 'i-1', 'n', 'host', '/', 0);
             INSERT INTO root_tasks (id, account_id, check_id, type, dimension, created_ms) VALUES ('r', 'a', 1001, 'REPAIR', 'INSTANCE', 0);
             INSERT INTO tasks (id, root_id, account_id, check_id, instance_pk, type, status, created_ms, updated_ms)
               VALUES ('t', 'r', 'a', 1001, 1, 'REPAIR', 'INIT', 0, 0);",
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let at = location(&dir, &db);
        drop(crate::Store::connect(&at).unwrap());
        let version: i64 = c.query_one("SELECT version FROM schema_version", &[]).unwrap().get(0);
        assert_eq!(version, crate::SCHEMA_VERSION);
        let foreign: i64 = c
            .query_one(
                "SELECT COUNT(*) FROM pg_constraint WHERE conrelid = 'tasks'::regclass AND (contype = 'f' OR conname = 'tasks_rowid_key')",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(foreign, 0);
        let def: String =
            c.query_one("SELECT indexdef FROM pg_indexes WHERE indexname = 'tasks_one_active'", &[]).unwrap().get(0);
        assert!(def.contains("(instance_pk, check_id)"), "{def}");
        // The task written under schema 6 still holds its instance and item against another.
        let again = c.execute(
            "INSERT INTO tasks (id, root_id, account_id, check_id, instance_pk, type, status, created_ms, updated_ms)
             VALUES ('t2', 'r', 'a', 1001, 1, 'REPAIR', 'INIT', 0, 0)",
            &[],
        );
        assert!(again.unwrap_err().code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION));
    }

    #[test]
    fn a_node_that_sees_a_newer_schema_appear_answers_unavailable_until_it_is_gone() {
        use crate::TaskQueue;
        let Some(db) = crate::testing::TestDatabase::create() else { return };
        let dir = tempfile::tempdir().unwrap();
        let at = location(&dir, &db);
        let node = crate::Store::connect(&at).unwrap();
        node.watch_work(Box::new(|| {})).unwrap();
        let mut other = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
        let set =
            |c: &mut postgres::Client, v: i64| c.execute("UPDATE schema_version SET version = $1", &[&v]).unwrap();
        let until = |ok: &dyn Fn(&crate::Result<()>) -> bool| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            loop {
                let r = node.ping();
                if ok(&r) {
                    return r;
                }
                assert!(std::time::Instant::now() < deadline, "still {r:?}");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        };
        node.ping().unwrap();
        set(&mut other, crate::SCHEMA_VERSION + 1);
        let refused = until(&|r| r.is_err());
        match refused {
            Err(crate::StoreError::Unavailable(m)) => assert!(m.contains("upgrade this node"), "{m}"),
            other => panic!("{other:?}"),
        }
        set(&mut other, crate::SCHEMA_VERSION);
        until(&|r| r.is_ok()).unwrap();
    }
}
