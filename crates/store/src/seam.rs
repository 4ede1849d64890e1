//! The store seam: what the engine and the API need of a store, grouped by what they do with
//! it. SQLite (`Store`) is one backend; the callers hold these traits, never a backend.

use std::collections::BTreeMap;
use std::sync::Arc;

use model::{CheckStatus, CloudAsset, Snapshot, TaskStatus, Vendor};

use crate::*;

/// The task queue: submissions, leases, transitions along the table, snapshots.
pub trait TaskQueue: Send + Sync {
    /// Writes a root task and its tasks in one transaction. `Conflict` (and nothing written)
    /// if any instance already has an unfinished task for the check item, or a repair is
    /// already rolled back — the unique indexes decide, so concurrent submissions cannot race.
    /// A trial account's or an exhausted authorization's REPAIR writes nothing either;
    /// `NothingToDo` when no instance is left.
    fn submit(&self, account_id: &str, s: &Submission) -> Result<SubmitOutcome>;

    /// Repairs counted against the authorization: (all, on instances in Chinese-mainland
    /// regions `cn-*`, elsewhere).
    fn repair_usage(&self, account_id: &str) -> Result<(i64, i64, i64)>;

    /// One task of the account.
    fn get_task(&self, account_id: &str, id: &str) -> Result<Option<TaskRow>>;

    /// One page of tasks (newest first) and the total.
    fn list_tasks(&self, account_id: &str, f: &TaskFilter) -> Result<(Vec<TaskRow>, i64)>;

    /// The latest change of the same scope after a repair, and ahead of its rollback in the
    /// queue, that still stands: a rollback is refused at submission while one exists, and a
    /// queued rollback checks again before it restores anything (the change ahead of it may
    /// have failed to be rolled back).
    fn standing_change_after(&self, repair_task_id: &str, rollback_task_id: &str) -> Result<Option<String>>;

    /// Whether a repair has a rollback that is done or under way.
    fn has_rollback(&self, repair_task_id: &str) -> Result<bool>;

    /// Leases an unfinished task whose lease is free or expired — never-leased ones first, in
    /// creation order, read straight off the `tasks_due` index (no sort, however long the
    /// queue): one statement, fenced.
    fn claim_task(&self, lease_ms: i64) -> Result<Option<Claimed>>;

    /// Extends the lease of a task still held under the same fence (a step that runs longer
    /// than a lease); `LeaseLost` if another worker has it or it has ended.
    fn extend_lease(&self, claimed: &Claimed, lease_ms: i64) -> Result<()>;

    /// Calls `wake` whenever a write announces work (tasks submitted or released, a check run
    /// created): on PostgreSQL any node's (LISTEN/NOTIFY, from a thread of its own that
    /// reconnects by itself); on SQLite, where one `serve` owns the data directory, its own,
    /// told by the committer after the commit (a task a root's limits held back is released by
    /// another task's ending, which no caller wakes for).
    fn watch_work(&self, wake: Box<dyn Fn() + Send + Sync>) -> Result<()>;

    /// Moves a task `from → to` (only along the table, only with the current fence), writing its
    /// event, and optionally its snapshot and a check result, in one transaction.
    fn transition(&self, claimed: &Claimed, from: TaskStatus, to: TaskStatus, extra: Transition) -> Result<()>;

    /// The snapshot of a task (empty if none was taken).
    fn get_snapshot(&self, task_id: &str) -> Result<Snapshot>;

    /// Every status a task went through, with its time: its creation (the initial status at
    /// `created_ms`, kept in the task row itself), then each transition.
    fn task_events(&self, task_id: &str) -> Result<Vec<TaskEvent>>;

    /// Frees every lease (tasks and check runs): called by a `serve` that holds the data
    /// directory's lock, so no other worker can be holding one. Returns the unfinished tasks.
    fn release_leases(&self) -> Result<i64>;

    /// Number of unfinished tasks (all accounts).
    fn count_active_tasks(&self) -> Result<i64>;
}

/// Check runs and their per-instance details.
pub trait CheckRuns: Send + Sync {
    /// Creates a check run, not yet started.
    fn create_run(
        &self,
        account_id: &str,
        task_type: &str,
        source: &str,
        check_ids: &[i64],
        instance_pks: &[i64],
    ) -> Result<CheckRun>;

    /// One run of the account.
    fn get_run(&self, account_id: &str, id: &str) -> Result<Option<CheckRun>>;

    /// Leases the oldest unfinished run whose lease is free or expired, marking it started.
    fn claim_run(&self, lease_ms: i64) -> Result<Option<CheckRun>>;

