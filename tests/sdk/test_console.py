"""The web console at /console/, in a real headless Chromium (Debian's package) driven by
Playwright: sign in, repair and roll back from the browser, what a ReadOnly key sees, CSRF, and
tenancy. Screenshots of each page go to target/console-screenshots/ (not committed)."""
import http.server
import json
import os
import re
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, Server, posture_bin
from test_nodes import database  # noqa: F401  (a fixture: a throwaway PostgreSQL database)

CHROMIUM = os.environ.get("POSTURE_CHROMIUM", "/usr/bin/chromium")
SHOTS = ROOT / "target" / "console-screenshots"
WEB_01 = "i-bp1a2c3d4e5f6g7h8i9j"
REDIS_ITEM = "Redis does not listen on all interfaces"


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("POSTURE_REQUIRE_BROWSER"):
            pytest.fail(f"Chromium is required for the console tests and is not at {CHROMIUM}")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        # Flags as this machine needs them: no sandbox as root, and no background connections
        # (the network is closed).
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


def page_of(browser, width=1280, height=900):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    page.set_default_timeout(20_000)
    return page


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in_link(server: Server) -> str:
    log = (server.data.parent / "serve.log").read_text()
    return re.search(r"(http://\S+/console/#ticket=[0-9a-f]{64})", log).group(1)


def cli(server, *args):
    return json.loads(subprocess.run([posture_bin(), *args, "--data", str(server.data)], check=True,
                                     capture_output=True, text=True).stdout)


def sign_in_with_key(page, server, key):
    page.goto(f"{server.url}/console/")
    page.get_by_label("AccessKeyId").fill(key["AccessKeyId"])
    page.get_by_label("AccessKeySecret").fill(key["AccessKeySecret"])
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Overview").wait_for()


def console_call(page, params, csrf=True):
    """A call made by the page's own script context (the session's cookie goes with it)."""
    return page.evaluate("""async ([params, csrf]) => {
        const s = await (await fetch('/console/session')).json();
        const headers = {'content-type': 'application/x-www-form-urlencoded'};
        if (csrf) headers['x-posture-csrf'] = s.CsrfToken;
        const r = await fetch('/console/api', {method: 'POST', headers, body: new URLSearchParams(params)});
        return {status: r.status, body: await r.json()};
    }""", [params, csrf])


