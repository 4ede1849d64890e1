//! What the web console keeps: its sessions (and the one-time sign-in links of `serve --demo`),
//! and the overview's trend, the results counted when each check run completed.
//!
//! Only a hash of a session's token is stored: a copy of the database opens no session. A
//! session is valid on every node that shares the database, until it is idle too long, reaches
//! its absolute expiry, is signed out, or its key is disabled or deleted (the caller checks the
//! key at every use).

use crate::sql::{args, Conn};
use crate::{Result, Store};

/// What a session's token (or a sign-in link's) is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionKind {
    /// A signed-in browser.
    Session,
    /// A one-time sign-in link, exchanged for a session once.
    Ticket,
}

impl SessionKind {
    fn as_str(self) -> &'static str {
        match self {
            SessionKind::Session => "session",
            SessionKind::Ticket => "ticket",
        }
    }
}

/// A console session in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleSession {
    /// The AccessKey it acts with.
    pub key_id: String,
    /// When it was opened (ms).
    pub created_ms: i64,
    /// When it was last used (ms; kept to the minute).
    pub seen_ms: i64,
    /// Its absolute expiry (ms).
    pub expires_ms: i64,
}

/// One point of the overview's trend: an account's results when a check run completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrendPoint {
    /// The run.
    pub run_id: String,
    /// When it completed (ms).
    pub ended_ms: i64,
    /// Results that passed (item × instance).
    pub pass: i64,
    /// Results that failed.
    pub fail: i64,
    /// Items failing on at least one instance.
    pub failing_items: i64,
}

/// A session's last use is written at most this often (a page makes several calls a second).
const TOUCH_EVERY_MS: i64 = 60_000;

