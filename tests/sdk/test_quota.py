"""Repair authorization, trial accounts and verification throttling, as the official Sas SDK
sees them: HTTP 200 answers carrying an OperateCode, and the quota operations."""
import subprocess

from conftest import posture_bin
from test_conformance import expect_error, make_client, wait_for_task

WEB01 = "i-bp1a2c3d4e5f6g7h8i9j"


def set_quota(server, repairs, trial=None):
    cmd = [posture_bin(), "accounts", "set-quota", "--data", str(server.data), "--account", server.credentials["AccountId"], "--repairs", str(repairs)]
    if trial is not None:
        cmd += ["--trial", "true" if trial else "false"]
    subprocess.run(cmd, check=True, capture_output=True)


def repair(client, check_id, instance=WEB01):
    return client.call("SubmitOperationTask", {"CheckId": check_id, "Type": "REPAIR", "OperationTaskInstances": [{"InstanceId": instance}]})


def test_authorization_exhaust_and_trial(server):
    client = make_client(server, "sas-sdk-v3")
    set_quota(server, 1)  # the running service sees it at once

    fix = client.call("CheckTrialFixCount", {"Type": "cve", "VulNames": ["posture"], "Uuids": [WEB01]})
    assert (fix["CanFix"], fix["ExpendCount"], fix["RemainCount"], fix["RepairedCount"], fix["isTrial"]) == (True, 1, 0, 0, False)

    first = repair(client, 1001)
    assert len(first["RootTaskId"]) == 32 and "OperateCode" not in first
    task = wait_for_task(client, 1001, first["RootTaskId"])
    assert task["Status"] == "REPAIR_SUCCESS_VERIFIED"

    over = repair(client, 1004)
    assert over.get("OperateCode") == "AuthorizationExhaust" and not over.get("RootTaskId"), over
    assert client.call("ListOperationTask", {"CheckId": 1004})["PageInfo"]["TotalCount"] == 0, "nothing was created"
    used = client.call("DescribeFixUsedCount")
    assert (used["UsedCount"], used["UsedCountCn"], used["UsedCountSg"]) == (1, 1, 0)
    fix = client.call("CheckTrialFixCount", {"Type": "cve", "VulNames": ["posture"]})
    assert (fix["CanFix"], fix["RemainCount"], fix["RepairedCount"]) == (False, 0, 1)

    # A rollback does not consume the authorization: undoing is always possible.
    rollback = client.call("SubmitOperationTask", {"CheckId": 1001, "Type": "ROLLBACK", "OperationTaskInstances": [{"InstanceId": WEB01, "TaskId": task["TaskId"]}]})
    assert wait_for_task(client, 1001, rollback["RootTaskId"])["Status"] == "ROLL_BACK_VERIFIED"

    set_quota(server, "unlimited", trial=True)
    trial = repair(client, 1004)
    assert trial.get("OperateCode") == "ActionTrialUnauthorized" and not trial.get("RootTaskId"), trial
    fix = client.call("CheckTrialFixCount", {"Type": "sys"})
    assert (fix["isTrial"], fix["CanFix"]) == (True, False)

    set_quota(server, "unlimited", trial=False)
    assert len(repair(client, 1004)["RootTaskId"]) == 32


def test_reverifying_too_often_is_throttled_unless_forced(server):
    client = make_client(server, "sas-sdk-v3")
    first = client.call("VerifyCheckResult", {"CheckIds": [1001]})
    assert first["Data"]["TaskId"] and "OperateCode" not in first["Data"]
    again = client.call("VerifyCheckResult", {"CheckIds": [1001]})
    assert again["Data"]["OperateCode"] == "Throttling" and again["Data"]["ThrottlingTimeSecond"] > 0, again
    forced = client.call("VerifyCheckResult", {"CheckIds": [1001], "Force": True})
    assert forced["Data"]["TaskId"] and "OperateCode" not in forced["Data"]
    other_item = client.call("VerifyCheckResult", {"CheckIds": [1004]})
    assert other_item["Data"]["TaskId"], "another item is not throttled"
    # The SDK's VerifyCheckInstanceResult has no Force field: it is throttled the same way
    # (posture accepts Force there too; crates/posture/tests covers it).
    inst = client.call("VerifyCheckInstanceResult", {"CheckId": 1001, "InstanceIds": [WEB01]})
    assert inst["Data"]["OperateCode"] == "Throttling" and inst["Data"]["TaskId"] == ""


def test_quota_errors_are_clear(server):
    client = make_client(server, "sas-sdk-v3")
    from test_conformance import expect_error
    expect_error(lambda: client.call("CheckTrialFixCount", {}), "MissingParameter", 400)
    expect_error(lambda: client.call("CheckTrialFixCount", {"Type": "kernel"}), "InvalidParameter", 400)
    expect_error(lambda: client.call("CheckTrialFixCount", {"Type": "cve", "Info": "not json"}), "InvalidParameter", 400)


def test_an_account_wide_instance_limit_refuses_a_larger_submission(server):
    client = make_client(server, "sas-sdk-v3")
    limit = lambda value: subprocess.run(  # noqa: E731
        [posture_bin(), "accounts", "set-limits", "--data", str(server.data), "--account", server.credentials["AccountId"],
         "--max-instances", str(value)], check=True, capture_output=True)
    failing = client.call("ListCheckInstanceResult", {"CheckId": 1001, "Statuses": ["NOT_PASS"], "PageSize": 100})["BasicData"]
    assert len(failing) >= 2
    limit(1)
    every_failing = {"CheckId": 1001, "Type": "REPAIR", "DimensionType": "CHECK_ID"}
    e = expect_error(lambda: client.call("SubmitOperationTask", every_failing), "InstanceLimitExceeded", 400)
    assert f"touch {len(failing)} instances" in e.message and "at most 1" in e.message
    assert client.call("ListOperationTask", {"CheckId": 1001})["PageInfo"]["TotalCount"] == 0, "nothing was submitted"
    one = repair(client, 1001, failing[0]["InstanceId"])
    assert wait_for_task(client, 1001, one["RootTaskId"])["Status"] == "REPAIR_SUCCESS_VERIFIED"
    limit("unlimited")
    assert client.call("SubmitOperationTask", every_failing)["RootTaskId"]
    bad = subprocess.run([posture_bin(), "accounts", "set-limits", "--data", str(server.data), "--account",
                          server.credentials["AccountId"], "--max-instances", "0"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--max-instances" in bad.stderr
