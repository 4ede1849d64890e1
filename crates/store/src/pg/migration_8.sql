-- Schema 8 on PostgreSQL: the results of each check item counted by vendor and status, kept by
-- the writes (see ../migration_8.sql, the same change on SQLite).
ALTER TABLE check_results ADD COLUMN vendor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE check_results ADD COLUMN whitelisted BIGINT NOT NULL DEFAULT 0;
-- The status a result had before its last write (NULL: the write created it), which tells
-- that write which counter the result left.
ALTER TABLE check_results ADD COLUMN prev_status TEXT;
ALTER TABLE whitelist_rules ADD COLUMN expiry_applied BIGINT NOT NULL DEFAULT 0;
CREATE INDEX whitelist_expiring ON whitelist_rules (account_id, expires_ms)
    WHERE expires_ms IS NOT NULL AND expiry_applied = 0;
CREATE TABLE result_counts (
    account_id TEXT NOT NULL,
    check_id   BIGINT NOT NULL,
    vendor     BIGINT NOT NULL,
    status     TEXT NOT NULL,
    n          BIGINT NOT NULL,
    PRIMARY KEY (account_id, check_id, vendor, status)
);
CREATE TABLE result_latest (
    account_id TEXT NOT NULL,
    check_id   BIGINT NOT NULL,
    last_ms    BIGINT NOT NULL,
    run_id     TEXT NOT NULL,
    PRIMARY KEY (account_id, check_id)
);

UPDATE check_results r SET vendor = i.vendor FROM instances i WHERE i.pk = r.instance_pk;
UPDATE whitelist_rules SET expiry_applied = 1
    WHERE expires_ms IS NOT NULL AND expires_ms <= CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT);
UPDATE check_results SET whitelisted = 1 WHERE EXISTS (
    SELECT 1 FROM whitelist_rules w WHERE w.account_id = check_results.account_id AND w.check_id = check_results.check_id
      AND (w.expires_ms IS NULL OR w.expiry_applied = 0)
      AND (w.whole_check = 1 OR EXISTS (SELECT 1 FROM whitelist_entries e WHERE e.rule_id = w.id AND e.instance_pk = check_results.instance_pk)));
INSERT INTO result_counts (account_id, check_id, vendor, status, n)
    SELECT account_id, check_id, vendor, CASE WHEN whitelisted = 1 THEN 'WHITELIST' ELSE status END AS st, COUNT(*)
    FROM check_results GROUP BY account_id, check_id, vendor, st;
INSERT INTO result_latest (account_id, check_id, last_ms, run_id)
    SELECT DISTINCT ON (account_id, check_id) account_id, check_id, last_ms, check_run_id
    FROM check_results ORDER BY account_id, check_id, last_ms DESC;
