//! Asset selections and RelationKey, whitelists that repairs respect, ClientToken, and one
//! selection of 100,000 instances submitted in one call.

mod common;

use std::io::Write;

use common::{read, Server};
use serde_json::Value;

const WEB01: &str = "i-bp1a2c3d4e5f6g7h8i9j";
const STAGING: &str = "c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6";
const IDC: &str = "7e4d2c1b-0a9f-4e8d-b7c6-5a4b3c2d1e0f";
const OFFICE: &str = "3b7c5e1a-8f2d-4c6b-9a0e-1d2f3a4b5c6d";
const KEY: &str = "CSPM_OPERATION_RELATION_KEY_1731000000000";

fn targets(s: &Server, key: &str) -> Vec<String> {
    let v = s.ok("ListAssetSelectionTarget", &[("SelectionKey", key), ("PageSize", "100")]);
    let mut ids: Vec<String> =
        v["Data"].as_array().unwrap().iter().map(|t| t["TargetId"].as_str().unwrap().to_string()).collect();
    ids.sort();
    assert_eq!(v["PageInfo"]["TotalCount"], ids.len());
    ids
}

fn sorted(mut v: Vec<&str>) -> Vec<String> {
    v.sort();
    v.into_iter().map(String::from).collect()
}

fn status(s: &Server, check: &str, instance: &str) -> String {
    s.ok("ListCheckInstanceResult", &[("CheckId", check), ("InstanceIds.1", instance)])["BasicData"][0]["Status"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn selections_relation_key_and_whitelists() {
    let s = Server::start(&[]);
    // Create, and create again: one selection per BusinessType.
    let created =
        s.ok("CreateAssetSelectionConfig", &[("BusinessType", KEY), ("TargetType", "instance"), ("Platform", "linux")]);
    let key = created["Data"]["SelectionKey"].as_str().unwrap().to_string();
    assert_eq!(created["Data"]["TargetType"], "instance");
    let again = s.ok("CreateAssetSelectionConfig", &[("BusinessType", KEY), ("TargetType", "instance")]);
    assert_eq!(again["Data"]["SelectionKey"], key.as_str());
    assert_eq!(s.ok("GetAssetSelectionConfig", &[("BusinessType", KEY)])["Data"]["SelectionKey"], key.as_str());
    s.err("CreateAssetSelectionConfig", &[("BusinessType", "X"), ("TargetType", "vpc")], 400, "InvalidParameter");
    s.err("GetAssetSelectionConfig", &[("BusinessType", "nope")], 404, "InvalidBusinessType.NotFound");

    // Targets: add three, remove one; an unknown id refuses the whole call.
    s.ok(
        "AddAssetSelectionCriteria",
        &[
            ("SelectionKey", &key),
            ("TargetOperationList.1.Target", WEB01),
            ("TargetOperationList.1.Operation", "add"),
            ("TargetOperationList.2.Target", STAGING),
            ("TargetOperationList.2.Operation", "add"),
            ("TargetOperationList.3.Target", OFFICE),
            ("TargetOperationList.3.Operation", "add"),
        ],
    );
    s.ok(
        "AddAssetSelectionCriteria",
        &[("SelectionKey", &key), ("TargetOperationList.1.Target", OFFICE), ("TargetOperationList.1.Operation", "del")],
    );
    assert_eq!(targets(&s, &key), sorted(vec![WEB01, STAGING]));
    s.err(
        "AddAssetSelectionCriteria",
        &[
            ("SelectionKey", &key),
            ("TargetOperationList.1.Target", IDC),
            ("TargetOperationList.1.Operation", "add"),
            ("TargetOperationList.2.Target", "i-nosuch"),
            ("TargetOperationList.2.Operation", "add"),
        ],
        404,
        "InvalidInstance.NotFound",
    );
    assert_eq!(targets(&s, &key), sorted(vec![WEB01, STAGING]), "nothing of a refused call applies");
    let selected = s.ok(
        "ListAssetSelectionSelectedTarget",
        &[("SelectionKey", &key), ("TargetList.1", WEB01), ("TargetList.2", OFFICE), ("TargetList.3", "i-nosuch")],
    );
    assert_eq!(selected["Data"].as_array().unwrap().len(), 1);
    assert_eq!(selected["Data"][0]["TargetName"], "web-01");

    // Criteria: every instance failing the Redis item, then without lightweight servers.
    let fails_redis =
        r#"{"LogicalExp":"AND","Criteria":"[{\"name\":\"failedCheckId\",\"value\":\"1016\",\"logicalExp\":\"AND\"}]"}"#;
    s.ok(
        "AddAssetSelectionCriteria",
        &[("SelectionKey", &key), ("Criteria", fails_redis), ("CriteriaOperation", "add")],
    );
    assert_eq!(targets(&s, &key), sorted(vec![WEB01, STAGING, IDC]));
    s.ok(
        "AddAssetSelectionCriteria",
        &[
            ("SelectionKey", &key),
            ("Criteria", r#"[{"name":"vendor","value":"LIGHTWEIGHT"}]"#),
            ("CriteriaOperation", "del"),
        ],
    );
    assert_eq!(targets(&s, &key), sorted(vec![WEB01, IDC]));
    s.err(
        "AddAssetSelectionCriteria",
        &[("SelectionKey", &key), ("Criteria", r#"[{"name":"colour","value":"red"}]"#)],
        400,
        "InvalidParameter",
    );

    // Whitelist the IDC server for the Redis item: WHITELIST everywhere, skipped by the selection.
    let rule = s.ok(
        "AddCheckInstanceResultWhiteList",
        &[
            ("CheckId", "1016"),
            ("InstanceList.1.InstanceId", IDC),
            ("InstanceList.1.RegionId", "cn-shenzhen"),
            ("Remark", "build box, isolated VLAN"),
            ("Reason", "risk accepted by ops"),
        ],
    );
    let rule_id = rule["RuleId"].as_str().unwrap().to_string();
    assert_eq!(status(&s, "1016", IDC), "WHITELIST");
    let listed = s.ok("ListCheckInstanceResult", &[("CheckId", "1016"), ("Statuses.1", "WHITELIST")]);
    assert_eq!(listed["PageInfo"]["TotalCount"], 1);
    s.err(
        "SubmitOperationTask",
        &[
            ("CheckId", "1016"),
            ("Type", "REPAIR"),
            ("OperationTaskInstances.1.InstanceId", IDC),
            ("RepairTempParam.1.Name", "IPPort"),
            ("RepairTempParam.1.Value", "127.0.0.1:6379"),
        ],
        400,
        "InstanceWhitelisted",
    );

    // RelationKey: the selection's instances (web-01; the IDC one is whitelisted) plus the
    // listed staging server.
    let root = s.ok(
        "SubmitOperationTask",
        &[
            ("CheckId", "1016"),
            ("Type", "REPAIR"),
            ("RelationKey", KEY),
            ("OperationTaskInstances.1.InstanceId", STAGING),
            ("RepairTempParam.1.Name", "IPPort"),
            ("RepairTempParam.1.Value", "127.0.0.1:6379"),
        ],
    )["RootTaskId"]
        .as_str()
        .unwrap()
        .to_string();
    let rows = s.wait_root(1016, &root);
    let mut ids: Vec<&str> = rows.iter().map(|r| r["InstanceId"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, sorted(vec![WEB01, STAGING]));
    assert!(rows.iter().all(|r| r["Status"] == "REPAIR_SUCCESS_VERIFIED"), "{rows:?}");
    assert!(read(&s.fleet(IDC, "etc/redis/redis.conf")).contains("port 6380"), "whitelisted: untouched");
    // Nothing left that fails and is not whitelisted.
    s.err(
        "SubmitOperationTask",
        &[
            ("CheckId", "1016"),
            ("Type", "REPAIR"),
            ("DimensionType", "CHECK_ID"),
            ("RepairTempParam.1.Name", "IPPort"),
            ("RepairTempParam.1.Value", "127.0.0.1:6379"),
        ],
        400,
        "NoInstanceToOperate",
    );
    s.err(
        "SubmitOperationTask",
        &[("CheckId", "1016"), ("Type", "ROLLBACK"), ("RelationKey", KEY)],
        400,
        "InvalidParameter",
    );
    let agg = s.ok("ListCheckResult", &[("CheckIds.1", "1016")]);
    assert_eq!(agg["Checks"][0]["Status"], "PASS", "nothing fails that is not exempted");
    assert_eq!(agg["Checks"][0]["StatusCounts"]["WHITELIST"], 1, "{agg}");
    assert_eq!(agg["Checks"][0]["StatusCounts"]["PASS"], 3, "{agg}");

    // Removing the rule brings NOT_PASS back.
    s.ok("RemoveCheckResultWhiteList", &[("RuleId", &rule_id)]);
    assert_eq!(status(&s, "1016", IDC), "NOT_PASS");
    s.err("RemoveCheckResultWhiteList", &[("RuleId", &rule_id)], 404, "InvalidRuleId.NotFound");

    // A whole-check rule, removed by CheckIds; an instance rule removed by instance.
    let ids = s.ok("AddCheckResultWhiteList", &[("CheckIds.1", "1004"), ("CheckIds.2", "1005")])["RuleIds"].clone();
    assert_eq!(ids.as_array().unwrap().len(), 2);
    assert_eq!(status(&s, "1004", WEB01), "WHITELIST");
    s.ok("RemoveCheckResultWhiteList", &[("CheckIds.1", "1004"), ("CheckIds.2", "1005")]);
    assert_eq!(status(&s, "1004", WEB01), "NOT_PASS");
    s.ok("AddCheckInstanceResultWhiteList", &[("CheckId", "1004"), ("InstanceIds.1", WEB01)]);
    s.ok("RemoveCheckInstanceResultWhiteList", &[("CheckId", "1004"), ("InstanceIds.1", WEB01)]);
    assert_eq!(status(&s, "1004", WEB01), "NOT_PASS");

    // An expiring rule stops applying on its own.
    let expiry = (store::now_ms() + 1200).to_string();
    s.ok(
        "AddCheckResultWhiteList",
        &[("CheckIds.1", "1004"), ("InstanceIds.1", WEB01), ("ExpireTime", &expiry), ("Reason", "maintenance window")],
    );
    assert_eq!(status(&s, "1004", WEB01), "WHITELIST");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(status(&s, "1004", WEB01), "NOT_PASS");
    s.err("AddCheckResultWhiteList", &[("CheckIds.1", "1004"), ("ExpireTime", "1000")], 400, "InvalidParameter");
    s.err("AddCheckResultWhiteList", &[("CheckIds.1", "424242")], 404, "InvalidCheckId.NotFound");

    // An all_instance selection holds every server.
    let all = s.ok(
        "CreateAssetSelectionConfig",
        &[("BusinessType", "CSPM_OPERATION_RELATION_KEY_all"), ("TargetType", "all_instance")],
    );
    assert_eq!(targets(&s, all["Data"]["SelectionKey"].as_str().unwrap()).len(), 8);
}

#[test]
fn client_tokens_make_calls_idempotent() {
    let s = Server::start(&[]);
    let first = s.ok("AddCheckResultWhiteList", &[("CheckIds.1", "1004"), ("ClientToken", "tok-1")]);
    let retry = s.ok("AddCheckResultWhiteList", &[("CheckIds.1", "1004"), ("ClientToken", "tok-1")]);
    assert_eq!(first["RuleIds"], retry["RuleIds"], "the retry answers the first rule, creating none");
    assert_ne!(first["RequestId"], retry["RequestId"]);
    s.err(
        "AddCheckResultWhiteList",
        &[("CheckIds.1", "1005"), ("ClientToken", "tok-1")],
        400,
        "IdempotentParameterMismatch",
    );
    let other = s.ok("AddCheckResultWhiteList", &[("CheckIds.1", "1004"), ("ClientToken", "tok-2")]);
    assert_ne!(first["RuleIds"], other["RuleIds"]);
    s.err(
        "AddCheckResultWhiteList",
        &[("CheckIds.1", "1004"), ("ClientToken", &"x".repeat(65))],
        400,
        "InvalidParameter",
    );
    // Dry runs validate and change nothing.
    s.err(
        "AddAssetSelectionCriteria",
        &[("SelectionKey", "nope"), ("DryRun", "true")],
        404,
        "InvalidSelectionKey.NotFound",
    );
    let dry =
        s.ok("CreateAssetSelectionConfig", &[("BusinessType", "B"), ("TargetType", "instance"), ("DryRun", "True")]);
    assert_eq!(dry["Data"]["SelectionKey"], "");
    s.err("GetAssetSelectionConfig", &[("BusinessType", "B")], 404, "InvalidBusinessType.NotFound");
}

/// A call refused after one of its writes committed with its ClientToken answers its refusal,
/// now and to every retry; a refused SubmitOperationTask keeps no RootTaskId it never created.
#[test]
fn a_client_tokens_refusal_is_its_answer() {
    let s = Server::start(&[]);
    // DeleteWebhook's write commits (deleting nothing) before the call is refused.
    let gone = [("WebhookId", "wh-none"), ("ClientToken", "tok-del")];
    // Not IdempotentProcessing (an answer waited for that never comes), the first time or later.
    for _ in 0..2 {
        s.err("DeleteWebhook", &gone, 404, "WebhookNotFound");
    }
    s.err(
        "DeleteWebhook",
        &[("WebhookId", "wh-other"), ("ClientToken", "tok-del")],
        400,
        "IdempotentParameterMismatch",
    );
    // A trial account may not repair: the refusal is the answer kept, not a RootTaskId.
    s.admin("accounts", "set-quota", &["--account", &s.account_id, "--repairs", "unlimited", "--trial", "true"]);
    let submit = [
        ("CheckId", "1001"),
        ("Type", "REPAIR"),
        ("OperationTaskInstances.1.InstanceId", WEB01),
        ("ClientToken", "tok-trial"),
    ];
    for _ in 0..2 {
        let answer = s.ok("SubmitOperationTask", &submit);
        assert_eq!(answer["OperateCode"], "ActionTrialUnauthorized", "{answer}");
        assert!(answer.get("RootTaskId").is_none(), "{answer}");
    }
    assert_eq!(s.ok("ListOperationTask", &[("CheckId", "1001")])["PageInfo"]["TotalCount"], 0);
}

fn peak_rss_mb(pid_of_port: &str) -> Option<f64> {
    // The server is the posture process listening on our port: find it through /proc.
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(pid_of_port) {
            let status = std::fs::read_to_string(e.path().join("status")).ok()?;
            let kb: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
            return Some(kb / 1024.0);
        }
    }
    None
}

#[test]
fn a_selection_of_100000_instances_is_one_root_task_in_one_call() {
    const N: usize = 100_000;
    const BATCH: usize = 2_000;
    // No workers: the tasks are written, not run (their roots do not exist).
    let s = Server::start(&["--workers", "0", "--demo-fleet", "roots"]);
    let file = s.dir.path().join("fleet.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    for n in 0..N {
        writeln!(f, r#"{{"InstanceId":"i-bulk{n:06}","RegionId":"cn-hangzhou","Vendor":0,"Root":"/nonexistent/{n}"}}"#)
            .unwrap();
    }
    f.flush().unwrap();
    drop(f);
    assert_eq!(
        s.admin("instances", "add", &["--account", &s.account_id, "--file", file.to_str().unwrap()])["Registered"],
        N
    );

    let key = s.ok("CreateAssetSelectionConfig", &[("BusinessType", KEY), ("TargetType", "instance")])["Data"]
        ["SelectionKey"]
        .as_str()
        .unwrap()
        .to_string();
    let ids: Vec<String> = (0..N).map(|n| format!("i-bulk{n:06}")).collect();
    let names: Vec<(String, String)> = (1..=BATCH)
        .map(|i| (format!("TargetOperationList.{i}.Target"), format!("TargetOperationList.{i}.Operation")))
        .collect();
    for chunk in ids.chunks(BATCH) {
        let mut params: Vec<(&str, &str)> = vec![("SelectionKey", &key)];
        for (id, (t, o)) in chunk.iter().zip(&names) {
            params.push((t, id));
            params.push((o, "add"));
        }
        s.ok("AddAssetSelectionCriteria", &params);
    }
    let listed = s.ok("ListAssetSelectionTarget", &[("SelectionKey", &key), ("PageSize", "1")]);
    assert_eq!(listed["PageInfo"]["TotalCount"], N);

    let before = peak_rss_mb(&s.endpoint);
    let started = std::time::Instant::now();
    let v = s.ok("SubmitOperationTask", &[("CheckId", "1001"), ("Type", "REPAIR"), ("RelationKey", KEY)]);
    let took = started.elapsed();
    let root = v["RootTaskId"].as_str().unwrap().to_string();
    let after = peak_rss_mb(&s.endpoint);
    let tasks = s.ok("ListOperationTask", &[("CheckId", "1001"), ("PageSize", "1")]);
    assert_eq!(tasks["PageInfo"]["TotalCount"], N);
    assert_eq!(tasks["OperationTasks"][0]["RootTaskId"], root.as_str());
    assert_eq!(tasks["OperationTasks"][0]["Status"], "INIT");
    eprintln!("100,000-instance submission: {took:?}, peak RSS of the server {before:?} MB before, {after:?} MB after");
    // A second submission of the same selection conflicts as a whole and writes nothing.
    s.err(
        "SubmitOperationTask",
        &[("CheckId", "1001"), ("Type", "REPAIR"), ("RelationKey", KEY)],
        400,
        "RepairTaskConflict",
    );
    assert_eq!(s.ok("ListOperationTask", &[("CheckId", "1001"), ("PageSize", "1")])["PageInfo"]["TotalCount"], N);
    let _: Value = tasks;
}
