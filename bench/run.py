"""`make bench`: every benchmark in one run, side by side, into bench/results.* and the READMEs.

    python bench/run.py [--quick] [--only pipeline,peers,...] [--no-readme]

Each module under bench/ has ``run(quick) -> list[dict]`` rows of
``{benchmark, tool, metric, value, unit, note}``. Peers are measured in the same run as
traindash, so the ratios hold even though this shared 2-core machine is noisy.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import re
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

MODULES = (
    "pipeline",
    "peers",
    "overhead",
    "ingest_scale",
    "ui_bench",
    "query_api",
    "scalars",
    "gym_recorder",
    "system_sampler",
    "query_load",
    "aggregate",
    "fanin_close",
    "first_commit",
    "fanin_streams",
)
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def _value(row: dict) -> str:
    v = row.get("value")
    if v is None:
        return "n/a"
    return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"


@dataclass(frozen=True)
class Target:
    """One of issue 7's targets (or the guide's promise), checked against a run's rows."""

    what: str
    benchmark: str
    tool: str  # a regular expression matched against the whole tool name
    metric: str
    limit: float
    below: bool  # True: the value must stay under the limit; False: reach it
    unit: str
    command: str

    def value(self, rows: list[dict]) -> float | None:
        """The worst matching row's value (several rows: e.g. every trainer count)."""
        values = [
            r["value"]
            for r in rows
            if r["benchmark"] == self.benchmark
            and r["metric"] == self.metric
            and re.fullmatch(self.tool, r["tool"])
            and r.get("value") is not None
        ]
        if not values:
            return None
        return max(values) if self.below else min(values)

    def met(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value < self.limit if self.below else value >= self.limit


_BUSY = r"traindash \((thread|process) sender\), busy-wait 1 ms, log_episode"
TARGETS = (
    Target(
        "log_episode p50, fastest peer ÷ traindash (thread sender)",
        "peers",
        "fastest peer / traindash",
        "p50 ratio",
        15,
        False,
        "x",
        "bench/peers.py",
    ),
    Target(
        "the same with the process sender",
        "peers",
        "fastest peer / traindash process",
        "p50 ratio",
        15,
        False,
        "x",
        "bench/peers.py",
    ),
    Target(
        "training overhead, 1 ms busy-wait + log_episode (worse of both senders)",
        "training_overhead",
        _BUSY,
        "wall-time overhead",
        0.1,
        True,
        "%",
        "bench/overhead.py",
    ),
    Target(
        "collector rows/s, slowest of 1, 2, 4 and 8 trainers",
        "ingest",
        r"traindash, \d+ trainers?",
        "rows/s committed",
        400_000,
        False,
        "rows/s",
        "bench/ingest_scale.py",
    ),
    Target(
        "log → commit p50 at 10,000 records/s",
        "ingest",
        r"traindash, 1 trainer at 10,000/s",
        "log -> commit p50",
        15,
        True,
        "ms",
        "bench/ingest_scale.py",
    ),
    Target(
        "log → commit p99 at 10,000 records/s",
        "ingest",
        r"traindash, 1 trainer at 10,000/s",
        "log -> commit p99",
        50,
        True,
        "ms",
        "bench/ingest_scale.py",
    ),
    Target(
        "log → screen lag p99 (update interval 200 ms + 250 ms)",
        "ui",
        "traindash",
        "log_to_screen_lag_p99_ms",
        450,
        True,
        "ms",
        "bench/ui_bench.py",
    ),
    Target(
        "issue 17: 100 runs x 100,000 episodes grouped onto a 1,000-point grid, with bands",
        "aggregate",
        r"compare\(\), 100 runs x 100,000 episodes, 20 x 5 seeds, x=episode, collector",
        "seconds (median of 3)",
        1.0,
        True,
        "s",
        "bench/aggregate.py",
    ),
    # Beyond the set-up: a trainer whose own work is pure Python and never releases
    # the GIL. Held against the guide's promise, not the 0.1 %.
    Target(
        "pure-Python CPU-bound trainer: GIL stalls added (thread sender; guide's promise)",
        "training_overhead",
        r"traindash \(thread sender\), fixed CPU work ~1 ms, log_episode",
        "stall overhead",
        1.0,
        True,
        "%",
        "bench/overhead.py",
    ),
)


def targets_markdown(rows: list[dict]) -> tuple[str, int]:
    """The targets table, and how many targets were measured and missed."""
    lines = ["| target | measured | limit | met | reproduce |", "|---|---:|---:|---|---|"]
    missed = 0
    for t in TARGETS:
        value = t.value(rows)
        met = t.met(value)
        missed += met is False
        shown = "n/a" if value is None else _value({"value": value})
        mark = {True: "yes", False: "**no**", None: "not measured"}[met]
        lines.append(
            f"| {t.what} | {shown} {t.unit} | {'<' if t.below else '≥'} "
            f"{t.limit:,g} {t.unit} | {mark} | `.venv/bin/python {t.command}` |"
        )
    return "\n".join(lines) + "\n", missed


def markdown(rows: list[dict], stamp: str, quick: bool, full: bool = True) -> str:
    """The run's tables: the targets, then (``full``) every row."""
    targets, _ = targets_markdown(rows)
    lines = [
        f"Measured {stamp} on this project's shared 2-core machine with "
        f"`make bench`{' (quick mode: too few samples to quote)' if quick else ''}; "
        "compare within a run.",
        "",
        targets,
    ]
    if not full:
        return "\n".join(lines)
    lines += [
        "| benchmark | tool | metric | value | unit | note |",
        "|---|---|---|---:|---|---|",
    ]
    for r in rows:
        note = str(r.get("note", "")).replace("|", "/")
        lines.append(
            f"| {r['benchmark']} | {r['tool']} | {r['metric']} | {_value(r)} | {r['unit']} | {note} |"
        )
    return "\n".join(lines) + "\n"


def chart(rows: list[dict], path: Path) -> bool:
    """Bar chart of log-call p50 for traindash and its peers (log scale)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    calls = [
        r
        for r in rows
        if r["metric"] == "p50"
        and r["unit"] == "us"
        and r.get("value")
        and r["benchmark"] in ("log_call", "peers")
    ]
    if not calls:
        return False
    seen: dict[str, float] = {}
    for r in calls:
        seen.setdefault(r["tool"], r["value"])
    tools = sorted(seen, key=seen.get)  # type: ignore[arg-type]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(tools) + 1.2))
    colors = ["#00c2a8" if "traindash" in t else "#8a8f98" for t in tools]
    ax.barh(tools, [seen[t] for t in tools], color=colors)
    ax.set_xscale("log")
    ax.set_xlabel("p50 cost of logging one episode (µs, log scale) — lower is better")
    for i, t in enumerate(tools):
        ax.text(seen[t] * 1.1, i, f"{seen[t]:.3g} µs", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def update_readme(table: str, readme: Path = ROOT / "README.md") -> bool:
    text = readme.read_text()
    if START not in text or END not in text:
        return False
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{table}{END}{tail}")
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller runs, for a smoke check")
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(MODULES)}")
    ap.add_argument("--no-readme", action="store_true", help="do not rewrite the READMEs' tables")
    args = ap.parse_args()
    wanted = args.only.split(",") if args.only else list(MODULES)
    unknown = set(wanted) - set(MODULES)
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    rows: list[dict] = []
    for name in wanted:
        print(f"== {name}", flush=True)
        t0 = time.monotonic()
        try:
            module = importlib.import_module(name)
            got = module.run(quick=args.quick)
        except Exception as exc:
            traceback.print_exc()
            got = [
                {
                    "benchmark": name,
                    "tool": "-",
                    "metric": "error",
                    "value": None,
                    "unit": "",
                    "note": f"{type(exc).__name__}: {exc}"[:200],
                }
            ]
        for r in got:
            print(
                f"   {r['tool']:<40} {r['metric']:<28} {_value(r):>12} {r['unit']:<7} {r.get('note', '')}",
                flush=True,
            )
        print(f"   ({time.monotonic() - t0:.0f} s)", flush=True)
        rows += got
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    meta = {
        "when": stamp,
        "quick": args.quick,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    (BENCH / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    table = markdown(rows, stamp, args.quick)
    (BENCH / "results.md").write_text(table)
    if chart(rows, ROOT / "docs" / "bench_log_call.png"):
        print("wrote docs/bench_log_call.png")
    # The front door shows the targets; bench/README.md keeps every row.
    if not args.no_readme and update_readme(markdown(rows, stamp, args.quick, full=False)):
        print("updated the targets table in README.md")
    if not args.no_readme and update_readme(table, BENCH / "README.md"):
        print("updated the full table in bench/README.md")
    summary, missed = targets_markdown(rows)
    print(summary)
    print(f"{missed} target(s) missed" if missed else "every measured target met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
