-- Schema 7 on PostgreSQL: the task table keeps no foreign keys, and the conflict rule's index
-- (keyed by instance, then item) also serves as an instance's queue of unfinished changes;
-- claims find their row by ctid, so `rowid` needs no index of its own.
-- Fewer and smaller index entries per task row (see schema.sql).
ALTER TABLE tasks DROP CONSTRAINT IF EXISTS tasks_root_id_fkey;
ALTER TABLE tasks DROP CONSTRAINT IF EXISTS tasks_instance_pk_fkey;
ALTER TABLE tasks DROP CONSTRAINT IF EXISTS tasks_rowid_key;
DROP INDEX IF EXISTS tasks_queue;
DROP INDEX IF EXISTS tasks_one_active;
CREATE UNIQUE INDEX tasks_one_active ON tasks (instance_pk, check_id) WHERE status IN ({ACTIVE});
DROP INDEX IF EXISTS tasks_by_instance;
CREATE INDEX tasks_by_instance ON tasks (instance_pk, check_id);
