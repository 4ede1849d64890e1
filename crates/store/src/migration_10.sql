-- Schema 10: agents. A server reached through its agent is an instance whose locator is
-- `agent`; its tasks and check-run details are taken by its agent (which polls), never by the
-- engine's workers.

-- Enrolment tokens, kept as digests (the token is shown once). A token for an InstanceId may
-- enrol (or re-enrol) only that one; a general token enrols only an InstanceId not yet known.
CREATE TABLE IF NOT EXISTS agent_tokens (
    digest       TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL REFERENCES accounts(id),
    instance_id  TEXT,
    uses_left    INTEGER NOT NULL,
    expires_ms   INTEGER NOT NULL,
    created_ms   INTEGER NOT NULL
) WITHOUT ROWID;

-- One enrolled agent: its public key (Ed25519), what it said of its server, when it was last
-- heard from. Revoked agents are kept (revoked_ms set): an instance has at most one that is not.
CREATE TABLE IF NOT EXISTS agents (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts(id),
    instance_pk   INTEGER NOT NULL REFERENCES instances(pk),
    public_key    BLOB NOT NULL,
    version       TEXT NOT NULL,
    info          TEXT NOT NULL DEFAULT '{}',
    enrolled_ms   INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL,
    revoked_ms    INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS agents_one_per_instance ON agents (instance_pk) WHERE revoked_ms IS NULL;
CREATE INDEX IF NOT EXISTS agents_by_account ON agents (account_id);

-- Whether a task's instance is reached through its agent (copied from the instance when the
-- task is written): workers lease only the others, so the due index leaves agents' tasks out.
ALTER TABLE tasks ADD COLUMN agent INTEGER NOT NULL DEFAULT 0;
DROP INDEX IF EXISTS tasks_due;
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (lease_until_ms) WHERE status IN ({CLAIMABLE}) AND agent = 0;
-- An agent's poll, and the sweep that fails the tasks of agents gone too long, read only these.
CREATE INDEX IF NOT EXISTS tasks_agent_due ON tasks (instance_pk) WHERE status IN ({CLAIMABLE}) AND agent = 1;

-- An agent asks for its instance's unchecked details of running check runs.
CREATE INDEX IF NOT EXISTS check_run_details_pending ON check_run_details (instance_pk) WHERE status_code IN (0, 1);
