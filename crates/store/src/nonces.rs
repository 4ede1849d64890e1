//! Nonces of signed requests. A request may be accepted while its signed date is within the
//! window of now, so its nonce is kept until that date plus the window — never shorter, so no
//! replay can be accepted — and across restarts: a request is answered only once its nonce is
//! committed to the database.
//!
//! Keeping that cheap (every request has a nonce): a nonce is 128 bits of SHA-256 over the
//! AccessKeyId and the nonce, filed in the bucket of the minute it expires in. Whether it was
//! seen is decided in memory (the live buckets of this process, loaded from the table the
//! first time a nonce is checked), which the single `serve` of a data directory makes exact;
//! the table is its durable log, appended to in rowid order (no random B-tree insert per
//! request). Appends ride the group commit as **one job per batch**: requests queue their
//! digests and wait for the commit that holds them; a flusher thread gathers them for a
//! millisecond before it hands the batch to the committer (a commit per request would cost
//! more than the request: measured, a third more CPU per ListCheckResult). Whole buckets are dropped once their minute
//! and one more window have passed (the margin covers a clock that jumps ahead and back).
//! A request that writes hands its nonce to the committer at once, before its own writes
//! ([`NonceWait::send_now`]): the committer takes jobs in order, so the nonce is committed in
//! the same transaction as those writes, or an earlier one — never after them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use rusqlite::{params, Connection};
use sha2::{Digest, Sha256};

use crate::{Job, Result, Store, StoreError};

/// Width of a bucket.
const BUCKET_MS: i64 = 60_000;
/// Rows of aged-out buckets deleted by one flush (the deletion is spread over many commits).
const PRUNE_CHUNK: i64 = 2_000;
/// How long the flusher gathers nonces before it hands them to the committer.
const GATHER: std::time::Duration = std::time::Duration::from_millis(1);

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
#[derive(Default)]
pub(crate) struct Nonces {
    loaded: OnceLock<()>,
    state: Mutex<State>,
    durable: Mutex<Durable>,
    /// Wakes the flusher: nonces are pending, or the store closes.
    pending_or_closing: std::sync::Condvar,
    flusher: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Default)]
struct State {
    live: HashMap<i64, HashSet<NonceDigest>>,
    pending: Vec<(i64, NonceDigest)>,
    next_ticket: u64,
    /// Nonces are pending and no flush was sent since they were.
    flush_wanted: bool,
    closing: bool,
    /// Buckets below this are gone from memory (and are being deleted from the table).
    stale_below: i64,
}

#[derive(Default)]
struct Durable {
    /// Every nonce with a ticket up to this one is committed.
    upto: u64,
    /// The last flush failed (the database could not be written): waiters get an error.
    failed: Option<String>,
    /// Requests waiting for their ticket, woken one by one when it is committed (waking every
    /// waiter at every commit would wake each many times over).
    waiting: Vec<(u64, std::thread::Thread)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A new nonce on its way to the table: [`NonceWait::wait`] returns once it is committed —
/// no later than any write queued after it.
pub struct NonceWait<'a> {
    store: &'a Store,
    ticket: u64,
}

impl NonceWait<'_> {
    /// Hands the pending nonces (this one among them) to the committer now, ahead of any
    /// write the caller queues next; without it, the flusher sends them within a millisecond.
    pub fn send_now(&self) {
        let n = &self.store.nonces;
        lock(&n.state).flush_wanted = false;
        self.store.send_job(Box::new(Flush { nonces: n.clone(), upto: 0, outcome: Ok(()) }));
    }

    /// Waits for the commit that holds the nonce.
    pub fn wait(self) -> Result<()> {
        let n = &self.store.nonces;
        let mut registered = false;
        loop {
            {
                let mut d = lock(&n.durable);
                if d.upto >= self.ticket {
                    return Ok(());
                }
                if let Some(e) = &d.failed {
                    return Err(StoreError::Db(format!("the nonce could not be recorded: {e}")));
                }
                if !registered {
                    d.waiting.push((self.ticket, std::thread::current()));
                    registered = true;
                }
            }
            std::thread::park();
        }
    }
}

/// One commit's worth of nonce appends, and a chunk of aged-out rows deleted. Run by the
/// committer; answered (the waiters woken) after the commit that holds it.
struct Flush {
    nonces: Arc<Nonces>,
    upto: u64,
    outcome: std::result::Result<(), String>,
}

impl Job for Flush {
    fn run(&mut self, c: &Connection) -> bool {
        let (rows, stale) = {
            let mut st = lock(&self.nonces.state);
            self.upto = st.next_ticket;
            (std::mem::take(&mut st.pending), st.stale_below)
        };
        let append = || -> rusqlite::Result<()> {
            let mut ins = c.prepare_cached("INSERT INTO nonces (bucket, digest) VALUES (?, ?)")?;
            for (bucket, digest) in &rows {
                ins.execute(params![bucket, &digest[..]])?;
            }
            c.prepare_cached("DELETE FROM nonces WHERE rowid IN (SELECT rowid FROM nonces WHERE bucket < ? LIMIT ?)")?
                .execute(params![stale, PRUNE_CHUNK])?;
            Ok(())
        };
        self.outcome = append().map_err(|e| e.to_string());
        self.outcome.is_ok()
    }

