-- posture schema, version 2: quota and trial per account, sealed AccessKey secrets, asset
-- selections (RelationKey), whitelist rules, ClientToken idempotency.

ALTER TABLE accounts ADD COLUMN repair_quota INTEGER;              -- NULL: unlimited
ALTER TABLE accounts ADD COLUMN trial INTEGER NOT NULL DEFAULT 0;

-- The secret sealed with DIR/master.key (XChaCha20-Poly1305, the key id as associated data);
-- the plain `secret` column is emptied by the migration.
ALTER TABLE access_keys ADD COLUMN sealed_secret BLOB;

CREATE INDEX IF NOT EXISTS tasks_by_type ON tasks (account_id, type, status);

-- BusinessType (the RelationKey) → selection; targets are instances of the same account.
CREATE TABLE IF NOT EXISTS selections (
    selection_key  TEXT PRIMARY KEY,
    account_id     TEXT NOT NULL REFERENCES accounts(id),
    business_type  TEXT NOT NULL,
    target_type    TEXT NOT NULL,
    platform       TEXT NOT NULL,
    created_ms     INTEGER NOT NULL,
    UNIQUE (account_id, business_type)
);
CREATE TABLE IF NOT EXISTS selection_targets (
    selection_key  TEXT NOT NULL REFERENCES selections(selection_key) ON DELETE CASCADE,
    instance_pk    INTEGER NOT NULL REFERENCES instances(pk),
    PRIMARY KEY (selection_key, instance_pk)
) WITHOUT ROWID;

-- A rule exempts a check item on every instance (whole_check) or on its entries' instances,
-- until expires_ms (NULL: forever).
CREATE TABLE IF NOT EXISTS whitelist_rules (
    id           INTEGER PRIMARY KEY,
    account_id   TEXT NOT NULL REFERENCES accounts(id),
    check_id     INTEGER NOT NULL,
    whole_check  INTEGER NOT NULL,
    rule_type    TEXT NOT NULL DEFAULT 'WHITE',
    remark       TEXT NOT NULL DEFAULT '',
    reason       TEXT NOT NULL DEFAULT '',
    expires_ms   INTEGER,
    created_ms   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS whitelist_by_check ON whitelist_rules (account_id, check_id);
CREATE TABLE IF NOT EXISTS whitelist_entries (
    rule_id      INTEGER NOT NULL REFERENCES whitelist_rules(id) ON DELETE CASCADE,
    instance_pk  INTEGER NOT NULL REFERENCES instances(pk),
    PRIMARY KEY (rule_id, instance_pk)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS whitelist_entries_by_instance ON whitelist_entries (instance_pk, rule_id);

-- The first answer to a call with a ClientToken, replayed for a retry with the same token.
CREATE TABLE IF NOT EXISTS idempotency (
    account_id     TEXT NOT NULL,
    action         TEXT NOT NULL,
    client_token   TEXT NOT NULL,
    params_digest  TEXT NOT NULL,
    response       TEXT NOT NULL,
    created_ms     INTEGER NOT NULL,
    PRIMARY KEY (account_id, action, client_token)
) WITHOUT ROWID;
