//! SubmitOperationTask and friends over real HTTP: dimensions, every misuse code, the conflict
//! race, drift protection, restart and resume, paging, and the `posture call` command.

mod common;

use std::sync::Arc;
use store::Instances;

use common::{read, Server};
use serde_json::Value;

const WEB01: &str = "i-bp1a2c3d4e5f6g7h8i9j";
const STAGING: &str = "c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6";

fn repair(s: &Server, check: &str, instance: &str, extra: &[(&str, &str)]) -> String {
    let mut p = vec![("CheckId", check), ("Type", "REPAIR"), ("OperationTaskInstances.1.InstanceId", instance)];
    p.extend_from_slice(extra);
    s.ok("SubmitOperationTask", &p)["RootTaskId"].as_str().unwrap().to_string()
}

fn one_task(s: &Server, check: i64, root: &str) -> Value {
    let rows = s.wait_root(check, root);
    assert_eq!(rows.len(), 1);
    rows[0].clone()
}

fn result_of(s: &Server, check: &str, instance: &str) -> String {
    let v = s.ok("ListCheckInstanceResult", &[("CheckId", check), ("InstanceIds.1", instance)]);
    v["BasicData"][0]["Status"].as_str().unwrap().to_string()
}

#[test]
fn concurrent_submissions_for_one_instance_create_exactly_one_task() {
    let s = Arc::new(Server::start(&["--workers", "0", "--demo-fleet", "roots"]));
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                let r = s.call(
                    "SubmitOperationTask",
                    &[("CheckId", "1001"), ("Type", "REPAIR"), ("OperationTaskInstances.1.InstanceId", WEB01)],
                );
                (r.status, r.json()["Code"].as_str().unwrap_or("").to_string())
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.0 == 200).count(), 1, "{results:?}");
    assert!(
        results.iter().filter(|r| r.0 != 200).all(|r| *r == (400, "RepairTaskConflict".to_string())),
        "{results:?}"
    );
    let v = s.ok("ListOperationTask", &[("CheckId", "1001")]);
    assert_eq!(v["PageInfo"]["TotalCount"], 1);
}

#[test]
fn check_id_dimension_repairs_every_failing_instance() {
    let s = Server::start(&[]);
    let failing =
        s.ok("ListCheckInstanceResult", &[("CheckId", "1001"), ("Statuses.1", "NOT_PASS"), ("PageSize", "100")]);
    let n = failing["BasicData"].as_array().unwrap().len();
    assert!(n >= 3);
    let root = s.ok("SubmitOperationTask", &[("CheckId", "1001"), ("Type", "REPAIR"), ("DimensionType", "CHECK_ID")])
        ["RootTaskId"]
        .as_str()
        .unwrap()
        .to_string();
    let rows = s.wait_root(1001, &root);
    assert_eq!(rows.len(), n);
    assert!(rows.iter().all(|r| r["Status"] == "REPAIR_SUCCESS_VERIFIED"), "{rows:?}");
    let agg = s.ok("ListCheckResult", &[("CheckIds.1", "1001")]);
    assert_eq!(agg["Checks"][0]["Status"], "PASS");
    s.err(
        "SubmitOperationTask",
        &[("CheckId", "1001"), ("Type", "REPAIR"), ("DimensionType", "CHECK_ID")],
        400,
        "NoInstanceToOperate",
    );
}

