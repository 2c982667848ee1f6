"""The Panel server: one shared rows feed per process, three pages, sessions cleaned up."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import panel as pn
from tornado.web import RequestHandler

from traindash.config import UIConfig
from traindash.ui.auth import auth_options, local_url
from traindash.ui.context import AppContext
from traindash.ui.feed import RowsFeed
from traindash.ui.pages.compare import compare_page
from traindash.ui.pages.live import live_page
from traindash.ui.pages.sql import sql_page
from traindash.ui.processes import http_ok
from traindash.ui.themes import get_theme


def build_pages(ctx: AppContext) -> dict[str, Callable[[], pn.viewable.Viewable]]:
    return {
        "/": lambda: live_page(ctx),
        "/compare": lambda: compare_page(ctx),
        "/sql": lambda: sql_page(ctx),
    }


class HealthHandler(RequestHandler):
    """``GET /healthz``: live sessions and rows received by this process's feed (JSON)."""

    def initialize(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def get(self) -> None:
        feed = self.ctx.feed
        self.write(
            {
                "sessions": feed.session_count,
                "rows_received": feed.received,
                "malformed": feed.malformed,
                "feed_alive": feed.is_alive(),
            }
        )


def _warm_up(base: str, timeout: float = 60.0) -> None:
    """Request each page once at startup: the first session in a process pays for imports
    and template set-up, which should not land on the first real visitor."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not http_ok(base + "/sql", timeout=10):
        time.sleep(0.1)
    for path in ("/", "/compare"):
        http_ok(base + path, timeout=30)


def serve(config: UIConfig, show: bool = False) -> None:
    """Run the ui server until interrupted (blocks)."""
    auth = auth_options(config)  # ConfigError before anything starts
    feed = RowsFeed(config.endpoints.rows)
    feed.start()
    ctx = AppContext(config, feed)
    pn.extension(raw_css=[f"body {{ margin: 0; background: {get_theme(config.theme).page_bg}; }}"])
    pages = build_pages(ctx)
    threading.Thread(target=_warm_up, args=(local_url(config),), daemon=True, name="traindash-warmup").start()
    try:
        pn.serve(
            pages,
            port=config.port,
            address=config.host,
            show=show,
            title="traindash",
            websocket_origin=[
                f"{config.host}:{config.port}",
                f"localhost:{config.port}",
                f"127.0.0.1:{config.port}",
            ],
            check_unused_sessions=2000,
            unused_session_lifetime=5000,
            print_url=True,
            extra_patterns=[("/healthz", HealthHandler, {"ctx": ctx})],
            **auth,
        )
    finally:
        feed.stop()
        ctx.pool.shutdown(wait=False, cancel_futures=True)
