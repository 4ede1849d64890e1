#!/usr/bin/env python3
"""Prints docs/checks.md's tables from the catalog (crates/catalog/checks/*.toml), so that the
readable list and the data stay in step: `python3 scripts/checks_table.py linux|aws|effects`.
A unit test (crates/catalog, docs_tests) checks every item's row is in docs/checks.md."""
import sys
import tomllib
from pathlib import Path

CHECKS = Path(__file__).resolve().parent.parent / "crates/catalog/checks"


def load(name):
    return tomllib.loads((CHECKS / f"{name}.toml").read_text())["checks"]


def rule(c):
    parts = []
    for r in c["rule"]:
        operand = r.get("value", "")
        if "values" in r:
            operand = repr(r["values"])
        if r["op"] == "audit_rules":
            operand = "; ".join(f"`{v}`" for v in r["values"])
        unset = f" (unset = {r['default']!r})" if "default" in r else ""
        for custom in c.get("custom", []):
            if operand == "{" + custom["name"] + "}":
                threshold = f"the account's threshold, default {custom['default']}"
                unset = f" ({threshold}; unset = {r['default']!r})" if "default" in r else f" ({threshold})"
        parts.append(f"`{r['key']}` {r['op']} {operand}{unset}".replace("  ", " "))
    return "; ".join(parts)


def repair_kind(c):
    r = c.get("repair")
    if not r:
        return "detection only"
    return "repair + rollback" if r["support_type"] == 1 else "repair only"


def params(c):
    r = c.get("repair") or {}
    out = []
    for p in r.get("params", []):
        t = p["type_define"]
        kind = {"IP_PORT": "IP:PORT"}.get(t["type"], t["type"])
        if "range" in t:
            kind += f" [{t['range'][0]}, {t['range'][1]}]"
        extra = "required" if p.get("required") else f"default {p['default']}" if "default" in p else ""
        out.append(f"`{p['name']}` {kind} (UsageType {p['usage']}" + (f", {extra})" if extra else ")"))
    return "; ".join(out) or "—"


def host_change(step):
    if step["op"] == "set_mode":
        return f"chmod {step['mode']} `{step['file']}`"
    return f"set `{step['key']} {step['value']}` ({step['dialect']})"


def cloud_change(step):
    args = ", ".join(f"{k}={v}" for k, v in step.get("args", {}).items())
    return f"`{step['action']}`" + (f" {args}" if args else "")


def row(cells):
    return "| " + " | ".join(str(x) for x in cells) + " |"


def linux():
    print(row(["CheckId", "item", "risk", "CIS", "rule (PASS when)", "repair", "what the repair changes", "parameters"]))
    print(row(["---"] * 8))
    for c in load("linux"):
        steps = (c.get("repair") or {}).get("steps", [])
        change = "; ".join(host_change(s) for s in steps) or "—"
        print(row([c["id"], c["name"]["en"], c["risk"], c.get("cis", "—"), rule(c), repair_kind(c), change, params(c)]))


def aws():
    print(row(["CheckId", "item", "risk", "CIS", "asset", "rule (PASS when)", "repair", "cloud action", "parameters"]))
    print(row(["---"] * 9))
    for c in sorted(load("aws"), key=lambda c: c["id"]):
        steps = (c.get("repair") or {}).get("steps", [])
        change = "; ".join(cloud_change(s) for s in steps) or "—"
        print(row([c["id"], c["name"]["en"], c["risk"], c.get("cis", "—"), f"`{c['asset']}`", rule(c), repair_kind(c), change, params(c)]))


VALIDATE = {"sshd": "`sshd -t` (includes re-rooted)"}
LIVE = {"sshd_effective": "`sshd -T`", "proc_sys": "`/proc/sys`", "redis_config_get": "`CONFIG GET`"}
IMMEDIATE = "the file's mode is what is in effect"
# Who reads a file that takes effect at its next use (`next_use`), by the step's file.
READERS = [
    ("/etc/login.defs", "useradd/passwd/chage when they run"),
    ("/etc/default/useradd", "useradd when it runs"),
    ("/etc/security/", "PAM at the next login"),
    ("/etc/modprobe.d/", "modprobe at the next load of the module (and at boot)"),
    ("/etc/systemd/journald.conf", "systemd-journald when it restarts"),
    ("/etc/audit/auditd.conf", "auditd when it restarts"),
]


def next_use(c):
    step = c["repair"]["steps"][0]
    where = step.get("file") or ("/etc/modprobe.d/" if step.get("dialect") == "modprobe" else "")
    reader = next((r for prefix, r in READERS if where.startswith(prefix)), "its program when it next runs")
    return f"none: read by {reader} (stated in the result)"


def effects():
    print(row(["CheckId", "apply", "validate", "live value read"]))
    print(row(["---"] * 4))
    for c in load("linux"):
        e = (c.get("repair") or {}).get("effect")
        if not e:
            continue
        live = LIVE.get(e.get("live"), {"immediate": IMMEDIATE, "next_use": next_use(c)}.get(e["apply"], "—"))
        if e.get("live") == "proc_sys":
            keys = [s["key"] for s in c["repair"]["steps"]]
            live = ", ".join(f"`/proc/sys/{k.replace('.', '/')}`" for k in keys)
        if e.get("live") == "redis_config_get":
            live = "`CONFIG GET " + " / ".join(s["key"] for s in c["repair"]["steps"]) + "`"
        print(row([c["id"], f"`{e['apply']}`", VALIDATE.get(e.get("validate"), "—"), live]))


{"linux": linux, "aws": aws, "effects": effects}[sys.argv[1]]()