#[test]
fn every_misuse_has_its_own_code() {
    let s = Server::start(&[]);
    let sub = |extra: &[(&str, &str)], status: u16, code: &str| {
        s.err("SubmitOperationTask", extra, status, code);
    };
    sub(&[("CheckId", "424242"), ("Type", "REPAIR")], 404, "InvalidCheckId.NotFound");
    sub(&[("CheckId", "1001"), ("Type", "FIX")], 400, "InvalidParameter");
    sub(&[("CheckId", "1001"), ("Type", "REPAIR"), ("DimensionType", "ALL")], 400, "InvalidParameter");
    sub(
        &[("CheckId", "1018"), ("Type", "REPAIR"), ("OperationTaskInstances.1.InstanceId", WEB01)],
        400,
        "RepairNotSupported",
    );
    sub(
        &[("CheckId", "1007"), ("Type", "ROLLBACK"), ("OperationTaskInstances.1.InstanceId", WEB01)],
        400,
        "RollbackNotSupported",
    );
    sub(&[("CheckId", "1001"), ("Type", "REPAIR")], 400, "MissingParameter");
    sub(
        &[("CheckId", "1001"), ("Type", "REPAIR"), ("OperationTaskInstances.1.InstanceId", "i-nosuch")],
        404,
        "InvalidInstance.NotFound",
    );
    sub(
        &[
            ("CheckId", "1001"),
            ("Type", "REPAIR"),
            ("OperationTaskInstances.1.InstanceId", WEB01),
            ("OperationTaskInstances.1.Vendor", "7"),
        ],
        404,
        "InvalidInstance.NotFound",
    );
    sub(
        &[
            ("CheckId", "1001"),
            ("Type", "REPAIR"),
            ("OperationTaskInstances.1.InstanceId", WEB01),
            ("OperationTaskInstances.1.Vendor", "GCP"),
        ],
        400,
        "InvalidParameter",
    );
    sub(
        &[("CheckId", "1001"), ("Type", "REPAIR"), ("OperationTaskInstances.1.RegionId", "cn-hangzhou")],
        400,
        "MissingParameter",
    );
    sub(
        &[("CheckId", "1001"), ("Type", "REPAIR"), ("RelationKey", "CSPM_OPERATION_RELATION_KEY_1")],
        404,
        "InvalidRelationKey.NotFound",
    );
    sub(
        &[
            ("CheckId", "1003"),
            ("Type", "REPAIR"),
            ("OperationTaskInstances.1.InstanceId", WEB01),
            ("RepairTempParam.1.Name", "MaxAuthTries"),
            ("RepairTempParam.1.Value", "7"),
        ],
        400,
        "ErrorParamFormat.MaxAuthTries",
    );
    sub(
        &[("CheckId", "1001"), ("Type", "ROLLBACK"), ("OperationTaskInstances.1.InstanceId", WEB01)],
        400,
        "MissingParameter",
    );
    sub(
        &[
            ("CheckId", "1001"),
            ("Type", "ROLLBACK"),
            ("OperationTaskInstances.1.InstanceId", WEB01),
            ("OperationTaskInstances.1.TaskId", "00000000000000000000000000000000"),
        ],
        404,
        "InvalidTaskId.NotFound",
    );
    sub(&[("CheckId", "1001"), ("Type", "ROLLBACK"), ("DimensionType", "CHECK_ID")], 400, "MissingParameter");

    // Both vendor spellings, and named twice: one task.
    let root = repair(
        &s,
        "1004",
        WEB01,
        &[
            ("OperationTaskInstances.1.Vendor", "ALIYUN"),
            ("OperationTaskInstances.2.InstanceId", WEB01),
            ("OperationTaskInstances.2.Vendor", "0"),
            ("OperationTaskInstances.2.RegionId", "cn-hangzhou"),
        ],
    );
    let x11 = one_task(&s, 1004, &root);
    assert_eq!(x11["Status"], "REPAIR_SUCCESS_VERIFIED");
    let x11_id = x11["TaskId"].as_str().unwrap();

    // Rollback of a task of another check / another instance / a rollback of a non-applied repair.
    sub(
        &[
            ("CheckId", "1001"),
            ("Type", "ROLLBACK"),
            ("OperationTaskInstances.1.InstanceId", WEB01),
            ("OperationTaskInstances.1.TaskId", x11_id),
        ],
        400,
        "RollbackTaskMismatch",
    );
    sub(
        &[
            ("CheckId", "1004"),
            ("Type", "ROLLBACK"),
            ("OperationTaskInstances.1.InstanceId", STAGING),
            ("OperationTaskInstances.1.TaskId", x11_id),
        ],
        400,
        "RollbackTaskMismatch",
    );

    // A later repair of the same item on the same instance: the earlier one cannot be rolled back.
    let first = one_task(&s, 1003, &repair(&s, "1003", WEB01, &[]));
    let second = one_task(
        &s,
        1003,
        &repair(&s, "1003", WEB01, &[("RepairTempParam.1.Name", "MaxAuthTries"), ("RepairTempParam.1.Value", "2")]),
    );
    assert_eq!(second["Status"], "REPAIR_SUCCESS_VERIFIED");
    assert!(read(&s.fleet(WEB01, "etc/ssh/sshd_config")).contains("\nMaxAuthTries 2\n"));
    let first_id = first["TaskId"].as_str().unwrap();
    s.err(
        "SubmitOperationTask",
        &[
            ("CheckId", "1003"),
            ("Type", "ROLLBACK"),
            ("OperationTaskInstances.1.InstanceId", WEB01),
            ("OperationTaskInstances.1.TaskId", first_id),
        ],
        400,
        "RollbackNotLatest",
    );

    // Ambiguous: the same instance id in two regions.
    let store = store::Store::open(&s.data().join("posture.db")).unwrap();
    store
        .upsert_instance(
            &s.account_id,
            &store::NewInstance {
                vendor: model::Vendor::Aliyun,
                region_id: "cn-beijing".into(),
                instance_id: WEB01.into(),
                instance_name: "twin".into(),
                connector: "host".into(),
                locator: "/nonexistent".into(),
                os_type: "linux".into(),
                live: None,
            },
        )
        .unwrap();
    sub(
        &[("CheckId", "1001"), ("Type", "REPAIR"), ("OperationTaskInstances.1.InstanceId", WEB01)],
        400,
        "InvalidInstance.Ambiguous",
    );
    let root = repair(&s, "1001", WEB01, &[("OperationTaskInstances.1.RegionId", "cn-beijing")]);
    let gone = one_task(&s, 1001, &root);
    assert_eq!(
        (gone["Status"].as_str(), gone["ErrorCode"].as_str(), gone["InstanceFreed"].as_bool()),
        (Some("BACKUP_FAIL"), Some("InstanceFreed"), Some(true))
    );
}

