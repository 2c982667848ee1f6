"""``traindash alerts``: follow the collector's rows and send Slack/email alerts."""

from __future__ import annotations

import argparse

from traindash.cli.common import add_config, add_endpoints, file_block, flags

HELP = "run the alerts process: apply thresholds and custom rules, notify Slack and email"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config(p)
    add_endpoints(p)
    p.add_argument(
        "--dashboard-url",
        metavar="URL",
        help="dashboard base URL for run links (default http://127.0.0.1:8050; env TRAINDASH_DASHBOARD_URL)",
    )
    p.add_argument(
        "--consumer",
        metavar="NAME",
        help="name this process keeps its watermarks under (default traindash.alerts)",
    )
    p.add_argument(
        "--from-start",
        action="store_true",
        default=None,
        help="with no watermarks yet, evaluate every stored row (alerts already sent are not repeated)",
    )


def run(args: argparse.Namespace) -> int:
    from traindash.alerts.config import AlertsConfig
    from traindash.alerts.expr import UnsafeExpression
    from traindash.alerts.service import AlertsService
    from traindash.errors import UserError

    cfg = AlertsConfig.resolve(flags(args), None, file_block(args))
    try:
        service = AlertsService(cfg)
    except UnsafeExpression as exc:
        raise UserError(f"custom alert rule: {exc}") from None
    service.install_signal_handlers()
    service.run()
    return 0
