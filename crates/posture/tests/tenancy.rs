//! Accounts, keys and permissions over real HTTP and the real command line, with the service
//! running: policies, disabled and deleted keys, secrets at rest, and the two-account isolation
//! suite (nothing of B is reachable with A's key, not even by guessing ids).

mod common;

use common::{posture, read, Client, Server};
use serde_json::Value;

const WEB01: &str = "i-bp1a2c3d4e5f6g7h8i9j";

fn new_key(s: &Server, account: &str, policy: &str) -> Client {
    let k = s.admin("keys", "create", &["--account", account, "--policy", policy]);
    s.with_key(k["AccessKeyId"].as_str().unwrap(), k["AccessKeySecret"].as_str().unwrap())
}

#[test]
fn policies_disabled_and_deleted_keys() {
    let s = Server::start(&[]);
    let account = s.account_id.clone();
    let ro = new_key(&s, &account, "ReadOnly");
    ro.ok("ListCheckResult", &[]);
    let v = ro.err(
        "SubmitOperationTask",
        &[("CheckId", "1001"), ("Type", "REPAIR"), ("OperationTaskInstances.1.InstanceId", WEB01)],
        403,
        "NoPermission",
    );
    assert_eq!(v["Message"], "caller has no permission");
    let custom = new_key(&s, &account, "List*,GetCheckDetail");
    custom.ok("GetCheckDetail", &[("CheckId", "1001")]);
    custom.err("SubmitCheck", &[], 403, "NoPermission");
    let op = new_key(&s, &account, "Operator");
    op.ok("VerifyCheckResult", &[("CheckIds.1", "1001")]);

    // The service sees key changes made beside it at once.
    let id = ro.creds.access_key_id.clone();
    s.admin("keys", "disable", &["--key", &id]);
    ro.err("ListCheckResult", &[], 400, "InvalidAccessKeyId.Inactive");
    s.admin("keys", "enable", &["--key", &id]);
    ro.ok("ListCheckResult", &[]);
    let listed = s.admin("keys", "list", &["--account", &account]);
    assert_eq!(listed.as_array().unwrap().len(), 4);
    assert!(!listed.to_string().contains(&ro.creds.access_key_secret), "secrets are never listed");
    s.admin("keys", "delete", &["--key", &id]);
    ro.err("ListCheckResult", &[], 404, "InvalidAccessKeyId.NotFound");

    // Bad administration input: a clear error, exit 1, nothing created.
    let data = s.data();
    let (code, _, err) = posture(&[
        "keys",
        "create",
        "--data",
        data.to_str().unwrap(),
        "--account",
        &account,
        "--policy",
        "List*;rm -rf",
    ]);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) =
        posture(&["keys", "create", "--data", data.to_str().unwrap(), "--account", "1234", "--policy", "Admin"]);
    assert_eq!((code, err.contains("no account 1234")), (1, true), "{err}");
    let (code, _, err) =
        posture(&["accounts", "set-quota", "--data", data.to_str().unwrap(), "--account", &account, "--repairs=-3"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(s.admin("keys", "list", &[]).as_array().unwrap().len(), 3);
}

#[test]
fn secrets_are_sealed_at_rest() {
    let mut s = Server::start(&[]);
    let secret = s.creds.access_key_secret.clone();
    s.stop();
    for f in ["posture.db", "posture.db-wal"] {
        let bytes = std::fs::read(s.data().join(f)).unwrap_or_default();
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{f} holds the secret");
    }
    for (f, mode) in [("credentials.json", 0o600), ("master.key", 0o600)] {
        let m = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(s.data().join(f)).unwrap().permissions());
        assert_eq!(m & 0o777, mode, "{f}");
    }
    // Without master.key the database is refused with a clear message, and nothing is lost.
    std::fs::rename(s.data().join("master.key"), s.dir.path().join("master.key.aside")).unwrap();
    let data = s.data();
    let (code, _, err) = posture(&["keys", "list", "--data", data.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("master.key"), "{err}");
    std::fs::rename(s.dir.path().join("master.key.aside"), s.data().join("master.key")).unwrap();
    s.spawn(&[]);
    s.ok("ListCheckResult", &[]);
}

#[test]
fn one_account_cannot_reach_another() {
    let s = Server::start(&[]);
    let a = s.client();
    let b_id = s.admin("accounts", "create", &["--name", "tenant-b"])["AccountId"].as_str().unwrap().to_string();
    let b = new_key(&s, &b_id, "Admin");

    // B's servers: a copy of web-01 under the same InstanceId, and one only B has.
    let b_root = s.dir.path().join("fleet-b");
    for (id, from) in [(WEB01, WEB01), ("i-bonly", "c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6")] {
        common::copy_tree(&s.fleet(from, ""), &b_root.join(id));
    }
    let lines = format!(
        "{{\"InstanceId\":\"{WEB01}\",\"RegionId\":\"cn-hangzhou\",\"Vendor\":0,\"Root\":\"{}\"}}\n{{\"InstanceId\":\"i-bonly\",\"RegionId\":\"cn-beijing\",\"Vendor\":\"IDC\",\"Root\":\"{}\"}}\n",
        b_root.join(WEB01).display(),
        b_root.join("i-bonly").display()
    );
    let file = s.dir.path().join("b.jsonl");
    std::fs::write(&file, lines).unwrap();
    s.admin("instances", "add", &["--account", &b_id, "--file", file.to_str().unwrap()]);
    let run = b.ok("SubmitCheck", &[])["TaskId"].as_str().unwrap().to_string();
    wait_run(&b, &run);
    assert_eq!(b.ok("ListCheckInstanceResult", &[("CheckId", "1001")])["PageInfo"]["TotalCount"], 2);

    // Results, instances, runs.
    assert_eq!(
        a.ok("ListCheckInstanceResult", &[("CheckId", "1001"), ("InstanceIds.1", "i-bonly")])["PageInfo"]["TotalCount"],
        0
    );
    assert_eq!(a.ok("ListCheckResult", &[("InstanceIds.1", "i-bonly")])["PageInfo"]["TotalCount"], 0);
    let v = a.ok("VerifyCheckInstanceResult", &[("CheckId", "1001"), ("InstanceIds.1", "i-bonly"), ("Force", "true")]);
    assert_eq!(v["Data"]["FailInstances"][0], "i-bonly");
    assert_eq!(a.ok("GetCheckProcess", &[("TaskId", &run)])["StatusCode"], "5");
    assert_eq!(a.ok("ListOperationProcess", &[("TaskIds.1", &run)])["PageInfo"]["TotalCount"], 0);
    assert_eq!(a.ok("ListOperationProcessDetail", &[("TaskIds.1", &run)])["PageInfo"]["TotalCount"], 0);

    // Tasks: B repairs; A can neither see, nor roll back, nor repair B's instance.
    let root = b.ok(
        "SubmitOperationTask",
        &[("CheckId", "1001"), ("Type", "REPAIR"), ("OperationTaskInstances.1.InstanceId", "i-bonly")],
    )["RootTaskId"]
        .as_str()
        .unwrap()
        .to_string();
    let b_task = wait_root(&b, 1001, &root);
    assert_eq!(b_task["Status"], "REPAIR_SUCCESS_VERIFIED");
    let b_task_id = b_task["TaskId"].as_str().unwrap();
    assert_eq!(a.ok("ListOperationTask", &[("TaskId", b_task_id)])["PageInfo"]["TotalCount"], 0);
    a.err(
        "SubmitOperationTask",
        &[("CheckId", "1001"), ("Type", "REPAIR"), ("OperationTaskInstances.1.InstanceId", "i-bonly")],
        404,
        "InvalidInstance.NotFound",
    );
    a.err(
        "SubmitOperationTask",
        &[
            ("CheckId", "1001"),
            ("Type", "ROLLBACK"),
            ("OperationTaskInstances.1.InstanceId", WEB01),
            ("OperationTaskInstances.1.TaskId", b_task_id),
        ],
        404,
        "InvalidTaskId.NotFound",
    );
    let history = a.ok(
        "ListOperationCheck",
        &[("CheckId", "1001"), ("Type", "REPAIR"), ("OperationTaskInstances.1.InstanceId", "i-bonly")],
    );
    assert_eq!(history["OperationTaskInstanceDetails"].as_array().unwrap().len(), 0);

    // The same InstanceId in both accounts is two instances: A's repair touches only A's file.
    let b_web01 = read(&b_root.join(WEB01).join("etc/ssh/sshd_config"));
    let root = a.ok(
        "SubmitOperationTask",
        &[("CheckId", "1001"), ("Type", "REPAIR"), ("OperationTaskInstances.1.InstanceId", WEB01)],
    )["RootTaskId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(wait_root(&a, 1001, &root)["Status"], "REPAIR_SUCCESS_VERIFIED");
    assert_eq!(read(&b_root.join(WEB01).join("etc/ssh/sshd_config")), b_web01);
    assert!(read(&s.fleet(WEB01, "etc/ssh/sshd_config")).contains("PermitRootLogin no"));

    // Selections: B's key, BusinessType and targets are invisible to A.
    let sel = b.ok(
        "CreateAssetSelectionConfig",
        &[("BusinessType", "CSPM_OPERATION_RELATION_KEY_7"), ("TargetType", "instance")],
    );
    let b_key = sel["Data"]["SelectionKey"].as_str().unwrap().to_string();
    b.ok(
        "AddAssetSelectionCriteria",
        &[
            ("SelectionKey", &b_key),
            ("TargetOperationList.1.Target", "i-bonly"),
            ("TargetOperationList.1.Operation", "add"),
        ],
    );
    a.err(
        "GetAssetSelectionConfig",
        &[("BusinessType", "CSPM_OPERATION_RELATION_KEY_7")],
        404,
        "InvalidBusinessType.NotFound",
    );
    a.err("ListAssetSelectionTarget", &[("SelectionKey", &b_key)], 404, "InvalidSelectionKey.NotFound");
    a.err(
        "AddAssetSelectionCriteria",
        &[("SelectionKey", &b_key), ("TargetOperationList.1.Target", WEB01)],
        404,
        "InvalidSelectionKey.NotFound",
    );
    a.err(
        "SubmitOperationTask",
        &[("CheckId", "1004"), ("Type", "REPAIR"), ("RelationKey", "CSPM_OPERATION_RELATION_KEY_7")],
        404,
        "InvalidRelationKey.NotFound",
    );
    let mine = a.ok(
        "CreateAssetSelectionConfig",
        &[("BusinessType", "CSPM_OPERATION_RELATION_KEY_7"), ("TargetType", "instance")],
    );
    assert_ne!(
        mine["Data"]["SelectionKey"],
        b_key.as_str(),
        "the same BusinessType in another account is another selection"
    );
    a.err(
        "AddAssetSelectionCriteria",
        &[
            ("SelectionKey", mine["Data"]["SelectionKey"].as_str().unwrap()),
            ("TargetOperationList.1.Target", "i-bonly"),
        ],
        404,
        "InvalidInstance.NotFound",
    );

    // Whitelists.
    a.err(
        "AddCheckInstanceResultWhiteList",
        &[("CheckId", "1004"), ("InstanceIds.1", "i-bonly")],
        404,
        "InvalidInstance.NotFound",
    );
    let rule = b.ok("AddCheckResultWhiteList", &[("CheckIds.1", "1004"), ("InstanceIds.1", "i-bonly")])["RuleIds"][0]
        .as_i64()
        .unwrap()
        .to_string();
    a.err("RemoveCheckResultWhiteList", &[("RuleId", &rule)], 404, "InvalidRuleId.NotFound");
    let b_view = b.ok("ListCheckInstanceResult", &[("CheckId", "1004"), ("InstanceIds.1", "i-bonly")]);
    assert_eq!(b_view["BasicData"][0]["Status"], "WHITELIST", "A's attempt removed nothing");
    // Quota is per account.
    s.admin("accounts", "set-quota", &["--account", &b_id, "--repairs", "0"]);
    let v = b.ok(
        "SubmitOperationTask",
        &[("CheckId", "1004"), ("Type", "REPAIR"), ("OperationTaskInstances.1.InstanceId", WEB01)],
    );
    assert_eq!(v["OperateCode"], "AuthorizationExhaust");
    let v = a.ok(
        "SubmitOperationTask",
        &[("CheckId", "1004"), ("Type", "REPAIR"), ("OperationTaskInstances.1.InstanceId", WEB01)],
    );
    assert!(v["RootTaskId"].is_string(), "{v}");
}

fn wait_run(c: &Client, run: &str) {
    for _ in 0..1000 {
        if c.ok("GetCheckProcess", &[("TaskId", run)])["StatusCode"] == "2" {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("run {run} did not finish");
}

fn wait_root(c: &Client, check: i64, root: &str) -> Value {
    for _ in 0..1000 {
        let v = c.ok("ListOperationTask", &[("CheckId", &check.to_string()), ("PageSize", "100")]);
        if let Some(t) = v["OperationTasks"].as_array().unwrap().iter().find(|t| t["RootTaskId"] == root) {
            if model::TaskStatus::parse(t["Status"].as_str().unwrap()).is_some_and(|s| s.is_terminal()) {
                return t.clone();
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("root {root} did not finish");
}

#[test]
fn a_repair_that_changed_nothing_gives_its_authorization_back() {
    let s = Server::start(&[]);
    let file = s.dir.path().join("gone.jsonl");
    std::fs::write(
        &file,
        "{\"InstanceId\":\"i-gone\",\"RegionId\":\"cn-hangzhou\",\"Root\":\"/nonexistent/posture/i-gone\"}\n",
    )
    .unwrap();
    s.admin("instances", "add", &["--account", &s.account_id, "--file", file.to_str().unwrap()]);
    s.admin("accounts", "set-quota", &["--account", &s.account_id, "--repairs", "1"]);
    let root = s.ok(
        "SubmitOperationTask",
        &[("CheckId", "1001"), ("Type", "REPAIR"), ("OperationTaskInstances.1.InstanceId", "i-gone")],
    )["RootTaskId"]
        .as_str()
        .unwrap()
        .to_string();
    let t = s.wait_root(1001, &root);
    assert_eq!(t[0]["Status"], "BACKUP_FAIL");
    // The failed repair changed nothing: the one authorized repair is still there.
    let v = s.ok(
        "SubmitOperationTask",
        &[("CheckId", "1001"), ("Type", "REPAIR"), ("OperationTaskInstances.1.InstanceId", WEB01)],
    );
    assert!(v["RootTaskId"].is_string(), "{v}");
    let v = s.ok(
        "SubmitOperationTask",
        &[("CheckId", "1004"), ("Type", "REPAIR"), ("OperationTaskInstances.1.InstanceId", WEB01)],
    );
    assert_eq!(v["OperateCode"], "AuthorizationExhaust");
}
