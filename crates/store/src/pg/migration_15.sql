-- Schema 15: the most instances one submission of an account may touch (NULL: no limit),
-- set with `posture accounts set-limits`.
ALTER TABLE accounts ADD COLUMN max_submission_instances BIGINT;
