"""The ``traindash`` command line. Each subcommand lives in its own module.

This is the one place in ``traindash`` that reaches into the service packages (``ui``,
``alerts``, ``collector``): lazily, inside the chosen subcommand only.
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
    "collector": "traindash.commands.collector",
    "sql": "traindash.commands.sql",
    "demo": "traindash.commands.demo",
    "replay": "traindash.commands.replay",
    "status": "traindash.commands.status",
    "keys": "traindash.commands.keys",
    "runs": "traindash.commands.runs",
    "leaderboard": "traindash.commands.leaderboard",
    "compare": "traindash.commands.compare",
    "export": "traindash.commands.export",
    "alerts": "alerts.command",
    "ui": "ui.command",
    "dashboard": "ui.dashboard_command",
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
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from traindash.errors import USER_ERRORS

    try:
        return int(args._module.run(args) or 0)
    except USER_ERRORS as exc:
        print(f"traindash {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
