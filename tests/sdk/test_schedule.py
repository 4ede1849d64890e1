"""The periodic check through the official SDK over real HTTP: GetCheckConfig's default,
ChangeCheckConfig's validation (a refused change changes nothing), the selection by standard
and item, and a schedule whose window is open running once by itself — on one node, and on
two nodes sharing one PostgreSQL."""
import datetime
import json
import subprocess
import time
import tomllib

from conftest import ROOT, Server, posture_bin
from test_conformance import expect_error, make_client
from test_nodes import database  # noqa: F401 (a fixture)

ITEMS = {c["id"]: c for p in sorted((ROOT / "crates/catalog/checks").glob("*.toml")) for c in tomllib.loads(p.read_text())["checks"]}
WINDOWS = [(0, 6), (6, 12), (12, 18), (18, 24)]


def open_window():
    """(weekday, start, end) of the window open now (UTC), waiting out the last 30 seconds of
    one so that the test does not straddle its end."""
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = next(w for w in WINDOWS if w[0] <= now.hour < w[1])
    closes = now.replace(hour=0, minute=0, second=0, microsecond=0) + datetime.timedelta(hours=end)
    if (closes - now).total_seconds() < 30:
        time.sleep((closes - now).total_seconds() + 1)
        return open_window()
    return now.isoweekday(), start, end


def scheduled_runs(client):
    procs = client.call("ListOperationProcess", {"PageSize": 100})["Processes"]
    return [p for p in procs if p["TaskSource"] == "SCHEDULE"]


def test_the_default_schedule_is_off_and_selects_every_item(server):
    client = make_client(server, "sas-sdk-v3")
    config = client.call("GetCheckConfig", {})
    assert config["EnableAutoCheck"] is False and config["EnableAddCheck"] is True
    assert (config["StartTime"], config["EndTime"], config["CycleDays"]) == (0, 6, [1, 2, 3, 4, 5, 6, 7])
    assert {s["Status"] for s in config["Standards"]} == {"ON"}
    assert sorted(c["CheckId"] for c in config["SelectedChecks"]) == sorted(ITEMS)
    assert all(c["SectionId"] == ITEMS[c["CheckId"]]["policy"]["section_id"] for c in config["SelectedChecks"])


def test_changes_select_standards_and_items_and_bad_values_change_nothing(server):
    client = make_client(server, "sas-sdk-v3")
    aws = {i for i, c in ITEMS.items() if c["policy"]["standard_id"] == 3}
    client.call("ChangeCheckConfig", {"ConfigStandardIds": {"RemoveIds": [3]}, "CycleDays": [1, 3, 5], "StartTime": 6, "EndTime": 12})
    config = client.call("GetCheckConfig", {})
    assert {s["Id"]: s["Status"] for s in config["Standards"]}[3] == "OFF"
    assert {c["CheckId"] for c in config["SelectedChecks"]} == set(ITEMS) - aws
    assert (config["CycleDays"], config["StartTime"], config["EndTime"]) == ([1, 3, 5], 6, 12)

    client.call("ChangeCheckConfig", {"AddedCheck": [{"CheckId": 2001, "SectionId": 351}], "RemovedCheck": [{"CheckId": 1001}]})
    selected = {c["CheckId"] for c in client.call("GetCheckConfig", {})["SelectedChecks"]}
    assert selected == (set(ITEMS) - aws - {1001}) | {2001}
    requirement = ITEMS[1001]["policy"]["requirement_id"]
    client.call("ChangeCheckConfig", {"ConfigRequirementIds": {"RemoveIds": [requirement]}})
    selected = {c["CheckId"] for c in client.call("GetCheckConfig", {})["SelectedChecks"]}
    assert not any(ITEMS[i]["policy"]["requirement_id"] == requirement for i in selected)

    before = client.call("GetCheckConfig", {})
    for params, code, status in [
        ({"CycleDays": [8]}, "InvalidParameter", 400),
        ({"StartTime": 3}, "InvalidParameter", 400),
        ({"StartTime": 0, "EndTime": 12}, "InvalidParameter", 400),
        ({"ConfigStandardIds": {"AddIds": [99]}}, "InvalidParameter", 400),
        ({"ConfigRequirementIds": {"AddIds": [99999]}}, "InvalidParameter", 400),
        ({"AddedCheck": [{"CheckId": 424242}]}, "InvalidCheckId.NotFound", 404),
        ({"AddedCheck": [{"CheckId": 1001, "SectionId": 351}]}, "InvalidParameter", 400),
        ({"Configure": "some"}, "InvalidParameter", 400),
        ({"EnableAutoCheck": True, "Vendors": ["NO_SUCH_CLOUD"]}, "InvalidParameter", 400),
    ]:
        expect_error(lambda: client.call("ChangeCheckConfig", params), code, status)
    client.call("ChangeCheckConfig", {"EnableAutoCheck": True, "Configure": "all", "DryRun": True})
    assert client.call("GetCheckConfig", {}) | {"RequestId": ""} == before | {"RequestId": ""}

    client.call("ChangeCheckConfig", {"Configure": "all"})
    assert len(client.call("GetCheckConfig", {})["SelectedChecks"]) == len(ITEMS)
    # A ReadOnly key may read the schedule, not change it.
    keys = json.loads(subprocess.run(
        [posture_bin(), "keys", "create", "--data", str(server.data), "--account", server.credentials["AccountId"],
         "--policy", "ReadOnly"], check=True, capture_output=True, text=True).stdout)
    reader = make_client(server, "sas-sdk-v3", keys["AccessKeyId"], keys["AccessKeySecret"])
    reader.call("GetCheckConfig", {})
    expect_error(lambda: reader.call("ChangeCheckConfig", {"EnableAutoCheck": True}), "NoPermission", 403)


