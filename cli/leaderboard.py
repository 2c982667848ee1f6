"""``traindash leaderboard``: runs ranked by their best value of one metric."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pyarrow as pa

from traindash.cli.common import add_read_options, file_block, flags, render
from traindash.config import CollectorConfig, ProducerConfig

HELP = "rank runs by their best value of a metric (highest first; lowest for drawdown and loss)"


def tracker(args: argparse.Namespace) -> Any:
    """An ExperimentTracker reading through the endpoints and DB these options name."""
    from traindash.producer.experiment_tracker import ExperimentTracker

    cfg = CollectorConfig.resolve(flags(args), None, file_block(args))
    return ExperimentTracker(
        config=ProducerConfig(endpoints=cfg.endpoints), db=Path(cfg.db), timeout=args.timeout
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--metric",
        default="profit",
        help="an episodes column: profit, sharpe, win_rate, drawdown, num_trades or a "
        "custom metric (default profit)",
    )
    p.add_argument("--top", type=int, default=10, metavar="N", help="show the top N runs (default 10)")
    add_read_options(p)


def run(args: argparse.Namespace) -> int:
    rows = tracker(args).get_leaderboard(metric=args.metric, top_n=args.top)
    metric = args.metric
    table = [
        {
            "rank": r["rank"],
            "exp_id": r["exp_id"],
            "experiment": r["experiment"],
            "status": r["status"],
            "episodes": r["episodes"],
            f"best_{metric}": r["value"],
            "at_episode": r["best_episode"],
            f"mean_{metric}": r["mean"],
            "hyperparameters": r["hyperparameters"],
        }
        for r in rows
    ]
    render(pa.Table.from_pylist(table) if table else pa.table({"rank": []}), args.format)
    return 0
