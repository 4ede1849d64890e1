#!/usr/bin/env python3
"""Plots how cost grows with work, from `posture bench all --json` output.

    posture bench all --json > bench.jsonl
    python3 scripts/plot_scaling.py bench.jsonl docs/scaling.png
    python3 scripts/plot_scaling.py --fleet fleet.jsonl docs/fleet-scaling.png [BINARY]   # bench fleet

Needs matplotlib (pip install -r scripts/requirements-plot.txt)."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SERIES = [
    ("fanout", "submit_seconds", "fan-out: SubmitOperationTask answered"),
    ("repair", "repair_seconds", "repair: all verified"),
    ("repair", "rollback_seconds", "rollback: all verified"),
    ("assess", "check_seconds", "assess: full check done"),
]


def main(src, dst):
    rows = [json.loads(line) for line in open(src) if line.strip()]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for scenario, field, label in SERIES:
        pts = sorted((r["n"], r[field]) for r in rows if r.get("scenario") == scenario and field in r)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ns = sorted({r["n"] for r in rows if r.get("scenario") in ("fanout", "repair", "assess")})
    if ns:
        # A line of slope 1: linear growth, for reference.
        lo, hi = ns[0], ns[-1]
        ax.plot([lo, hi], [lo / 1e5, hi / 1e5], linestyle=":", color="grey", label="linear (slope 1)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N (instances, tasks or hosts)")
    ax.set_ylabel("seconds")
    ax.set_title("posture: time vs N (2 cores)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


FLEET_OPS = ["ListCheckResult", "ListCheckInstanceResult", "ListCheckInstanceResult (last page)", "ListOperationTask"]


def fleet(src, dst, binary=None):
    """The console's listings (one client, p50 and p99) against the fleet's size; only the lines
    of `binary` when given (a file may hold runs of several)."""
    rows = [json.loads(line) for line in open(src) if line.strip()]
    rows = [r for r in rows if r.get("scenario") == "fleet" and r.get("clients") == 1]
    rows = [r for r in rows if binary is None or r.get("binary") == binary]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for op in FLEET_OPS:
        for field, style in (("p50_ms", "-"), ("p99_ms", ":")):
            pts = sorted((r["n"], r[field]) for r in rows if r["op"] == op)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], linestyle=style, marker="o",
                        label=f"{op} {field[:3]}")
    for ms, label in ((5, "target p50 < 5 ms"), (20, "target p99 < 20 ms"), (50, "deep page p99 < 50 ms")):
        ax.axhline(ms, color="grey", linestyle="--", linewidth=0.8)
        ax.annotate(label, (0.01, ms), xycoords=("axes fraction", "data"), fontsize=7, va="bottom", color="grey")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(1, 200)
    ax.set_xlabel("N (checked instances)")
    ax.set_ylabel("ms, one client")
    ax.set_title("posture: the console's listings vs fleet size (2 cores)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    if sys.argv[1] == "--fleet":
        fleet(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
    else:
        main(sys.argv[1], sys.argv[2])
