"""Auto-remediation over real HTTP (CreateAutoRemediation, ListAutoRemediations,
DeleteAutoRemediation through the core SDK's CommonRequest): after a check run, a rule repairs
its item's failing instances (its tasks submitted by auto:<RuleId>); once a person rolls one of
those repairs back, the next runs leave that instance alone and say why in the audit trail;
where the account requires approval, the rule's repairs wait for it like anyone's."""
import json
import subprocess
import time

from conftest import Server, posture_bin
from test_conformance import expect_error, make_client, wait_for_task

FINAL = {"REPAIR_SUCCESS_VERIFIED", "REPAIR_SUCCESS_UNVERIFIED", "REPAIR_FAIL", "BACKUP_FAIL", "FAIL", "CANCELLED"}


def check_and_wait(client, timeout=60):
    task_id = client.call("SubmitCheck", {})["TaskId"]
    deadline = time.time() + timeout
    while client.call("GetCheckProcess", {"TaskId": task_id})["StatusCode"] not in ("2", "4"):
        assert time.time() < deadline, "the check run did not end"
        time.sleep(0.2)


def tasks_of(client, check_id):
    return client.call("ListOperationTask", {"CheckId": check_id, "Type": "REPAIR", "PageSize": 100})["OperationTasks"]


def wait_for(condition, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError("timed out")


def test_a_rule_repairs_after_each_run_and_never_fights_a_rollback(tmp_path):
    s = Server(tmp_path / "data", args=("--demo-fleet", "roots"))
    try:
        client = make_client(s, "aliyun-python-sdk-core")
        failing = {r["InstanceId"] for r in client.call("ListCheckInstanceResult", {
            "CheckId": 1009, "Statuses": ["NOT_PASS"], "PageSize": 100})["BasicData"]}
        assert len(failing) >= 2, failing
        expect_error(lambda: client.call("CreateAutoRemediation", {"CheckId": 999999}), "InvalidCheckId.NotFound", 404)
        expect_error(lambda: client.call("CreateAutoRemediation", {"CheckId": 1009, "MaxConcurrency": "0"}), "InvalidParameter", 400)
        rule = client.call("CreateAutoRemediation", {"CheckId": 1009, "MaxConcurrency": "2"})["RuleId"]
        (listed,) = client.call("ListAutoRemediations", {})["Rules"]
        assert (listed["RuleId"], listed["CheckId"], listed["MaxConcurrency"]) == (rule, 1009, 2), listed

        check_and_wait(client)
        done = wait_for(lambda: (t := tasks_of(client, 1009)) and len(t) == len(failing) and all(x["Status"] in FINAL for x in t) and t)
        assert {t["InstanceId"] for t in done} == failing and all(t["Status"] == "REPAIR_SUCCESS_VERIFIED" for t in done), done
        history = client.call("DescribeOperationTaskHistory", {"TaskId": done[0]["TaskId"]})["History"]
        assert history[0]["Actor"] == f"auto:{rule}", history

        # A person undoes one of them: the rule leaves that instance alone from then on.
        undone = done[0]
        rollback = client.call("SubmitOperationTask", {"CheckId": 1009, "Type": "ROLLBACK", "OperationTaskInstances": [
            {"InstanceId": undone["InstanceId"], "RegionId": undone["RegionId"], "TaskId": undone["TaskId"]}]})
        assert wait_for_task(client, 1009, rollback["RootTaskId"])["Status"] == "ROLL_BACK_VERIFIED"
        check_and_wait(client)
        trail = wait_for(lambda: [r for r in client.call("DescribeAuditLog", {"ActionName": "AutoRemediation"})["Records"]
                                  if r["Parameters"]["LeftAlone"]])
        record = trail[0]
        assert record["Actor"] == f"auto:{rule}" and record["Parameters"]["Instances"] == 0, record
        (left,) = record["Parameters"]["LeftAlone"]
        assert left["InstanceId"] == undone["InstanceId"] and s.credentials["AccessKeyId"] in left["Reason"], left
        assert len(tasks_of(client, 1009)) == len(failing), "no new repair of the instance a person rolled back"

        # Past the account's limit on one submission, a rule repairs that many at each run.
        def admin(*args):
            subprocess.run([posture_bin(), "accounts", *args, "--data", str(s.data), "--account",
                            s.credentials["AccountId"]], check=True, capture_output=True)
        failing_1010 = client.call("ListCheckInstanceResult", {"CheckId": 1010, "Statuses": ["NOT_PASS"]})["BasicData"]
        assert len(failing_1010) >= 3, failing_1010
        admin("set-limits", "--max-instances", "1")
        client.call("CreateAutoRemediation", {"CheckId": 1010})
        for n in (1, 2):
            check_and_wait(client)
            wait_for(lambda: len(tasks_of(client, 1010)) == n and all(t["Status"] in FINAL for t in tasks_of(client, 1010)))
        admin("set-limits", "--max-instances", "unlimited")

        # Where approval is required, the rule's repairs wait for it like anyone's.
        admin("set-approval", "--required", "true")
        check_and_wait(client)
        waiting = wait_for(lambda: [t for t in tasks_of(client, 1010) if t["Status"] == "WAIT_APPROVAL"])
        assert len(waiting) == len(failing_1010) - 2, waiting
        # The rule's repairs are its creator's: that key may not approve them (two-person rule).
        expect_error(lambda: client.call("ApproveOperationTask", {"RootTaskId": waiting[0]["RootTaskId"]}),
                     "ApprovalBySubmitter", 403)

        assert client.call("DeleteAutoRemediation", {"RuleId": rule})["Deleted"]
        expect_error(lambda: client.call("DeleteAutoRemediation", {"RuleId": rule}), "AutoRemediationNotFound", 404)
    finally:
        s.stop()
