//! The periodic check: the schedule an account has before it sets one, the items a schedule
//! selects, when its window is due, and starting each due window's run. Every node looks; the
//! store's claim of the window (in the run's own transaction) makes it run once.

use std::collections::BTreeSet;

use catalog::Catalog;
use store::Schedule;

use crate::Engine;

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// The windows a schedule may use, as the Sas API allows them: (start hour, end hour), UTC.
pub const WINDOWS: [(u8, u8); 4] = [(0, 6), (6, 12), (12, 18), (18, 24)];

/// An account's schedule until it sets one: off (nothing runs by itself, as before schedules
/// existed), every day from 00:00 to 06:00 once enabled, every standard, new items included.
pub fn default_schedule(catalog: &Catalog) -> Schedule {
    Schedule {
        enabled: false,
        cycle_days: (1..=7).collect(),
        start_hour: 0,
        end_hour: 6,
        enable_add_check: true,
        standards: catalog.structure().iter().map(|s| s.id).collect(),
        added: Vec::new(),
        removed: Vec::new(),
        known: catalog.all().map(|c| c.id).collect(),
    }
}

/// The items a schedule checks, in id order: those of its standards (without
/// `enable_add_check`, only those the catalog had when the schedule was set) less the ones
/// removed, plus the ones added. Ids the catalog no longer has are left out.
pub fn selected_checks(s: &Schedule, catalog: &Catalog) -> Vec<i64> {
    let known: BTreeSet<i64> = s.known.iter().copied().collect();
    let mut out: BTreeSet<i64> = catalog
        .all()
        .filter(|c| s.standards.contains(&c.policy.standard_id))
        .filter(|c| s.enable_add_check || known.contains(&c.id))
        .filter(|c| !s.removed.contains(&c.id))
        .map(|c| c.id)
        .collect();
    out.extend(s.added.iter().filter(|id| catalog.get(**id).is_some()));
    out.into_iter().collect()
}

/// The start of the window `now_ms` falls in, if the schedule has one open then: a day of
/// `cycle_days` (1 = Monday), between its start and end hours (UTC).
pub fn due_window(s: &Schedule, now_ms: i64) -> Option<i64> {
    let day = now_ms.div_euclid(DAY_MS);
    // 1970-01-01 was a Thursday (4).
    let weekday = ((day + 3).rem_euclid(7) + 1) as u8;
    let hour = now_ms.rem_euclid(DAY_MS) / HOUR_MS;
    let open = s.cycle_days.contains(&weekday) && i64::from(s.start_hour) <= hour && hour < i64::from(s.end_hour);
    open.then(|| day * DAY_MS + i64::from(s.start_hour) * HOUR_MS)
}

impl Engine {
    /// Starts the run of every enabled schedule whose window is open and not yet run; returns
    /// how many this node started.
    pub fn start_due_schedules(&self, now_ms: i64) -> store::Result<usize> {
        let mut started = 0;
        for (account, schedule, last_window) in self.store.enabled_schedules()? {
            let Some(window) = due_window(&schedule, now_ms).filter(|w| *w > last_window) else { continue };
            let checks = selected_checks(&schedule, &self.catalog);
            if checks.is_empty() {
                continue;
            }
            if let Some(run) = self.store.start_scheduled_run(&account, &schedule, window, &checks)? {
                tracing::info!(account = %account, run = %run.id, items = checks.len(), window_ms = window, "scheduled check started");
                started += 1;
            }
        }
        if started > 0 {
            self.wake();
        }
        Ok(started)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: i64, hour: i64, minute: i64) -> i64 {
        day * DAY_MS + hour * HOUR_MS + minute * 60_000
    }

    #[test]
    fn windows_open_on_the_chosen_weekdays_between_the_hours_utc() {
        let catalog = Catalog::builtin().unwrap();
        // Day 0 (1970-01-01) was a Thursday; day 4 a Monday.
        let s = Schedule { cycle_days: vec![1], start_hour: 6, end_hour: 12, ..default_schedule(&catalog) };
        assert_eq!(due_window(&s, at(4, 6, 0)), Some(at(4, 6, 0)));
        assert_eq!(due_window(&s, at(4, 11, 59)), Some(at(4, 6, 0)));
        assert_eq!(due_window(&s, at(4, 12, 0)), None);
        assert_eq!(due_window(&s, at(4, 5, 59)), None);
        assert_eq!(due_window(&s, at(5, 7, 0)), None, "Tuesday");
        assert_eq!(due_window(&s, at(11, 7, 0)), Some(at(11, 6, 0)), "the next Monday");
        let thursday = Schedule { cycle_days: vec![4], start_hour: 18, end_hour: 24, ..s.clone() };
        assert_eq!(due_window(&thursday, at(0, 23, 59)), Some(at(0, 18, 0)));
        // 2026-12-03 was a Thursday.
        let dec3 = 1_796_256_000_000;
        assert_eq!(due_window(&Schedule { cycle_days: vec![4], start_hour: 0, end_hour: 6, ..s }, dec3), Some(dec3));
    }

    #[test]
    fn the_selection_follows_standards_additions_and_removals() {
        let catalog = Catalog::builtin().unwrap();
        let all: Vec<i64> = catalog.all().map(|c| c.id).collect();
        let default = default_schedule(&catalog);
        assert_eq!(selected_checks(&default, &catalog), all);
        let aws_only =
            Schedule { standards: vec![3], added: vec![1001, 999_999], removed: vec![2001], ..default.clone() };
        let picked = selected_checks(&aws_only, &catalog);
        assert!(picked.contains(&1001) && !picked.contains(&2001) && !picked.contains(&1002));
        assert!(!picked.contains(&999_999), "an id the catalog does not have");
        assert_eq!(picked.len(), catalog.all().filter(|c| c.policy.standard_id == 3).count());
        // Without EnableAddCheck, an item the catalog did not have when the schedule was set
        // is not checked.
        let frozen = Schedule { enable_add_check: false, known: vec![1001, 1002], ..default };
        assert_eq!(selected_checks(&frozen, &catalog), [1001, 1002]);
    }
}
