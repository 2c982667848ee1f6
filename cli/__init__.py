"""The ``traindash`` command line. Each subcommand lives in its own module.

The top layer of the house: it may import every other package; each subcommand module is
imported only when the parser is built, so ``traindash --help`` stays quick.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from traindash import __version__

# name -> module with HELP, add_arguments(parser) and run(args) -> int
COMMANDS: dict[str, str] = {
    "collector": "traindash.cli.collector",
    "sql": "traindash.cli.sql",
    "demo": "traindash.cli.demo",
    "replay": "traindash.cli.replay",
    "status": "traindash.cli.status",
    "keys": "traindash.cli.keys",
    "runs": "traindash.cli.runs",
    "leaderboard": "traindash.cli.leaderboard",
    "compare": "traindash.cli.compare",
    "export": "traindash.cli.export",
    "alerts": "traindash.cli.alerts",
    "ui": "traindash.cli.ui",
    "dashboard": "traindash.cli.dashboard",
    "top": "traindash.cli.top",
    "import": "traindash.cli.importer",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="traindash",
        description="Real-time monitoring for RL training runs: trainers publish over ZeroMQ, "
        "a collector writes DuckDB, a Panel dashboard and an alerts process follow.",
    )
    parser.add_argument("--version", action="version", version=f"traindash {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    from traindash.collector.service import CollectorError
    from traindash.errors import USER_ERRORS

    errors: tuple[type[BaseException], ...] = (*USER_ERRORS, CollectorError)
    try:
        return int(args._module.run(args) or 0)
    except errors as exc:
        print(f"traindash {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
