//! Nonces of signed requests. A request may be accepted while its signed date is within the
//! window of now, so its nonce is kept until that date plus the window — never shorter, so no
//! replay can be accepted, and across restarts (and, later, by every node sharing the
//! database). A nonce is kept as a digest of (AccessKeyId, nonce) in the bucket of the minute
//! it expires in; whole buckets are dropped once their minute has passed. The write is one
//! job of the group commit: concurrent requests share one fsync.

use rusqlite::params;
use sha2::{Digest, Sha256};

use crate::{Result, Store};

/// Width of a bucket.
const BUCKET_MS: i64 = 60_000;

/// The digest kept for a nonce: 128 bits of SHA-256 over the key id and the nonce (a
/// collision between two of the requests of one window is out of reach).
fn nonce_digest(key_id: &str, nonce: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(key_id.as_bytes());
    h.update([0u8]);
    h.update(nonce.as_bytes());
    h.finalize()[..16].to_vec()
}

impl Store {
    /// Records the nonce of a request signed by `key_id` and dated `date_ms`, acceptable until
    /// `date_ms + window_ms`. False if the same nonce was recorded before and is still kept.
    /// A replay carries the same signed date, so it lands in the same bucket.
    pub fn use_nonce(&self, key_id: &str, nonce: &str, date_ms: i64, window_ms: i64, now_ms: i64) -> Result<bool> {
        let digest = nonce_digest(key_id, nonce);
        // The first bucket whose start is at or after the expiry: kept at least until then.
        let bucket = (date_ms + window_ms).div_euclid(BUCKET_MS) + 1;
        // Buckets that ended before this minute began can no longer matter; one window more is
        // kept, so that a clock that jumps ahead (by less than a window) and back forgets nothing.
        let stale = (now_ms - window_ms).div_euclid(BUCKET_MS);
        let prune = self.nonce_pruned.fetch_max(stale, std::sync::atomic::Ordering::Relaxed) < stale;
        self.write(move |tx| {
            if prune {
                tx.prepare_cached("DELETE FROM nonces WHERE bucket < ?")?.execute([stale])?;
            }
            let n = tx
                .prepare_cached("INSERT OR IGNORE INTO nonces (bucket, digest) VALUES (?, ?)")?
                .execute(params![bucket, digest])?;
            Ok(n == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::store;

    const W: i64 = 15 * 60_000;

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
        // After a restart too.
        drop(s);
        let s = crate::Store::open(&dir.path().join("posture.db")).unwrap();
        assert!(!s.use_nonce("k", "edge", ahead, W, date + 20 * 60_000).unwrap());
        // Long after the date is out of the window (and one window more), its bucket is gone.
        let later = ahead + 2 * W + 3 * 60_000;
        assert!(s.use_nonce("k", "x", later, W, later).unwrap());
        let left: i64 = s.read(|c| Ok(c.query_row("SELECT COUNT(*) FROM nonces", [], |r| r.get(0))?)).unwrap();
        assert_eq!(left, 1, "every aged-out bucket was dropped");
    }
}
