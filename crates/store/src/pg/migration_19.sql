-- Schema 19: the web console.
-- Console sessions, and the one-time sign-in links of `serve --demo` (`kind` 'ticket'): each
-- acts with one AccessKey. Only a hash of the token is kept, so a copy of the database opens no
-- session; a session ends when idle too long, at `expires_ms`, at sign-out, or when its key is
-- disabled or deleted.
CREATE TABLE IF NOT EXISTS console_sessions (
    token_hash  TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    seen_ms     BIGINT NOT NULL,
    expires_ms  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS console_sessions_expiry ON console_sessions (expires_ms);
-- The overview's trend: the account's results when each check run completed (NULL for runs
-- that completed before this schema).
ALTER TABLE check_runs ADD COLUMN summary_pass BIGINT;
ALTER TABLE check_runs ADD COLUMN summary_fail BIGINT;
ALTER TABLE check_runs ADD COLUMN summary_failing_items BIGINT;
CREATE INDEX IF NOT EXISTS check_runs_trend ON check_runs (account_id, ended_ms) WHERE summary_pass IS NOT NULL;