#[test]
fn rollbacks_of_one_file_go_latest_first_and_never_undo_an_outside_change() {
    let s = Server::start(&[]);
    let path = s.fleet(WEB01, "etc/ssh/sshd_config");
    let original = read(&path);
    let root_login = one_task(&s, 1001, &repair(&s, "1001", WEB01, &[]));
    let x11 = one_task(&s, 1004, &repair(&s, "1004", WEB01, &[]));
    assert_eq!(x11["Status"], "REPAIR_SUCCESS_VERIFIED");
    let both = read(&path);
    let rollback = |check: &str, task: &Value| {
        vec![
            ("CheckId".to_string(), check.to_string()),
            ("Type".into(), "ROLLBACK".into()),
            ("OperationTaskInstances.1.InstanceId".into(), WEB01.into()),
            ("OperationTaskInstances.1.TaskId".into(), task["TaskId"].as_str().unwrap().to_string()),
        ]
    };
    let call = |v: Vec<(String, String)>| {
        let refs: Vec<(&str, &str)> = v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        s.call("SubmitOperationTask", &refs)
    };
    // The older repair of the file is refused at once, naming the later one to undo first.
    let r = call(rollback("1001", &root_login));
    let v = r.json();
    assert_eq!((r.status, v["Code"].as_str()), (400, Some("RollbackNotLatest")), "{}", r.body);
    assert!(v["Message"].as_str().unwrap().contains(x11["TaskId"].as_str().unwrap()), "{}", r.body);
    assert_eq!(read(&path), both, "nothing was touched");
    // A change made outside posture after the repair is never undone: the rollback fails.
    std::fs::write(&path, format!("{both}# edited by hand\n")).unwrap();
    let r = call(rollback("1004", &x11));
    let root = r.json()["RootTaskId"].as_str().unwrap().to_string();
    let t = one_task(&s, 1004, &root);
    assert_eq!(
        (t["Status"].as_str(), t["ErrorCode"].as_str()),
        (Some("ROLL_BACK_FAIL"), Some("ConfigChangedSinceRepair"))
    );
    assert_eq!(read(&path), format!("{both}# edited by hand\n"), "the outside change is kept");
    std::fs::write(&path, &both).unwrap();
    // Latest first, both come back, to the byte.
    for (check, task) in [("1004", &x11), ("1001", &root_login)] {
        let r = call(rollback(check, task));
        let root = r.json()["RootTaskId"].as_str().unwrap().to_string();
        assert_eq!(one_task(&s, check.parse().unwrap(), &root)["Status"], "ROLL_BACK_VERIFIED");
    }
    assert_eq!(read(&path), original);
    assert_eq!(result_of(&s, "1001", WEB01), "NOT_PASS");
}