    fn answer(self: Box<Self>, committed: std::result::Result<(), String>) {
        let mut d = lock(&self.nonces.durable);
        let wake: Vec<std::thread::Thread> = match self.outcome.and(committed) {
            Ok(()) => {
                d.upto = d.upto.max(self.upto);
                d.failed = None;
                let upto = d.upto;
                let (done, rest) = std::mem::take(&mut d.waiting).into_iter().partition(|(t, _)| *t <= upto);
                d.waiting = rest;
                done.into_iter().map(|(_, thread)| thread).collect()
            }
            Err(e) => {
                tracing::error!(error = %e, stage = "nonces", "nonces could not be recorded");
                d.failed = Some(e);
                std::mem::take(&mut d.waiting).into_iter().map(|(_, thread)| thread).collect()
            }
        };
        drop(d);
        for thread in wake {
            thread.unpark();
        }
    }
}

impl Nonces {
    /// Starts the thread that hands pending nonces to the committer, a batch at a time.
    pub(crate) fn start_flusher(self: &Arc<Self>, jobs: std::sync::mpsc::Sender<Box<dyn Job>>) -> std::io::Result<()> {
        let nonces = self.clone();
        let handle =
            std::thread::Builder::new().name("posture-nonces".into()).spawn(move || nonces.flush_loop(jobs))?;
        *lock(&self.flusher) = Some(handle);
        Ok(())
    }

    /// Flushes what is pending and stops the flusher (before the committer stops).
    pub(crate) fn stop_flusher(&self) {
        lock(&self.state).closing = true;
        self.pending_or_closing.notify_all();
        if let Some(h) = lock(&self.flusher).take() {
            let _ = h.join();
        }
    }

    fn flush_loop(self: Arc<Self>, jobs: std::sync::mpsc::Sender<Box<dyn Job>>) {
        loop {
            let mut st = lock(&self.state);
            while !st.flush_wanted && !st.closing {
                st = self.pending_or_closing.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            let (wanted, closing) = (st.flush_wanted, st.closing);
            drop(st);
            if wanted {
                if !closing {
                    // Let the nonces of concurrent requests gather into this commit.
                    std::thread::sleep(GATHER);
                }
                // Everything pending when the job runs goes with it; what arrives after this
                // point asks for the next one.
                lock(&self.state).flush_wanted = false;
                let job = Flush { nonces: self.clone(), upto: 0, outcome: Ok(()) };
                if jobs.send(Box::new(job)).is_err() {
                    return;
                }
            }
            if closing {
                return;
            }
        }
    }
}

impl Store {
    /// Records the nonce of a request signed by `key_id` and dated `date_ms`, acceptable until
    /// `date_ms + window_ms`: false if it was recorded before and is still kept. A replay
    /// carries the same signed date, so it lands in the same bucket.
    pub fn use_nonce(&self, key_id: &str, nonce: &str, date_ms: i64, window_ms: i64, now_ms: i64) -> Result<bool> {
        match self.use_nonce_later(key_id, nonce, date_ms, window_ms, now_ms)? {
            Some(durable) => durable.wait().map(|()| true),
            None => Ok(false),
        }
    }

    /// [`Store::use_nonce`], decided now (None: used before) and made durable by the next
    /// commit, which holds it no later than any write the caller queues after this call: the
    /// caller may work meanwhile, and waits with [`NonceWait::wait`] before it answers.
    pub fn use_nonce_later(
        &self,
        key_id: &str,
        nonce: &str,
        date_ms: i64,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<Option<NonceWait<'_>>> {
        self.load_nonces(window_ms, now_ms)?;
        let digest = nonce_digest(key_id, nonce);
        // The first bucket whose start is at or after the expiry: kept at least until then.
        let bucket = (date_ms + window_ms).div_euclid(BUCKET_MS) + 1;
        let stale = (now_ms - window_ms).div_euclid(BUCKET_MS);
        let n = &self.nonces;
        let mut st = lock(&n.state);
        if stale > st.stale_below {
            st.stale_below = stale;
            st.live.retain(|b, _| *b >= stale);
        }
        if !st.live.entry(bucket).or_default().insert(digest) {
            return Ok(None);
        }
        st.next_ticket += 1;
        let ticket = st.next_ticket;
        st.pending.push((bucket, digest));
        if !std::mem::replace(&mut st.flush_wanted, true) {
            n.pending_or_closing.notify_one();
        }
        drop(st);
        Ok(Some(NonceWait { store: self, ticket }))
    }

    /// Fills memory from the table, once: the nonces kept by earlier runs.
    fn load_nonces(&self, window_ms: i64, now_ms: i64) -> Result<()> {
        if self.nonces.loaded.get().is_some() {
            return Ok(());
        }
        let stale = (now_ms - window_ms).div_euclid(BUCKET_MS);
        let rows: Vec<(i64, Vec<u8>)> = self.read(|c| {
            let mut st = c.prepare("SELECT bucket, digest FROM nonces WHERE bucket >= ?")?;
            let rows = st.query_map([stale], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })?;
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

    fn rows_in(s: &crate::Store) -> i64 {
        s.read(|c| Ok(c.query_row("SELECT COUNT(*) FROM nonces", [], |r| r.get(0))?)).unwrap()
    }

    #[test]
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
        let s = crate::Store::open(&dir.path().join("posture.db")).unwrap();
        assert!(!s.use_nonce("k", "edge", ahead, W, date + 20 * 60_000).unwrap());
        // Long after the date is out of the window (and one window more), its bucket is gone,
        // from memory and, a chunk per commit, from the table.
        let later = ahead + 2 * W + 3 * 60_000;
        assert!(s.use_nonce("k", "x", later, W, later).unwrap());
        assert!(s.use_nonce("k", "y", later, W, later).unwrap());
        let left = rows_in(&s);
        assert_eq!(left, 2, "every aged-out bucket was dropped");
    }

    #[test]
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
        assert_eq!(rows_in(&s), 200);
    }
}
