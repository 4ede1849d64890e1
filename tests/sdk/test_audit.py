"""The audit trail over real HTTP (DescribeAuditLog through the core SDK's CommonRequest, and
`posture audit`): every call that may change something is recorded — done or refused, by which
key, from where, with its parameters — and reads are not; administration commands are recorded
as the command line's; only an Admin key reads the trail."""
import json
import subprocess

from conftest import posture_bin
from test_conformance import expect_error, make_client

WEB01 = "i-bp1a2c3d4e5f6g7h8i9j"


def cli(server, *args):
    out = subprocess.run([posture_bin(), *args, "--data", str(server.data)], check=True, capture_output=True, text=True)
    return out.stdout


def new_key(server, policy):
    return json.loads(cli(server, "keys", "create", "--account", server.credentials["AccountId"], "--policy", policy))


def test_every_call_that_may_change_something_is_recorded_and_reads_are_not(server):
    admin = make_client(server, "aliyun-python-sdk-core")
    reader_key = new_key(server, "ReadOnly")
    operator_key = new_key(server, "Operator")
    reader = make_client(server, "aliyun-python-sdk-core", reader_key["AccessKeyId"], reader_key["AccessKeySecret"])
    operator = make_client(server, "aliyun-python-sdk-core", operator_key["AccessKeyId"], operator_key["AccessKeySecret"])

    root = admin.call("SubmitOperationTask", {"CheckId": 1001, "Type": "REPAIR",
                                              "OperationTaskInstances": [{"InstanceId": WEB01}]})["RootTaskId"]
    expect_error(lambda: admin.call("CancelOperationTask", {"RootTaskId": "f" * 32}), "InvalidTaskId.NotFound", 404)
    expect_error(lambda: reader.call("SubmitOperationTask", {"CheckId": 1001, "Type": "REPAIR", "DimensionType": "CHECK_ID"}),
                 "NoPermission", 403)
    admin.call("ListCheckResult", {})
    operator.call("ListOperationTask", {})
    # Only an Admin key reads the trail (ReadOnly and Operator match Describe* but not this).
    expect_error(lambda: reader.call("DescribeAuditLog", {}), "NoPermission", 403)
    expect_error(lambda: operator.call("DescribeAuditLog", {}), "NoPermission", 403)

    records = admin.call("DescribeAuditLog", {"PageSize": 100})["Records"]
    calls = [(r["ActionName"], r["Actor"], r["Outcome"]) for r in records]
    me = server.credentials["AccessKeyId"]
    # Newest first; the refusals of the trail itself are recorded too (they are reads, so not).
    assert calls[:3] == [("SubmitOperationTask", reader_key["AccessKeyId"], "NoPermission"),
                         ("CancelOperationTask", me, "InvalidTaskId.NotFound"),
                         ("SubmitOperationTask", me, "OK")], calls
    assert not any(a in ("ListCheckResult", "ListOperationTask", "DescribeAuditLog") for a, _, _ in calls)
    submit = records[2]
    assert submit["SourceIp"] == "127.0.0.1" and len(submit["RequestId"]) == 36, submit
    assert submit["Parameters"] == {"CheckId": "1001", "Type": "REPAIR", "OperationTaskInstances.1.InstanceId": WEB01}
    assert "Signature" not in json.dumps(records) and server.credentials["AccessKeySecret"] not in json.dumps(records)
    # The command line's changes are recorded as its own (the keys made above).
    keys = [r for r in records if r["ActionName"] == "KeysCreate"]
    assert len(keys) == 2 and all(r["Actor"].startswith("cli:") and r["SourceIp"] == "local" for r in keys), keys
    assert {r["Parameters"]["Policy"] for r in keys} == {"ReadOnly", "Operator"}
    assert all(k["AccessKeySecret"] not in json.dumps(records) for k in (reader_key, operator_key))
    # Filters and paging.
    failed = admin.call("DescribeAuditLog", {"Outcome": "FAILED"})["Records"]
    assert {r["Outcome"] for r in failed} == {"InvalidTaskId.NotFound", "NoPermission"}
    mine = admin.call("DescribeAuditLog", {"Actor": reader_key["AccessKeyId"]})
    assert mine["PageInfo"]["TotalCount"] == 1
    page = admin.call("DescribeAuditLog", {"ActionName": "SubmitOperationTask", "PageSize": 1, "CurrentPage": 2})
    assert page["PageInfo"]["TotalCount"] == 2 and page["Records"][0]["Outcome"] == "OK"
    expect_error(lambda: admin.call("DescribeAuditLog", {"StartTime": "yesterday"}), "InvalidParameter", 400)

    # `posture audit` prints the same trail.
    lines = cli(server, "audit", "--account", server.credentials["AccountId"], "--action", "SubmitOperationTask").splitlines()
    assert len(lines) == 2 and "NoPermission" in lines[0] and root not in lines[0], lines
    as_json = json.loads(cli(server, "audit", "--account", server.credentials["AccountId"], "--json", "--limit", "1"))
    assert as_json[0]["Id"] == records[0]["Id"]
