"""``traindash status``: is the collector up, how are the runs, what was rejected or cut off."""

from __future__ import annotations

import argparse
from pathlib import Path

from traindash.cli.common import add_read_options, file_block, flags, render
from traindash.config import CollectorConfig
from traindash.query import CollectorUnavailable, QueryClient, QueryError, run_sql

HELP = (
    "show the collector's state: runs by status, rejected messages by reason, "
    "and queries refused, cut off or interrupted"
)

RUNS = (
    "SELECT status, count(*) AS runs, max(last_seen) AS last_seen FROM runs "
    "WHERE coalesce(role, 'trainer') = 'trainer' GROUP BY status ORDER BY status"
)
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
        print(f"== {title}")
        render(run_sql(sql, cfg.endpoints.query, Path(cfg.db), args.timeout), args.format)
    # The query server's counters live in the collector's memory (since it started).
    with QueryClient(cfg.endpoints.query, args.timeout) as client:
        for title, what in (("query server", "server"), ("queries since the collector started", "counters")):
            print(f"== {title}")
            try:
                render(client.stats(what), args.format)
            except CollectorUnavailable:
                print("(no collector answers: query counters need a running collector)")
                break
            except QueryError as exc:
                print(f"(the collector did not report them: {exc})")
                break
    return 0
