"""ChangeCheckCustomConfig through the official SDK over real HTTP: an account's threshold
(PASS_MAX_DAYS 60 instead of 365) changes the verdicts of the next check — started by the
change itself — and the value the next repair writes; a bad value is refused and changes
nothing; deleting it brings the default back."""
import re
import time

from test_conformance import expect_error, make_client, wait_for_task

CHECK = 1009  # login.defs PASS_MAX_DAYS at most {PassMaxDays}


def statuses(client):
    rows = client.call("ListCheckInstanceResult", {"CheckId": CHECK, "PageSize": 100})["BasicData"]
    return {r["InstanceName"]: r["Status"] for r in rows}


def recheck_done(client, before):
    """Waits for the check a change starts (TaskSource CUSTOM_CONFIG) to finish."""
    deadline = time.time() + 30
    while True:
        runs = [p for p in client.call("ListOperationProcess", {"PageSize": 100})["Processes"] if p["TaskSource"] == "CUSTOM_CONFIG"]
        if len(runs) > before and all(r["StatusCode"] == 2 for r in runs):
            return len(runs)
        assert time.time() < deadline, runs
        time.sleep(0.1)


def custom(client):
    return {c["Name"]: c for c in client.call("GetCheckDetail", {"CheckId": CHECK, "Lang": "en"})["CustomConfigs"]}


def test_a_threshold_changes_verdicts_and_the_next_repair(server):
    client = make_client(server, "sas-sdk-v3")
    config = custom(client)["PassMaxDays"]
    assert (config["DefaultValue"], config["Value"], config["TypeDefine"]) == ("365", "365", '{"range":[1,365],"type":"NUMBER"}')
    assert statuses(client)["web-02"] == "PASS"  # PASS_MAX_DAYS 90
    with_custom = client.call("ListCheckResult", {"CustomParam": True, "PageSize": 100})["Checks"]
    assert CHECK in {c["CheckId"] for c in with_custom}

    client.call("ChangeCheckCustomConfig", {"CheckId": CHECK, "CustomConfigs": [{"Name": "PassMaxDays", "Value": "60"}]})
    runs = recheck_done(client, 0)
    assert custom(client)["PassMaxDays"]["Value"] == "60"
    # ListCheckItem lists every item with the account's values.
    listed, page = [], 1
    while len(listed) < (r := client.call("ListCheckItem", {"CurrentPage": page, "PageSize": 100}))["PageInfo"]["TotalCount"]:
        listed += r["CheckItems"]
        page += 1
    item = next(i for i in listed if i["CheckId"] == CHECK)
    rule = client.call("ListCheckItems", {"CheckId": CHECK})["CheckItems"][0]["CheckRule"]
    assert rule.startswith("login_defs.PASS_MAX_DAYS le 60"), rule
    assert [(c["Name"], c["Value"], c["DefaultValue"]) for c in item["CustomConfigs"]] == [("PassMaxDays", "60", "365")]
    assert item["InstanceEstimatedCount"] == len(statuses(client)) and item["SectionIds"] == [55]
    assert sum(1 for i in listed if i["CustomConfigs"]) == 4
    now = statuses(client)
    assert (now["web-02"], now["cache-01"], now["idc-build-01"], now["jump-sg"]) == ("NOT_PASS", "NOT_PASS", "NOT_PASS", "PASS")
    detail = client.call("GetCheckDetail", {"CheckId": CHECK})
    (param,) = detail["RepairSetting"]["RepairConfigs"]
    assert (param["Name"], param["Value"], param["DefaultValue"]) == ("PassMaxDays", "60", "365")

    # A repair without the parameter writes the account's threshold, and verifies against it.
    row = next(r for r in client.call("ListCheckInstanceResult", {"CheckId": CHECK, "PageSize": 100})["BasicData"]
               if r["InstanceName"] == "web-02")
    login_defs = server.fleet_file(row["InstanceId"], "etc/login.defs")
    original = login_defs.read_bytes()
    target = {"InstanceId": row["InstanceId"], "RegionId": row["RegionId"]}
    # A value given that the account's threshold would fail is refused before anything runs.
    looser = {"CheckId": CHECK, "Type": "REPAIR", "OperationTaskInstances": [target],
              "RepairTempParam": [{"Name": "PassMaxDays", "Value": "90"}]}
    e = expect_error(lambda: client.call("SubmitOperationTask", looser), "ErrorParamFormat.PassMaxDays", 400)
    assert "le 60" in e.message, e.message
    answer = client.call("SubmitOperationTask", {"CheckId": CHECK, "Type": "REPAIR", "OperationTaskInstances": [target]})
    repair = wait_for_task(client, CHECK, answer["RootTaskId"])
    assert repair["Status"] == "REPAIR_SUCCESS_VERIFIED", repair
    assert re.search(r"^PASS_MAX_DAYS\s+60$", login_defs.read_text(), re.M), login_defs.read_text()
    answer = client.call("SubmitOperationTask", {"CheckId": CHECK, "Type": "ROLLBACK",
                                                 "OperationTaskInstances": [{**target, "TaskId": repair["TaskId"]}]})
    assert wait_for_task(client, CHECK, answer["RootTaskId"])["Status"] == "ROLL_BACK_VERIFIED"
    assert login_defs.read_bytes() == original

    # Bad entries are refused, all or nothing.
    for bad in ([{"Name": "PassMaxDays", "Value": "0"}], [{"Name": "PassMaxDays", "Value": "400"}],
                [{"Name": "PassMaxDays", "Value": "sixty"}], [{"Name": "NoSuchConfig", "Value": "1"}],
                [{"Name": "PassMaxDays", "Value": "30", "Operation": "UPDATE"}],
                [{"Name": "PassMaxDays", "Value": "30"}, {"Name": "Other", "Value": "1"}]):
        e = expect_error(lambda: client.call("ChangeCheckCustomConfig", {"CheckId": CHECK, "CustomConfigs": bad}),
                         "IllegalCustomConfig", 400)
        assert "Nothing was changed" in e.message
    expect_error(lambda: client.call("ChangeCheckCustomConfig", {"CheckId": CHECK, "RepairConfigs": [{"Name": "PassMaxDays", "Value": "30"}]}),
                 "IllegalCustomConfig", 400)
    expect_error(lambda: client.call("ChangeCheckCustomConfig", {"CheckId": 424242, "CustomConfigs": [{"Name": "X", "Value": "1"}]}),
                 "InvalidCheckId.NotFound", 404)
    expect_error(lambda: client.call("ChangeCheckCustomConfig", {"CheckId": CHECK}), "MissingParameter", 400)
    assert custom(client)["PassMaxDays"]["Value"] == "60"

    # Deleting it brings the default back (and the verdicts with it).
    client.call("ChangeCheckCustomConfig", {"CheckId": CHECK, "CustomConfigs": [{"Name": "PassMaxDays", "Operation": "DELETE"}]})
    recheck_done(client, runs)
    assert custom(client)["PassMaxDays"]["Value"] == "365"
    assert statuses(client)["web-02"] == "PASS"
