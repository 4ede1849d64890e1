-- Schema 25: the stamps of schema 24 move from `instances` to a table of their own, on both
-- backends. On PostgreSQL a write of an instance's results locks its stamp (so racing writes of
-- one instance take turns, and a check that finds nothing changed can write the stamp alone);
-- on `instances` that lock met the inventory's writes and the foreign-key checks of selections
-- and whitelists, in orders of their own. Here only writers of results take it, each commit's
-- instances in key order. The columns keep their meaning (see migration 24 and
-- `write_results` in counts.rs). `check_results.prev_status` is no longer written: only
-- PostgreSQL's upsert of every result read it, and the stamp's lock replaced that upsert.
CREATE TABLE result_stamps (
    instance_pk      INTEGER PRIMARY KEY REFERENCES instances(pk),
    results_run      TEXT,
    results_seen_run TEXT,
    results_seen_ms  INTEGER,
    results_digest   BLOB
);
INSERT INTO result_stamps (instance_pk, results_run, results_seen_run, results_seen_ms, results_digest)
    SELECT pk, results_run, results_seen_run, results_seen_ms, results_digest FROM instances
    WHERE results_run IS NOT NULL OR results_digest IS NOT NULL;
ALTER TABLE instances DROP COLUMN results_run;
ALTER TABLE instances DROP COLUMN results_seen_run;
ALTER TABLE instances DROP COLUMN results_seen_ms;
ALTER TABLE instances DROP COLUMN results_digest;
