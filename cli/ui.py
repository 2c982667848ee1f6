"""``traindash ui``: the Panel dashboard server."""

from __future__ import annotations

import argparse

from traindash.cli.common import add_config, add_db, add_endpoints, file_block, flags
from traindash.config import THEMES, UIConfig
from traindash.errors import UserError

HELP = "serve the live dashboard (Panel/Bokeh) fed by the collector"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--host", metavar="ADDR", help="address to bind (default 127.0.0.1; env TRAINDASH_UI_HOST)"
    )
    p.add_argument("--port", type=int, metavar="N", help="HTTP port (default 8050; env TRAINDASH_PORT)")
    p.add_argument("--theme", choices=THEMES, help="cyberpunk, dark or light (default cyberpunk)")
    p.add_argument(
        "--update-interval",
        type=int,
        metavar="MS",
        help="how often each page applies new rows, in ms (default 2000)",
    )
    p.add_argument("--show", action="store_true", default=None, help="open a browser tab")
    p.add_argument(
        "--no-auth",
        action="store_true",
        default=None,
        help="serve off loopback without a login (otherwise TRAINDASH_UI_PASSWORD is required there)",
    )
    add_endpoints(p, "rows", "query")
    add_db(p)
    add_config(p)


def run(args: argparse.Namespace) -> int:
    cfg = UIConfig.resolve(flags(args), None, file_block(args))  # ConfigError: one line
    if cfg.update_interval < 50:
        raise UserError("--update-interval must be at least 50 ms")
    from traindash.ui.app import serve

    serve(cfg, show=bool(args.show))
    return 0
