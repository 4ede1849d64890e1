//! Each account's periodic check (GetCheckConfig / ChangeCheckConfig): the schedule as the
//! account set it, and the claim of each due window, so a window runs once however many nodes
//! see it due. When a window is due and which items a schedule selects are the engine's to say
//! (`engine::schedule`); the store keeps the schedule and the claim.

use serde_json::{json, Value};

use crate::runs::insert_run;
use crate::sql::args;
use crate::{now_ms, CheckRun, CheckRuns, Result, Store, StoreError};

/// An account's periodic check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// `EnableAutoCheck`: whether checks run by themselves.
    pub enabled: bool,
    /// `CycleDays`: days of the week the check runs, 1 (Monday) … 7 (Sunday).
    pub cycle_days: Vec<u8>,
    /// `StartTime`: the hour (UTC) the window opens; one of 0, 6, 12, 18.
    pub start_hour: u8,
    /// `EndTime`: the hour it closes, 6 after the start.
    pub end_hour: u8,
    /// `EnableAddCheck`: whether items that join a selected standard later are checked too.
    pub enable_add_check: bool,
    /// The standards selected (`Standards[].Status` ON).
    pub standards: Vec<i64>,
    /// Items selected on their own (`AddedCheck`, `ConfigRequirementIds.AddIds`).
    pub added: Vec<i64>,
    /// Items left out of their selected standard (`RemovedCheck`, `…RemoveIds`).
    pub removed: Vec<i64>,
    /// The catalog's items when the schedule was last changed: without `enable_add_check`, an
    /// item of a selected standard that is not among them is not checked.
    pub known: Vec<i64>,
}

impl Schedule {
    fn to_json(&self) -> String {
        json!({
            "enabled": self.enabled, "cycle_days": self.cycle_days, "start_hour": self.start_hour,
            "end_hour": self.end_hour, "enable_add_check": self.enable_add_check, "standards": self.standards,
            "added": self.added, "removed": self.removed, "known": self.known,
        })
        .to_string()
    }

    fn from_json(text: &str) -> Result<Schedule> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("check_schedules.config: {what}"));
        let v: Value = serde_json::from_str(text).map_err(|e| corrupt(&e.to_string()))?;
        let flag = |k: &str| v[k].as_bool().ok_or_else(|| corrupt(k));
        let ids = |k: &str| -> Result<Vec<i64>> {
            v[k].as_array().ok_or_else(|| corrupt(k))?.iter().map(|x| x.as_i64().ok_or_else(|| corrupt(k))).collect()
        };
        let small = |x: i64, k: &str| u8::try_from(x).map_err(|_| corrupt(k));
        Ok(Schedule {
            enabled: flag("enabled")?,
            cycle_days: ids("cycle_days")?.into_iter().map(|d| small(d, "cycle_days")).collect::<Result<_>>()?,
            start_hour: small(v["start_hour"].as_i64().ok_or_else(|| corrupt("start_hour"))?, "start_hour")?,
            end_hour: small(v["end_hour"].as_i64().ok_or_else(|| corrupt("end_hour"))?, "end_hour")?,
            enable_add_check: flag("enable_add_check")?,
            standards: ids("standards")?,
            added: ids("added")?,
            removed: ids("removed")?,
            known: ids("known")?,
        })
    }
}

/// Schedules and their windows.
pub trait Schedules: Send + Sync {
    /// The account's schedule; None until one is set.
    fn schedule(&self, account_id: &str) -> Result<Option<Schedule>>;

    /// Sets the account's schedule. The claim of the current window stays: a schedule changed
    /// after its window ran does not run it again.
    fn set_schedule(&self, account_id: &str, s: &Schedule) -> Result<()>;

    /// Every enabled schedule, with the start of the last window claimed.
    fn enabled_schedules(&self) -> Result<Vec<(String, Schedule, i64)>>;

    /// Claims the window starting at `window_ms` of the schedule `as_read` and starts its run
    /// of `check_ids` (every instance of the account), in one transaction; None when the
    /// window was claimed already (by this node or another), or the schedule changed since it
    /// was read (the next look reads the new one).
    fn start_scheduled_run(
        &self,
        account_id: &str,
        as_read: &Schedule,
        window_ms: i64,
        check_ids: &[i64],
    ) -> Result<Option<CheckRun>>;
}

/// The `task_source` of scheduled runs.
pub const SCHEDULE_SOURCE: &str = "SCHEDULE";

impl Schedules for Store {
    fn schedule(&self, account_id: &str) -> Result<Option<Schedule>> {
        let text: Option<String> = self.read(|c| {
            c.query_opt("SELECT config FROM check_schedules WHERE account_id = ?", args![account_id], |r| r.get(0))
        })?;
        text.as_deref().map(Schedule::from_json).transpose()
    }

