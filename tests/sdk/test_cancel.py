"""CancelOperationTask (a posture extension) through the official core SDK's generic request
(CommonRequest, as any SDK user would call an action its SDK does not model), over real HTTP:
a task that has changed nothing ends CANCELLED with its file untouched and its authorization
given back; a verified one is left as it is; unknown ids and a ReadOnly key are refused.
(Cancelling a repair while it backs up or changes the file — finished, then rolled back from
its snapshot — needs the step held at that point: crates/posture/tests/agents.rs does it over
HTTP with an agent driven step by step, and the store's conformance suite on both backends.)"""
import json
import time
import subprocess

from conftest import Server, posture_bin
from test_conformance import expect_error, make_client, wait_for_task

WEB01 = "i-bp1a2c3d4e5f6g7h8i9j"


def repair(client, check_id):
    return client.call("SubmitOperationTask", {"CheckId": check_id, "Type": "REPAIR", "OperationTaskInstances": [{"InstanceId": WEB01}]})


def test_a_task_that_changed_nothing_is_cancelled_and_its_file_untouched(tmp_path):
    # No workers: a submitted task waits in INIT until cancelled.
    s = Server(tmp_path / "data", args=("--demo-fleet", "roots", "--workers", "0"))
    try:
        client = make_client(s, "aliyun-python-sdk-core")
        sshd = s.fleet_file(WEB01, "etc/ssh/sshd_config")
        before = sshd.read_bytes()
        root = repair(client, 1001)["RootTaskId"]
        used = client.call("DescribeFixUsedCount")["UsedCount"]
        answer = client.call("CancelOperationTask", {"RootTaskId": root})
        (task,) = answer["Tasks"]
        assert (task["InstanceId"], task["Cancel"]) == (WEB01, "CANCELLED"), answer
        row = client.call("ListOperationTask", {"CheckId": 1001})["OperationTasks"][0]
        assert (row["TaskId"], row["Status"]) == (task["TaskId"], "CANCELLED"), row
        assert sshd.read_bytes() == before
        assert client.call("DescribeFixUsedCount")["UsedCount"] == used - 1, "its authorization is given back"
        # Its history says who did what: submitted and cancelled by this key.
        me = s.credentials["AccessKeyId"]
        history = client.call("DescribeOperationTaskHistory", {"TaskId": task["TaskId"]})["History"]
        assert [(h["Status"], h["Actor"]) for h in history] == [("INIT", me), ("CANCELLED", me)], history
        # Cancelled is over: the item can be repaired again, and a second cancel changes nothing.
        repair(client, 1001)
        assert client.call("CancelOperationTask", {"RootTaskId": root})["Tasks"][0]["Cancel"] == "UNCHANGED"
        expect_error(lambda: client.call("CancelOperationTask", {"RootTaskId": "f" * 32}), "InvalidTaskId.NotFound", 404)
        expect_error(lambda: client.call("CancelOperationTask", {"RootTaskId": root, "TaskIds": ["nope"]}),
                     "InvalidTaskId.NotFound", 404)
        expect_error(lambda: client.call("CancelOperationTask", {}), "MissingParameter", 400)
        keys = json.loads(subprocess.run(
            [posture_bin(), "keys", "create", "--data", str(s.data), "--account", s.credentials["AccountId"],
             "--policy", "ReadOnly"], check=True, capture_output=True, text=True).stdout)
        reader = make_client(s, "aliyun-python-sdk-core", keys["AccessKeyId"], keys["AccessKeySecret"])
        expect_error(lambda: reader.call("CancelOperationTask", {"RootTaskId": root}), "NoPermission", 403)
    finally:
        s.stop()


def test_a_verified_repair_is_left_as_it_is(server):
    client = make_client(server, "aliyun-python-sdk-core")
    root = repair(client, 1001)["RootTaskId"]
    assert wait_for_task(client, 1001, root)["Status"] == "REPAIR_SUCCESS_VERIFIED"
    (task,) = client.call("CancelOperationTask", {"RootTaskId": root})["Tasks"]
    assert task["Cancel"] == "UNCHANGED"
    row = client.call("ListOperationTask", {"CheckId": 1001})["OperationTasks"][0]
    assert row["Status"] == "REPAIR_SUCCESS_VERIFIED"


