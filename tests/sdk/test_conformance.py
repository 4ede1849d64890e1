"""SDK conformance: the official clients, unchanged, drive posture over HTTP on loopback.

The full configuration-assessment flow (find → detail → repair with a missing / malformed /
valid IPPort → verified → the file really changed → rollback → the original bytes → a second
rollback refused), and every gateway error, as each client reports it."""
import datetime
import json
import time

import pytest
from alibabacloud_tea_openapi.utils import Utils

from clients import ApiError, CoreSdk, SasSdk

# Each flow repairs a different insecure Redis of the demo fleet.
FLOWS = {
    "sas-sdk-v3": ("web-01", "10.0.0.5:6390"),
    "sas-sdk-v1": ("staging", "127.0.0.1:6379"),
    "aliyun-python-sdk-core": ("idc-build-01", "[::1]:6381"),
}
REDIS_CHECK = 1016


def make_client(server, kind, key_id=None, secret=None, ca=None):
    """A client of `kind` for the server (over HTTPS when it serves TLS, trusting `ca`, by
    default the CA it was given)."""
    c = server.credentials
    key_id = key_id or c["AccessKeyId"]
    secret = secret or c["AccessKeySecret"]
    ca = ca or getattr(server, "ca", None)
    ca = str(ca) if ca else None
    if kind == "aliyun-python-sdk-core":
        return CoreSdk(server.endpoint, key_id, secret, ca=ca)
    return SasSdk(server.endpoint, key_id, secret, signature=kind.rsplit("-", 1)[1], ca=ca)


def expect_error(fn, code, status=None):
    with pytest.raises(ApiError) as e:
        fn()
    assert e.value.code == code, str(e.value)
    if status is not None:
        assert e.value.status == status, str(e.value)
    return e.value


