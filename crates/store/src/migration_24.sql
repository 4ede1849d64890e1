-- Schema 24: a check that finds an instance's results as they were writes one row, not one per
-- result. `results_digest` is the SHA-256 of the results (item, vendor, status, message, shown
-- values) that the last write of the instance's results, by the run `results_run`, wrote; the
-- last run that found the same results again is `results_seen_run`, at `results_seen_ms`. A
-- result that still carries `results_run` was last checked then (`EFFECTIVE_LAST_MS` in
-- results.rs). On SQLite every write of the instance's results sets or clears the digest, a
-- deletion clears it: it never vouches for rows it did not see written. PostgreSQL writes
-- every result and never sets these; `posture store copy` writes SQLite's stamps into the rows.
ALTER TABLE instances ADD COLUMN results_run TEXT;
ALTER TABLE instances ADD COLUMN results_seen_run TEXT;
ALTER TABLE instances ADD COLUMN results_seen_ms INTEGER;
ALTER TABLE instances ADD COLUMN results_digest BLOB;
