-- Schema 6: changes are serialised per file (or cloud aspect) of an instance, and the service's
-- own first-start steps are recorded. (Nonces are logged in nonces.db beside this file.)

-- What a task changes on its instance (the connector's scope: `file:/etc/login.defs`, `sysctl`,
-- `aspect:ingress`, or `*` for anything). Two unfinished tasks of one instance whose scopes
-- overlap never run together: the later waits as THROTTLING. Tasks from before this schema get
-- `*`, the most careful scope.
ALTER TABLE tasks ADD COLUMN scope TEXT NOT NULL DEFAULT '*';
-- The queue of an instance: its unfinished tasks are found by (instance, status) without
-- reading the instance's history; its history (for the rollback rule) by the instance alone,
-- in rowid order (every index ends with the rowid).
CREATE INDEX IF NOT EXISTS tasks_queue ON tasks (instance_pk, status, scope);
-- Workers lease only tasks that are not waiting: the due index holds exactly those.
DROP INDEX IF EXISTS tasks_due;
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (lease_until_ms) WHERE status IN ({CLAIMABLE});

-- Steps of the service's own that must happen once (the admin's credentials delivered, the
-- demo fleet registered and checked), marked done in the same transaction as their last write.
CREATE TABLE IF NOT EXISTS service_state (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
) WITHOUT ROWID;
-- A data directory from before this schema with instances had its demo (if any) seeded.
-- (Whether its credentials.json was written is decided at the next start, from the file.)
INSERT OR IGNORE INTO service_state (name, value)
    SELECT 'demo_seeded', 'before schema 6' WHERE EXISTS (SELECT 1 FROM instances);
