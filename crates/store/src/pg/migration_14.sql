-- Schema 14: each account's values of the items' custom configs (ChangeCheckCustomConfig):
-- the thresholds its checks judge by and its repairs default to.
CREATE TABLE IF NOT EXISTS check_custom_configs (
    account_id TEXT NOT NULL REFERENCES accounts(id),
    check_id   BIGINT NOT NULL,
    name       TEXT NOT NULL,
    value      TEXT NOT NULL,
    changed_ms BIGINT NOT NULL,
    PRIMARY KEY (account_id, check_id, name)
);
