//! Nonces of signed requests. A request may be accepted while its signed date is within the
//! window of now, so its nonce is kept until that date plus the window — never shorter, so no
//! replay can be accepted — and across restarts: a request is answered only once its nonce is
//! committed to disk.
//!
//! Keeping that cheap (every request has a nonce): a nonce is 128 bits of SHA-256 over the
//! AccessKeyId and the nonce, filed in the bucket of the minute it expires in. Whether it was
//! seen is decided in memory (the live buckets of this process, loaded from the log the first
//! time a nonce is checked), which the single `serve` of a data directory makes exact; the log
//! is a table appended in rowid order (no random B-tree insert per request), in one of two
//! places:
//!
//! - **A read's nonce** goes to `nonces.db`, beside the main database, with its own connection
//!   and group commit: a flusher thread gathers the nonces of a few milliseconds, commits them
//!   at once, then tells each waiting request. A commit to the main database every millisecond
//!   would make every reader connection drop its page cache (SQLite does so whenever another
//!   connection has written) — measured, a sixth more CPU per ListCheckResult.
//! - **A nonce of a request that may write** is written into the main database's `nonces`
//!   table by the committer, ahead of the request's own writes, so it is committed in the same
//!   commit as them or an earlier one — never after them — and the request does not wait for a
//!   second file's commit before it writes (measured: that wait cost SubmitOperationTask 3–5 %
//!   of its throughput).
//!
//! Whole buckets are dropped once their minute and one more window have passed (the margin
//! covers a clock that jumps ahead and back).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

use rusqlite::{params, Connection};
use sha2::{Digest, Sha256};

use crate::sql::{args, Conn};
use crate::{Job, Result, Store, StoreError};

/// Width of a bucket.
const BUCKET_MS: i64 = 60_000;
/// Rows of aged-out buckets deleted by one commit of `nonces.db` (the deletion is spread over
/// many).
const PRUNE_CHUNK: i64 = 2_000;
/// Rows of aged-out buckets deleted from the main database with each writing request's nonce
/// (more than the one it adds, so the table shrinks back; few, so no request pays for many).
const PRUNE_PER_WRITE: i64 = 16;
/// How long the flusher gathers nonces before it commits them: every read waits about this
/// long for its nonce. Measured (api scenario, 64 clients, 2 cores): 0.5–1 ms answered
/// ListOperationTask 10–20 % faster than 2 ms, and no gather at all slower than either (a
/// commit per handful of nonces).
const GATHER: std::time::Duration = std::time::Duration::from_micros(1_000);

type NonceDigest = [u8; 16];

/// The digest kept for a nonce: a collision between two requests of one window is out of reach.
fn nonce_digest(key_id: &str, nonce: &str) -> NonceDigest {
    let mut h = Sha256::new();
    h.update(key_id.as_bytes());
    h.update([0u8]);
    h.update(nonce.as_bytes());
    let mut d = [0u8; 16];
    d.copy_from_slice(&h.finalize()[..16]);
    d
}

/// The nonces of this process: live buckets in memory, and the log appends not yet committed.
pub(crate) struct Nonces {
    /// `nonces.db`.
    path: PathBuf,
    loaded: OnceLock<()>,
    state: Mutex<State>,
    /// Wakes the flusher: nonces are pending, or the store closes.
    pending_or_closing: Condvar,
    durable: Mutex<Durable>,
    flusher: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Default)]
struct State {
    live: HashMap<i64, HashSet<NonceDigest>>,
    pending: Vec<(i64, NonceDigest)>,
    next_ticket: u64,
    closing: bool,
    /// Buckets below this are gone from memory (and are being deleted from the log).
    stale_below: i64,
}

/// Called once the nonce is committed (or could not be).
type Notice = Box<dyn FnOnce(Result<()>) + Send>;

#[derive(Default)]
struct Durable {
    /// Every nonce with a ticket up to this one is committed.
    upto: u64,
    /// The last commit failed (the log could not be written): waiters get an error.
    failed: Option<String>,
    /// Requests waiting for their ticket, told one by one when it is committed.
    waiting: Vec<(u64, Notice)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Appends nonces to a log's table (either file's) and deletes up to `prune` aged-out rows,
