//! The PostgreSQL backend: a small pool of connections, each write in its own transaction
//! (answered after its COMMIT), and the schema brought up to date under an advisory lock.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::sql::{args, Conn, PgClient};
use crate::{status_lists, Result, StoreError, SCHEMA_VERSION};

/// Most connections a store keeps open.
const MAX_CONNECTIONS: usize = 16;

/// The key of the advisory lock that migrations (and first-start steps) run under: any
/// constant shared by every posture node ("posture" in ASCII).
const MIGRATION_LOCK: i64 = 0x0070_6f73_7475_7265;

/// Connections to one database: idle ones are reused, new ones opened up to the limit.
pub(crate) struct Pool {
    config: postgres::Config,
    state: Mutex<PoolState>,
    freed: Condvar,
    /// Ends the work watcher's thread (set when the store is dropped).
    closing: Arc<AtomicBool>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::Relaxed);
    }
}

/// The channel new work is announced on.
const WORK_CHANNEL: &str = "posture_work";

/// Within a write on PostgreSQL: tells every node's watcher, when the transaction commits, that
/// there is work (tasks submitted or released, a check run created).
pub(crate) fn notify_work(c: &Conn) -> Result<()> {
    if c.dialect() == crate::sql::Dialect::Postgres {
        c.batch(&format!("NOTIFY {WORK_CHANNEL}"))?;
    }
    Ok(())
}

struct PoolState {
    idle: Vec<PgClient>,
    open: usize,
}

impl Pool {
    /// Checks the URL and opens a first connection (so a wrong address fails at start).
    pub(crate) fn new(url: &str) -> Result<Pool> {
        let config: postgres::Config =
            url.parse().map_err(|e| StoreError::Db(format!("the database URL is not valid: {e}")))?;
        let pool = Pool {
            config,
            state: Mutex::new(PoolState { idle: Vec::new(), open: 0 }),
            freed: Condvar::new(),
            closing: Arc::new(AtomicBool::new(false)),
        };
        let first = pool.connect()?;
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
            .connect(postgres::NoTls)
            .map_err(|e| StoreError::Unavailable(format!("cannot connect: {e}")))?;
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
            if st.open < MAX_CONNECTIONS {
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
    /// poll meanwhile).
    pub(crate) fn watch_work(&self, wake: Box<dyn Fn() + Send + Sync>) -> Result<()> {
        let (config, closing) = (self.config.clone(), self.closing.clone());
        std::thread::Builder::new()
            .name("posture-work-watcher".into())
            .spawn(move || {
                while !closing.load(Ordering::Relaxed) {
                    let listened = (|| -> std::result::Result<(), postgres::Error> {
                        use postgres::fallible_iterator::FallibleIterator;
                        let mut client = config.connect(postgres::NoTls)?;
                        client.batch_execute(&format!("LISTEN {WORK_CHANNEL}"))?;
                        wake(); // anything announced while it was not listening
                        while !closing.load(Ordering::Relaxed) {
                            let mut notices = client.notifications();
                            let mut heard = notices.timeout_iter(std::time::Duration::from_secs(1));
                            while heard.next()?.is_some() {
                                wake();
                            }
                        }
                        Ok(())
                    })();
                    if let Err(e) = listened {
                        tracing::warn!(error = %e, "the work watcher lost its connection; reconnecting");
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
        let lent = Lent { pool: self, cell: Some(RefCell::new(self.take()?)) };
        f(&Conn::Pg(lent.cell.as_ref().expect("lent until dropped")))
    }

    /// Runs `f` in one transaction: committed if it returns Ok, rolled back if not.
    pub(crate) fn transaction<T>(&self, f: impl FnOnce(&Conn) -> Result<T>) -> Result<T> {
        self.with(|c| c.in_transaction("BEGIN", || f(c)))
    }
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
        if version == 0 {
            c.batch(&status_lists(include_str!("schema.sql")))?;
            c.execute("INSERT INTO schema_version (version) VALUES (?)", args![SCHEMA_VERSION])?;
        }
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
        let at = crate::Location { data: dir.path().to_path_buf(), database: Some(db.url.clone()), master_key: None };
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
}
