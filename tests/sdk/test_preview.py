"""PreviewOperationTask (a posture extension) through the official core SDK's generic request
(CommonRequest), over real HTTP against the demo fleet's real files: the diff a preview shows,
applied to the file as it was, is byte for byte the file the repair then writes (one line, two
steps on one file, a created drop-in); a mode change shows both modes; a preview changes
nothing; instances that would be skipped say why (whitelisted, a repair of the item under way,
queued behind another change of the same file)."""
import hashlib
import json
import subprocess
import time

from conftest import Server, posture_bin
from test_conformance import expect_error, make_client

WEB01 = "i-bp1a2c3d4e5f6g7h8i9j"
FINAL = {"REPAIR_SUCCESS_VERIFIED", "REPAIR_SUCCESS_UNVERIFIED", "REPAIR_FAIL", "BACKUP_FAIL", "FAIL", "CANCELLED"}


def patched(before: str, diff: str) -> str:
    """Applies a unified diff as `patch` does, refusing any context or removed line that does
    not match the file."""
    old = before.splitlines(keepends=True)
    lines = diff.splitlines(keepends=True)
    assert lines[0].startswith("--- ") and lines[1].startswith("+++ "), diff
    out, at, i = [], 0, 2
    while i < len(lines):
        header = lines[i]
        assert header.startswith("@@ -"), header
        start = int(header[4:].split(",")[0].split(" ")[0])
        start = max(start - 1, at)
        out.extend(old[at:start])
        at = start
        i += 1
        while i < len(lines) and not lines[i].startswith("@@"):
            sign, text = lines[i][0], lines[i][1:]
            if i + 1 < len(lines) and lines[i + 1].startswith("\\"):
                text = text.rstrip("\n")
                i += 1
            if sign != "+":
                assert old[at] == text, f"line {at + 1}: {old[at]!r} is not {text!r}"
                at += 1
            if sign != "-":
                out.append(text)
            i += 1
    out.extend(old[at:])
    return "".join(out)


def fleet_digest(server) -> str:
    h = hashlib.sha256()
    for p in sorted((server.data / "fleet").rglob("*")):
        if p.is_file():
            h.update(str(p).encode() + oct(p.stat().st_mode).encode() + p.read_bytes())
    return h.hexdigest()


def preview(client, check_id, **extra):
    params = {"CheckId": check_id, "Type": "REPAIR", "DimensionType": "CHECK_ID", "PageSize": 100, **extra}
    return client.call("PreviewOperationTask", params)


def wait_for_root(client, check_id, root):
    deadline = time.time() + 60
    while time.time() < deadline:
        rows = client.call("ListOperationTask", {"CheckId": check_id, "PageSize": 100})["OperationTasks"]
        mine = [r for r in rows if r["RootTaskId"] == root]
        if mine and all(r["Status"] in FINAL for r in mine):
            return mine
        time.sleep(0.1)
    raise AssertionError(f"root {root} did not finish")


def test_the_preview_is_exactly_what_the_repair_then_writes(server):
    client = make_client(server, "aliyun-python-sdk-core")
    for check_id, params in [
        (1001, []),  # one line of sshd_config
        (1016, [{"Name": "IPPort", "Value": "127.0.0.1:6380"}]),  # bind and port: two steps, one file
        (1012, []),  # sysctl: a drop-in the repair creates
        (1006, []),  # the mode of sshd_config
    ]:
        extra = {"RepairTempParam": params} if params else {}
        before_digest = fleet_digest(server)
        answer = preview(client, check_id, **extra)
        assert fleet_digest(server) == before_digest, "a preview changes nothing"
        rows = answer["Instances"]
        assert rows and answer["PageInfo"]["TotalCount"] == len(rows), answer
        assert all(r["Outcome"] == "CHANGE" for r in rows), rows
        assert {p["Name"]: p["Value"] for p in answer["RepairParams"]} == {p["Name"]: p["Value"] for p in params}
        expected = {}
        for r in rows:
            for c in r["Changes"]:
                f = server.fleet_file(r["InstanceId"], c["File"].lstrip("/"))
                if c["Kind"] == "FILE_CONTENT":
                    assert c["Created"] == (not f.exists()), c
                    assert c["Diff"].startswith("--- /dev/null" if c["Created"] else f"--- a{c['File']}"), c["Diff"]
                    expected[f] = ("content", patched(f.read_text() if f.exists() else "", c["Diff"]))
                else:
                    assert c["Kind"] == "FILE_MODE" and c["Before"] == oct(f.stat().st_mode & 0o7777)[2:].zfill(4), c
                    expected[f] = ("mode", int(c["After"], 8))
        assert expected
        root = client.call("SubmitOperationTask", {"CheckId": check_id, "Type": "REPAIR", "DimensionType": "CHECK_ID", **extra})["RootTaskId"]
        tasks = wait_for_root(client, check_id, root)
        assert len(tasks) == len(rows) and all(t["Status"] == "REPAIR_SUCCESS_VERIFIED" for t in tasks), tasks
        for f, (kind, want) in expected.items():
            if kind == "content":
                assert f.read_text() == want, f
            else:
                assert f.stat().st_mode & 0o7777 == want, f
        # Repaired: nothing is left to change (the instances no longer fail, so name them).
        again = client.call("PreviewOperationTask", {"CheckId": check_id, "Type": "REPAIR", **extra,
                                                     "OperationTaskInstances": [{"InstanceId": r["InstanceId"]} for r in rows]})
        assert [r["Outcome"] for r in again["Instances"]] == ["NO_CHANGE"] * len(rows), again