/// inside the caller's transaction.
fn append(c: &Connection, rows: &[(i64, NonceDigest)], stale: i64, prune: i64) -> rusqlite::Result<()> {
    let mut ins = c.prepare_cached("INSERT INTO nonces (bucket, digest) VALUES (?, ?)")?;
    for (bucket, digest) in rows {
        ins.execute(params![bucket, &digest[..]])?;
    }
    c.prepare_cached("DELETE FROM nonces WHERE rowid IN (SELECT rowid FROM nonces WHERE bucket < ? LIMIT ?)")?
        .execute(params![stale, prune])?;
    Ok(())
}

fn failure(e: &str) -> StoreError {
    StoreError::Db(format!("the nonce could not be recorded: {e}"))
}

/// A nonce seen for the first time, not yet on its way to disk: send it with
/// [`NewNonce::log`] (a read) or [`NewNonce::ahead_of_writes`] (a request that may write).
#[must_use = "a nonce that is never sent to disk is forgotten at the next restart"]
pub struct NewNonce {
    nonces: Arc<Nonces>,
    bucket: i64,
    digest: NonceDigest,
    /// Already committed (on PostgreSQL, where it is recorded by the statement that decides).
    committed: bool,
}

impl NewNonce {
    /// Appends the nonce to `nonces.db` (committed within a few milliseconds).
    pub fn log(self) -> NonceWait {
        if self.committed {
            return NonceWait(Wait::Done);
        }
        let n = self.nonces;
        let mut st = lock(&n.state);
        st.next_ticket += 1;
        let ticket = st.next_ticket;
        st.pending.push((self.bucket, self.digest));
        if st.pending.len() == 1 {
            n.pending_or_closing.notify_one();
        }
        drop(st);
        NonceWait(Wait::Log { nonces: n.clone(), ticket })
    }

    /// Hands the nonce to the main database's committer now, ahead of the writes the caller
    /// queues next: it is committed with them or before them.
    pub fn ahead_of_writes(self, store: &Store) -> NonceWait {
        if self.committed {
            return NonceWait(Wait::Done);
        }
        let told = Arc::new(Mutex::new(Told::default()));
        let stale = lock(&self.nonces.state).stale_below;
        let job = WriteAhead { bucket: self.bucket, digest: self.digest, stale, told: told.clone() };
        if !store.send_job(Box::new(job)) {
            lock(&told).outcome = Some(Err("the store is closed".into()));
        }
        NonceWait(Wait::Main(told))
    }
}

/// A nonce on its way to disk: [`NonceWait::notify`] calls back (or [`NonceWait::wait`]
/// returns) once it is committed.
pub struct NonceWait(Wait);

enum Wait {
    /// Committed already.
    Done,
    /// In `nonces.db`'s batch with this ticket.
    Log { nonces: Arc<Nonces>, ticket: u64 },
    /// In a job of the main committer.
    Main(Arc<Mutex<Told>>),
}

/// The outcome of a [`WriteAhead`] job, and who to tell.
#[derive(Default)]
struct Told {
    outcome: Option<std::result::Result<(), String>>,
    notice: Option<Notice>,
}

impl NonceWait {
    /// Calls `done` once the nonce is committed (at once if it already is), from the thread
    /// that learns it: an async caller completes a future there instead of blocking a thread.
    pub fn notify(self, done: impl FnOnce(Result<()>) + Send + 'static) {
        match self.0 {
            Wait::Done => done(Ok(())),
            Wait::Log { nonces, ticket } => {
                let mut d = lock(&nonces.durable);
                if d.upto >= ticket {
                    drop(d);
                    return done(Ok(()));
                }
                if let Some(e) = d.failed.clone() {
                    drop(d);
                    return done(Err(failure(&e)));
                }
                d.waiting.push((ticket, Box::new(done)));
            }
            Wait::Main(told) => {
                let mut t = lock(&told);
                match t.outcome.clone() {
                    Some(outcome) => {
                        drop(t);
                        done(outcome.map_err(|e| failure(&e)));
                    }
                    None => t.notice = Some(Box::new(done)),
                }
            }
        }
    }

    /// Waits (blocking this thread) for the commit that holds the nonce.
    pub fn wait(self) -> Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.notify(move |r| {
            let _ = tx.send(r);
        });
        rx.recv().unwrap_or_else(|_| Err(failure("the store closed")))
    }
}

