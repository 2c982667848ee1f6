"""``traindash compare``: runs side by side (best, mean and final value of each metric)."""

from __future__ import annotations

import argparse

import pyarrow as pa

from traindash.cli import grouped
from traindash.cli.common import add_read_options, render
from traindash.cli.leaderboard import tracker
from traindash.reports import comparison_rows

HELP = "compare runs side by side: best/mean/final of each metric and their hyperparameters"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "run_ids",
        nargs="*",
        metavar="ID",
        help="run (experiment) ids, see `traindash runs` (all with --group-by)",
    )
    p.add_argument(
        "--metric",
        action="append",
        dest="metrics",
        metavar="NAME",
        help="compare only this metric (repeatable; default profit, sharpe, win_rate, "
        "drawdown, num_trades and custom metrics)",
    )
    add_read_options(p)
    grouped.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    if args.group_by is not None:
        return grouped.run(args)
    if not args.run_ids:
        raise ValueError("name the runs to compare, or compare groups of runs with --group-by")

    comparison = tracker(args).compare_experiments(args.run_ids, args.metrics)
    if args.format == "table":
        # one line per metric and run reads better in a terminal than one very wide row per run
        rows = []
        for metric, per in comparison["metrics"].items():
            for exp_id, v in per.items():
                rows.append(
                    {
                        "metric": metric,
                        "exp_id": exp_id,
                        "best": v["best"],
                        "mean": v["mean"],
                        "final": v["final"],
                        "winner": "*" if comparison["best"].get(metric) == exp_id else "",
                    }
                )
        hp = [
            {"exp_id": i, **{k: per.get(i) for k, per in comparison["hyperparameters"].items()}}
            for i in comparison["experiments"]
        ]
        render(pa.Table.from_pylist(rows), "table")
        if comparison["hyperparameters"]:
            print()
            render(pa.Table.from_pylist(hp), "table")
        return 0
    render(pa.Table.from_pylist(comparison_rows(comparison)), args.format)
    return 0
