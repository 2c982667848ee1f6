"""``traindash collector``: run the collector (the only process that opens the DuckDB file)."""

from __future__ import annotations

import argparse

from traindash.cli.common import add_config, add_db, add_endpoints, file_block, flags
from traindash.config import CollectorConfig

HELP = "run the collector: ingest from trainers, write DuckDB, serve acks, rows and SQL"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_db(p)
    add_endpoints(p)
    p.add_argument(
        "--max-message-bytes", type=int, metavar="N", help="largest ingest message accepted (default 64 MiB)"
    )
    p.add_argument(
        "--query-timeout", type=float, metavar="S", help="cancel a SQL query after S seconds (default 30)"
    )
    p.add_argument(
        "--curve-secret",
        metavar="FILE",
        help="collector's CURVE secret certificate (from `traindash keys`); with "
        "--curve-allow, every socket requires CURVE (env TRAINDASH_CURVE_SECRET)",
    )
    p.add_argument(
        "--curve-allow",
        metavar="DIR",
        help="directory of allowed client public keys (*.key); others are refused "
        "and logged (env TRAINDASH_CURVE_ALLOW)",
    )
    add_config(p)


def run(args: argparse.Namespace) -> int:
    from traindash.collector.service import Collector

    cfg = CollectorConfig.resolve(flags(args), None, file_block(args))
    collector = Collector(cfg)
    collector.install_signal_handlers()
    collector.run()
    return 0
