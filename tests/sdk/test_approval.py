"""Approval over real HTTP (the core SDK's CommonRequest, as for any action an SDK does not
model), with two Admin keys and an Operator key: where an account requires approval, a repair
waits in WAIT_APPROVAL and changes nothing; the key that submitted it cannot approve it
(two-person rule), an Operator key cannot either; another Admin key's approval lets it run and
verify; a rejection and an unanswered wait (past the account's expiry) end it CANCELLED with the
file untouched; an item may say otherwise than its account."""
import json
import subprocess
import time

from conftest import Server, posture_bin
from test_conformance import expect_error, make_client

WEB01 = "i-bp1a2c3d4e5f6g7h8i9j"
FINAL = {"REPAIR_SUCCESS_VERIFIED", "REPAIR_SUCCESS_UNVERIFIED", "REPAIR_FAIL", "BACKUP_FAIL", "FAIL", "CANCELLED"}


def cli(server, *args):
    return json.loads(subprocess.run([posture_bin(), *args, "--data", str(server.data)],
                                     check=True, capture_output=True, text=True).stdout)


def key(server, policy):
    made = cli(server, "keys", "create", "--account", server.credentials["AccountId"], "--policy", policy)
    return make_client(server, "aliyun-python-sdk-core", made["AccessKeyId"], made["AccessKeySecret"]), made["AccessKeyId"]


def repair(client, check_id):
    return client.call("SubmitOperationTask", {"CheckId": check_id, "Type": "REPAIR",
                                               "OperationTaskInstances": [{"InstanceId": WEB01}]})["RootTaskId"]


def task_of(client, check_id, root):
    (row,) = [r for r in client.call("ListOperationTask", {"CheckId": check_id, "PageSize": 100})["OperationTasks"]
              if r["RootTaskId"] == root]
    return row


def wait_for(client, check_id, root, statuses, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        row = task_of(client, check_id, root)
        if row["Status"] in statuses:
            return row
        time.sleep(0.1)
    raise AssertionError(f"root {root} did not reach {statuses}: {row}")


def test_two_keys_approve_reject_and_expire(tmp_path):
    s = Server(tmp_path / "data", args=("--demo-fleet", "roots"))
    try:
        submitter = make_client(s, "aliyun-python-sdk-core")
        approver, approver_id = key(s, "Admin")
        operator, _ = key(s, "Operator")
        sshd = s.fleet_file(WEB01, "etc/ssh/sshd_config")
        defs = s.fleet_file(WEB01, "etc/login.defs")
        before_sshd, before_defs = sshd.read_bytes(), defs.read_bytes()
        assert cli(s, "accounts", "set-approval", "--account", s.credentials["AccountId"], "--required", "true")["Required"]

        root = repair(submitter, 1001)
        row = task_of(submitter, 1001, root)
        assert row["Status"] == "WAIT_APPROVAL", row
        assert row["Approval"]["SubmittedBy"] == s.credentials["AccessKeyId"] and row["Approval"]["ExpiresAt"] > time.time() * 1000
        time.sleep(1.5)
        assert task_of(submitter, 1001, root)["Status"] == "WAIT_APPROVAL" and sshd.read_bytes() == before_sshd, "it waits"
        expect_error(lambda: submitter.call("ApproveOperationTask", {"RootTaskId": root}), "ApprovalBySubmitter", 403)
        expect_error(lambda: submitter.call("RejectOperationTask", {"RootTaskId": root}), "ApprovalBySubmitter", 403)
        expect_error(lambda: operator.call("ApproveOperationTask", {"RootTaskId": root}), "NoPermission", 403)
        expect_error(lambda: approver.call("ApproveOperationTask", {"RootTaskId": "f" * 32}), "InvalidTaskId.NotFound", 404)
        (decided,) = approver.call("ApproveOperationTask", {"RootTaskId": root})["Tasks"]
        assert (decided["InstanceId"], decided["Decision"]) == (WEB01, "APPROVED"), decided
        done = wait_for(submitter, 1001, root, FINAL)
        assert done["Status"] == "REPAIR_SUCCESS_VERIFIED", done
        assert b"PermitRootLogin no" in sshd.read_bytes()
        history = submitter.call("DescribeOperationTaskHistory", {"TaskId": done["TaskId"]})["History"]
        assert (history[0]["Status"], history[0]["Actor"]) == ("WAIT_APPROVAL", s.credentials["AccessKeyId"]), history
        assert (history[1]["Status"], history[1]["Actor"]) == ("INIT", approver_id), history
        # A second decision changes nothing.
        assert approver.call("RejectOperationTask", {"RootTaskId": root})["Tasks"][0]["Decision"] == "UNCHANGED"

        # Rejected: cancelled, the file untouched.
        root = repair(submitter, 1009)
        assert approver.call("RejectOperationTask", {"RootTaskId": root})["Tasks"][0]["Decision"] == "REJECTED"
        row = task_of(submitter, 1009, root)
        assert (row["Status"], row["ErrorCode"]) == ("CANCELLED", "ApprovalRejected"), row
        assert defs.read_bytes() == before_defs

        # Unanswered past the expiry: cancelled by the service.
        expect_error(lambda: approver.call("ModifyApprovalConfig", {"Expiry": "0s"}), "InvalidParameter", 400)
        assert approver.call("ModifyApprovalConfig", {"Expiry": "2s"})["ExpirySeconds"] == 2
        root = repair(submitter, 1009)
        row = wait_for(submitter, 1009, root, FINAL, timeout=15)
        assert (row["Status"], row["ErrorCode"]) == ("CANCELLED", "ApprovalExpired"), row
        history = submitter.call("DescribeOperationTaskHistory", {"TaskId": row["TaskId"]})["History"]
        assert history[-1]["Actor"] == "posture", history
        assert defs.read_bytes() == before_defs

        # An item may say otherwise: 1009 runs at once, the account still requires approval.
        config = approver.call("ModifyApprovalConfig", {"CheckId": 1009, "Required": "false"})
        assert config["Items"] == [{"CheckId": 1009, "Required": False}] and config["Required"] is True
        described = approver.call("DescribeApprovalConfig", {})
        assert {k: v for k, v in described.items() if k != "RequestId"} == {k: v for k, v in config.items() if k != "RequestId"}
        assert described == {**described, "Required": True, "ExpirySeconds": 2}
        root = repair(submitter, 1009)
        assert wait_for(submitter, 1009, root, FINAL)["Status"] == "REPAIR_SUCCESS_VERIFIED"
        expect_error(lambda: operator.call("ModifyApprovalConfig", {"Required": "false"}), "NoPermission", 403)
        # Every decision is in the audit trail, by who made it.
        trail = submitter.call("DescribeAuditLog", {"ActionName": "ApproveOperationTask"})["Records"]
        assert {(r["Actor"], r["Outcome"]) for r in trail} >= {(approver_id, "OK"), (s.credentials["AccessKeyId"], "ApprovalBySubmitter")}
    finally:
        s.stop()