def wait_for_task(client, check_id, root_task_id, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        rows = client.call("ListOperationTask", {"CheckId": check_id, "PageSize": 100})["OperationTasks"]
        mine = [r for r in rows if r["RootTaskId"] == root_task_id]
        assert len(mine) == 1, rows
        if mine[0]["Status"] in ("REPAIR_SUCCESS_VERIFIED", "REPAIR_SUCCESS_UNVERIFIED", "REPAIR_FAIL", "BACKUP_FAIL",
                                 "FAIL", "ROLL_BACK_VERIFIED", "ROLL_BACK_UNVERIFIED", "ROLL_BACK_FAIL"):
            return mine[0]
        time.sleep(0.05)
    raise AssertionError(f"task of root {root_task_id} did not finish")


def instance_status(client, instance_id):
    r = client.call("ListCheckInstanceResult", {"CheckId": REDIS_CHECK, "InstanceIds": [instance_id]})
    assert len(r["BasicData"]) == 1
    return r["BasicData"][0]


@pytest.mark.parametrize("kind", list(FLOWS))
def test_full_repair_and_rollback_flow(server, kind):
    full_flow(server, make_client(server, kind), kind)


def full_flow(server, client, kind):
    """Find → detail → repair (missing, malformed, valid parameter) → verified → rollback →
    the original bytes → a second rollback refused."""
    name, ip_port = FLOWS[kind]

    # 1. Failing, repairable check items.
    checks = client.call("ListCheckResult", {"Statuses": ["NOT_PASS"], "OperationTypes": ["SUPPORT_REPAIR"], "PageSize": 100, "Lang": "en"})
    assert checks["PageInfo"]["TotalCount"] == len(checks["Checks"]) > 0
    redis = next(c for c in checks["Checks"] if c["CheckId"] == REDIS_CHECK)
    assert redis["Status"] == "NOT_PASS" and redis["RiskLevel"] == "HIGH" and redis["OperationType"] == "SUPPORT_REPAIR"
    assert "Redis" in redis["CheckShowName"]

    # 2. Its failing instances, with the current values.
    failing = client.call("ListCheckInstanceResult", {"CheckId": REDIS_CHECK, "Statuses": ["NOT_PASS"], "Lang": "en"})
    row = next(r for r in failing["BasicData"] if r["InstanceName"] == name)
    instance_id, region = row["InstanceId"], row["RegionId"]
    # Each setting, then the line that set it, or that the default applies.
    config = {c["Name"]: c["Value"] for c in row["InstanceInfo"]["Config"]}
    assert {n for n in config if not n.endswith(" (source)")} == {"bind", "port"}, config
    sources = [v for n, v in config.items() if n.endswith(" (source)")]
    assert sources and all(v.startswith("/etc/redis/redis.conf:") or v == "default: not set in any file" for v in sources), config
    assert failing["PageInfo"]["Count"] == str(len(failing["BasicData"]))

    # 3. Repair metadata: the IPPort parameter, supplied at submit time, required.
    detail = client.call("GetCheckDetail", {"CheckId": REDIS_CHECK, "Lang": "en"})
    setting = detail["RepairSetting"]
    assert setting["RepairSupport"] is True and setting["RepairSupportType"] == 1
    (param,) = setting["RepairConfigs"]
    assert (param["Name"], param["UsageType"], param["EmptyParamSwitch"]) == ("IPPort", "3", "1")
    assert json.loads(param["TypeDefine"]) == {"type": "IP:PORT"}

    conf = server.fleet_file(instance_id, "etc/redis/redis.conf")
    original = conf.read_bytes()
    target = {"InstanceId": instance_id, "RegionId": region}
    submit = {"CheckId": REDIS_CHECK, "Type": "REPAIR", "DimensionType": "INSTANCE", "OperationTaskInstances": [target]}

    # 4. Missing, malformed, then valid IPPort.
    expect_error(lambda: client.call("SubmitOperationTask", submit), "RepairedParamNotCustomized.IPPort", 400)
    for bad in ("10.0.0.5", "10.0.0.5:99999", "bind 0.0.0.0:1", "10.0.0.5:6379\nbind 0.0.0.0"):
        expect_error(lambda: client.call("SubmitOperationTask", {**submit, "RepairTempParam": [{"Name": "IPPort", "Value": bad}]}),
                     "ErrorParamFormat.IPPort", 400)
    expect_error(lambda: client.call("SubmitOperationTask", {**submit, "RepairTempParam": [{"Name": "Nope", "Value": "1"}]}),
                 "ErrorParamFormat.Nope", 400)
    assert conf.read_bytes() == original, "refused submissions change nothing"
    answer = client.call("SubmitOperationTask", {**submit, "RepairTempParam": [{"Name": "IPPort", "Value": ip_port}]})
    assert len(answer["RootTaskId"]) == 32 and "OperateCode" not in answer

    # 5. It runs to REPAIR_SUCCESS_VERIFIED; the file really changed; the result is PASS.
    repair = wait_for_task(client, REDIS_CHECK, answer["RootTaskId"])
    assert repair["Status"] == "REPAIR_SUCCESS_VERIFIED", repair
    assert repair["SupportRollBack"] is True and repair["RepairSupportType"] == 1 and repair["Type"] == "REPAIR"
    ip, port = ip_port.rsplit(":", 1)
    text = conf.read_text()
    assert f"\nbind {ip.strip('[]')}\n" in text and f"\nport {port}\n" in text, text
    assert instance_status(client, instance_id)["Status"] == "PASS"
    history = client.call("ListOperationCheck", {"CheckId": REDIS_CHECK, "Type": "REPAIR", "OperationTaskInstances": [{"InstanceId": instance_id}]})
    (entry,) = history["OperationTaskInstanceDetails"]
    assert entry["Repair"][0]["TaskId"] == repair["TaskId"]
    assert entry["Repair"][0]["RepairConfigs"][0]["Value"] == ip_port.replace("[::1]", "[::1]")

    # 6. Roll back by TaskId: the original bytes, and NOT_PASS again.
    rollback_req = {"CheckId": REDIS_CHECK, "Type": "ROLLBACK", "OperationTaskInstances": [{**target, "TaskId": repair["TaskId"]}]}
    answer = client.call("SubmitOperationTask", rollback_req)
    rollback = wait_for_task(client, REDIS_CHECK, answer["RootTaskId"])
    assert rollback["Status"] == "ROLL_BACK_VERIFIED", rollback
    assert conf.read_bytes() == original
    assert instance_status(client, instance_id)["Status"] == "NOT_PASS"

    # 7. A second rollback of the same repair conflicts.
    expect_error(lambda: client.call("SubmitOperationTask", rollback_req), "RepairTaskConflict", 400)


@pytest.mark.parametrize("kind", list(FLOWS))
def test_gateway_errors_reach_each_client_as_its_exception(server, kind):
    client = make_client(server, kind)
    expect_error(lambda: make_client(server, kind, key_id="LTAInotakey").call("ListCheckResult"), "InvalidAccessKeyId.NotFound", 404)
    wrong = make_client(server, kind, secret="not-the-secret")
    e = expect_error(lambda: wrong.call("ListCheckResult"), "SignatureDoesNotMatch", 400)
    # aliyun-python-sdk-core splits the message on ":" and compares part 1 with its own string
    # to sign: the split must land exactly on ours (no colon before it, none inside it).
    assert "server string to sign is:" in e.message
    if kind == "aliyun-python-sdk-core":
        part = e.message.split(":")[1]
        assert part.startswith("POST&%2F&") and "Action%3DListCheckResult" in part, part
    expect_error(lambda: client.call_unknown_action("NoSuchAction"), "InvalidAction.NotFound", 404)
    e = expect_error(lambda: client.call("SubmitOperationTask", {"Type": "REPAIR"}), "MissingParameter", 400)
    assert '"CheckId"' in e.message
    expect_error(lambda: client.call("GetCheckDetail", {"CheckId": 999999}), "InvalidCheckId.NotFound", 404)
    expect_error(lambda: client.call("ListOperationProcessDetail", {}), "CspmParamIllegal", 400)
    expect_error(lambda: client.call("VerifyCheckInstanceResult", {"CheckId": 1001}), "-101", 400)


@pytest.mark.parametrize("kind", ["sas-sdk-v3", "sas-sdk-v1"])
def test_expired_timestamps_and_reused_nonces(server, kind, monkeypatch):
    client = make_client(server, kind)
    old = (datetime.datetime.utcnow() - datetime.timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with monkeypatch.context() as m:
        m.setattr(Utils, "get_timestamp", staticmethod(lambda: old))
        expect_error(lambda: client.call("ListCheckResult"), "InvalidTimeStamp.Expired", 400)
    with monkeypatch.context() as m:
        m.setattr(Utils, "get_nonce", staticmethod(lambda: "0123456789abcdef0123456789abcdef"))
        client.call("ListCheckResult")
        expect_error(lambda: client.call("ListCheckResult"), "SignatureNonceUsed", 400)


def test_check_runs_through_the_sdk(server):
    client = make_client(server, "sas-sdk-v3")
    run = client.call("SubmitCheck", {"ScanRange": "FULL"})
    deadline = time.time() + 30
    while (p := client.call("GetCheckProcess", {"TaskId": run["TaskId"]}))["StatusCode"] != "2":
        assert time.time() < deadline, p
        time.sleep(0.05)
    assert p["TotalCount"] == p["FinishCount"] == 8
    procs = client.call("ListOperationProcess", {"TaskIds": [run["TaskId"]]})["Processes"]
    assert procs[0]["TaskType"] == "CHECK_ALL" and procs[0]["StatusCode"] == 2
    details = client.call("ListOperationProcessDetail", {"TaskIds": [run["TaskId"]], "PageSize": 100})
    assert details["PageInfo"]["TotalCount"] == 8 and all(d["StatusCode"] == 2 for d in details["ProcessDetails"])
    verify = client.call("VerifyCheckInstanceResult", {"CheckId": 1001, "InstanceIds": ["i-bp1a2c3d4e5f6g7h8i9j", "i-nosuch"]})
    assert verify["Data"]["FailInstances"] == ["i-nosuch"] and verify["Data"]["TaskId"]
    assert client.call("GetCheckProcess", {"TaskId": "no-such-run"})["StatusCode"] == "5"
    # StatusCodes filter by the codes each listing defines; any other code is refused.
    done = client.call("ListOperationProcess", {"TaskIds": [run["TaskId"]], "StatusCodes": [2]})
    assert done["PageInfo"]["TotalCount"] == 1
    assert client.call("ListOperationProcess", {"TaskIds": [run["TaskId"]], "StatusCodes": [0, 1]})["PageInfo"]["TotalCount"] == 0
    failed = client.call("ListOperationProcessDetail", {"TaskIds": [run["TaskId"]], "StatusCodes": [4]})
    assert failed["PageInfo"]["TotalCount"] == 0
    expect_error(lambda: client.call("ListOperationProcess", {"StatusCodes": [4]}), "InvalidParameter", 400)
    expect_error(lambda: client.call("ListOperationProcessDetail", {"StatusCodes": [5]}), "InvalidParameter", 400)


def test_both_languages(server):
    client = make_client(server, "sas-sdk-v3")
    zh = client.call("GetCheckDetail", {"CheckId": 1001, "Lang": "zh"})
    en = client.call("GetCheckDetail", {"CheckId": 1001, "Lang": "en"})
    assert "root" in en["Description"]["Value"] and en["Description"]["Value"] != zh["Description"]["Value"]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in zh["Description"]["Value"])
