"""``traindash status``: is the collector up, how are the runs, what was rejected or cut off."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyarrow as pa

from traindash.cli.common import add_read_options, file_block, flags, render
from traindash.config import CollectorConfig
from traindash.query import CollectorUnavailable, QueryClient, QueryError, run_sql
from traindash.reports import status_sql

HELP = (
    "show the collector's state: runs by status, rejected messages by reason, "
    "and queries refused, cut off or interrupted"
)

RUNS = status_sql()
REJECTS = "SELECT reason, count, last_at, last_sender, last_detail FROM rejects ORDER BY count DESC"
TOTALS = (
    "SELECT (SELECT count(*) FROM episodes) AS episodes, "
    "(SELECT count(*) FROM model_metrics) AS model_metrics, "
    "(SELECT count(*) FROM alerts) AS alerts"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_read_options(p)


def run(args: argparse.Namespace) -> int:
    cfg = CollectorConfig.resolve(flags(args), None, file_block(args))
    for title, sql in (("rows", TOTALS), ("runs", RUNS), ("rejected messages", REJECTS)):
        table = run_sql(sql, cfg.endpoints.query, Path(cfg.db), args.timeout)
        if args.format == "json":  # one JSON object per line, each naming its section
            table = table.add_column(0, "section", pa.array([title] * table.num_rows, pa.string()))
        else:
            print(f"== {title}")
        render(table, args.format)
    # The query server's counters live in the collector's memory (since it started).
    with QueryClient(cfg.endpoints.query, args.timeout) as client:
        for title, what in (("query server", "server"), ("queries since the collector started", "counters")):
            if args.format != "json":
                print(f"== {title}")
            try:
                table = client.stats(what)
            except CollectorUnavailable:
                print("(no collector answers: query counters need a running collector)", file=sys.stderr)
                break
            except QueryError as exc:
                print(f"(the collector did not report them: {exc})", file=sys.stderr)
                break
            if args.format == "json":
                table = table.add_column(0, "section", pa.array([title] * table.num_rows, pa.string()))
            render(table, args.format)
    return 0
