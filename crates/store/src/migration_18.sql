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