/// Console sessions and the overview's trend.
pub trait Console: Send + Sync {
    /// Keeps a new session (or sign-in link) under its token's hash.
    fn open_console_session(
        &self,
        token_hash: &str,
        kind: SessionKind,
        key_id: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<()>;

    /// The session under `token_hash`, if it is in force at `now_ms` (used within `idle_ms` and
    /// before its absolute expiry); with `used`, marks it used (a page's own polling does not
    /// keep a session alive). Sessions past their time are removed.
    fn console_session(
        &self,
        token_hash: &str,
        now_ms: i64,
        idle_ms: i64,
        used: bool,
    ) -> Result<Option<ConsoleSession>>;

    /// Uses up a sign-in link: its key, if the link is in force (once only, on every node).
    fn take_console_ticket(&self, token_hash: &str, now_ms: i64) -> Result<Option<String>>;

    /// Ends a session (signing out). Ending one that does not exist is not an error.
    fn end_console_session(&self, token_hash: &str) -> Result<()>;

    /// The account's results at its last `limit` completed check runs, oldest first.
    fn check_trend(&self, account_id: &str, limit: i64) -> Result<Vec<TrendPoint>>;
}

impl Console for Store {
    fn open_console_session(
        &self,
        token_hash: &str,
        kind: SessionKind,
        key_id: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<()> {
        let (hash, key) = (token_hash.to_string(), key_id.to_string());
        self.write(move |tx| {
            tx.execute("DELETE FROM console_sessions WHERE expires_ms <= ?", args![now_ms])?;
            // A key has one sign-in link at a time: a new one (each start of serve --demo)
            // voids the last.
            if kind == SessionKind::Ticket {
                tx.execute(
                    "DELETE FROM console_sessions WHERE key_id = ? AND kind = ?",
                    args![&key, SessionKind::Ticket.as_str()],
                )?;
            }
            tx.execute(
                "INSERT INTO console_sessions (token_hash, kind, key_id, created_ms, seen_ms, expires_ms)
                 VALUES (?, ?, ?, ?, ?, ?)",
                args![&hash, kind.as_str(), &key, now_ms, now_ms, expires_ms],
            )?;
            Ok(())
        })
    }

    fn console_session(
        &self,
        token_hash: &str,
        now_ms: i64,
        idle_ms: i64,
        used: bool,
    ) -> Result<Option<ConsoleSession>> {
        let found = self.read(|c| {
            c.query_opt(
                "SELECT key_id, created_ms, seen_ms, expires_ms FROM console_sessions WHERE token_hash = ? AND kind = ?",
                args![token_hash, SessionKind::Session.as_str()],
                |r| Ok(ConsoleSession { key_id: r.get(0)?, created_ms: r.get(1)?, seen_ms: r.get(2)?, expires_ms: r.get(3)? }),
            )
        })?;
        let Some(mut s) = found else { return Ok(None) };
        if s.expires_ms <= now_ms || s.seen_ms + idle_ms <= now_ms {
            self.end_console_session(token_hash)?;
            return Ok(None);
        }
        if used && now_ms - s.seen_ms >= TOUCH_EVERY_MS {
            s.seen_ms = now_ms;
            let hash = token_hash.to_string();
            self.write(move |tx| {
                tx.execute("UPDATE console_sessions SET seen_ms = ? WHERE token_hash = ?", args![now_ms, &hash])?;
                Ok(())
            })?;
        }
        Ok(Some(s))
    }

    fn take_console_ticket(&self, token_hash: &str, now_ms: i64) -> Result<Option<String>> {
        let hash = token_hash.to_string();
        self.write(move |tx| {
            let key: Option<String> = tx.query_opt(
                "SELECT key_id FROM console_sessions WHERE token_hash = ? AND kind = ? AND expires_ms > ?",
                args![&hash, SessionKind::Ticket.as_str(), now_ms],
                |r| r.get(0),
            )?;
            // Only the writer that removes the link gets its key (two nodes racing: one wins).
            let removed = tx.execute(
                "DELETE FROM console_sessions WHERE token_hash = ? AND kind = ?",
                args![&hash, SessionKind::Ticket.as_str()],
            )?;
            Ok(key.filter(|_| removed == 1))
        })
    }

    fn end_console_session(&self, token_hash: &str) -> Result<()> {
        let hash = token_hash.to_string();
        self.write(move |tx| {
            tx.execute("DELETE FROM console_sessions WHERE token_hash = ?", args![&hash])?;
            Ok(())
        })
    }

    fn check_trend(&self, account_id: &str, limit: i64) -> Result<Vec<TrendPoint>> {
        let mut points = self.read(|c| {
            c.query(
                "SELECT id, ended_ms, summary_pass, summary_fail, summary_failing_items FROM check_runs
                 WHERE account_id = ? AND summary_pass IS NOT NULL ORDER BY ended_ms DESC, id DESC LIMIT ?",
                args![account_id, limit],
                |r| {
                    Ok(TrendPoint {
                        run_id: r.get(0)?,
                        ended_ms: r.get(1)?,
                        pass: r.get(2)?,
                        fail: r.get(3)?,
                        failing_items: r.get(4)?,
                    })
                },
            )
        })?;
        points.reverse();
        Ok(points)
    }
}

/// Records the account's results on run `run_id`, which the write just completed (in the
/// completing transaction, so the counts are those the run left).
pub(crate) fn record_summary(tx: &Conn, run_id: &str, account_id: &str) -> Result<()> {
    tx.execute(
        "UPDATE check_runs SET
            summary_pass = (SELECT COALESCE(SUM(n), 0) FROM result_counts WHERE account_id = ? AND status = 'PASS'),
            summary_fail = (SELECT COALESCE(SUM(n), 0) FROM result_counts WHERE account_id = ? AND status = 'NOT_PASS'),
            summary_failing_items = (SELECT COUNT(DISTINCT check_id) FROM result_counts
                                     WHERE account_id = ? AND status = 'NOT_PASS' AND n > 0)
         WHERE id = ? AND ended_ms > 0 AND summary_pass IS NULL",
        args![account_id, account_id, account_id, run_id],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::testutil::store;
    use crate::*;

    crate::testutil::both_backends! {
        fn sessions_expire_when_idle_or_old_and_links_are_used_once() {
            let (_p, s) = store();
            let now = now_ms();
            s.open_console_session("h1", SessionKind::Session, "LTAIk", now, now + 10_000).unwrap();
            let got = s.console_session("h1", now + 1_000, 5_000, true).unwrap().unwrap();
            assert_eq!((got.key_id.as_str(), got.expires_ms), ("LTAIk", now + 10_000));
            assert!(s.console_session("h2", now, 5_000, true).unwrap().is_none(), "an unknown token opens nothing");
            assert!(s.console_session("h1", now + 5_000, 5_000, true).unwrap().is_none(), "idle for 5 s: ended");
            assert!(s.console_session("h1", now, 5_000, true).unwrap().is_none(), "an ended session is gone");

            // Use keeps it alive (the last use is written once a minute), not past its expiry.
            s.open_console_session("h3", SessionKind::Session, "LTAIk", now, now + 200_000).unwrap();
            assert!(s.console_session("h3", now + 61_000, 100_000, true).unwrap().is_some());
            assert!(s.console_session("h3", now + 150_000, 100_000, true).unwrap().is_some(), "used 89 s ago");
            assert!(s.console_session("h3", now + 200_000, 1_000_000, true).unwrap().is_none(), "absolute expiry");
            // A page's polling is no use: it does not keep the session alive.
            s.open_console_session("h6", SessionKind::Session, "LTAIk", now, now + 500_000).unwrap();
            assert!(s.console_session("h6", now + 90_000, 100_000, false).unwrap().is_some());
            assert!(s.console_session("h6", now + 100_000, 100_000, false).unwrap().is_none(), "idle since it opened");

            // Signing out.
            s.open_console_session("h4", SessionKind::Session, "LTAIk", now, now + 10_000).unwrap();
            s.end_console_session("h4").unwrap();
            assert!(s.console_session("h4", now, 5_000, true).unwrap().is_none());

            // A sign-in link is no session, and opens one key once.
            s.open_console_session("t1", SessionKind::Ticket, "LTAIk", now, now + 10_000).unwrap();
            assert!(s.console_session("t1", now, 5_000, true).unwrap().is_none(), "a link is not a session");
            assert_eq!(s.take_console_ticket("t1", now).unwrap().as_deref(), Some("LTAIk"));
            assert_eq!(s.take_console_ticket("t1", now).unwrap(), None, "used once");
            s.open_console_session("t2", SessionKind::Ticket, "LTAIk", now, now + 10_000).unwrap();
            assert_eq!(s.take_console_ticket("t2", now + 10_000).unwrap(), None, "expired");
            s.open_console_session("h5", SessionKind::Session, "LTAIk", now, now + 10_000).unwrap();
            assert_eq!(s.take_console_ticket("h5", now).unwrap(), None, "a session is not a link");
            assert!(s.console_session("h5", now, 5_000, true).unwrap().is_some(), "and is left alone");
            // Disabling a key ends its sessions and its link; enabling it again brings none back.
            let acct = s.create_account("console").unwrap().id;
            let key = s.create_key(&acct, "Admin").unwrap().id;
            s.open_console_session("k1", SessionKind::Session, &key, now, now + 10_000).unwrap();
            s.open_console_session("k2", SessionKind::Ticket, &key, now, now + 10_000).unwrap();
            s.set_key_enabled(&key, false).unwrap();
            s.set_key_enabled(&key, true).unwrap();
            assert!(s.console_session("k1", now, 5_000, true).unwrap().is_none());
            assert_eq!(s.take_console_ticket("k2", now).unwrap(), None);
            s.open_console_session("k3", SessionKind::Session, &key, now, now + 10_000).unwrap();
            s.delete_key(&key).unwrap();
            assert!(s.console_session("k3", now, 5_000, true).unwrap().is_none(), "deleted with its key");
            // A key's new link voids its last one.
            s.open_console_session("t3", SessionKind::Ticket, "LTAIk", now, now + 10_000).unwrap();
            s.open_console_session("t4", SessionKind::Ticket, "LTAIk", now, now + 10_000).unwrap();
            assert_eq!(s.take_console_ticket("t3", now).unwrap(), None);
            assert_eq!(s.take_console_ticket("t4", now).unwrap().as_deref(), Some("LTAIk"));
        }
    }
}
