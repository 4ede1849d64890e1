"""ExportRecord and DescribeExportInfo through the official SDK over real HTTP: the report is
downloaded by its link (CSV and JSON) and holds exactly the results ListCheckInstanceResult
lists, with their evidence; narrowing, bad input and bad links are refused clearly."""
import csv
import io
import json
import urllib.error
import urllib.request

import pytest

from test_conformance import expect_error, make_client
from test_overview import ITEMS, all_pages, check_everything


def download(link):
    with urllib.request.urlopen(link, timeout=10) as r:
        return r.headers["Content-Type"], r.read().decode()


def listed_results(client, check_ids):
    out = set()
    for check_id in check_ids:
        for row in all_pages(client, "ListCheckInstanceResult", {"CheckId": check_id}, "BasicData"):
            out.add((check_id, row["InstanceId"], row["Status"]))
    return out


def test_the_export_downloads_and_matches_the_results(server):
    client = make_client(server, "sas-sdk-v3")
    check_everything(client)
    made = client.call("ExportRecord", {"ExportType": "baselineCspm", "Lang": "en"})
    info = client.call("DescribeExportInfo", {"ExportId": made["Id"]})
    assert (info["ExportStatus"], info["Progress"], info["Message"]) == ("success", 100, "success")
    assert info["FileName"] == made["FileName"] and info["TotalCount"] == info["CurrentCount"] > 0

    kind, text = download(info["Link"])
    assert kind.startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == info["TotalCount"]
    exported = {(int(r["CheckId"]), r["InstanceId"], r["Status"]) for r in rows}
    assert exported == listed_results(client, sorted(ITEMS))
    root_login = next(r for r in rows if r["CheckId"] == "1001")
    assert "PermitRootLogin=" in root_login["Evidence"] and root_login["Cis"] == "5.2.7"
    assert root_login["CheckShowName"] == ITEMS[1001]["name"]["en"]

    kind, text = download(info["Link"].replace(".csv?", ".json?"))
    assert kind.startswith("application/json")
    as_json = json.loads(text)
    assert {(r["CheckId"], r["InstanceId"], r["Status"]) for r in as_json} == exported
    assert all(isinstance(r["Evidence"], dict) for r in as_json)


def test_an_export_can_be_narrowed_and_bad_input_is_refused(server):
    client = make_client(server, "sas-sdk-v3")
    check_everything(client)
    params = json.dumps({"CheckIds": [1001, 1016], "Statuses": ["NOT_PASS"]})
    made = client.call("ExportRecord", {"ExportType": "baselineCspm", "Params": params})
    info = client.call("DescribeExportInfo", {"ExportId": made["Id"]})
    rows = list(csv.DictReader(io.StringIO(download(info["Link"])[1])))
    expected = {r for r in listed_results(client, [1001, 1016]) if r[2] == "NOT_PASS"}
    assert expected and {(int(r["CheckId"]), r["InstanceId"], r["Status"]) for r in rows} == expected

    expect_error(lambda: client.call("ExportRecord", {}), "MissingParameter", 400)
    expect_error(lambda: client.call("ExportRecord", {"ExportType": "virusScanExport"}), "InvalidParameter", 400)
    for bad in ["{", "[1]", json.dumps({"Colour": ["red"]}), json.dumps({"Statuses": ["GREEN"]})]:
        expect_error(lambda: client.call("ExportRecord", {"ExportType": "baselineCspm", "Params": bad}), "InvalidParameter", 400)
    expect_error(lambda: client.call("ExportRecord", {"ExportType": "baselineCspm", "Params": json.dumps({"CheckIds": [424242]})}),
                 "InvalidCheckId.NotFound", 404)
    expect_error(lambda: client.call("DescribeExportInfo", {"ExportId": 987654}), "InvalidExportId.NotFound", 404)
    expect_error(lambda: client.call("DescribeExportInfo", {}), "MissingParameter", 400)
    # A link with another token, or to another file, is not found.
    for link in [info["Link"].replace("token=", "token=x"), info["Link"].split("?")[0],
                 info["Link"].replace(made["FileName"], "other.csv")]:
        with pytest.raises(urllib.error.HTTPError) as e:
            download(link)
        assert e.value.code == 404


def test_links_use_the_public_url_when_one_is_set(tmp_path):
    from conftest import Server
    s = Server(tmp_path / "data", args=("--public-url", "https://posture.example:9443"))
    try:
        client = make_client(s, "sas-sdk-v3")
        made = client.call("ExportRecord", {"ExportType": "baselineCspm"})
        link = client.call("DescribeExportInfo", {"ExportId": made["Id"]})["Link"]
        assert link.startswith(f"https://posture.example:9443/exports/{made['Id']}/{made['FileName']}?token="), link
        # The same path on the node itself downloads it (the proxy would forward it there).
        assert download(link.replace("https://posture.example:9443", s.url))[0].startswith("text/csv")
    finally:
        s.stop()
