-- posture schema, version 1. Every row belongs to an account; every query is scoped by it.
-- {ACTIVE} is replaced by the SQL list of non-terminal task statuses (from model::TaskStatus).

CREATE TABLE IF NOT EXISTS accounts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS access_keys (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    secret      TEXT NOT NULL,
    policy      TEXT NOT NULL,
    enabled     INTEGER NOT NULL DEFAULT 1,
    created_ms  INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS instances (
    pk            INTEGER PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts(id),
    vendor        INTEGER NOT NULL,
    region_id     TEXT NOT NULL,
    instance_id   TEXT NOT NULL,
    instance_name TEXT NOT NULL,
    connector     TEXT NOT NULL,
    locator       TEXT NOT NULL,
    os_type       TEXT NOT NULL DEFAULT 'linux',
    freed         INTEGER NOT NULL DEFAULT 0,
    created_ms    INTEGER NOT NULL,
    UNIQUE (account_id, vendor, region_id, instance_id)
);
CREATE INDEX IF NOT EXISTS instances_by_id ON instances (account_id, instance_id);

CREATE TABLE IF NOT EXISTS check_results (
    id             INTEGER PRIMARY KEY,
    account_id     TEXT NOT NULL,
    check_id       INTEGER NOT NULL,
    instance_pk    INTEGER NOT NULL REFERENCES instances(pk),
    status         TEXT NOT NULL,
    status_message TEXT NOT NULL DEFAULT '',
    config         TEXT NOT NULL DEFAULT '{}',
    first_ms       INTEGER NOT NULL,
    last_ms        INTEGER NOT NULL,
    check_run_id   TEXT NOT NULL DEFAULT '',
    UNIQUE (account_id, check_id, instance_pk)
);
CREATE INDEX IF NOT EXISTS results_by_status ON check_results (account_id, check_id, status);

CREATE TABLE IF NOT EXISTS root_tasks (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL,
    check_id    INTEGER NOT NULL,
    type        TEXT NOT NULL,
    dimension   TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
);

-- One row per instance task. `fence` grows on every lease: a worker writes only with the fence
-- it leased with, so one that lost its lease cannot write a stale result.
CREATE TABLE IF NOT EXISTS tasks (
    id              TEXT PRIMARY KEY,
    root_id         TEXT NOT NULL REFERENCES root_tasks(id),
    account_id      TEXT NOT NULL,
    check_id        INTEGER NOT NULL,
    instance_pk     INTEGER NOT NULL REFERENCES instances(pk),
    type            TEXT NOT NULL,
    status          TEXT NOT NULL,
    repair_task_id  TEXT,
    params          TEXT NOT NULL DEFAULT '[]',
    error_code      TEXT NOT NULL DEFAULT '',
    error_msg       TEXT NOT NULL DEFAULT '',
    instance_freed  INTEGER NOT NULL DEFAULT 0,
    lease_until_ms  INTEGER NOT NULL DEFAULT 0,
    fence           INTEGER NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL
);
-- The conflict rule: at most one unfinished task per (account, check, instance).
CREATE UNIQUE INDEX IF NOT EXISTS tasks_one_active
    ON tasks (account_id, check_id, instance_pk) WHERE status IN ({ACTIVE});
-- A repair is rolled back at most once (a failed rollback may be tried again).
CREATE UNIQUE INDEX IF NOT EXISTS tasks_one_rollback
    ON tasks (repair_task_id) WHERE type = 'ROLLBACK' AND status <> 'ROLL_BACK_FAIL';
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (lease_until_ms) WHERE status IN ({ACTIVE});
CREATE INDEX IF NOT EXISTS tasks_by_instance ON tasks (account_id, check_id, instance_pk);
CREATE INDEX IF NOT EXISTS tasks_by_root ON tasks (root_id);

CREATE TABLE IF NOT EXISTS task_events (
    task_id  TEXT NOT NULL,
    status   TEXT NOT NULL,
    at_ms    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS task_events_by_task ON task_events (task_id);

CREATE TABLE IF NOT EXISTS snapshots (
    task_id      TEXT NOT NULL REFERENCES tasks(id),
    seq          INTEGER NOT NULL,
    item_key     TEXT NOT NULL,
    existed      INTEGER NOT NULL,
    has_content  INTEGER NOT NULL,
    data         BLOB NOT NULL,
    meta         TEXT NOT NULL,
    post_digest  TEXT,
    PRIMARY KEY (task_id, seq)
);

-- Check runs (SubmitCheck, VerifyCheck*): status 0 not started, 1 checking, 2 done.
CREATE TABLE IF NOT EXISTS check_runs (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL,
    task_type       TEXT NOT NULL,
    task_source     TEXT NOT NULL DEFAULT '',
    check_ids       TEXT NOT NULL DEFAULT '[]',
    instance_pks    TEXT NOT NULL DEFAULT '[]',
    status_code     INTEGER NOT NULL DEFAULT 0,
    total           INTEGER NOT NULL DEFAULT 0,
    finished        INTEGER NOT NULL DEFAULT 0,
    lease_until_ms  INTEGER NOT NULL DEFAULT 0,
    fence           INTEGER NOT NULL DEFAULT 0,
    created_ms      INTEGER NOT NULL,
    started_ms      INTEGER NOT NULL DEFAULT 0,
    ended_ms        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS check_runs_due ON check_runs (status_code, lease_until_ms);

-- One detail per instance of a run: 0 not started, 1 checking, 2 succeeded, 4 failed.
CREATE TABLE IF NOT EXISTS check_run_details (
    id           TEXT PRIMARY KEY,
    run_id       TEXT NOT NULL REFERENCES check_runs(id),
    instance_pk  INTEGER NOT NULL,
    status_code  INTEGER NOT NULL DEFAULT 0,
    check_ids    TEXT NOT NULL DEFAULT '[]',
    created_ms   INTEGER NOT NULL,
    started_ms   INTEGER NOT NULL DEFAULT 0,
    ended_ms     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS check_run_details_by_run ON check_run_details (run_id);
