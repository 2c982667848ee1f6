"""``traindash replay``: send a run's spool file to the collector by hand."""

from __future__ import annotations

import argparse
from pathlib import Path

from traindash.cli.common import add_config, add_endpoints, file_block, flags
from traindash.config import ProducerConfig
from traindash.errors import UserError

HELP = "re-send a spool file (records a trainer logged but no collector acknowledged)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", type=Path, help="a <run_id>.spool file from a trainer's output_dir")
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="how long to wait for the collector's acknowledgement (default 30)",
    )
    add_endpoints(p, "ingest", "rows")
    add_config(p)


def run(args: argparse.Namespace) -> int:
    from traindash.producer.replay import replay

    path: Path = args.path
    if not path.is_file():
        raise UserError(f"{path} is not a spool file")
    cfg = ProducerConfig.resolve(flags(args), None, file_block(args))
    sent, acked, total = replay(path, cfg, args.timeout)
    print(f"{path}: {sent} batches, {total} records; collector acknowledged up to seq {acked}")
    return 0 if sent == 0 or acked >= total else 1
