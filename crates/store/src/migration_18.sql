-- Schema 18: the audit trail. Every call that may change something (API actions, agent
-- enrolments, `posture` administration) is recorded with its account, who made it (the
-- AccessKeyId, `agent:<id>`, `cli:<user>`), from where, its parameters with secrets redacted,
-- and its outcome (`OK` or the error code). Nothing in the API changes or deletes a record;
-- records older than the retention (`serve --audit-retention-days`) are removed.
CREATE TABLE IF NOT EXISTS audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id  TEXT NOT NULL,
    at_ms       INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    source      TEXT NOT NULL,
    action      TEXT NOT NULL,
    params      TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    request_id  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_account ON audit_log (account_id, id);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit_log (at_ms);

-- Who drove each transition of a task (an AccessKeyId, `worker`, `agent:<id>`, `posture` for
-- what the service decides itself), and who submitted each root task.
ALTER TABLE task_events ADD COLUMN actor TEXT;
ALTER TABLE root_tasks ADD COLUMN submitted_by TEXT;
-- Who cancelled a task (its rollback after the step is then theirs).
ALTER TABLE tasks ADD COLUMN cancelled_by TEXT;

-- Approval (ApproveOperationTask, RejectOperationTask): where an account (or one of its items)
-- requires it, a repair's tasks wait in WAIT_APPROVAL for another key to approve them; an
-- unanswered wait ends CANCELLED after the account's expiry.
ALTER TABLE accounts ADD COLUMN approval_required INTEGER NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN approval_expiry_ms BIGINT NOT NULL DEFAULT 86400000;
CREATE TABLE IF NOT EXISTS approval_overrides (
    account_id TEXT NOT NULL REFERENCES accounts(id),
    check_id   BIGINT NOT NULL,
    required   INTEGER NOT NULL,
    PRIMARY KEY (account_id, check_id)
);
-- Whether a root's tasks were created WAIT_APPROVAL (their history starts there).
ALTER TABLE root_tasks ADD COLUMN awaited_approval INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS tasks_waiting_approval ON tasks (created_ms) WHERE status = 'WAIT_APPROVAL';
-- WAIT_APPROVAL is unfinished: one unfinished task of an item per instance counts it too.
DROP INDEX IF EXISTS tasks_one_active;
CREATE UNIQUE INDEX IF NOT EXISTS tasks_one_active
    ON tasks (account_id, check_id, instance_pk) WHERE status IN ({ACTIVE});

-- Webhooks (CreateWebhook, ListWebhooks, DeleteWebhook): an account's endpoints and the events
-- they hear. Each event is written as a delivery in the transaction of the change it reports
-- (an outbox), so it is delivered at least once; deliveries are retried with backoff.
CREATE TABLE IF NOT EXISTS webhooks (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts(id),
    url           TEXT NOT NULL,
    sealed_secret BLOB NOT NULL,
    events        TEXT NOT NULL,
    created_ms    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS webhooks_by_account ON webhooks (account_id);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id              TEXT PRIMARY KEY,
    webhook_id      TEXT NOT NULL,
    account_id      TEXT NOT NULL,
    event           TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_ms      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_ms         INTEGER NOT NULL,
    lease_until_ms  INTEGER NOT NULL DEFAULT 0,
    last_attempt_ms INTEGER,
    last_result     TEXT,
    delivered_ms    INTEGER,
    given_up        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (next_ms) WHERE delivered_ms IS NULL AND given_up = 0;
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_hook ON webhook_deliveries (webhook_id, created_ms);
-- Whether an agent's going offline has been reported (reset when it is heard from again).
ALTER TABLE agents ADD COLUMN offline_reported INTEGER NOT NULL DEFAULT 0;

-- Auto-remediation (CreateAutoRemediation): after each check run, an account's rules repair the
-- instances failing their item. `auto_remediated` marks the runs already acted on (those
-- ended before this schema never are).
CREATE TABLE IF NOT EXISTS auto_remediations (
    id                TEXT PRIMARY KEY,
    account_id        TEXT NOT NULL REFERENCES accounts(id),
    check_id          INTEGER NOT NULL,
    relation_key      TEXT,
    params            TEXT NOT NULL,
    failure_threshold TEXT,
    max_concurrency   INTEGER,
    canary_count      INTEGER,
    created_by        TEXT NOT NULL,
    created_ms        INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS auto_remediations_by_account ON auto_remediations (account_id);
ALTER TABLE check_runs ADD COLUMN auto_remediated INTEGER NOT NULL DEFAULT 0;
UPDATE check_runs SET auto_remediated = 1;
CREATE INDEX IF NOT EXISTS check_runs_to_remediate ON check_runs (ended_ms) WHERE auto_remediated = 0 AND ended_ms > 0;

-- A task's place in the order of changes of its instance is its creation (rowid), but for a
-- task approved after waiting: it takes its place when approved (approved_pos, in the same
-- number space as rowid × 1,000,000, after every task created before the approval).
ALTER TABLE tasks ADD COLUMN approved_pos INTEGER;
CREATE INDEX IF NOT EXISTS tasks_approved_pos ON tasks (approved_pos) WHERE approved_pos IS NOT NULL;
