-- Schema 8: the results of each check item counted by vendor and status, kept current by the
-- writes that change them (a check run's results, a verification, a whitelist rule added,
-- removed or expired), in the same transaction, so that ListCheckResult reads a few counters
-- instead of every result of the account.

-- A result's instance's vendor (never changes: it is part of the instance's identity), and
-- whether a rule in force exempts it: the pair decides which counter it is in.
ALTER TABLE check_results ADD COLUMN vendor INTEGER NOT NULL DEFAULT 0;
ALTER TABLE check_results ADD COLUMN whitelisted INTEGER NOT NULL DEFAULT 0;
-- The status a result had before its last write (NULL: the write created it), which tells
-- that write which counter the result left.
ALTER TABLE check_results ADD COLUMN prev_status TEXT;
-- A rule whose expiry has been applied to the results and their counters.
ALTER TABLE whitelist_rules ADD COLUMN expiry_applied INTEGER NOT NULL DEFAULT 0;
-- The rules whose expiry is still to be applied, by account and time.
CREATE INDEX IF NOT EXISTS whitelist_expiring ON whitelist_rules (account_id, expires_ms)
    WHERE expires_ms IS NOT NULL AND expiry_applied = 0;

-- Results per (item, vendor, effective status): WHITELIST for an exempted result.
CREATE TABLE IF NOT EXISTS result_counts (
    account_id TEXT NOT NULL,
    check_id   INTEGER NOT NULL,
    vendor     INTEGER NOT NULL,
    status     TEXT NOT NULL,
    n          INTEGER NOT NULL,
    PRIMARY KEY (account_id, check_id, vendor, status)
) WITHOUT ROWID;
-- The latest evaluation of each item (a result written), and the run or task that made it.
CREATE TABLE IF NOT EXISTS result_latest (
    account_id TEXT NOT NULL,
    check_id   INTEGER NOT NULL,
    last_ms    INTEGER NOT NULL,
    run_id     TEXT NOT NULL,
    PRIMARY KEY (account_id, check_id)
) WITHOUT ROWID;

-- The results already stored, counted once.
UPDATE check_results SET vendor = (SELECT i.vendor FROM instances i WHERE i.pk = check_results.instance_pk);
UPDATE whitelist_rules SET expiry_applied = 1
    WHERE expires_ms IS NOT NULL AND expires_ms <= CAST(unixepoch('subsec') * 1000 AS INTEGER);
UPDATE check_results SET whitelisted = 1 WHERE EXISTS (
    SELECT 1 FROM whitelist_rules w WHERE w.account_id = check_results.account_id AND w.check_id = check_results.check_id
      AND (w.expires_ms IS NULL OR w.expiry_applied = 0)
      AND (w.whole_check = 1 OR EXISTS (SELECT 1 FROM whitelist_entries e WHERE e.rule_id = w.id AND e.instance_pk = check_results.instance_pk)));
INSERT INTO result_counts (account_id, check_id, vendor, status, n)
    SELECT account_id, check_id, vendor, CASE WHEN whitelisted = 1 THEN 'WHITELIST' ELSE status END AS st, COUNT(*)
    FROM check_results GROUP BY account_id, check_id, vendor, st;
-- SQLite takes the other columns of a MAX() group from the row holding the maximum.
INSERT INTO result_latest (account_id, check_id, last_ms, run_id)
    SELECT account_id, check_id, MAX(last_ms), check_run_id FROM check_results GROUP BY account_id, check_id;
