-- posture schema, version 3: cheaper task inserts (a submission of a million tasks writes
-- fewer indexes). The repair authorization is counted in the account row, kept in the same
-- transactions as the tasks, instead of being counted over an index of every task.

DROP INDEX IF EXISTS tasks_by_root;
DROP INDEX IF EXISTS tasks_by_type;
ALTER TABLE accounts ADD COLUMN repairs_used INTEGER NOT NULL DEFAULT 0;
UPDATE accounts SET repairs_used = (
    SELECT COUNT(*) FROM tasks t
    WHERE t.account_id = accounts.id AND t.type = 'REPAIR' AND t.status NOT IN ('FAIL', 'BACKUP_FAIL', 'REPAIR_FAIL')
);