    /// Records the instances of a run and the items to check on each (once; a resumed run
    /// keeps its details). Instances of one kind share their list of items.
    fn set_run_details(&self, run: &CheckRun, details: Vec<(i64, Arc<[i64]>)>) -> Result<()>;

    /// Up to `limit` unfinished details of a run after position `after` (0: from the first),
    /// in the order they were recorded, each with its position: a run of any size is read a
    /// page at a time.
    fn pending_details(&self, run: &CheckRun, after: i64, limit: i64) -> Result<Vec<(i64, CheckRunDetail)>>;

    /// Finishes instances of a run, each with its status, results, and removals of items that
    /// no longer apply, in one transaction. A detail already finished (by an earlier lease
    /// holder) is skipped.
    fn finish_details(&self, run: &CheckRun, done: Vec<DetailOutcome>) -> Result<()>;

    /// When the latest verification run (CHECK_ITEM / CHECK_INSTANCE) created since `since_ms`
    /// covering one of `check_ids` on one of `instance_pks` was created (an empty instance list
    /// means every instance, on either side).
    fn last_verification(
        &self,
        account_id: &str,
        check_ids: &[i64],
        instance_pks: &[i64],
        since_ms: i64,
    ) -> Result<Option<i64>>;

    /// Extends the lease of a run still held under the same fence (after a long step, such as
    /// a cloud discovery, so that another worker does not take the run over meanwhile).
    fn extend_run_lease(&self, run: &CheckRun, lease_ms: i64) -> Result<()>;

    /// Marks a run complete.
    fn finish_run(&self, run: &CheckRun) -> Result<()>;

    /// One page of runs (newest first) and the total.
    fn list_runs(&self, account_id: &str, f: &RunFilter) -> Result<(Vec<CheckRun>, i64)>;

    /// Number of details of a run, and how many are finished.
    fn run_detail_counts(&self, run_id: &str) -> Result<(i64, i64)>;

    /// One page of run details of the account (runs filtered by `run_ids`, details by status).
    fn list_details(&self, account_id: &str, f: &RunFilter) -> Result<(Vec<CheckRunDetail>, i64)>;
}

/// The instances of each account.
pub trait Instances: Send + Sync {
    /// Registers instances in one transaction (idempotent on vendor, region and instance id:
    /// a known instance gets the new name, connector, locator and OS type). Returns how many.
    fn upsert_instances(&self, account_id: &str, list: &[NewInstance]) -> Result<usize>;

    /// Registers one instance (as [`Store::upsert_instances`]) and returns it.
    fn upsert_instance(&self, account_id: &str, n: &NewInstance) -> Result<Instance>;

    /// Every instance of the account with this instance id (several only across vendors/regions).
    fn find_instances(&self, account_id: &str, instance_id: &str) -> Result<Vec<Instance>>;

    /// Every instance of the account with one of these instance ids (one query).
    fn find_instances_by_ids(&self, account_id: &str, instance_ids: &[String]) -> Result<Vec<Instance>>;

    /// Every instance of the account.
    fn list_instances(&self, account_id: &str) -> Result<Vec<Instance>>;

    /// One page of the account's instances not released, in the order they were added, whose
    /// id or name contains `key` (case-blind), and how many match in all.
    fn instances_page(
        &self,
        account_id: &str,
        key: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<Instance>, i64)>;

    /// The key and connector of every instance of the account not released (a few bytes
    /// each, for planning a run over a large fleet).
    fn instance_connectors(&self, account_id: &str) -> Result<Vec<(i64, String)>>;

    /// The account's instances with these keys (any order; keys of other accounts or of no
    /// instance are skipped).
    fn instances_by_pks(&self, account_id: &str, pks: &[i64]) -> Result<Vec<Instance>>;

    /// Marks an instance released (its connector found it gone).
    fn mark_freed(&self, account_id: &str, pk: i64) -> Result<()>;
}

/// Cloud accounts (their keys sealed at rest) and the instances discovered through them.
pub trait CloudAccounts: Send + Sync {
    /// Adds a cloud account; `Conflict` if the account already has these keys for the vendor.
    fn add_cloud_account(&self, account_id: &str, n: &NewCloudAccount) -> Result<CloudAccount>;

    /// The account's cloud accounts (all vendors, or one), oldest first.
    fn cloud_accounts(&self, account_id: &str) -> Result<Vec<CloudAccount>>;

    /// One cloud account of the account.
    fn cloud_account(&self, account_id: &str, auth_id: i64) -> Result<Option<CloudAccount>>;

    /// A cloud account with its opened secret (its key id is `secret_id`); None if it no
    /// longer exists.
    fn cloud_keys(&self, account_id: &str, auth_id: i64) -> Result<Option<(CloudAccount, String)>>;