def test_a_failure_threshold_stops_a_root_whose_instances_fail(tmp_path):
    # One worker: the tasks run one after another, in the order they were created.
    s = Server(tmp_path / "data", args=("--demo-fleet", "roots", "--workers", "1"))
    try:
        client = make_client(s, "aliyun-python-sdk-core")
        failing = client.call("ListCheckInstanceResult", {"CheckId": 1001, "Statuses": ["NOT_PASS"], "PageSize": 100})["BasicData"]
        assert len(failing) >= 3
        # A file with a second name is never changed: every repair of these instances fails.
        for row in failing:
            conf = s.fleet_file(row["InstanceId"], "etc/ssh/sshd_config")
            conf.with_name("second-name").hardlink_to(conf)
        for bad in ("0", "1.5", "101%", "some"):
            expect_error(lambda: client.call("SubmitOperationTask", {"CheckId": 1001, "Type": "REPAIR", "DimensionType": "CHECK_ID",
                                                                      "FailureThreshold": bad}), "InvalidParameter", 400)
        root = client.call("SubmitOperationTask", {"CheckId": 1001, "Type": "REPAIR", "DimensionType": "CHECK_ID",
                                                   "FailureThreshold": "1"})["RootTaskId"]
        deadline = time.time() + 30
        while True:
            rows = [r for r in client.call("ListOperationTask", {"CheckId": 1001, "PageSize": 100})["OperationTasks"] if r["RootTaskId"] == root]
            if all(r["Status"] in ("REPAIR_FAIL", "BACKUP_FAIL", "FAIL", "CANCELLED") for r in rows):
                break
            assert time.time() < deadline, rows
            time.sleep(0.05)
        statuses = sorted(r["Status"] for r in rows)
        assert len(rows) == len(failing) and statuses.count("CANCELLED") == len(failing) - 1, statuses
        cancelled = [r for r in rows if r["Status"] == "CANCELLED"]
        assert all(r["ErrorCode"] == "FailureThresholdReached" for r in cancelled), cancelled
    finally:
        s.stop()


def test_a_canary_and_a_concurrency_limit_through_the_generic_request(server):
    client = make_client(server, "aliyun-python-sdk-core")
    every_failing = {"CheckId": 1004, "Type": "REPAIR", "DimensionType": "CHECK_ID"}
    for name in ("MaxConcurrency", "CanaryCount"):
        for bad in ("0", "-1", "two"):
            expect_error(lambda: client.call("SubmitOperationTask", {**every_failing, name: bad}), "InvalidParameter", 400)
    failing = client.call("ListCheckInstanceResult", {"CheckId": 1004, "Statuses": ["NOT_PASS"], "PageSize": 100})["BasicData"]
    root = client.call("SubmitOperationTask", {**every_failing, "CanaryCount": "1", "MaxConcurrency": "1"})["RootTaskId"]
    deadline = time.time() + 60
    while True:
        rows = [r for r in client.call("ListOperationTask", {"CheckId": 1004, "PageSize": 100})["OperationTasks"] if r["RootTaskId"] == root]
        if len(rows) == len(failing) and all(r["Status"] == "REPAIR_SUCCESS_VERIFIED" for r in rows):
            break
        assert time.time() < deadline, [(r["InstanceId"], r["Status"], r["ErrorCode"]) for r in rows]
        time.sleep(0.1)


def spans(client, task_ids):
    """Each task's time under way, from DescribeOperationTaskHistory: first step to its end."""
    out = []
    for task_id in task_ids:
        history = client.call("DescribeOperationTaskHistory", {"TaskId": task_id})["History"]
        # Submitted by the caller; every step after by the demo server's agent (or the service,
        # releasing it).
        assert history[0]["Actor"] == client.key_id, history
        assert all(h["Actor"].startswith("agent:agt-") or h["Actor"] == "posture" for h in history[1:]), history
        start = next(h["Time"] for h in history if h["Status"] == "IN_BACKUP")
        end = history[-1]["Time"]
        assert history[-1]["Status"] == "REPAIR_SUCCESS_VERIFIED", history
        out.append((start, end))
    return out


def test_max_concurrency_is_never_exceeded_as_the_task_histories_show(server):
    client = make_client(server, "aliyun-python-sdk-core")
    failing = client.call("ListCheckInstanceResult", {"CheckId": 1005, "Statuses": ["NOT_PASS"], "PageSize": 100})["BasicData"]
    assert len(failing) >= 3
    root = client.call("SubmitOperationTask", {"CheckId": 1005, "Type": "REPAIR", "DimensionType": "CHECK_ID",
                                               "MaxConcurrency": "1"})["RootTaskId"]
    deadline = time.time() + 60
    while True:
        rows = [r for r in client.call("ListOperationTask", {"CheckId": 1005, "PageSize": 100})["OperationTasks"] if r["RootTaskId"] == root]
        if len(rows) == len(failing) and all(r["Status"] == "REPAIR_SUCCESS_VERIFIED" for r in rows):
            break
        assert time.time() < deadline, [(r["InstanceId"], r["Status"]) for r in rows]
        time.sleep(0.1)
    times = spans(client, [r["TaskId"] for r in rows])
    at_once = max(sum(1 for s, e in times if s <= t < e) for t, _ in times)
    assert at_once == 1, times
    expect_error(lambda: client.call("DescribeOperationTaskHistory", {"TaskId": "0" * 32}), "InvalidTaskId.NotFound", 404)
