-- Schema 22: the results keyed by instance, `UNIQUE (instance_pk, check_id)` (see the SQLite
-- migration_22.sql for why, and for the index of failing results it first built too).
ALTER TABLE check_results DROP CONSTRAINT IF EXISTS check_results_account_id_check_id_instance_pk_key;
ALTER TABLE check_results DROP CONSTRAINT IF EXISTS check_results_instance_pk_check_id_key;
ALTER TABLE check_results ADD CONSTRAINT check_results_instance_pk_check_id_key UNIQUE (instance_pk, check_id);
DROP INDEX IF EXISTS results_by_status;
