"""``traindash sql``: read-only SQL through the collector, or the file when none runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from traindash.cli.common import add_read_options, file_block, flags, render
from traindash.config import CollectorConfig
from traindash.query import run_sql

HELP = "run a read-only SQL query (through the collector, else the DuckDB file)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sql", metavar="SQL", help='one SELECT statement, e.g. "SELECT * FROM runs"')
    p.add_argument(
        "--max-rows", type=int, default=100_000, metavar="N", help="return at most N rows (default 100000)"
    )
    add_read_options(p)


def run(args: argparse.Namespace) -> int:
    cfg = CollectorConfig.resolve(flags(args), None, file_block(args))
    table = run_sql(args.sql, cfg.endpoints.query, Path(cfg.db), args.timeout, args.max_rows)
    render(table, args.format)
    if table.num_rows >= args.max_rows:
        print(f"traindash sql: stopped at --max-rows {args.max_rows}", file=sys.stderr)
    return 0