#[test]
fn a_restart_keeps_everything_and_resumes_unfinished_tasks() {
    let mut s = Server::start(&["--workers", "0", "--demo-fleet", "roots"]);
    let creds = read(&s.data().join("credentials.json"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(s.data().join("credentials.json")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let root = repair(
        &s,
        "1016",
        WEB01,
        &[("RepairTempParam.1.Name", "IPPort"), ("RepairTempParam.1.Value", "127.0.0.1:6379")],
    );
    let before = s.ok("ListOperationTask", &[("CheckId", "1016")]);
    assert_eq!(before["OperationTasks"][0]["Status"], "INIT", "no worker runs it");
    s.stop();
    s.spawn(&[]);
    assert_eq!(
        read(&s.data().join("credentials.json")).replace(&s.endpoint, ""),
        creds.replace(&creds_endpoint(&creds), ""),
        "same key"
    );
    let t = one_task(&s, 1016, &root);
    assert_eq!(t["Status"], "REPAIR_SUCCESS_VERIFIED");
    assert_eq!(result_of(&s, "1016", WEB01), "PASS");
    s.stop();
    s.spawn(&[]);
    assert_eq!(result_of(&s, "1016", WEB01), "PASS", "results survive a restart");
    let events = s.ok("ListOperationTask", &[("TaskId", t["TaskId"].as_str().unwrap())]);
    assert_eq!(events["OperationTasks"][0]["Status"], "REPAIR_SUCCESS_VERIFIED");
}

fn creds_endpoint(creds: &str) -> String {
    serde_json::from_str::<Value>(creds).unwrap()["Endpoint"].as_str().unwrap().to_string()
}

#[test]
fn listings_page_and_filter() {
    let s = Server::start(&[]);
    let all = s.ok("ListCheckResult", &[("PageSize", "100")]);
    let total = all["PageInfo"]["TotalCount"].as_i64().unwrap();
    let catalog = catalog::Catalog::builtin().unwrap();
    assert_eq!(total as usize, catalog.all().count(), "every item of the catalog: the host items and the AWS items");
    // A page's items read only their own results; sorted by status, every item's are read:
    // both give each item the same status and counts.
    let mut by_status = std::collections::BTreeMap::new();
    for page in 1..=(total + 99) / 100 {
        let v = s.ok(
            "ListCheckResult",
            &[("SortTypes.1", "STATUS"), ("PageSize", "100"), ("CurrentPage", &page.to_string())],
        );
        for c in v["Checks"].as_array().unwrap() {
            by_status.insert(c["CheckId"].as_i64().unwrap(), (c["Status"].clone(), c["StatusCounts"].clone()));
        }
    }
    assert_eq!(by_status.len() as i64, total);
    let mut seen = Vec::new();
    for page in 1..=(total + 4) / 5 {
        let v = s.ok("ListCheckResult", &[("PageSize", "5"), ("CurrentPage", &page.to_string())]);
        for c in v["Checks"].as_array().unwrap() {
            let id = c["CheckId"].as_i64().unwrap();
            assert_eq!(by_status[&id], (c["Status"].clone(), c["StatusCounts"].clone()), "item {id}");
            seen.push(id);
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len() as i64, total);
    assert!(by_status.values().any(|(s, _)| s == "NOT_PASS") && by_status.values().any(|(s, _)| s == "PASS"));
    let high = s.ok("ListCheckResult", &[("RiskLevels.1", "HIGH"), ("PageSize", "100")]);
    assert!(high["Checks"].as_array().unwrap().iter().all(|c| c["RiskLevel"] == "HIGH"));
    let sorted = s.ok("ListCheckResult", &[("SortTypes.1", "STATUS"), ("PageSize", "100")]);
    assert_eq!(sorted["Checks"][0]["Status"], "NOT_PASS");
    let aws = s.ok("ListCheckResult", &[("Vendors.1", "AWS")]);
    assert_eq!(aws["PageInfo"]["TotalCount"], 0);
    let idc = s.ok("ListCheckResult", &[("Vendors.1", "2"), ("CheckIds.1", "1012")]);
    assert_eq!(idc["Checks"][0]["Vendor"], "IDC");
    let name = s.ok("ListCheckInstanceResult", &[("CheckId", "1001"), ("InstanceNameKey", "web")]);
    assert!(name["BasicData"].as_array().unwrap().iter().all(|r| r["InstanceName"].as_str().unwrap().contains("web")));
    let zh = s.ok("ListCheckResult", &[("CheckIds.1", "1001")]);
    assert!(zh["Checks"][0]["CheckShowName"].as_str().unwrap().contains("禁止"));
}

#[test]
fn posture_call_prints_answers_and_fails_on_errors() {
    let s = Server::start(&[]);
    let creds = s.data().join("credentials.json");
    let out = std::process::Command::new(common::bin())
        .args([
            "call",
            "GetCheckDetail",
            "--CheckId",
            "1016",
            "--Lang=en",
            "--credentials",
            creds.to_str().unwrap(),
            "--endpoint",
            &s.endpoint,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["RepairSetting"]["RepairConfigs"][0]["Name"], "IPPort");
    let out = std::process::Command::new(common::bin())
        .args([
            "call",
            "GetCheckDetail",
            "--CheckId",
            "9",
            "--credentials",
            creds.to_str().unwrap(),
            "--endpoint",
            &s.endpoint,
            "--signature",
            "v1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("InvalidCheckId.NotFound"));
}

#[test]
fn re_verification_is_throttled_per_item_and_instance_unless_forced() {
    let s = Server::start(&["--verify-interval-secs", "60"]);
    let p = [("CheckId", "1001"), ("InstanceIds.1", WEB01)];
    assert!(!s.ok("VerifyCheckInstanceResult", &p)["Data"]["TaskId"].as_str().unwrap().is_empty());
    let v = s.ok("VerifyCheckInstanceResult", &p);
    assert_eq!(v["Data"]["OperateCode"], "Throttling");
    let wait = v["Data"]["ThrottlingTimeSecond"].as_i64().unwrap();
    assert!((1..=60).contains(&wait), "{v}");
    let forced = s.ok("VerifyCheckInstanceResult", &[("CheckId", "1001"), ("InstanceIds.1", WEB01), ("Force", "true")]);
    assert!(forced["Data"].get("OperateCode").is_none(), "{forced}");
    // Another instance of the same item is not throttled; the whole item (no instances) is.
    assert!(s.ok("VerifyCheckInstanceResult", &[("CheckId", "1001"), ("InstanceIds.1", STAGING)])["Data"]
        .get("OperateCode")
        .is_none());
    assert_eq!(s.ok("VerifyCheckResult", &[("CheckIds.1", "1001")])["Data"]["OperateCode"], "Throttling");
}
