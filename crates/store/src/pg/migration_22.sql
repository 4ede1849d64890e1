-- Schema 22: the results keyed by instance, `UNIQUE (instance_pk, check_id)`, and an index of
-- each item's failing results only (see the SQLite migration_22.sql for why).
ALTER TABLE check_results DROP CONSTRAINT IF EXISTS check_results_account_id_check_id_instance_pk_key;
ALTER TABLE check_results DROP CONSTRAINT IF EXISTS check_results_instance_pk_check_id_key;
ALTER TABLE check_results ADD CONSTRAINT check_results_instance_pk_check_id_key UNIQUE (instance_pk, check_id);
DROP INDEX IF EXISTS results_by_status;
CREATE INDEX IF NOT EXISTS results_failing ON check_results (account_id, check_id, instance_pk) WHERE status = 'NOT_PASS';
