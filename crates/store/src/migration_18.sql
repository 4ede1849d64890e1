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
