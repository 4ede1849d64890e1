"""The console-level reads through the official SDK over real HTTP: the overview
(GetCheckSummary) against a recount of ListCheckResult, and the standards tree
(GetCheckStructure, ListCheckStandard, ListCheckItems, ListCheckPolicies) against the catalog
files themselves."""
import time
import tomllib
from collections import Counter, defaultdict
from pathlib import Path

from conftest import ROOT
from test_conformance import expect_error, make_client

CATALOG = [tomllib.loads(p.read_text())["checks"] for p in sorted((ROOT / "crates/catalog/checks").glob("*.toml"))]
ITEMS = {c["id"]: c for checks in CATALOG for c in checks}
VERDICT = {"PASS": "Pass", "WHITELIST": "Pass", "NOT_PASS": "NotPass",
           "NOT_CHECK": "NotCheck", "CHECKING": "NotCheck", "FAILED": "NotCheck"}


def check_everything(client):
    run = client.call("SubmitCheck", {"ScanRange": "FULL"})
    deadline = time.time() + 60
    while client.call("GetCheckProcess", {"TaskId": run["TaskId"]})["StatusCode"] != "2":
        assert time.time() < deadline
        time.sleep(0.05)


def all_pages(client, action, params, key):
    rows, page = [], 1
    while True:
        r = client.call(action, {**params, "CurrentPage": page, "PageSize": 100})
        rows += r[key]
        if len(rows) >= int(r["PageInfo"]["TotalCount"]):
            return rows
        page += 1


def recount(checks):
    """The summary's statistics, counted from ListCheckResult's rows."""
    overall, by_standard = Counter(), defaultdict(Counter)
    for c in checks:
        verdict, risk = VERDICT[c["Status"]], c["RiskLevel"].capitalize()
        for counter in (overall, by_standard[c["CheckPolicies"][0]["StandardId"]]):
            counter[f"{verdict}Count"] += 1
            counter[f"{verdict}{risk}Count"] += 1
    return overall, by_standard


def statistic(counter):
    return {f"{v}{r}Count": counter[f"{v}{r}Count"] for v in ("Pass", "NotPass", "NotCheck") for r in ("", "High", "Medium", "Low")}


def test_the_summary_equals_a_recount_of_list_check_result(server):
    client = make_client(server, "sas-sdk-v3")
    check_everything(client)
    for params in ({}, {"Vendors": ["ALIYUN"]}, {"Vendors": ["AWS"]}):
        summary = client.call("GetCheckSummary", {**params, "IsItemStatistic": True, "Lang": "en"})
        checks = all_pages(client, "ListCheckResult", params, "Checks")
        overall, by_standard = recount(checks)
        assert summary["OverallStatistic"] == statistic(overall), params
        standards = [s for group in summary["Summarys"] for s in group["Standards"]]
        assert sorted(s["Id"] for s in standards) == sorted(by_standard), params
        for s in standards:
            counted = by_standard[s["Id"]]
            assert s["StandardStatistic"] == statistic(counted)
            assert (s["PassCount"], s["FailCount"]) == (counted["PassCount"], counted["NotPassCount"])
            assert (s["RiskLevelHighCount"], s["RiskLevelMediumCount"], s["RiskLevelLowCount"]) == (
                counted["NotPassHighCount"], counted["NotPassMediumCount"], counted["NotPassLowCount"])
        for group in summary["Summarys"]:
            assert group["FailCount"] == sum(s["FailCount"] for s in group["Standards"])
            assert group["PassCount"] == sum(s["PassCount"] for s in group["Standards"])
        assert summary["OverallItemStatistic"]["ReleaseCount"] == len(ITEMS)
    # The demo fleet fails and passes items of the Linux standard; it has no AWS account.
    full = client.call("GetCheckSummary", {"Lang": "en"})
    linux = next(s for g in full["Summarys"] for s in g["Standards"] if s["Id"] == 1)
    assert linux["FailCount"] > 0 and linux["PassCount"] > 0
    assert "OverallItemStatistic" not in full
    assert client.call("GetCheckSummary", {"Vendors": ["AWS"]})["OverallStatistic"]["PassCount"] == 0
    expect_error(lambda: client.call("GetCheckSummary", {"Vendors": ["NO_SUCH_CLOUD"]}), "InvalidParameter", 400)


def test_a_whitelist_moves_an_item_in_the_summary(server):
    client = make_client(server, "sas-sdk-v3")
    check_everything(client)
    failing = next(c for c in all_pages(client, "ListCheckResult", {"Statuses": ["NOT_PASS"]}, "Checks"))
    before = client.call("GetCheckSummary", {})["OverallStatistic"]
    client.call("AddCheckResultWhiteList", {"CheckIds": [failing["CheckId"]], "Reason": "accepted"})
    after = client.call("GetCheckSummary", {})["OverallStatistic"]
    assert after["NotPassCount"] == before["NotPassCount"] - 1
    assert after["PassCount"] == before["PassCount"] + 1


