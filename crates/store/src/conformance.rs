//! The seam's conformance suite: each test runs on SQLite and on PostgreSQL (see
//! `testutil::both_backends`). Beside the tests of each module (conflicts, fencing, the
//! queue of one file, nonces, ClientTokens), these cover claims in order, lease expiry,
//! selections of 100,000 instances, whitelists with expiry, the repair quota's counter and
//! check runs.

use model::{CheckStatus, DimensionType, RepairValues, RunDetailStatus, TaskStatus, TaskType, Vendor};

use crate::testutil::store;
use crate::*;

fn account(s: &Store) -> String {
    s.create_account("conformance").unwrap().id
}

pub(crate) fn host(i: usize) -> NewInstance {
    NewInstance {
        vendor: Vendor::Aliyun,
        region_id: if i.is_multiple_of(2) { "cn-hangzhou" } else { "us-east-1" }.into(),
        instance_id: format!("i-{i:06}"),
        instance_name: format!("host-{i}"),
        connector: "host".into(),
        locator: format!("/fleet/{i}"),
        os_type: "linux".into(),
        live: None,
    }
}

/// Writes one check result as a check run writes it (its counters kept).
pub(crate) fn record_result(s: &Store, account_id: &str, check_id: i64, instance_pk: i64, status: CheckStatus) {
    let u = ResultUpdate {
        check_id,
        instance_pk,
        vendor: Vendor::Aliyun,
        status,
        status_message: String::new(),
        config: "{}".into(),
        run_id: "r".into(),
    };
    let account_id = account_id.to_string();
    s.write(move |tx| {
        let mut tally = crate::counts::Tally::default();
        crate::counts::write_result(tx, &account_id, &u, now_ms(), &mut tally)?;
        tally.apply(tx, &account_id)
    })
    .unwrap();
}

pub(crate) fn repair_of(check_id: i64, pks: &[i64]) -> Submission {
    Submission {
        root_id: new_id(16),
        check_id,
        kind: TaskType::Repair,
        dimension: DimensionType::Instance,
        tasks: pks
            .iter()
            .map(|pk| NewTask {
                id: task_id(),
                instance_pk: *pk,
                repair_task_id: None,
                params: RepairValues::default(),
            })
            .collect(),
        selection: None,
        scope: format!("file:/etc/{check_id}"),
        limits: Default::default(),
        submitted_by: "LTAIsubmitter".into(),
    }
}

