-- Schema 20 (SQLite only; PostgreSQL's version moves with no change): the task indexes whose
-- condition or key is a status set test it as an OR of equalities (`status_in` in lib.rs says
-- why: an IN list of more than two values costs SQLite a temporary b-tree at every insert and
-- update of a task). The queries that use these indexes write their sets the same way.
DROP INDEX IF EXISTS tasks_one_active;
CREATE UNIQUE INDEX tasks_one_active ON tasks (account_id, check_id, instance_pk) WHERE {status IS ACTIVE};
DROP INDEX IF EXISTS tasks_queue;
CREATE INDEX tasks_queue ON tasks (instance_pk, {status IS ACTIVE});
DROP INDEX IF EXISTS tasks_due;
CREATE INDEX tasks_due ON tasks (lease_until_ms) WHERE {status IS CLAIMABLE} AND agent = 0;
DROP INDEX IF EXISTS tasks_agent_due;
CREATE INDEX tasks_agent_due ON tasks (instance_pk) WHERE {status IS CLAIMABLE} AND agent = 1;