def test_the_standards_tree_agrees_with_the_catalog(server):
    client = make_client(server, "sas-sdk-v3")
    places = {i: (c["policy"]["standard_id"], c["policy"]["requirement_id"], c["policy"]["section_id"]) for i, c in ITEMS.items()}
    structure = client.call("GetCheckStructure", {"Lang": "en"})["CheckStructureResponse"]
    tree = {}
    for group in structure:
        for s in group["Standards"]:
            assert s["Type"] == group["StandardType"]
            for r in s["Requirements"]:
                in_requirement = [i for i, p in places.items() if p[:2] == (s["Id"], r["Id"])]
                assert r["TotalCheckCount"] == len(in_requirement)
                for sec in r["Sections"]:
                    tree[sec["Id"]] = (s["Id"], r["Id"])
    assert tree == {p[2]: p[:2] for p in places.values()}
    assert {g["StandardType"] for g in structure} == {c["policy"]["type"] for c in ITEMS.values()}

    standards = client.call("ListCheckStandard", {"Lang": "en"})["Standards"]
    for s in standards:
        for r in s["Requirements"]:
            assert r["RiskCheckCount"] == sum(1 for p in places.values() if p[:2] == (s["Id"], r["Id"]))
    aws = next(s for s in standards if s["Type"] == "COMPLIANCE" and s["BindVendor"] == 7)
    assert all(ITEMS[i]["asset"].startswith("aws.") for i, p in places.items() if p[0] == aws["Id"])
    # Only the AWS items judge security groups.
    groups = client.call("ListCheckStandard", {"InstanceSubTypes": ["SECURITY_GROUP"]})["Standards"]
    assert [s["Id"] for s in groups] == [aws["Id"]]

    items = all_pages(client, "ListCheckItems", {"Lang": "en"}, "CheckItems")
    assert sorted(i["CheckId"] for i in items) == sorted(ITEMS)
    for i in items:
        p = i["CheckPolicies"][0]
        assert (p["StandardId"], p["RequirementId"], p["SectionId"]) == places[i["CheckId"]]
        assert i["RiskLevel"] == ITEMS[i["CheckId"]]["risk"] and i["Status"] == "RELEASE"
        assert i["CheckRule"].startswith(ITEMS[i["CheckId"]]["rule"][0]["key"])
        cis = ITEMS[i["CheckId"]].get("cis")
        assert (f"CIS {cis} (" in i["Remark"]) if cis else i["Remark"] == ""
    one = client.call("ListCheckItems", {"CheckId": 1001, "Lang": "zh"})
    assert one["PageInfo"]["TotalCount"] == 1 and one["CheckItems"][0]["CheckShowName"] == ITEMS[1001]["name"]["zh"]
    ssh = client.call("ListCheckItems", {"CheckShowName": "ssh", "PageSize": 100})
    assert ssh["PageInfo"]["TotalCount"] == sum(1 for c in ITEMS.values() if "ssh" in c["name"]["en"].lower() or "ssh" in c["key"])
    assert client.call("ListCheckItems", {"CheckTypes": ["CUSTOM"]})["PageInfo"]["TotalCount"] == 0
    expect_error(lambda: client.call("ListCheckItems", {"Statuses": ["DRAFT"]}), "InvalidParameter", 400)


def test_policies_list_each_level_with_its_parent(server):
    client = make_client(server, "sas-sdk-v3")
    places = {(c["policy"]["standard_id"], c["policy"]["requirement_id"], c["policy"]["section_id"]) for c in ITEMS.values()}
    levels = {
        "STANDARD": {(s, 0) for s, _, _ in places},
        "REQUIREMENT": {(r, s) for s, r, _ in places},
        "SECTION": {(c, r) for _, r, c in places},
    }
    for kind, expected in levels.items():
        policies = all_pages(client, "ListCheckPolicies", {"PolicyType": kind}, "Policies")
        assert {(p["PolicyId"], p["DependentPolicyId"]) for p in policies} == expected
        assert all(p["PolicyType"] == kind and p["CheckType"] == "SYSTEM" for p in policies)
    page = client.call("ListCheckPolicies", {"PolicyType": "SECTION", "DependentPolicyId": 5, "PageSize": 2})
    assert page["PageInfo"]["Count"] == "2" and page["PageInfo"]["TotalCount"] == len({c for _, r, c in places if r == 5})
    risk = client.call("ListCheckPolicies", {"PolicyType": "STANDARD", "Type": "RISK"})["Policies"]
    assert {p["PolicyId"] for p in risk} == {c["policy"]["standard_id"] for c in ITEMS.values() if c["policy"]["type"] == "RISK"}
    expect_error(lambda: client.call("ListCheckPolicies", {}), "MissingParameter", 400)
    expect_error(lambda: client.call("ListCheckPolicies", {"PolicyType": "CHAPTER"}), "InvalidParameter", 400)