def test_sign_in_repair_and_roll_back_from_the_browser(server, browser):
    redis = server.fleet_file(WEB_01, "etc/redis/redis.conf")
    original = redis.read_bytes()
    page = page_of(browser)
    # The one-time link that `serve --demo` printed.
    page.goto(sign_in_link(server))
    page.get_by_role("heading", name="Overview").wait_for()
    page.get_by_text("Items failing", exact=True).wait_for()
    assert "ticket" not in page.url, "the link's secret leaves the address bar"
    page.get_by_text("completed, 8 of 8 instances").wait_for()
    shot(page, "overview")

    # Find a failing item.
    page.get_by_role("link", name="Check items").click()
    page.get_by_label("Status").select_option("NOT_PASS")
    page.get_by_label("Name contains").fill("Redis")
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("link", name=REDIS_ITEM).wait_for()
    shot(page, "check-items")
    page.get_by_role("link", name=REDIS_ITEM).click()
    page.get_by_role("heading", name=REDIS_ITEM).wait_for()
    page.get_by_role("cell", name=WEB_01, exact=True).wait_for()
    shot(page, "check-item")

    # The fix dialog: a bad IP:PORT is refused as it is typed.
    page.get_by_role("button", name="Fix…").click()
    dialog = page.get_by_role("dialog")
    field = dialog.get_by_label(re.compile("IPPort"))
    field.fill("127.0.0.1:99999")
    dialog.get_by_text("Enter an address and port").wait_for()
    assert field.get_attribute("aria-invalid") == "true"
    # A value of the right form that would defeat the fix: the server's refusal, at the field.
    field.fill("0.0.0.0:6379")
    assert field.get_attribute("aria-invalid") == "false"
    dialog.get_by_label("Chosen below").check()
    for box in dialog.get_by_role("checkbox").all():
        if box.get_attribute("aria-label") != f"Repair {WEB_01}":
            box.uncheck()
    dialog.get_by_role("button", name="Preview changes").click()
    dialog.get_by_text("ErrorParamFormat.IPPort").first.wait_for()
    field.fill("127.0.0.1:6379")
    dialog.get_by_role("button", name="Preview changes").click()
    dialog.get_by_text("+bind 127.0.0.1").wait_for()
    shot(page, "fix-dialog")
    assert redis.read_bytes() == original, "a preview changes nothing"
    dialog.get_by_role("button", name="Repair", exact=True).click()

    # Live progress to verified, then the file on disk.
    page.get_by_role("heading", name=f"Repair: {REDIS_ITEM}").wait_for()
    page.get_by_text("REPAIR_SUCCESS_VERIFIED").wait_for(timeout=60_000)
    page.get_by_text("finished").wait_for()
    shot(page, "task")
    repaired = redis.read_text()
    assert "bind 127.0.0.1" in repaired and "port 6379" in repaired
    assert page.get_by_role("row").count() == 2, "one instance chosen, one task"

    # Roll back from the browser: the file is back byte for byte, and the item fails again.
    page.get_by_role("checkbox", name=f"Roll back {WEB_01}").check()
    page.get_by_role("button", name="Roll back selected").click()
    page.get_by_role("heading", name=f"Rollback: {REDIS_ITEM}").wait_for()
    page.get_by_text("ROLL_BACK_VERIFIED").wait_for(timeout=60_000)
    assert redis.read_bytes() == original
    page.get_by_role("link", name="Open the check item").click()
    row = page.get_by_role("row").filter(has_text=WEB_01)
    row.get_by_text("NOT_PASS").wait_for()

    # The tasks page lists both.
    page.get_by_role("link", name="Tasks").click()
    page.get_by_text("ROLL_BACK_VERIFIED").wait_for()
    page.get_by_text("REPAIR_SUCCESS_VERIFIED").wait_for()
    shot(page, "tasks")
    page.get_by_role("link", name="Assets").click()
    page.get_by_role("heading", name="Agents").wait_for()
    shot(page, "assets")

    # Sign out: the session is gone on the server, not only in the page.
    cookie = next(c for c in page.context.cookies() if c["name"] == "posture_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Sign in to posture").wait_for()
    page.goto(f"{server.url}/console/#/items")
    page.get_by_role("heading", name="Sign in to posture").wait_for()
    req = urllib.request.Request(f"{server.url}/console/session", headers={"Cookie": f"posture_session={cookie['value']}"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 401 and json.loads(e.value.read())["Code"] == "Console.SessionRequired"
    # The link worked once.
    page.goto(sign_in_link(server))
    page.get_by_text("The sign-in link was not accepted").wait_for()
    assert page.errors == []


def test_phone_sized_screen(server, browser):
    page = page_of(browser, 390, 844)
    page.goto(sign_in_link(server))
    page.get_by_role("heading", name="Overview").wait_for()
    page.goto(f"{server.url}/console/#/items?status=NOT_PASS")
    page.get_by_role("link", name=REDIS_ITEM).wait_for()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the check items page scrolls sideways on a phone ({width} px)"
    shot(page, "check-items-phone")


def test_read_only_key_sees_no_fix_and_its_forged_calls_are_refused(server, browser):
    key = cli(server, "keys", "create", "--account", server.credentials["AccountId"], "--policy", "ReadOnly")
    page = page_of(browser)
    sign_in_with_key(page, server, key)
    assert page.get_by_role("button", name="Check now").count() == 0
    page.goto(f"{server.url}/console/#/items/1016")
    page.get_by_role("heading", name=REDIS_ITEM).wait_for()
    page.get_by_role("cell", name=WEB_01, exact=True).wait_for()
    assert page.get_by_role("button", name="Fix…").count() == 0
    assert page.get_by_role("button", name=re.compile("Accept the risk")).count() == 0
    # A request the page would never send, with the session and its CSRF token: the key's
    # policy refuses it, as the API would.
    forged = console_call(page, {"Action": "SubmitOperationTask", "CheckId": "1016", "Type": "REPAIR",
                                 "OperationTaskInstances.1.InstanceId": WEB_01,
                                 "RepairTempParam.1.Name": "IPPort", "RepairTempParam.1.Value": "127.0.0.1:6379"})
    assert forged["status"] == 403 and forged["body"]["Code"] == "NoPermission", forged
    # Nor may it list the account's keys, though Describe* is in its policy.
    keys = console_call(page, {"Action": "DescribeAccessKeys"})
    assert keys["body"]["Code"] == "NoPermission"
    listed = console_call(page, {"Action": "ListOperationTask"})
    assert listed["status"] == 200 and listed["body"]["PageInfo"]["TotalCount"] == 0, "nothing was submitted"
    # A refused attempt is in the audit trail under the key.
    page.goto(f"{server.url}/console/#/assets")
    page.get_by_role("heading", name="Servers and cloud resources").wait_for()
    assert page.get_by_role("heading", name="Account and keys").count() == 0
    assert page.errors == []


class _Attacker(http.server.BaseHTTPRequestHandler):
    """A page of another origin that posts a form to the console (a CSRF attempt)."""
    target = ""

    def do_GET(self):
        body = f"""<!doctype html><form id=f method=post action="{self.target}/console/api">
            <input name=Action value=SubmitCheck></form><script>document.getElementById('f').submit()</script>""".encode()
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_csrf_without_the_token_or_from_another_site_is_refused(server, browser):
    page = page_of(browser)
    page.goto(sign_in_link(server))
    page.get_by_role("heading", name="Overview").wait_for()
    before = console_call(page, {"Action": "ListOperationProcess"})["body"]["PageInfo"]["TotalCount"]
    # The page's own context without the token.
    refused = console_call(page, {"Action": "SubmitCheck"}, csrf=False)
    assert refused["status"] == 403 and refused["body"]["Code"] == "Console.CsrfRefused", refused
    # The sign-out needs it too.
    out = page.evaluate("fetch('/console/signout', {method: 'POST'}).then(r => r.status)")
    assert out == 403
    # A page on another port of the same host (the same site: the browser sends the cookie)
    # that submits a form to the console.
    _Attacker.target = server.url
    attacker = http.server.HTTPServer(("127.0.0.1", 0), _Attacker)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://127.0.0.1:{attacker.server_address[1]}/")
        page.wait_for_url(f"{server.url}/console/api")
        answer = json.loads(page.locator("body").inner_text())
        assert answer["Code"] == "Console.CsrfRefused", answer
    finally:
        attacker.shutdown()
    # With the token, from the console itself, the same call works.
    page.goto(f"{server.url}/console/#/overview")
    page.get_by_role("heading", name="Overview").wait_for()
    ok = console_call(page, {"Action": "SubmitCheck"})
    assert ok["status"] == 200 and ok["body"]["TaskId"]
    after = console_call(page, {"Action": "ListOperationProcess"})["body"]["PageInfo"]["TotalCount"]
    assert after == before + 1, "only the console's own call started a check run"


def test_a_session_of_one_account_cannot_see_another_accounts_items(server, browser):
    other = cli(server, "accounts", "create", "--name", "tenant-b")
    key = cli(server, "keys", "create", "--account", other["AccountId"], "--policy", "Admin")
    admin = page_of(browser)
    admin.goto(sign_in_link(server))
    admin.get_by_role("heading", name="Overview").wait_for()
    theirs = console_call(admin, {"Action": "ListCheckInstanceResult", "CheckId": "1016", "Statuses.1": "NOT_PASS"})
    assert theirs["body"]["PageInfo"]["TotalCount"] == 3

    page = page_of(browser)
    sign_in_with_key(page, server, key)
    assert other["AccountId"] in page.get_by_text("account ").first.inner_text()
    page.goto(f"{server.url}/console/#/items/1016")
    page.get_by_role("heading", name=REDIS_ITEM).wait_for()
    page.get_by_role("heading", name="Failing instances").wait_for()
    assert page.get_by_text(WEB_01).count() == 0
    mine = console_call(page, {"Action": "ListCheckInstanceResult", "CheckId": "1016"})
    assert mine["body"]["PageInfo"]["TotalCount"] == 0
    page.goto(f"{server.url}/console/#/assets")
    page.get_by_text("Page 1 of 1 (0 in all)").wait_for()
    # A's instance named explicitly from B's session: not found in B's account.
    forged = console_call(page, {"Action": "ListCheckInstanceResult", "CheckId": "1016", "InstanceIds.1": WEB_01})
    assert forged["body"].get("PageInfo", {}).get("TotalCount", 0) == 0 or forged["status"] == 404, forged
    # B's keys page lists B's keys only.
    keys = console_call(page, {"Action": "DescribeAccessKeys"})["body"]
    assert [k["AccessKeyId"] for k in keys["AccessKeys"]] == [key["AccessKeyId"]]


def test_page_weight_of_the_check_items_page(server, browser):
    """Reports the bytes of a first load of the check items page (not asserted on time)."""
    page = page_of(browser)
    page.goto(sign_in_link(server))
    page.get_by_role("heading", name="Overview").wait_for()
    fresh = page.context.new_page()
    sizes = []
    fresh.on("response", lambda r: sizes.append(len(r.body()) if r.status == 200 else 0))
    fresh.goto(f"{server.url}/console/#/items")
    fresh.get_by_role("heading", name="Check items").wait_for()
    fresh.wait_for_load_state("networkidle")
    total = sum(sizes)
    print(f"\nconsole: first load of the check items page transferred {total} bytes in {len(sizes)} responses")
    assert total < 300_000


UNLABELLED = """() => [...document.querySelectorAll('input, select, button')]
    .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
    .map(e => e.outerHTML)"""


def test_keyboard_use_and_every_control_labelled(server, browser):
    page = page_of(browser)
    page.goto(sign_in_link(server))
    page.get_by_role("heading", name="Overview").wait_for()
    for route, heading in [("#/overview", "Overview"), ("#/items", "Check items"), ("#/items/1016", REDIS_ITEM),
                           ("#/tasks", "Tasks"), ("#/assets", "Assets")]:
        page.goto(f"{server.url}/console/{route}")
        page.get_by_role("heading", name=heading, exact=True).wait_for()
        assert page.evaluate(UNLABELLED) == [], route
    # The item page with the keyboard alone: Tab to the Fix button, Enter opens the dialog with
    # the focus on its first field, Escape closes it and gives the page back.
    page.goto(f"{server.url}/console/#/items/1016")
    page.get_by_role("button", name="Fix…").wait_for()
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "fix":
            break
    else:
        pytest.fail("the Fix button cannot be reached with Tab")
    page.keyboard.press("Enter")
    page.get_by_role("dialog").wait_for()
    page.wait_for_function("document.activeElement && document.activeElement.id === 'p-IPPort'")
    assert page.evaluate(UNLABELLED) == []
    page.keyboard.press("Escape")
    page.get_by_role("dialog").wait_for(state="detached")


def test_a_session_is_honoured_and_ended_by_every_node(tmp_path, browser, database):
    data = tmp_path / "data"
    first = Server(data, args=("--database", database), log_name="node-0.log")
    second = Server(data, args=("--database", database), log_name="node-1.log")
    try:
        page = page_of(browser)
        # Each node printed a link for the admin key; the last one made voids the ones before.
        link = re.search(r"(http://\S+/console/#ticket=[0-9a-f]{64})", (tmp_path / "node-1.log").read_text()).group(1)
        page.goto(link.replace(second.url, first.url))
        page.get_by_role("heading", name="Overview").wait_for()
        # The browser sends the cookie to the other node (the same host); that node knows the
        # session from the database.
        page.goto(f"{second.url}/console/#/items/1016")
        page.get_by_role("cell", name=WEB_01, exact=True).wait_for()
        page.get_by_role("button", name="Sign out").click()
        page.get_by_role("heading", name="Sign in to posture").wait_for()
        page.goto(f"{first.url}/console/#/items")
        page.get_by_role("heading", name="Sign in to posture").wait_for()
    finally:
        second.stop()
        first.stop()


def test_a_link_ends_the_session_in_force_and_other_tabs_follow(server, browser):
    key = cli(server, "keys", "create", "--account", server.credentials["AccountId"], "--policy", "ReadOnly")
    first = page_of(browser)
    sign_in_with_key(first, server, key)
    old = next(c for c in first.context.cookies() if c["name"] == "posture_session")["value"]
    # The link opened in a new tab of the same browser: the ReadOnly session ends on the server.
    second = first.context.new_page()
    second.goto(sign_in_link(server))
    second.get_by_role("heading", name="Overview").wait_for()
    assert "ticket" not in second.url
    req = urllib.request.Request(f"{server.url}/console/session", headers={"Cookie": f"posture_session={old}"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 401
    # The first tab, still showing the ReadOnly key, takes up the session in force at its next
    # call instead of failing.
    first.get_by_role("link", name="Check items").click()
    first.get_by_text("this tab now acts as " + server.credentials["AccessKeyId"]).wait_for()
    first.get_by_role("heading", name="Check items").wait_for()
    assert server.credentials["AccessKeyId"] in first.locator("#who").inner_text()


def test_repair_parameters_are_checked_as_they_are_typed(server, browser):
    """The fix dialog's checks, run in the page's own script for each TypeDefine posture uses."""
    page = page_of(browser)
    page.goto(f"{server.url}/console/")
    page.get_by_role("heading", name="Sign in to posture").wait_for()
    cases = [
        ('{"type":"IP:PORT"}', "127.0.0.1:6379", True), ('{"type":"IP:PORT"}', "[::1]:6379", True),
        ('{"type":"IP:PORT"}', "127.0.0.1:99999", False), ('{"type":"IP:PORT"}', "::1:6379", False),
        ('{"type":"IP:PORT"}', "256.1.1.1:80", False), ('{"type":"IP:PORT"}', "01.2.3.4:80", False),
        ('{"type":"CIDR"}', "10.0.0.0/8", True), ('{"type":"CIDR"}', "2001:db8::/32", True),
        ('{"type":"CIDR"}', "10.0.0.0/33", False), ('{"type":"CIDR"}', "10.0.0.0", False), ('{"type":"CIDR"}', "10.0.0.0/8/1", False),
        ('{"type":"NUMBER","range":[1,365]}', "60", True), ('{"type":"NUMBER","range":[1,365]}', "0", False),
        ('{"type":"NUMBER","range":[1,365]}', "366", False), ('{"type":"NUMBER","range":[1,365]}', "6x", False),
        ('{"type":"PORT"}', "22", True), ('{"type":"PORT"}', "0", False), ('{"type":"PORT"}', "65536", False),
        ('{"type":"ENUM","values":["yes","no"]}', "no", True), ('{"type":"ENUM","values":["yes","no"]}', "maybe", False),
        ('{"type":"BOOL"}', "true", True), ('{"type":"BOOL"}', "yes", False),
        ('{"type":"STRING","pattern":"[a-z]+"}', "abc", True), ('{"type":"STRING","pattern":"[a-z]+"}', "abc1", False),
    ]
    got = page.evaluate("cases => cases.map(([t, v]) => validator(t)(v) === '')", [[t, v] for t, v, _ in cases])
    wrong = [(t, v) for (t, v, ok), accepted in zip(cases, got) if ok != accepted]
    assert wrong == [], wrong


def test_add_an_aws_account_from_the_console(aws_server, moto, browser):
    """The assets page's form against a real moto_server: the keys are verified with a real
    call, the account is listed, and its secret is never on the page again."""
    key_id, secret = moto.key
    page = page_of(browser)
    sign_in_with_key(page, aws_server, aws_server.credentials)
    page.get_by_role("link", name="Assets").click()
    page.get_by_role("heading", name="Add an AWS account").wait_for()
    page.get_by_label("AWS access key id").fill(key_id)
    page.get_by_label("Secret access key (never shown again)").fill("wrong" + secret)
    page.get_by_role("button", name="Add", exact=True).click()
    page.get_by_text("CloudAccessKeyInvalid").wait_for()
    assert page.get_by_label("Secret access key (never shown again)").input_value() == "", "a refused secret is cleared"
    page.get_by_label("Secret access key (never shown again)").fill(secret)
    page.get_by_label("Alias").fill("moto")
    page.get_by_role("button", name="Add", exact=True).click()
    page.get_by_text("The AWS account was added").wait_for()
    page.get_by_role("cell", name=key_id).wait_for()
    assert secret not in page.content()
    shot(page, "assets-aws")


def test_all_failing_instances_are_left_to_the_server(server, browser):
    """'All failing instances' is sent as DimensionType CHECK_ID: the preview covers every
    failing instance, and the repair creates a task on each."""
    page = page_of(browser)
    page.goto(sign_in_link(server))
    page.get_by_role("heading", name="Overview").wait_for()
    page.goto(f"{server.url}/console/#/items/1016")
    page.get_by_role("button", name="Fix…").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Instances (3 failing)").wait_for()
    assert dialog.get_by_label("All failing instances").is_checked()
    dialog.get_by_label(re.compile("IPPort")).fill("127.0.0.1:6379")
    calls = []
    page.on("request", lambda r: calls.append(r.post_data or "") if r.url.endswith("/console/api") else None)
    dialog.get_by_role("button", name="Preview changes").click()
    dialog.get_by_text("What the repair would change").wait_for()
    assert dialog.locator(".card").count() == 3
    preview = next(c for c in calls if "PreviewOperationTask" in c)
    assert "DimensionType=CHECK_ID" in preview and "OperationTaskInstances" not in preview
    dialog.get_by_role("button", name="Repair", exact=True).click()
    page.get_by_role("heading", name=f"Repair: {REDIS_ITEM}").wait_for()
    assert page.get_by_role("row").count() == 4, "a task on each of the 3 failing instances"


def test_accept_a_risk_with_a_reason_and_an_expiry_then_remove_it(server, browser):
    page = page_of(browser)
    page.goto(sign_in_link(server))
    page.get_by_role("heading", name="Overview").wait_for()
    page.goto(f"{server.url}/console/#/items/1016")
    page.get_by_role("button", name=f"Accept the risk on {WEB_01}").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Accept risk").click()
    dialog.get_by_text("Say why the risk is accepted").wait_for()
    dialog.get_by_label("Reason").fill("lab box, firewalled")
    dialog.get_by_label(re.compile("Until")).fill("2099-12-31")
    dialog.get_by_role("button", name="Accept risk").click()
    page.get_by_text(f"The risk on {WEB_01} is accepted until 2099-12-31").wait_for()
    rule = page.get_by_role("row").filter(has_text="lab box, firewalled")
    rule.wait_for()
    assert "2099" in rule.inner_text()
    assert page.get_by_role("button", name=f"Accept the risk on {WEB_01}").count() == 0, "no longer failing"
    result = console_call(page, {"Action": "ListCheckInstanceResult", "CheckId": "1016", "InstanceIds.1": WEB_01})
    assert result["body"]["BasicData"][0]["Status"] == "WHITELIST"
    shot(page, "check-item-whitelist")
    # Removed: the instance fails again.
    rule.get_by_role("button", name=re.compile("Remove the rule")).click()
    page.get_by_text("The rule was removed").wait_for()
    page.get_by_role("button", name=f"Accept the risk on {WEB_01}").wait_for()
    assert page.errors == []
