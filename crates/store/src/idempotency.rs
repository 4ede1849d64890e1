//! ClientToken: the first successful answer to a call is kept and replayed for a retry with the
//! same token (and the same parameters).
//!
//! The token is recorded **in the transaction of the call's first write**, so a call that
//! changed something cannot be run again by a retry, whatever happens between its commit and
//! its answer: the API runs the operation inside [`with_client_token`], and [`Store::write`]
//! records the pending token with the write it makes (taking it, so only the first write of the
//! call does). When the answer is known before the write ([`answer_in_advance`]:
//! SubmitOperationTask's RootTaskId) the whole answer is kept there; otherwise the row says
//! "done, answer to follow" (an empty response) until [`keep_idempotent_answer`] fills it in
//! right after. A call that writes nothing keeps its answer afterwards only. A call refused
//! after a write of its committed keeps its refusal as its answer (the API does, told so by
//! [`with_client_token`]).
//!
//! [`Store::write`]: crate::Store::write
//! [`keep_idempotent_answer`]: crate::Idempotency::keep_idempotent_answer

use std::cell::{Cell, RefCell};

use crate::sql::{args, Conn};
use crate::{now_ms, ClientToken, Result, Store, StoreError};

/// A token waiting for the first write of its call.
pub(crate) struct PendingToken {
    account_id: String,
    token: ClientToken,
    /// The whole answer, when it is known before the write.
    answer: Option<String>,
}

thread_local! {
    /// The token of the call this thread runs (an operation runs on one thread from start to
    /// answer; the SQLite committer receives it with the write it belongs to).
    static PENDING: RefCell<Option<PendingToken>> = const { RefCell::new(None) };
    /// Whether a write of the call this thread runs committed with its token.
    static RECORDED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `op`, one call of `account_id` that carries `token`, so that its first write records
/// the token in its own transaction (see the module's documentation); and says whether one of
/// its writes committed with the token (then this call, not a twin, holds it: an error `op`
/// returns after that is the call's outcome, and no retry may run it again).
pub fn with_client_token<T>(account_id: &str, token: ClientToken, op: impl FnOnce() -> T) -> (T, bool) {
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            PENDING.with(|p| p.borrow_mut().take());
            RECORDED.set(false);
        }
    }
    PENDING.with(|p| *p.borrow_mut() = Some(PendingToken { account_id: account_id.to_string(), token, answer: None }));
    RECORDED.set(false);
    let _clear = Clear;
    let done = op();
    (done, RECORDED.get())
}

/// After a write that carried this thread's pending token: it committed.
pub(crate) fn committed_with_token() {
    RECORDED.set(true);
}

/// Within [`with_client_token`]: the call's answer, known before its write, is kept whole by
/// that write.
pub fn answer_in_advance(answer: &str) {
    PENDING.with(|p| {
        if let Some(p) = p.borrow_mut().as_mut() {
            p.answer = Some(answer.to_string());
        }
    });
}

/// The token waiting for this thread's next write, taken (only a call's first write records it).
pub(crate) fn take_pending() -> Option<PendingToken> {
    PENDING.with(|p| p.borrow_mut().take())
}

/// Records a pending token in a write's transaction: `TokenUsed` when a call with the same
/// token did so first (on PostgreSQL, a twin's uncommitted record makes this wait for its end).
pub(crate) fn record(tx: &Conn, p: &PendingToken) -> Result<()> {
    let recorded = tx.execute(
        "INSERT INTO idempotency (account_id, action, client_token, params_digest, response, created_ms)
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        args![
            &p.account_id,
            &p.token.action,
            &p.token.token,
            &p.token.digest,
            p.answer.as_deref().unwrap_or(""),
            now_ms()
        ],
    )?;
    if recorded == 0 {
        return Err(StoreError::TokenUsed);
    }
    Ok(())
}

impl crate::Idempotency for Store {
    fn idempotent_answer(&self, account_id: &str, action: &str, token: &str) -> Result<Option<(String, String)>> {
        self.read(|c| {
            c.query_opt(
                "SELECT params_digest, response FROM idempotency WHERE account_id = ? AND action = ? AND client_token = ?",
                args![account_id, action, token],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
    }

    fn keep_idempotent_answer(
        &self,
        account_id: &str,
        action: &str,
        token: &str,
        digest: &str,
        response: &str,
    ) -> Result<()> {
        let account_id = account_id.to_string();
        let action = action.to_string();
        let token = token.to_string();
        let digest = digest.to_string();
        let response = response.to_string();
        self.write(move |tx| {
            // Fills in the answer of a call whose write recorded its token, or keeps the answer
            // of a call that wrote nothing; a kept answer is never replaced.
            tx.execute(
                "INSERT INTO idempotency (account_id, action, client_token, params_digest, response, created_ms) VALUES (?, ?, ?, ?, ?, ?)
                 ON CONFLICT (account_id, action, client_token) DO UPDATE SET response = excluded.response
                 WHERE idempotency.response = ''",
                args![&account_id, &action, &token, &digest, &response, now_ms()],
            )?;
            Ok(())
        })
    }
}
