-- Schema 22. The results keyed by instance: `UNIQUE (instance_pk, check_id)` instead of
-- `(account_id, check_id, instance_pk)` (an instance belongs to one account), and no
-- `results_by_status`. A check run writes an instance's results together and instances in
-- order, so each of its rows lands at the end of the key instead of at one of as many places
-- as the catalog has items (a B-tree page split in the middle of each); one index entry fewer
-- per result; and an instance's earlier results are one range of the key. An item's listing
-- goes through its instances (see results.rs). (Schema 22 as first released also built
-- `results_failing`, an index of the failing results by item, which schema 23 drops: an
-- upgrade from before 22 no longer builds it.)
CREATE TABLE check_results_22 (
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
    vendor         INTEGER NOT NULL DEFAULT 0,
    whitelisted    INTEGER NOT NULL DEFAULT 0,
    prev_status    TEXT,
    UNIQUE (instance_pk, check_id)
);
INSERT INTO check_results_22 (id, account_id, check_id, instance_pk, status, status_message, config, first_ms, last_ms,
                              check_run_id, vendor, whitelisted, prev_status)
    SELECT id, account_id, check_id, instance_pk, status, status_message, config, first_ms, last_ms,
           check_run_id, vendor, whitelisted, prev_status
    FROM check_results ORDER BY instance_pk, check_id;
DROP TABLE check_results;
ALTER TABLE check_results_22 RENAME TO check_results;