    fn set_schedule(&self, account_id: &str, s: &Schedule) -> Result<()> {
        let (account_id, config) = (account_id.to_string(), s.to_json());
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO check_schedules (account_id, config, changed_ms) VALUES (?, ?, ?)
                 ON CONFLICT (account_id) DO UPDATE SET config = excluded.config, changed_ms = excluded.changed_ms",
                args![&account_id, &config, now_ms()],
            )?;
            Ok(())
        })
    }

    fn enabled_schedules(&self) -> Result<Vec<(String, Schedule, i64)>> {
        let rows: Vec<(String, String, i64)> = self.read(|c| {
            c.query("SELECT account_id, config, last_window_ms FROM check_schedules ORDER BY account_id", &[], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
        })?;
        let mut out = Vec::new();
        for (account, config, last) in rows {
            // One account's unreadable schedule does not stop the others'.
            match Schedule::from_json(&config) {
                Ok(s) if s.enabled => out.push((account, s, last)),
                Ok(_) => {}
                Err(e) => tracing::error!(account = %account, error = %e, "an unreadable schedule is skipped"),
            }
        }
        Ok(out)
    }

    fn start_scheduled_run(
        &self,
        account_id: &str,
        as_read: &Schedule,
        window_ms: i64,
        check_ids: &[i64],
    ) -> Result<Option<CheckRun>> {
        let (account_id, check_ids, config) = (account_id.to_string(), check_ids.to_vec(), as_read.to_json());
        let started = self.write(move |tx| {
            // On PostgreSQL a second node's UPDATE waits for the first's commit, then finds the
            // window claimed: one run per window.
            let claimed = tx.execute(
                "UPDATE check_schedules SET last_window_ms = ? WHERE account_id = ? AND last_window_ms < ? AND config = ?",
                args![window_ms, &account_id, window_ms, &config],
            )?;
            if claimed == 0 {
                return Ok(None);
            }
            let id = insert_run(tx, &account_id, "CHECK_POLICY", SCHEDULE_SOURCE, &check_ids, &[])?;
            Ok(Some((account_id.clone(), id)))
        })?;
        match started {
            Some((account_id, id)) => Ok(Some(self.get_run(&account_id, &id)?.ok_or(StoreError::NotFound)?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::store;
    use crate::Accounts;

    fn schedule() -> Schedule {
        Schedule {
            enabled: true,
            cycle_days: vec![1, 3, 5],
            start_hour: 6,
            end_hour: 12,
            enable_add_check: false,
            standards: vec![1, 3],
            added: vec![1016],
            removed: vec![1001],
            known: vec![1001, 1016, 2001],
        }
    }

    crate::testutil::both_backends! {
        fn a_schedule_is_kept_as_set_and_listed_while_enabled() {
            let (_p, s) = store();
            let acct = s.create_account("schedules").unwrap().id;
            assert_eq!(s.schedule(&acct).unwrap(), None);
            s.set_schedule(&acct, &schedule()).unwrap();
            assert_eq!(s.schedule(&acct).unwrap(), Some(schedule()));
            assert_eq!(s.enabled_schedules().unwrap(), vec![(acct.clone(), schedule(), 0)]);
            s.set_schedule(&acct, &Schedule { enabled: false, ..schedule() }).unwrap();
            assert!(s.enabled_schedules().unwrap().is_empty());
            // A schedule for an account that does not exist is refused by the foreign key.
            assert!(s.set_schedule("0000", &schedule()).is_err());
        }

        fn a_window_runs_once_however_many_nodes_claim_it() {
            let (_p, s) = store();
            let acct = s.create_account("schedules").unwrap().id;
            s.set_schedule(&acct, &schedule()).unwrap();
            let s = std::sync::Arc::new(s);
            let started: Vec<Option<CheckRun>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..8)
                    .map(|_| {
                        let (s, acct) = (s.clone(), acct.clone());
                        scope.spawn(move || s.start_scheduled_run(&acct, &schedule(), 1_000, &[1001, 1016]).unwrap())
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let runs: Vec<&CheckRun> = started.iter().flatten().collect();
            assert_eq!(runs.len(), 1, "one run for the window");
            assert_eq!((runs[0].task_type.as_str(), runs[0].check_ids.as_slice()), ("CHECK_POLICY", &[1001, 1016][..]));
            // Changing the schedule keeps the claim; an earlier window is never run late.
            let changed = Schedule { cycle_days: vec![2], ..schedule() };
            s.set_schedule(&acct, &changed).unwrap();
            assert!(s.start_scheduled_run(&acct, &changed, 1_000, &[1001]).unwrap().is_none());
            assert!(s.start_scheduled_run(&acct, &changed, 500, &[1001]).unwrap().is_none());
            assert_eq!(s.enabled_schedules().unwrap()[0].2, 1_000);
            // A node that read the schedule before it changed does not start the old one.
            assert!(s.start_scheduled_run(&acct, &schedule(), 2_000, &[1001]).unwrap().is_none());
            assert!(s.start_scheduled_run(&acct, &changed, 2_000, &[1001]).unwrap().is_some());
        }

        fn a_corrupt_schedule_is_an_error_not_a_default_and_does_not_stop_the_others() {
            let (_p, s) = store();
            let acct = s.create_account("schedules").unwrap().id;
            s.set_schedule(&acct, &schedule()).unwrap();
            let a = acct.clone();
            s.write(move |tx| tx.execute("UPDATE check_schedules SET config = '{\"enabled\": 1}' WHERE account_id = ?", args![&a]))
                .unwrap();
            assert!(matches!(s.schedule(&acct), Err(StoreError::Corrupt(_))));
            // Another account's schedule is still listed.
            let other = s.create_account("other").unwrap().id;
            s.set_schedule(&other, &schedule()).unwrap();
            assert_eq!(s.enabled_schedules().unwrap().into_iter().map(|(a, ..)| a).collect::<Vec<_>>(), [other]);
        }
    }
}
