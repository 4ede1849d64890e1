-- Schema 21 (SQLite only; PostgreSQL's version moves with no change: its tasks are indexed so
-- since schema 7). An instance belongs to one account, so the conflict index needs no account
-- in its key: keyed (instance_pk, check_id), its prefix is also the instance's queue of
-- unfinished changes, and `tasks_queue` (an entry per task, rewritten when its task ends) goes.
-- `tasks_by_instance` is keyed the same, so a change's history on its instance is a seek too.
-- One index entry fewer for every task written, and two shorter keys.
DROP INDEX IF EXISTS tasks_queue;
DROP INDEX IF EXISTS tasks_one_active;
CREATE UNIQUE INDEX tasks_one_active ON tasks (instance_pk, check_id) WHERE {status IS ACTIVE};
DROP INDEX IF EXISTS tasks_by_instance;
CREATE INDEX tasks_by_instance ON tasks (instance_pk, check_id);
