"""``traindash export``: a table's rows (optionally of some runs) to JSON lines, CSV or Parquet."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from traindash.cli.common import add_read_options, file_block, flags, render
from traindash.config import CollectorConfig
from traindash.errors import UserError
from traindash.query import run_sql
from traindash.reports import EXPORT_TABLES, export_sql, runs_by_id_sql

HELP = "export episodes (or model_metrics, runs, alerts, scalars, system) as JSON lines, CSV or Parquet"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        metavar="PATH",
        help="file to write; default stdout for json/csv, <table>.parquet for parquet",
    )
    p.add_argument(
        "--run",
        action="append",
        dest="runs",
        metavar="ID",
        help="only rows of this run (repeatable; default every run)",
    )
    p.add_argument(
        "--table", choices=EXPORT_TABLES, default="episodes", help="what to export (default episodes)"
    )
    add_read_options(
        p,
        formats=("csv", "json", "parquet"),
        timeout=10.0,
        format_help="json (one object a line), csv or parquet (default csv)",
    )


def run(args: argparse.Namespace) -> int:
    cfg = CollectorConfig.resolve(flags(args), None, file_block(args))
    if args.runs:
        known = run_sql(runs_by_id_sql(args.runs), cfg.endpoints.query, Path(cfg.db), args.timeout)
        missing = sorted(set(args.runs) - set(known.column("run_id").to_pylist()))
        if missing:
            raise UserError(f"no run {', '.join(missing)}; see `traindash runs`")
    table = run_sql(
        export_sql(args.table, args.runs),
        cfg.endpoints.query,
        Path(cfg.db),
        args.timeout,
        max_rows=1_000_000_000,
    )
    if args.format == "parquet":
        import pyarrow.parquet as pq

        out = Path(args.out or f"{args.table}.parquet")
        pq.write_table(table, out)
    elif args.out:
        out = Path(args.out)
        with open(out, "w", newline="") as fh:
            render(table, args.format, fh)
    else:
        render(table, args.format)
        return 0
    print(f"wrote {table.num_rows} {args.table} rows to {out}", file=sys.stderr)
    return 0