    /// Applies a change; None if the cloud account does not exist. New keys are sealed anew.
    fn modify_cloud_account(
        &self,
        account_id: &str,
        auth_id: i64,
        change: &CloudAccountChange,
    ) -> Result<Option<CloudAccount>>;

    /// Deletes a cloud account; its instances are released (their results and tasks stay, as
    /// for any released instance). False if it did not exist.
    fn delete_cloud_account(&self, account_id: &str, auth_id: i64) -> Result<bool>;

    /// Records the outcome of the last discovery (0 in use, 1 exception with its message).
    fn set_cloud_account_health(&self, auth_id: i64, service_status: i64, message: &str) -> Result<()>;

    /// Writes what a discovery found: every resource becomes (or stays) an instance of the
    /// account; instances of this cloud account in a region listed in `complete_regions` that
    /// were not found are released. Regions whose listing failed are left alone.
    fn sync_cloud_instances(
        &self,
        account_id: &str,
        auth_id: i64,
        vendor: Vendor,
        found: &[CloudAsset],
        complete_regions: &[String],
    ) -> Result<()>;
}

/// Accounts (repair quota, trial) and their AccessKeys (secrets sealed at rest).
pub trait Accounts: Send + Sync {
    /// Creates an account (unlimited repairs, not a trial).
    fn create_account(&self, name: &str) -> Result<Account>;

    /// The first account created (the admin account of a fresh data directory).
    fn first_account(&self) -> Result<Option<Account>>;

    /// One account.
    fn get_account(&self, id: &str) -> Result<Option<Account>>;

    /// Every account, oldest first.
    fn list_accounts(&self) -> Result<Vec<Account>>;

    /// Sets an account's repair authorization (None: unlimited) and, if given, its trial flag.
    fn set_quota(&self, account_id: &str, repairs: Option<i64>, trial: Option<bool>) -> Result<Account>;

    /// Sets the most instances one submission of the account may touch (None: no limit).
    fn set_limits(&self, account_id: &str, max_submission_instances: Option<i64>) -> Result<Account>;

    /// Creates an AccessKey for an account; the secret is returned here and never again.
    fn create_key(&self, account_id: &str, policy: &str) -> Result<AccessKey>;

    /// Looks an AccessKey up by id, opening its secret.
    fn get_key(&self, id: &str) -> Result<Option<AccessKey>>;

    /// AccessKeys, of one account or all, without secrets.
    fn list_keys(&self, account_id: Option<&str>) -> Result<Vec<KeyInfo>>;

    /// Enables or disables a key.
    fn set_key_enabled(&self, key_id: &str, enabled: bool) -> Result<()>;

    /// Deletes a key.
    fn delete_key(&self, key_id: &str) -> Result<()>;
}

/// Check results: the effective status of each item on each instance, whitelists applied.
pub trait Results: Send + Sync {
    /// Results per check item, optionally only on these instances / vendors, and only of these
    /// items.
    fn aggregate_results(
        &self,
        account_id: &str,
        instance_ids: &[String],
        vendors: &[i64],
        check_ids: &[i64],
    ) -> Result<BTreeMap<i64, ResultAggregate>>;

    /// One page of a check item's results, and the total.
    fn list_results(&self, account_id: &str, check_id: i64, f: &ResultFilter) -> Result<(Vec<ResultRow>, i64)>;

    /// The instances whose result for a check item is NOT_PASS (whitelisted ones excluded).
    fn failing_instances(&self, account_id: &str, check_id: i64) -> Result<Vec<Instance>>;

    /// The status of one result, if any.
    fn result_status(&self, account_id: &str, check_id: i64, instance_pk: i64) -> Result<Option<CheckStatus>>;
}

/// Selections (RelationKey → instance set) and their targets.
pub trait Selections: Send + Sync {
    /// Creates the selection of a BusinessType, or returns the one already bound to it (with
    /// `false`): a BusinessType names one selection per account.
    fn create_selection(
        &self,
        account_id: &str,
        business_type: &str,
        target_type: &str,
        platform: &str,
    ) -> Result<(Selection, bool)>;

    /// The selection bound to a BusinessType.
    fn selection_by_business_type(&self, account_id: &str, business_type: &str) -> Result<Option<Selection>>;

    /// A selection by its SelectionKey.
    fn selection(&self, account_id: &str, key: &str) -> Result<Option<Selection>>;

    /// Adds (`true`) or removes (`false`) targets named by instance id, in one transaction;
    /// an id that matches no instance of the account refuses the whole call.
    fn apply_targets(&self, account_id: &str, s: &Selection, ops: &[(String, bool)]) -> Result<()>;