def test_instances_that_would_be_skipped_say_why(tmp_path):
    # No workers: a submitted task stays under way.
    s = Server(tmp_path / "data", args=("--demo-fleet", "roots", "--workers", "0"))
    try:
        client = make_client(s, "aliyun-python-sdk-core")
        failing = preview(client, 1001)["Instances"]
        assert len(failing) >= 3 and WEB01 in [r["InstanceId"] for r in failing]
        other = next(r["InstanceId"] for r in failing if r["InstanceId"] != WEB01)
        client.call("AddCheckInstanceResultWhiteList", {"CheckId": 1001, "InstanceIds": [other]})
        root = client.call("SubmitOperationTask", {"CheckId": 1001, "Type": "REPAIR",
                                                   "OperationTaskInstances": [{"InstanceId": WEB01}]})["RootTaskId"]
        task = client.call("ListOperationTask", {"CheckId": 1001})["OperationTasks"][0]
        assert task["RootTaskId"] == root
        rows = {r["InstanceId"]: r for r in client.call("PreviewOperationTask", {
            "CheckId": 1001, "Type": "REPAIR",
            "OperationTaskInstances": [{"InstanceId": WEB01}, {"InstanceId": other}]})["Instances"]}
        assert (rows[WEB01]["Outcome"], rows[WEB01]["SkipCode"], rows[WEB01]["BlockingTaskId"]) == \
            ("SKIPPED", "RepairTaskConflict", task["TaskId"]), rows[WEB01]
        assert (rows[other]["Outcome"], rows[other]["SkipCode"]) == ("SKIPPED", "InstanceWhitelisted"), rows[other]
        # Another item of the same file would wait for that task; one of another file would not.
        (queued,) = client.call("PreviewOperationTask", {"CheckId": 1003, "Type": "REPAIR",
                                                         "OperationTaskInstances": [{"InstanceId": WEB01}]})["Instances"]
        assert (queued["SkipCode"], queued["BlockingTaskId"]) == ("QueuedBehindChange", task["TaskId"]), queued
        (free,) = client.call("PreviewOperationTask", {"CheckId": 1009, "Type": "REPAIR",
                                                       "OperationTaskInstances": [{"InstanceId": WEB01}]})["Instances"]
        assert free["Outcome"] == "CHANGE" and free["Changes"][0]["File"] == "/etc/login.defs", free
        # Pages, as listings page.
        page = preview(client, 1009, PageSize=1, CurrentPage=2)
        assert page["PageInfo"]["CurrentPage"] == 2 and len(page["Instances"]) == 1
        assert page["PageInfo"]["TotalCount"] == len(preview(client, 1009)["Instances"]) > 1
        # Refusals, as SubmitOperationTask's.
        expect_error(lambda: client.call("PreviewOperationTask", {"CheckId": 1001, "Type": "ROLLBACK",
                                                                  "OperationTaskInstances": [{"InstanceId": WEB01, "TaskId": task["TaskId"]}]}),
                     "PreviewTypeUnsupported", 400)
        expect_error(lambda: preview(client, 1016, RepairTempParam=[{"Name": "IPPort", "Value": "nowhere"}]),
                     "ErrorParamFormat.IPPort", 400)
        expect_error(lambda: preview(client, 999999), "InvalidCheckId.NotFound", 404)
        keys = json.loads(subprocess.run(
            [posture_bin(), "keys", "create", "--data", str(s.data), "--account", s.credentials["AccountId"],
             "--policy", "ReadOnly"], check=True, capture_output=True, text=True).stdout)
        reader = make_client(s, "aliyun-python-sdk-core", keys["AccessKeyId"], keys["AccessKeySecret"])
        expect_error(lambda: preview(reader, 1001), "NoPermission", 403)
        # Nothing was created: the one task is the one submitted.
        assert client.call("ListOperationTask", {})["PageInfo"]["TotalCount"] == 1
    finally:
        s.stop()


def test_pages_cover_named_then_selected_instances_once_each(server):
    client = make_client(server, "aliyun-python-sdk-core")
    failing = [r["InstanceId"] for r in preview(client, 1003)["Instances"]]
    assert len(failing) >= 3, failing
    key = client.call("CreateAssetSelectionConfig", {"BusinessType": "preview-pages", "TargetType": "instance",
                                                     "Platform": "linux"})["Data"]["SelectionKey"]
    # The selection holds all three; two of them are also named: each is one instance.
    client.call("AddAssetSelectionCriteria", {"SelectionKey": key, "TargetOperationList": [
        {"Target": i, "Operation": "add"} for i in failing[:3]]})
    named = [{"InstanceId": i} for i in failing[:2]]
    seen = []
    for page in (1, 2, 3, 4):
        answer = client.call("PreviewOperationTask", {"CheckId": 1003, "Type": "REPAIR", "RelationKey": "preview-pages",
                                                      "OperationTaskInstances": named, "PageSize": 1, "CurrentPage": page})
        assert answer["PageInfo"]["TotalCount"] == 3, answer["PageInfo"]
        seen += [r["InstanceId"] for r in answer["Instances"]]
    assert seen == failing[:3], seen
    # A ClientToken keeps nothing: the next preview reads the instances again.
    req = {"CheckId": 1003, "Type": "REPAIR", "OperationTaskInstances": named[:1], "ClientToken": "same"}
    assert client.call("PreviewOperationTask", req)["Instances"][0]["Outcome"] == "CHANGE"
    root = client.call("SubmitOperationTask", {k: v for k, v in req.items() if k != "ClientToken"})["RootTaskId"]
    wait_for_root(client, 1003, root)
    assert client.call("PreviewOperationTask", req)["Instances"][0]["Outcome"] == "NO_CHANGE"
