"""``traindash dashboard``: collector + ui (+ demo trainers) on one machine, in one command.

The guide's ``launch_training_dashboard.py [--demo] [--port] [--theme]``.
"""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path

from traindash.cli import COMMANDS
from traindash.cli.common import add_config, add_db, add_endpoints, file_block, flags
from traindash.config import THEMES, UIConfig
from traindash.errors import UserError
from traindash.ui.processes import (
    Children,
    endpoint_env,
    endpoint_flags,
    port_in_use,
    start_dashboard,
    traindash,
)

HELP = "all-in-one: start a collector (if none runs), the dashboard and, with --demo, demo trainers"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--demo", action="store_true", help="also start simulated trainers")
    p.add_argument("--trainers", type=int, default=3, metavar="N", help="demo trainers (default 3)")
    p.add_argument(
        "--interval", type=float, default=0.2, metavar="S", help="seconds between demo episodes (default 0.2)"
    )
    p.add_argument("--no-alerts", dest="alerts", action="store_false", help="do not start the alerts process")
    p.add_argument("--port", type=int, metavar="N", help="HTTP port (default 8050)")
    p.add_argument("--host", metavar="ADDR", help="address to bind (default 127.0.0.1)")
    p.add_argument("--theme", choices=THEMES, help="cyberpunk, dark or light (default cyberpunk)")
    p.add_argument("--update-interval", type=int, metavar="MS", help="page update period (default 2000)")
    p.add_argument(
        "--no-auth",
        action="store_true",
        default=None,
        help="serve off loopback without a login (otherwise TRAINDASH_UI_PASSWORD is required there)",
    )
    p.add_argument(
        "--logs",
        default="training_logs",
        metavar="DIR",
        help="where the child processes' logs go (default training_logs)",
    )
    add_endpoints(p)
    add_db(p)
    add_config(p)


def run(args: argparse.Namespace) -> int:
    cfg = UIConfig.resolve(flags(args), None, file_block(args))  # ConfigError: one line
    from traindash.ui.auth import auth_options

    auth_options(cfg)  # a missing or weak dashboard password: one line, before anything starts
    if port_in_use(cfg.host, cfg.port):
        raise UserError(f"port {cfg.port} is already in use; pass --port")
    ep = cfg.endpoints
    children = Children(Path(args.logs))
    stop = {"now": False}

    def on_signal(_signum: int, _frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        start_dashboard(
            children, ep, cfg.db, cfg.host, cfg.port, cfg.theme, cfg.update_interval, no_auth=cfg.no_auth
        )
        url = f"http://{cfg.host}:{cfg.port}/"
        if args.alerts and "alerts" in COMMANDS:
            children.start("alerts", traindash("alerts", *endpoint_flags(ep), "--dashboard-url", url))
        if args.demo:
            children.start(
                "demo",
                traindash("demo", "--trainers", str(args.trainers), "--interval", str(args.interval)),
                env=endpoint_env(ep),
            )
        print(f"traindash dashboard at {url} (Ctrl-C stops it)", flush=True)
        while not stop["now"] and children.alive("ui"):
            time.sleep(0.2)
    finally:
        children.stop()
    return 0
