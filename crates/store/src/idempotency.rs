//! ClientToken: the first successful answer to a call is kept and replayed for a retry with the
//! same token (and the same parameters).

use crate::sql::args;
use crate::{now_ms, Result, Store};

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
            tx.execute(
                "INSERT INTO idempotency (account_id, action, client_token, params_digest, response, created_ms) VALUES (?, ?, ?, ?, ?, ?)
                 ON CONFLICT DO NOTHING",
                args![&account_id, &action, &token, &digest, &response, now_ms()],
            )?;
            Ok(())
        })
    }
}
