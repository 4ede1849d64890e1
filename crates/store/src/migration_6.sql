-- Schema 6: changes are serialised per file (or cloud aspect) of an instance, nonces of
-- requests that may write are kept with their writes, and the service's own first-start steps
-- are recorded.

-- What a task changes on its instance (the connector's scope: `file:/etc/login.defs`, `sysctl`,
-- `aspect:ingress`, or `*` for anything). Two unfinished tasks of one instance whose scopes
-- overlap never run together: the later waits as THROTTLING. Tasks from before this schema get
-- `*`, the most careful scope.
ALTER TABLE tasks ADD COLUMN scope TEXT NOT NULL DEFAULT '*';
-- The queue of an instance: its unfinished tasks are found with one seek on (instance, whether
-- unfinished), without reading the instance's history (queries state the same expression,
-- `(status IN (...)) = 1`, so that the index is used); its history (for the rollback rule) by
-- the instance alone, in rowid order (every index ends with the rowid). The scope is read from
-- the few unfinished rows, not kept in the index: a fan-out writes one entry per instance.
CREATE INDEX IF NOT EXISTS tasks_queue ON tasks (instance_pk, status IN ({ACTIVE}));
-- Workers lease only tasks that are not waiting: the due index holds exactly those.
DROP INDEX IF EXISTS tasks_due;
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (lease_until_ms) WHERE status IN ({CLAIMABLE});

-- Nonces of signed requests that may write, as digests, in buckets of the minute until which
-- a request bearing them could still be accepted: appended in rowid order by the committer
-- ahead of the request's writes (the nonces of reads are logged in nonces.db, beside this
-- file); read back at start; aged-out buckets deleted a few rows per append.
CREATE TABLE IF NOT EXISTS nonces (
    bucket  INTEGER NOT NULL,
    digest  BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS nonces_by_bucket ON nonces (bucket);

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