/// A writing request's nonce, appended to the main database's `nonces` table (and a chunk of
/// aged-out rows deleted) inside the committer's transaction.
struct WriteAhead {
    bucket: i64,
    digest: NonceDigest,
    stale: i64,
    told: Arc<Mutex<Told>>,
}

impl Job for WriteAhead {
    fn run(&mut self, c: &Connection) -> bool {
        match append(c, &[(self.bucket, self.digest)], self.stale, PRUNE_PER_WRITE) {
            Ok(()) => true,
            Err(e) => {
                lock(&self.told).outcome = Some(Err(e.to_string()));
                false
            }
        }
    }

    fn answer(self: Box<Self>, committed: std::result::Result<(), String>) {
        let mut t = lock(&self.told);
        let outcome = t.outcome.clone().unwrap_or(Ok(())).and(committed);
        if let Err(e) = &outcome {
            tracing::error!(error = %e, stage = "nonces", "a nonce could not be recorded");
        }
        t.outcome = Some(outcome.clone());
        let notice = t.notice.take();
        drop(t);
        if let Some(done) = notice {
            done(outcome.map_err(|e| failure(&e)));
        }
    }
}

impl Nonces {
    /// Opens (creating) `nonces.db` beside the main database and starts its flusher, which
    /// owns the one connection that writes it.
    pub(crate) fn open(main: &Path) -> Result<Arc<Nonces>> {
        let path = main.with_file_name("nonces.db");
        let c = Connection::open(&path)?;
        c.busy_timeout(std::time::Duration::from_secs(10))?;
        c.pragma_update(None, "journal_mode", "WAL")?;
        c.pragma_update(None, "synchronous", "FULL")?;
        c.execute_batch(
            "CREATE TABLE IF NOT EXISTS nonces (bucket INTEGER NOT NULL, digest BLOB NOT NULL);
             CREATE INDEX IF NOT EXISTS nonces_by_bucket ON nonces (bucket);",
        )?;
        let nonces = Arc::new(Nonces {
            path,
            loaded: OnceLock::new(),
            state: Mutex::default(),
            pending_or_closing: Condvar::new(),
            durable: Mutex::default(),
            flusher: Mutex::new(None),
        });
        let flusher = nonces.clone();
        let handle = std::thread::Builder::new()
            .name("posture-nonces".into())
            .spawn(move || flusher.flush_loop(c))
            .map_err(|e| StoreError::Db(e.to_string()))?;
        *lock(&nonces.flusher) = Some(handle);
        Ok(nonces)
    }

    /// Commits what is pending and stops the flusher.
    pub(crate) fn close(&self) {
        lock(&self.state).closing = true;
        self.pending_or_closing.notify_all();
        if let Some(h) = lock(&self.flusher).take() {
            let _ = h.join();
        }
    }

    fn flush_loop(&self, c: Connection) {
        loop {
            let mut st = lock(&self.state);
            while st.pending.is_empty() && !st.closing {
                st = self.pending_or_closing.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.pending.is_empty() {
                return; // closing, nothing left
            }
            if !st.closing {
                // Let the nonces of concurrent requests gather into this commit.
                drop(st);
                std::thread::sleep(GATHER);
                st = lock(&self.state);
            }
            let (rows, upto, stale) = (std::mem::take(&mut st.pending), st.next_ticket, st.stale_below);
            drop(st);
            let outcome = Self::commit(&c, &rows, stale).map_err(|e| e.to_string());
            self.tell(upto, outcome);
        }
    }

    /// Appends a batch (and deletes a chunk of aged-out rows) in one durable transaction.
    fn commit(c: &Connection, rows: &[(i64, NonceDigest)], stale: i64) -> rusqlite::Result<()> {
        let tx = c.unchecked_transaction()?;
        append(&tx, rows, stale, PRUNE_CHUNK)?;
        tx.commit()
    }

    /// Records the outcome of a commit and tells the requests it concerns.
    fn tell(&self, upto: u64, outcome: std::result::Result<(), String>) {
        let mut d = lock(&self.durable);
        let told: Vec<(u64, Notice)> = match &outcome {
            Ok(()) => {
                d.upto = d.upto.max(upto);
                d.failed = None;
                let upto = d.upto;
                let (done, rest) = std::mem::take(&mut d.waiting).into_iter().partition(|(t, _)| *t <= upto);
                d.waiting = rest;
                done
            }
            Err(e) => {
                tracing::error!(error = %e, stage = "nonces", "nonces could not be recorded");
                d.failed = Some(e.clone());
                std::mem::take(&mut d.waiting)
            }
        };
        drop(d);
        for (_, done) in told {
            done(outcome.clone().map_err(|e| failure(&e)));
        }
    }
}

impl Store {
    /// Records the nonce of a request signed by `key_id` and dated `date_ms`, acceptable until
    /// `date_ms + window_ms`: false if it was recorded before and is still kept. A replay
    /// carries the same signed date, so it lands in the same bucket.
    pub fn use_nonce(&self, key_id: &str, nonce: &str, date_ms: i64, window_ms: i64, now_ms: i64) -> Result<bool> {
        match self.use_nonce_later(key_id, nonce, date_ms, window_ms, now_ms)? {
            Some(new) => new.log().wait().map(|()| true),
            None => Ok(false),
        }
    }

