-- Schema 16: CancelOperationTask. A repair cancelled while it was changing the configuration
-- finishes its step and is then rolled back: `cancel_requested` marks it until it ends.
ALTER TABLE tasks ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;

-- SubmitOperationTask's FailureThreshold (`3` or `10%`; NULL: none): once reached, the root's
-- tasks that have changed nothing end CANCELLED.
ALTER TABLE root_tasks ADD COLUMN failure_threshold TEXT;

-- MaxConcurrency and CanaryCount: a task beyond them is held (its lease set to the far future,
-- so no worker or agent claims it) until a task of its root ends and releases it.
ALTER TABLE root_tasks ADD COLUMN max_concurrency INTEGER;
ALTER TABLE root_tasks ADD COLUMN canary_count INTEGER;
ALTER TABLE tasks ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
