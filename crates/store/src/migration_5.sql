-- Schema 5: cloud accounts (AddCloudVendorAccountAK) and the instances discovered through them.
CREATE TABLE IF NOT EXISTS cloud_accounts (
    auth_id        INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id     TEXT NOT NULL REFERENCES accounts(id),
    vendor         TEXT NOT NULL,
    ak_type        TEXT NOT NULL,
    secret_id      TEXT NOT NULL,
    -- The AccessKey secret, sealed with master.key; associated data: cloud_aad().
    sealed_secret  BLOB NOT NULL,
    alias          TEXT NOT NULL DEFAULT '',
    domain         TEXT NOT NULL DEFAULT '',
    regions        TEXT NOT NULL DEFAULT '[]',
    modules        TEXT NOT NULL DEFAULT '[]',
    status         INTEGER NOT NULL DEFAULT 0,
    service_status INTEGER NOT NULL DEFAULT 0,
    message        TEXT NOT NULL DEFAULT '',
    vendor_uid     TEXT NOT NULL DEFAULT '',
    vendor_user    TEXT NOT NULL DEFAULT '',
    created_ms     INTEGER NOT NULL,
    updated_ms     INTEGER NOT NULL,
    UNIQUE (account_id, vendor, secret_id)
);
ALTER TABLE instances ADD COLUMN cloud_auth_id INTEGER;
CREATE INDEX IF NOT EXISTS instances_by_cloud_account ON instances (cloud_auth_id) WHERE cloud_auth_id IS NOT NULL;
