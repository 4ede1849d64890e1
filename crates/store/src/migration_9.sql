-- Schema 9: the results of each check item also counted per status and block of instances
-- (`instance_pk >> {BLOCK_BITS}`), kept by the same writes as result_counts, so that a listing
-- of an item's results finds a deep page from the counters instead of stepping over the rows
-- before it (see counts.rs and results.rs).
CREATE TABLE IF NOT EXISTS result_blocks (
    account_id TEXT NOT NULL,
    check_id   INTEGER NOT NULL,
    block      INTEGER NOT NULL,
    status     TEXT NOT NULL,
    n          INTEGER NOT NULL,
    PRIMARY KEY (account_id, check_id, block, status)
) WITHOUT ROWID;
INSERT INTO result_blocks (account_id, check_id, block, status, n)
    SELECT account_id, check_id, instance_pk >> {BLOCK_BITS} AS b, CASE WHEN whitelisted = 1 THEN 'WHITELIST' ELSE status END AS st, COUNT(*)
    FROM check_results GROUP BY account_id, check_id, b, st;

-- An account's tasks newest first (ListOperationTask's order): the index's implicit rowid
-- gives the order, so a page reads its rows instead of sorting every task of the account.
CREATE INDEX IF NOT EXISTS tasks_by_account ON tasks (account_id);

-- Each account's tasks, counted by the submissions that create them (tasks are never deleted):
-- the unfiltered ListOperationTask's TotalCount.
ALTER TABLE accounts ADD COLUMN tasks_total INTEGER NOT NULL DEFAULT 0;
UPDATE accounts SET tasks_total = (SELECT COUNT(*) FROM tasks t WHERE t.account_id = accounts.id);

-- The results of an item by status, slim: ListCheckResult reads the counters now, so the wide
-- covering index of schema 4 (its run id alone 36 bytes a result) only served CHECK_ID
-- submissions (an item's failing instances), which the key alone serves. Measured on a SQLite
-- database of 320,000 results: the index took 92 bytes a result, the whole database 272; now
-- 36 and 224.
DROP INDEX IF EXISTS results_by_status;
CREATE INDEX IF NOT EXISTS results_by_status ON check_results (account_id, check_id, status);
