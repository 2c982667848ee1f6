"""``traindash compare --group-by ...``: groups of runs (seeds of one configuration) side by side.

Not a subcommand of its own: ``traindash compare`` adds these options and hands over here
when ``--group-by`` is given. The numbers come from :func:`traindash.aggregate.compare`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow as pa

from traindash.aggregate import (
    BAND_REPS,
    DEFAULT_POINTS,
    FINAL_WINDOW,
    REPS,
    STATS,
    X_AXES,
    Comparison,
    ci_text,
    compare,
)
from traindash.cli.common import file_block, flags, render
from traindash.config import CollectorConfig
from traindash.query import CollectorUnavailable, QueryClient, query_file

SHOW = ("groups", "pairs", "curves", "runs")
QUERY_TIMEOUT = 120.0  # an aggregation over millions of episodes takes seconds on a busy host


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("groups of runs (seeds and sweeps; docs/seeds.md)")
    g.add_argument(
        "--group-by",
        nargs="?",
        const="",
        metavar="KEYS",
        help="compare groups of runs instead of single runs: by every hyperparameter but the seed "
        "(no value), by the hyperparameter keys given (lr,gamma), or by tag (tag)",
    )
    g.add_argument("--x", choices=X_AXES, default="episode", help="the curves' x axis (default episode)")
    g.add_argument(
        "--stat", choices=STATS, default="iqm", help="statistic of the curves across runs (default iqm)"
    )
    g.add_argument("--task", metavar="KEY", help="hyperparameter naming the task: the bootstrap's strata")
    g.add_argument("--experiment", action="append", metavar="NAME", help="only runs of this experiment")
    g.add_argument(
        "--show",
        choices=SHOW,
        default="groups",
        help="groups (final performance; the table format adds the pairs), pairs (probability of "
        "improvement), curves (each group's curve and band) or runs (each run's final score)",
    )
    g.add_argument(
        "--points", type=int, default=DEFAULT_POINTS, metavar="N", help="grid points (default 1000)"
    )
    g.add_argument(
        "--final-window",
        type=float,
        default=FINAL_WINDOW,
        metavar="F",
        help="final score: mean over the last F of the group's common x range (default 0.1)",
    )
    g.add_argument(
        "--gamma", type=float, default=1.0, metavar="G", help="optimality gap threshold (default 1)"
    )
    g.add_argument(
        "--reps", type=int, default=REPS, metavar="N", help="bootstrap replications (default 2000)"
    )
    g.add_argument(
        "--band-reps", type=int, default=BAND_REPS, metavar="N", help="bootstrap replications of the bands"
    )
    g.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")


class Source:
    """SQL through the collector (noting a result cut at its row cap), else the file read-only."""

    def __init__(self, endpoint: str, db: Path, timeout: float) -> None:
        self.client: QueryClient | None = QueryClient(endpoint, timeout)
        self.db = db
        self.last_truncated = False
        try:
            self.client.query("SELECT 1")
            self.client.timeout = max(timeout, QUERY_TIMEOUT)
        except CollectorUnavailable:
            self.close()

    def query(self, sql: str) -> pa.Table:
        if self.client is None:
            return query_file(self.db, sql)
        table = self.client.query(sql)
        self.last_truncated = self.client.last_truncated
        return table

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


def groups_table(result: Comparison) -> pa.Table:
    """The final-performance table as a person reads it: intervals next to their estimates."""
    rows = [
        {
            "group": r["group"],
            "N": r["n"],
            "running": r["running"],
            f"{result.x_axis}_final": r["x_final"],
            "IQM [95% CI]": ci_text(r["iqm"], r["iqm_low"], r["iqm_high"]),
            "mean": r["mean"],
            "median": r["median"],
            "optimality gap [95% CI]": ci_text(r["optimality_gap"], r["gap_low"], r["gap_high"]),
        }
        for r in result.final().to_pylist()
    ]
    return pa.Table.from_pylist(rows)


def run(args: argparse.Namespace) -> int:
    if args.metrics and len(args.metrics) > 1:
        raise ValueError("--group-by compares one metric at a time; give --metric once")
    cfg = CollectorConfig.resolve(flags(args), None, file_block(args))
    source = Source(cfg.endpoints.query, Path(cfg.db), args.timeout)
    try:
        result = compare(
            source,
            group_by=args.group_by or None,
            task=args.task,
            x=args.x,
            metric=args.metrics[0] if args.metrics else None,
            stat=args.stat,
            run_ids=args.run_ids or None,
            experiments=args.experiment,
            points=args.points,
            final_window=args.final_window,
            gamma=args.gamma,
            reps=args.reps,
            band_reps=args.band_reps,
            seed=args.seed,
        )
    finally:
        source.close()
    show = {
        "groups": result.final,
        "pairs": result.improvement,
        "curves": result.curves,
        "runs": result.run_scores,
    }
    if args.format != "table" or args.show != "groups":
        render(show[args.show](), args.format)
        return 0
    metrics = sorted({g.metric for g in result.groups if g.runs}) or ["-"]
    print(
        f"metric {', '.join(metrics)} against {result.x_axis}; a run's final score is its mean over the last "
        f"{args.final_window:.0%} of its group's common range; {args.reps} bootstrap replications"
    )
    render(groups_table(result), "table")
    pairs = result.improvement()
    if pairs.num_rows:
        print("\nprobability of improvement, P(X > Y)")
        render(pairs, "table")
    return 0
