"""The guide's launcher: ``python launch_training_dashboard.py [--demo] [--port N] [--theme T]``.

A thin wrapper over ``traindash dashboard``: starts a collector (unless one answers), the
live dashboard and, with ``--demo``, simulated trainers; Ctrl-C stops what it started.
"""

from __future__ import annotations

import argparse
import sys

from traindash.cli import main as traindash_main
from traindash.config import THEMES


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Launch the training dashboard (http://localhost:8050).")
    ap.add_argument("--demo", action="store_true", help="also run simulated trainers")
    ap.add_argument("--port", type=int, default=None, help="HTTP port (default 8050)")
    ap.add_argument("--theme", choices=THEMES, default=None, help="cyberpunk (default), dark or light")
    args, rest = ap.parse_known_args(argv)
    forwarded = ["dashboard", *rest]
    if args.demo:
        forwarded.append("--demo")
    if args.port is not None:
        forwarded += ["--port", str(args.port)]
    if args.theme is not None:
        forwarded += ["--theme", args.theme]
    return traindash_main(forwarded)


if __name__ == "__main__":
    sys.exit(main())
