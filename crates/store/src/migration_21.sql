-- Schema 21. The task indexes (SQLite only: PostgreSQL's tasks are indexed so since schema 7).
-- An instance belongs to one account, so the conflict index needs no account
-- in its key: keyed (instance_pk, check_id), its prefix is also the instance's queue of
-- unfinished changes, and `tasks_queue` (an entry per task, rewritten when its task ends) goes.
-- `tasks_by_instance` is keyed the same, so a change's history on its instance is a seek too.
-- One index entry fewer for every task written, and two shorter keys.
DROP INDEX IF EXISTS tasks_queue;
DROP INDEX IF EXISTS tasks_one_active;
CREATE UNIQUE INDEX tasks_one_active ON tasks (instance_pk, check_id) WHERE {status IS ACTIVE};
DROP INDEX IF EXISTS tasks_by_instance;
CREATE INDEX tasks_by_instance ON tasks (instance_pk, check_id);
-- The number of tasks of each item of an account, kept by the writes that create tasks (tasks
-- are never deleted): ListOperationTask filtered by CheckId alone takes its TotalCount from it,
-- now that no index on tasks starts with (account_id, check_id).
CREATE TABLE IF NOT EXISTS task_counts (
    account_id TEXT NOT NULL,
    check_id   INTEGER NOT NULL,
    n          INTEGER NOT NULL,
    PRIMARY KEY (account_id, check_id)
);
INSERT INTO task_counts (account_id, check_id, n)
    SELECT account_id, check_id, COUNT(*) FROM tasks GROUP BY account_id, check_id
    ON CONFLICT (account_id, check_id) DO UPDATE SET n = excluded.n;
