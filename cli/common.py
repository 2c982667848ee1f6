"""Options and output helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

import pyarrow as pa

from traindash import config
from traindash.output import write_csv, write_json_lines


def add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="PATH",
        help="guide-style JSON config (its 'training_dashboard' block); env TRAINDASH_CONFIG",
    )


def add_endpoints(p: argparse.ArgumentParser, *which: str) -> None:
    helps = {
        "ingest": "collector ingest endpoint (default tcp://127.0.0.1:5555; env TRAINDASH_INGEST)",
        "rows": "committed-rows/acks endpoint (default tcp://127.0.0.1:5556; env TRAINDASH_ROWS)",
        "query": "read-only SQL endpoint (default tcp://127.0.0.1:5557; env TRAINDASH_QUERY)",
    }
    for name in which or ("ingest", "rows", "query"):
        p.add_argument(f"--{name}", metavar="ENDPOINT", help=helps[name])


def add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="PATH", help="DuckDB file (default traindash.duckdb; env TRAINDASH_DB)")


def add_read_options(
    p: argparse.ArgumentParser,
    formats: tuple[str, ...] = ("table", "csv", "json"),
    format_help: str | None = None,
    timeout: float = 2.0,
) -> None:
    """--format, --timeout, --db, --query and --config: the options of every reading command."""
    p.add_argument(
        "--format",
        choices=formats,
        default=formats[0],
        help=format_help or f"output format (default {formats[0]})",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=timeout,
        metavar="S",
        help=f"how long to wait for the collector's answer; the query is cancelled then "
        f"(with no collector answering, the file is opened instead; default {timeout:g})",
    )
    add_db(p)
    add_endpoints(p, "query")
    add_config(p)


def flags(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if v is not None}


def file_block(args: argparse.Namespace) -> dict[str, Any]:
    return config.load_file(getattr(args, "config", None))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.6g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    return str(value)


def render(table: pa.Table, fmt: str, out: Any = None, max_width: int = 40) -> None:
    """Print an Arrow table as an aligned text table (rounded for reading), or as CSV or JSON
    lines through ``traindash.output`` (never rounded)."""
    out = out or sys.stdout
    if fmt == "json":
        write_json_lines(table, out)
        return
    if fmt == "csv":
        write_csv(table, out)
        return
    rows = table.to_pylist()
    names = table.column_names
    cells = [[_cell(row[n])[:max_width] for n in names] for row in rows]
    widths = [max([len(n)] + [len(r[i]) for r in cells]) for i, n in enumerate(names)]
    out.write("  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for r in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")
    out.write(f"({len(rows)} row{'s' if len(rows) != 1 else ''})\n")
