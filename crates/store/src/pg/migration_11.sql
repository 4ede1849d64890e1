-- Schema 11: repairs that take effect on a live system.

-- How a live instance's services are reached (JSON: {"sshd": {"PidFile": …}, "redis": {"Address": …}});
-- NULL for a root that is only files (the demo fleet, an image), where no live step runs.
ALTER TABLE instances ADD COLUMN live TEXT;

-- What a task's verification read: the file alone, or also the value in effect (and how), or
-- why no live step ran.
ALTER TABLE tasks ADD COLUMN verification TEXT NOT NULL DEFAULT '';
