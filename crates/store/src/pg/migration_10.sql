-- Schema 10 on PostgreSQL: agents (see ../migration_10.sql, the same change on SQLite).
CREATE TABLE agent_tokens (
    digest       TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL REFERENCES accounts(id),
    instance_id  TEXT,
    uses_left    BIGINT NOT NULL,
    expires_ms   BIGINT NOT NULL,
    created_ms   BIGINT NOT NULL
);
CREATE TABLE agents (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts(id),
    instance_pk   BIGINT NOT NULL REFERENCES instances(pk),
    public_key    BYTEA NOT NULL,
    version       TEXT NOT NULL,
    info          TEXT NOT NULL DEFAULT '{}',
    enrolled_ms   BIGINT NOT NULL,
    last_seen_ms  BIGINT NOT NULL,
    revoked_ms    BIGINT
);
CREATE UNIQUE INDEX agents_one_per_instance ON agents (instance_pk) WHERE revoked_ms IS NULL;
CREATE INDEX agents_by_account ON agents (account_id);

ALTER TABLE tasks ADD COLUMN agent BIGINT NOT NULL DEFAULT 0;
DROP INDEX IF EXISTS tasks_due;
CREATE INDEX tasks_due ON tasks (lease_until_ms, rowid) WHERE status IN ({CLAIMABLE}) AND agent = 0;
-- An agent's poll, and the sweep that fails the tasks of agents gone too long, read only these.
CREATE INDEX tasks_agent_due ON tasks (instance_pk) WHERE status IN ({CLAIMABLE}) AND agent = 1;

CREATE INDEX check_run_details_pending ON check_run_details (instance_pk) WHERE status_code IN (0, 1);
