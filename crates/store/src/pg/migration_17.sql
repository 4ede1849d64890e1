-- Schema 17: previews (PreviewOperationTask) of instances reached through their agents. A
-- request waits for the agent's next poll; the agent plans the change on its own root and its
-- answer (JSON) is read by the API call that asked. Requests live seconds: each new one removes
-- those older than a minute.
CREATE TABLE IF NOT EXISTS agent_previews (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    instance_pk BIGINT NOT NULL REFERENCES instances(pk),
    check_id    BIGINT NOT NULL,
    params      TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    answer      TEXT
);
CREATE INDEX IF NOT EXISTS agent_previews_open ON agent_previews (instance_pk, created_ms) WHERE answer IS NULL;

