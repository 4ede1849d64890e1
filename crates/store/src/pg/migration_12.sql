-- Schema 12: the periodic check of each account (GetCheckConfig / ChangeCheckConfig).

-- `config`: the schedule as JSON (store::Schedule); `last_window_ms`: the start of the latest
-- window a scheduled run was started for — claimed by the node that starts it, in the run's
-- own transaction, so a window runs once whichever nodes see it due.
CREATE TABLE IF NOT EXISTS check_schedules (
    account_id     TEXT PRIMARY KEY REFERENCES accounts(id),
    config         TEXT NOT NULL,
    last_window_ms BIGINT NOT NULL DEFAULT 0,
    changed_ms     BIGINT NOT NULL
);