def test_an_open_window_runs_once_by_itself(server):
    client = make_client(server, "sas-sdk-v3")
    assert scheduled_runs(client) == []
    day, start, end = open_window()
    linux = {i for i, c in ITEMS.items() if c["policy"]["standard_id"] == 1}
    client.call("ChangeCheckConfig", {
        "EnableAutoCheck": True, "CycleDays": [day], "StartTime": start, "EndTime": end,
        "ConfigStandardIds": {"RemoveIds": [2, 3]},
    })
    deadline = time.time() + 30
    while not (runs := scheduled_runs(client)):
        assert time.time() < deadline, "the schedule did not run"
        time.sleep(0.2)
    run = runs[0]
    while client.call("GetCheckProcess", {"TaskId": run["TaskId"]})["StatusCode"] != "2":
        assert time.time() < deadline
        time.sleep(0.1)
    details = client.call("ListOperationProcessDetail", {"TaskIds": [run["TaskId"]], "PageSize": 100})["ProcessDetails"]
    assert details and all(d["StatusCode"] == 2 for d in details)
    # The next looks (every 5 s) find the window run; the schedule changed within the window
    # does not run it again.
    client.call("ChangeCheckConfig", {"ConfigStandardIds": {"AddIds": [2]}})
    time.sleep(11)
    assert [r["TaskId"] for r in scheduled_runs(client)] == [run["TaskId"]]
    assert run["TaskType"] == "CHECK_POLICY"
    # The run checked the Linux standard's items, and those only.
    latest = {c["CheckId"]: c["TaskId"] for c in client.call("ListCheckResult", {"PageSize": 100, "StandardIds": [1, 2]})["Checks"]}
    latest |= {c["CheckId"]: c["TaskId"] for c in client.call("ListCheckResult", {"PageSize": 100, "CurrentPage": 2, "StandardIds": [1, 2]})["Checks"]}
    assert {i for i, t in latest.items() if t == run["TaskId"]} == linux


def test_a_closed_window_does_not_run(server):
    client = make_client(server, "sas-sdk-v3")
    day, start, _ = open_window()
    other = [d for d in range(1, 8) if d != day]
    client.call("ChangeCheckConfig", {"EnableAutoCheck": True, "CycleDays": other, "StartTime": start})
    time.sleep(6)
    assert scheduled_runs(client) == []


def test_two_nodes_run_a_window_once(tmp_path, database):  # noqa: F811
    data = tmp_path / "data"
    a = Server(data, args=("--database", database), log_name="node-a.log")
    b = Server(data, args=("--database", database), log_name="node-b.log")
    try:
        client = make_client(a, "sas-sdk-v3")
        day, start, end = open_window()
        client.call("ChangeCheckConfig", {"EnableAutoCheck": True, "CycleDays": [day], "StartTime": start, "EndTime": end})
        time.sleep(11)  # both nodes look at least twice
        other = make_client(b, "sas-sdk-v3")
        assert len(scheduled_runs(other)) == 1
    finally:
        a.stop()
        b.stop()