    /// [`Store::use_nonce`], decided now (None: used before); the caller sends it to disk
    /// ([`NewNonce`]), may work meanwhile, and waits for its commit before it answers.
    pub fn use_nonce_later(
        &self,
        key_id: &str,
        nonce: &str,
        date_ms: i64,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<Option<NewNonce>> {
        let digest = nonce_digest(key_id, nonce);
        // The first bucket whose start is at or after the expiry: kept at least until then.
        let bucket = (date_ms + window_ms).div_euclid(BUCKET_MS) + 1;
        let stale = (now_ms - window_ms).div_euclid(BUCKET_MS);
        let n = &self.nonces;
        if self.backend() == "postgres" {
            return self.use_nonce_in_database(bucket, digest, stale);
        }
        self.load_nonces(window_ms, now_ms)?;
        let mut st = lock(&n.state);
        if stale > st.stale_below {
            st.stale_below = stale;
            st.live.retain(|b, _| *b >= stale);
        }
        if !st.live.entry(bucket).or_default().insert(digest) {
            return Ok(None);
        }
        Ok(Some(NewNonce { nonces: n.clone(), bucket, digest, committed: false }))
    }

    /// On PostgreSQL, where several nodes share the database, the database decides: the first
    /// insert of a digest wins, committed before the request goes on, so a replay sent to
    /// any node is refused. Once a minute per node, aged-out buckets are deleted.
    fn use_nonce_in_database(&self, bucket: i64, digest: NonceDigest, stale: i64) -> Result<Option<NewNonce>> {
        let prune = {
            let mut st = lock(&self.nonces.state);
            let due = stale > st.stale_below;
            st.stale_below = st.stale_below.max(stale);
            due
        };
        let inserted = self.read(|c| {
            if prune {
                c.execute("DELETE FROM nonces WHERE bucket < ?", args![stale])?;
            }
            c.execute(
                "INSERT INTO nonces (digest, bucket) VALUES (?, ?) ON CONFLICT (digest) DO NOTHING",
                args![&digest[..], bucket],
            )
        })? == 1;
        Ok(inserted.then(|| NewNonce { nonces: self.nonces.clone(), bucket, digest, committed: true }))
    }

    /// Fills memory from the two logs, once: the nonces kept by earlier runs.
    fn load_nonces(&self, window_ms: i64, now_ms: i64) -> Result<()> {
        if self.nonces.loaded.get().is_some() {
            return Ok(());
        }
        let stale = (now_ms - window_ms).div_euclid(BUCKET_MS);
        let read = |c: &Conn| -> Result<Vec<(i64, Vec<u8>)>> {
            c.query("SELECT bucket, digest FROM nonces WHERE bucket >= ?", args![stale], |r| Ok((r.get(0)?, r.get(1)?)))
        };
        let log = Connection::open_with_flags(&self.nonces.path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let mut rows = read(&Conn::Lite(&log))?;
        rows.extend(self.read(read)?);
        let mut st = lock(&self.nonces.state);
        if self.nonces.loaded.get().is_none() {
            for (bucket, digest) in rows {
                if let Ok(d) = NonceDigest::try_from(digest.as_slice()) {
                    st.live.entry(bucket).or_default().insert(d);
                }
            }
            st.stale_below = st.stale_below.max(stale);
            let _ = self.nonces.loaded.set(());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::store;

    const W: i64 = 15 * 60_000;

    /// The nonces kept by the log of reads (SQLite), or in the database (PostgreSQL).
    fn rows_in(dir: &crate::testutil::Place, s: &crate::Store) -> i64 {
        if s.backend() == "postgres" {
            return s.read(|c| c.value("SELECT COUNT(*) FROM nonces", &[])).unwrap();
        }
        let c = rusqlite::Connection::open(dir.path().join("nonces.db")).unwrap();
        c.query_row("SELECT COUNT(*) FROM nonces", [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn a_nonce_used_on_one_node_is_refused_by_every_other() {
        let Some(db) = crate::testing::TestDatabase::create() else { return };
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let key = dirs[0].path().join("master.key");
        let nodes: Vec<crate::Store> = dirs
            .iter()
            .map(|d| {
                let at = crate::Location {
                    data: d.path().to_path_buf(),
                    database: Some(db.url.clone()),
                    master_key: Some(key.clone()),
                    pool: None,
                };
                crate::Store::connect(&at).unwrap()
            })
            .collect();
        let now = 1_000_000_000_000;
        assert!(nodes[0].use_nonce("k", "n", now, W, now).unwrap());
        assert!(!nodes[1].use_nonce("k", "n", now, W, now).unwrap(), "replayed to another node");
    }

    #[test]
    fn a_writing_request_s_nonce_is_kept_in_the_main_database_with_its_writes() {
        let (dir, s) = store();
        let now = 1_000_000_000_000;
        let new = s.use_nonce_later("k", "w", now, W, now).unwrap().unwrap();
        new.ahead_of_writes(&s).wait().unwrap();
        assert!(s.use_nonce_later("k", "w", now, W, now).unwrap().is_none(), "refused at once");
        let in_main: i64 = s.read(|c| c.value("SELECT COUNT(*) FROM nonces", &[])).unwrap();
        assert_eq!((in_main, rows_in(&dir, &s)), (1, 0), "in the main database, not the read log");
        drop(s);
        let s = crate::Store::open(&dir.path().join("posture.db")).unwrap();
        assert!(!s.use_nonce("k", "w", now, W, now + 60_000).unwrap(), "refused after a restart");
        assert!(s.use_nonce("k", "r", now, W, now + 60_000).unwrap());
    }

    crate::testutil::both_backends! {
        fn a_nonce_is_refused_for_as_long_as_its_date_is_acceptable() {
            let (dir, s) = store();
            let date = 1_000_000_000_000;
            assert!(s.use_nonce("k", "n", date, W, date).unwrap());
            assert!(!s.use_nonce("k", "n", date, W, date + 1).unwrap());
            assert!(s.use_nonce("other", "n", date, W, date).unwrap(), "per key");
            // A request dated 14 min 50 s ahead, replayed 15 min 5 s after it was first seen: its
            // date is still acceptable (10 s old), so the nonce must still be known.
            let ahead = date + 14 * 60_000 + 50_000;
            assert!(s.use_nonce("k", "edge", ahead, W, date).unwrap());
            assert!(!s.use_nonce("k", "edge", ahead, W, date + 15 * 60_000 + 5_000).unwrap());
            // After a restart too (the table is read back).
            drop(s);
            let s = crate::testutil::reopen(&dir);
            assert!(!s.use_nonce("k", "edge", ahead, W, date + 20 * 60_000).unwrap());
            // Long after the date is out of the window (and one window more), its bucket is gone,
            // from memory and, a chunk per commit, from the table.
            let later = ahead + 2 * W + 3 * 60_000;
            assert!(s.use_nonce("k", "x", later, W, later).unwrap());
            assert!(s.use_nonce("k", "y", later, W, later).unwrap());
            let left = rows_in(&dir, &s);
            assert_eq!(left, 2, "every aged-out bucket was dropped");
        }
        fn concurrent_requests_share_commits_and_duplicates_are_caught() {
            let (_dir, s) = store();
            let s = std::sync::Arc::new(s);
            let now = 1_000_000_000_000;
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let s = s.clone();
                    std::thread::spawn(move || {
                        (0..200)
                            .filter(|i| s.use_nonce("k", &format!("{}", i % 100 + t % 2 * 1000), now, W, now).unwrap())
                            .count()
                    })
                })
                .collect();
            let fresh: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
            assert_eq!(fresh, 200, "each of the 200 distinct nonces was new exactly once");
            assert_eq!(rows_in(&_dir, &s), 200);
        }
    }
}
