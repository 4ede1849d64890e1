-- posture schema, version 4: the per-item aggregate of ListCheckResult reads one covering index
-- in its GROUP BY order (no table lookups, no temporary B-tree).
DROP INDEX IF EXISTS results_by_status;
CREATE INDEX IF NOT EXISTS results_by_status
    ON check_results (account_id, check_id, status, instance_pk, last_ms, check_run_id);