    /// Adds or removes every instance of the account matching the criteria (all of them, or any
    /// with `any`), in one statement. Returns how many targets were added or removed.
    fn apply_criteria(
        &self,
        account_id: &str,
        s: &Selection,
        criteria: &[Criterion],
        any: bool,
        add: bool,
    ) -> Result<usize>;

    /// One page of a selection's instances (id, name), and the total.
    fn list_selection_targets(
        &self,
        account_id: &str,
        s: &Selection,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<(String, String)>, i64)>;

    /// One page of a selection's instances reached through `connector`, leaving out
    /// `exclude_pks` (instances already counted), in key order, and how many there are.
    fn selected_instances_page(
        &self,
        account_id: &str,
        s: &Selection,
        connector: &str,
        exclude_pks: &[i64],
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<Instance>, i64)>;

    /// Which of these instance ids the selection holds (id, name).
    fn selected_among(&self, account_id: &str, s: &Selection, ids: &[String]) -> Result<Vec<(String, String)>>;
}

/// Whitelist rules: (item, instance) pairs exempted from a check.
pub trait Whitelists: Send + Sync {
    /// Applies the expiry of every rule (of any account) that has fallen due: the results it
    /// exempted count under their own status again. Run by any node's engine as rules fall due
    /// (reads apply an account's due expiries themselves first). Returns how many it applied.
    fn apply_due_expiries(&self) -> Result<usize>;

    /// Adds rules (one transaction); returns their ids in order.
    fn add_whitelists(&self, account_id: &str, rules: &[NewWhitelist]) -> Result<Vec<i64>>;

    /// Removes one rule of the account; false if there is none with that id.
    fn remove_whitelist_rule(&self, account_id: &str, rule_id: i64) -> Result<bool>;

    /// Removes exemptions of these check items: whole rules when `instance_pks` is empty, else
    /// those instances' entries (a rule left with no entry is removed, since an entry-less rule
    /// would mean "every instance"). Returns how many rules or entries went.
    fn remove_whitelists(&self, account_id: &str, check_ids: &[i64], instance_pks: &[i64]) -> Result<usize>;

    /// The rules of a check item in force at `now_ms` (oldest first), each with the ids of its
    /// instances (at most 100 per rule; none: every instance).
    fn whitelist_rules(&self, account_id: &str, check_id: i64, now_ms: i64) -> Result<Vec<WhitelistRule>>;

    /// Which of these instances are exempted from a check item now (one query).
    fn whitelisted_among(&self, account_id: &str, check_id: i64, instance_pks: &[i64]) -> Result<Vec<i64>>;
}

/// ClientToken answers: a repeated request gets the first answer.
pub trait Idempotency: Send + Sync {
    /// The kept answer for a token: (digest of the parameters it was given with, answer JSON).
    fn idempotent_answer(&self, account_id: &str, action: &str, token: &str) -> Result<Option<(String, String)>>;

    /// Keeps an answer for a token (the first one wins).
    fn keep_idempotent_answer(
        &self,
        account_id: &str,
        action: &str,
        token: &str,
        digest: &str,
        response: &str,
    ) -> Result<()>;
}

/// What a worker needs of a store: the queue, check runs, and the inventory they act on.
pub trait WorkerStore:
    TaskQueue
    + CheckRuns
    + Instances
    + CloudAccounts
    + Whitelists
    + Agents
    + Previews
    + Schedules
    + CustomConfigs
    + Approvals
    + Webhooks
    + AutoRemediations
    + Audit
{
}

impl<T> WorkerStore for T where
    T: TaskQueue
        + CheckRuns
        + Instances
        + CloudAccounts
        + Whitelists
        + Agents
        + Previews
        + Schedules
        + CustomConfigs
        + Approvals
        + Webhooks
        + AutoRemediations
        + Audit
{
}

/// What the API's operations need of a store: everything an action reads or changes.
pub trait ApiStore:
    TaskQueue
    + CheckRuns
    + Instances
    + CloudAccounts
    + Accounts
    + Results
    + Selections
    + Whitelists
    + Idempotency
    + Agents
    + Previews
    + Schedules
    + Exports
    + CustomConfigs
    + Cancels
    + Audit
    + Approvals
    + Webhooks
    + AutoRemediations
    + Console
{
}

impl<T> ApiStore for T where
    T: TaskQueue
        + CheckRuns
        + Instances
        + CloudAccounts
        + Accounts
        + Results
        + Selections
        + Whitelists
        + Idempotency
        + Agents
        + Previews
        + Schedules
        + Exports
        + CustomConfigs
        + Cancels
        + Audit
        + Approvals
        + Webhooks
        + AutoRemediations
        + Console
{
}
