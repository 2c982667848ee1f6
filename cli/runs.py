"""``traindash runs``: the runs (experiments) the collector knows, newest first."""

from __future__ import annotations

import argparse

import pyarrow as pa

from traindash.cli.common import add_read_options, render
from traindash.cli.leaderboard import tracker

HELP = "list training runs (experiments): status, episodes, best profit, tags"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", metavar="NAME", help="only runs of this experiment")
    p.add_argument(
        "--status",
        metavar="STATUS",
        help="only runs with this status (running, finished, crashed, stalled, lost, ...)",
    )
    p.add_argument("--all", action="store_true", help="include archived runs")
    p.add_argument("--limit", type=int, default=50, metavar="N", help="show at most N runs (default 50)")
    add_read_options(p)


def run(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise ValueError("--limit must be at least 1")
    rows = tracker(args).list_experiments(include_hidden=args.all)
    if args.experiment:
        rows = [r for r in rows if r["experiment"] == args.experiment]
    if args.status:
        rows = [r for r in rows if r["status"] == args.status]
    if args.format == "table":
        for r in rows:
            r["tags"] = ",".join(r["tags"] or [])
            del r["name"]  # the experiment's name; a column of its own only in csv/json
            for key in ("started_at", "ended_at"):
                r[key] = r[key].strftime("%Y-%m-%d %H:%M:%S") if r[key] else ""
    render(pa.Table.from_pylist(rows[: args.limit]) if rows else pa.table({"exp_id": []}), args.format)
    return 0
