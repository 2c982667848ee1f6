"""``traindash keys``: make CURVE key pairs for the collector and remote trainers."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "make CURVE key pairs (collector and trainers) for publishing across machines"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "names", nargs="+", metavar="NAME", help="one key pair per name, e.g. collector trainer-a trainer-b"
    )
    p.add_argument(
        "--dir",
        type=Path,
        default=Path("keys"),
        help="where to write NAME.key and NAME.key_secret (default ./keys)",
    )


def run(args: argparse.Namespace) -> int:
    from traindash.security import make_keys

    for name in args.names:
        public, secret = make_keys(args.dir, name)
        print(f"{name}: public {public}  secret {secret}")
    print(
        "\nCollector:  traindash collector --ingest tcp://0.0.0.0:5555 --rows tcp://0.0.0.0:5556 "
        "--query tcp://0.0.0.0:5557 \\\n"
        "              --curve-secret KEYS/collector.key_secret --curve-allow DIR_OF_TRAINER_KEYS"
    )
    print(
        "Trainers:   TRAINDASH_CURVE_CLIENT=KEYS/trainer.key_secret TRAINDASH_CURVE_SERVER=KEYS/collector.key"
    )
    return 0