crate::testutil::both_backends! {
    fn tasks_are_claimed_in_order_and_an_expired_lease_is_claimed_again() {
        let (_p, s) = store();
        let acct = account(&s);
        s.upsert_instances(&acct, &(0..3).map(host).collect::<Vec<_>>()).unwrap();
        let pks: Vec<i64> = s.list_instances(&acct).unwrap().iter().map(|i| i.pk).collect();
        let subs: Vec<Submission> = pks.iter().map(|pk| repair_of(1001, &[*pk])).collect();
        for sub in &subs {
            s.submit(&acct, sub).unwrap();
        }
        let first = s.claim_task(0).unwrap().unwrap(); // expires at once
        assert_eq!(first.task.id, subs[0].tasks[0].id, "the oldest first");
        std::thread::sleep(std::time::Duration::from_millis(5));
        let order: Vec<String> = (0..3).map(|_| s.claim_task(60_000).unwrap().unwrap().task.id).collect();
        // Never-leased tasks come before an expired lease; the expired one is claimed again.
        assert_eq!(order, [&subs[1], &subs[2], &subs[0]].map(|s| s.tasks[0].id.clone()));
        assert!(s.claim_task(60_000).unwrap().is_none());
    }

    fn a_submission_over_the_accounts_instance_limit_writes_nothing() {
        let (_p, s) = store();
        let acct = account(&s);
        s.upsert_instances(&acct, &(0..5).map(host).collect::<Vec<_>>()).unwrap();
        let pks: Vec<i64> = s.list_instances(&acct).unwrap().iter().map(|i| i.pk).collect();
        assert_eq!(s.set_limits(&acct, Some(2)).unwrap().max_submission_instances, Some(2));
        let over = s.submit(&acct, &repair_of(1001, &pks[..3])).unwrap();
        assert_eq!(over, SubmitOutcome::OverInstanceLimit { instances: 3, max: 2 });
        // A selection's instances count too: they are added in the same transaction.
        let (sel, _) = s.create_selection(&acct, "limits", "instance", "all").unwrap();
        s.apply_criteria(&acct, &sel, &[Criterion::RegionId("cn-hangzhou".into())], false, true).unwrap();
        let selected = Submission {
            selection: Some(SelectionSource { selection: sel, connector: "host".into(), params: RepairValues::default() }),
            ..repair_of(1002, &[])
        };
        assert_eq!(s.submit(&acct, &selected).unwrap(), SubmitOutcome::OverInstanceLimit { instances: 3, max: 2 });
        assert_eq!(s.list_tasks(&acct, &TaskFilter::default()).unwrap().1, 0, "nothing was written");
        assert_eq!(s.repair_usage(&acct).unwrap().0, 0, "nor counted against the quota");
        assert_eq!(s.submit(&acct, &repair_of(1001, &pks[..2])).unwrap(), SubmitOutcome::Created(2));
        s.set_limits(&acct, None).unwrap();
        assert_eq!(s.submit(&acct, &repair_of(1003, &pks)).unwrap(), SubmitOutcome::Created(5));
        assert_eq!(s.set_limits("0000", Some(1)).err(), Some(StoreError::NotFound));
    }

    fn a_selection_of_100000_instances_is_built_and_repaired_in_single_statements() {
        let (_p, s) = store();
        let acct = account(&s);
        let fleet: Vec<NewInstance> = (0..100_000).map(host).collect();
        assert_eq!(s.upsert_instances(&acct, &fleet).unwrap(), 100_000);
        let (sel, created) = s.create_selection(&acct, "conformance", "instance", "all").unwrap();
        assert!(created);
        let added = s.apply_criteria(&acct, &sel, &[Criterion::RegionId("cn-hangzhou".into())], false, true).unwrap();
        assert_eq!(added, 50_000);
        let removed = s.apply_criteria(&acct, &sel, &[Criterion::InstanceId("i-000000".into())], false, false).unwrap();
        assert_eq!(removed, 1);
        let (page, total) = s.list_selection_targets(&acct, &sel, 0, 10).unwrap();
        assert_eq!((page.len(), total), (10, 49_999));
        let sub = Submission {
            tasks: Vec::new(),
            dimension: DimensionType::Instance,
            selection: Some(SelectionSource { selection: sel, connector: "host".into(), params: RepairValues::default() }),
            ..repair_of(1009, &[])
        };
        assert_eq!(s.submit(&acct, &sub).unwrap(), SubmitOutcome::Created(49_999));
        assert_eq!(s.count_active_tasks().unwrap(), 49_999);
        let (tasks, total) = s.list_tasks(&acct, &TaskFilter { limit: 5, ..Default::default() }).unwrap();
        assert_eq!((tasks.len(), total), (5, 49_999));
        let (_, filtered) = s.list_tasks(&acct, &TaskFilter { check_id: Some(1009), limit: 5, ..Default::default() }).unwrap();
        assert_eq!(filtered, 49_999, "the kept total and a count agree");
        assert!(tasks.iter().all(|t| t.id.len() == 32 && t.status == TaskStatus::Init), "{tasks:?}");
    }

    fn a_whitelist_applies_until_it_expires() {
        let (_p, s) = store();
        let acct = account(&s);
        s.upsert_instances(&acct, &(0..3).map(host).collect::<Vec<_>>()).unwrap();
        let pks: Vec<i64> = s.list_instances(&acct).unwrap().iter().map(|i| i.pk).collect();
        let now = now_ms();
        s.add_whitelists(
            &acct,
            &[
                NewWhitelist { check_id: 1001, instance_pks: vec![pks[0]], expires_ms: Some(now + 60_000), ..Default::default() },
                NewWhitelist { check_id: 1001, instance_pks: vec![pks[1]], expires_ms: Some(now - 1), ..Default::default() },
            ],
        )
        .unwrap();
        assert_eq!(s.whitelisted_among(&acct, 1001, &pks).unwrap(), [pks[0]], "the expired rule no longer applies");
        let whole = s.add_whitelists(&acct, &[NewWhitelist { check_id: 1002, ..Default::default() }]).unwrap();
        assert_eq!(s.whitelisted_among(&acct, 1002, &pks).unwrap(), pks, "a rule without instances: all of them");
        assert!(s.remove_whitelist_rule(&acct, whole[0]).unwrap());
        assert_eq!(s.remove_whitelists(&acct, &[1001], &[pks[0]]).unwrap(), 1);
        assert!(s.whitelisted_among(&acct, 1001, &pks).unwrap().is_empty());
    }

    fn the_repair_quota_counts_what_changed_and_gives_back_what_did_not() {
        let (_p, s) = store();
        let acct = account(&s);
        s.upsert_instances(&acct, &(0..3).map(host).collect::<Vec<_>>()).unwrap();
        let pks: Vec<i64> = s.list_instances(&acct).unwrap().iter().map(|i| i.pk).collect();
        s.set_quota(&acct, Some(2), None).unwrap();
        assert_eq!(s.submit(&acct, &repair_of(1001, &pks)).unwrap(), SubmitOutcome::QuotaExhausted);
        assert_eq!(s.count_active_tasks().unwrap(), 0, "nothing was written");
        assert_eq!(s.submit(&acct, &repair_of(1001, &pks[..2])).unwrap(), SubmitOutcome::Created(2));
        // (all, in cn-* regions, elsewhere)
        assert_eq!(s.repair_usage(&acct).unwrap(), (2, 1, 1));
        assert_eq!(s.submit(&acct, &repair_of(1003, &pks[2..])).unwrap(), SubmitOutcome::QuotaExhausted);
        // A repair that fails without changing anything gives its authorization back.
        let c = s.claim_task(60_000).unwrap().unwrap();
        s.transition(&c, TaskStatus::Init, TaskStatus::Fail, Transition { error: Some(("X", "y")), ..Default::default() })
            .unwrap();
        assert_eq!(s.repair_usage(&acct).unwrap().0, 1);
        assert_eq!(s.submit(&acct, &repair_of(1003, &pks[2..])).unwrap(), SubmitOutcome::Created(1));
        s.set_quota(&acct, None, Some(true)).unwrap();
        assert_eq!(s.submit(&acct, &repair_of(1004, &pks[..1])).unwrap(), SubmitOutcome::TrialUnauthorized);
    }

    /// A repair's last step stores its verification's result while rules are added: on
    /// PostgreSQL the step locked the account's row and then waited for the whitelisting lock,
    /// while a rule's write held that lock and waited (its foreign key) for the account's row.
    fn a_repairs_last_step_and_a_new_whitelist_rule_never_deadlock() {
        let (_p, s) = store();
        let acct = account(&s);
        s.upsert_instances(&acct, &(0..40).map(host).collect::<Vec<_>>()).unwrap();
        let pks: Vec<i64> = s.list_instances(&acct).unwrap().iter().map(|i| i.pk).collect();
        for pk in &pks {
            s.submit(&acct, &repair_of(1001, &[*pk])).unwrap();
        }
        let claimed: Vec<Claimed> = pks.iter().map(|_| s.claim_task(60_000).unwrap().unwrap()).collect();
        std::thread::scope(|scope| {
            let rules = scope.spawn(|| {
                for (n, pk) in pks.iter().enumerate() {
                    let rule = NewWhitelist { check_id: 1002 + (n % 3) as i64, instance_pks: vec![*pk], ..Default::default() };
                    s.add_whitelists(&acct, &[rule]).unwrap_or_else(|e| panic!("rule {n}: {e}"));
                }
            });
            for c in &claimed {
                let result = ResultUpdate {
                    check_id: 1001,
                    instance_pk: c.task.instance.pk,
                    vendor: Vendor::Aliyun,
                    status: CheckStatus::Pass,
                    status_message: String::new(),
                    config: "{}".into(),
                    run_id: c.task.id.clone(),
                };
                let extra = Transition { error: Some(("X", "y")), result: Some(&result), ..Default::default() };
                s.transition(c, TaskStatus::Init, TaskStatus::Fail, extra).unwrap_or_else(|e| panic!("{}: {e}", c.task.id));
            }
            rules.join().unwrap();
        });
        assert_eq!(s.aggregate_results(&acct, &[], &[], &[1001]).unwrap()[&1001].counts.get("PASS"), Some(&40));
    }

    fn a_check_run_is_claimed_fenced_and_finished_once_per_instance() {
        let (_p, s) = store();
        let acct = account(&s);
        s.upsert_instances(&acct, &(0..2).map(host).collect::<Vec<_>>()).unwrap();
        let pks: Vec<i64> = s.list_instances(&acct).unwrap().iter().map(|i| i.pk).collect();
        let run = s.create_run(&acct, "CHECK_ITEM", "", &[1001], &pks).unwrap();
        let claimed = s.claim_run(0).unwrap().unwrap();
        assert_eq!(claimed.id, run.id);
        let items: std::sync::Arc<[i64]> = vec![1001].into();
        s.set_run_details(&claimed, vec![(pks[0], items.clone()), (pks[1], items)]).unwrap();
        let details: Vec<CheckRunDetail> = s.pending_details(&claimed, 0, 10).unwrap().into_iter().map(|(_, d)| d).collect();
        assert_eq!(details.len(), 2);
        std::thread::sleep(std::time::Duration::from_millis(5));
        let again = s.claim_run(60_000).unwrap().unwrap();
        assert!(again.fence > claimed.fence, "the expired lease was taken over");
        s.set_run_details(&again, Vec::new()).unwrap();
        assert_eq!(s.pending_details(&again, 0, 10).unwrap().len(), 2, "a resumed run keeps its details");
        let first = s.pending_details(&again, 0, 1).unwrap();
        assert_eq!(first.len(), 1, "a page at a time");
        let rest = s.pending_details(&again, first[0].0, 10).unwrap();
        assert_eq!((rest.len(), rest[0].1.id.clone()), (1, details[1].id.clone()), "the page after the first");
        let outcome = |d: &CheckRunDetail| DetailOutcome {
            detail_id: d.id.clone(),
            instance_pk: d.instance_pk,
            status: RunDetailStatus::Succeeded,
            results: vec![ResultUpdate {
                check_id: 1001,
                instance_pk: d.instance_pk,
                vendor: Vendor::Aliyun,
                status: CheckStatus::NotPass,
                status_message: String::new(),
                config: "{}".into(),
                run_id: again.id.clone(),
            }],
            removed: Vec::new(),
        };
        s.finish_details(&again, details.iter().map(outcome).collect()).unwrap();
        s.finish_details(&again, details.iter().map(outcome).collect()).unwrap(); // once only
        assert_eq!(s.run_detail_counts(&run.id).unwrap(), (2, 2));
        assert!(s.pending_details(&again, 0, 10).unwrap().is_empty(), "finished details are not pending");
        s.finish_run(&again).unwrap();
        assert_eq!(s.get_run(&acct, &run.id).unwrap().unwrap().finished, 2);
        let agg = s.aggregate_results(&acct, &[], &[], &[]).unwrap();
        assert_eq!(agg[&1001].counts.get("NOT_PASS"), Some(&2));
        assert_eq!(s.failing_instances(&acct, 1001).unwrap().len(), 2);
    }
}
