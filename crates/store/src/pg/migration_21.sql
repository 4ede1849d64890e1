-- Schema 21: the number of tasks of each item of an account, kept by the writes that create
-- tasks (tasks are never deleted): ListOperationTask filtered by CheckId alone takes its
-- TotalCount from it (no index on tasks starts with (account_id, check_id)).
CREATE TABLE IF NOT EXISTS task_counts (
    account_id TEXT NOT NULL,
    check_id   BIGINT NOT NULL,
    n          BIGINT NOT NULL,
    PRIMARY KEY (account_id, check_id)
);
INSERT INTO task_counts (account_id, check_id, n)
    SELECT account_id, check_id, COUNT(*) FROM tasks GROUP BY account_id, check_id
    ON CONFLICT (account_id, check_id) DO UPDATE SET n = excluded.n;
