"""What every page shares: the server's context, the page frame and session clean-up.

Pages take these from here, never from ``app``, which assembles the pages.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import panel as pn
import zmq

from traindash.config import UIConfig
from traindash.query import QueryClient, QueryError
from traindash.reports import stream_table_sql, trainer_table_sql
from traindash.ui.feed import RowsFeed
from traindash.ui.fleet import add_streams
from traindash.ui.history import History, alerts_sql, fetch_history, fetch_window
from traindash.ui.render import css, nav_html
from traindash.ui.system import add_gpu_util
from traindash.ui.themes import Theme, get_theme

log = logging.getLogger(__name__)

QUERY_TIMEOUT = 30.0
TABLE_TIMEOUT = 5.0


@dataclass
class AppContext:
    """What every session of one server process shares: config and the rows feed."""

    config: UIConfig
    feed: RowsFeed
    zmq_ctx: zmq.Context = field(default_factory=zmq.Context.instance)
    pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=4, thread_name_prefix="traindash-history")
    )

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Run blocking collector I/O on a worker; sessions apply the result on a later tick."""
        return self.pool.submit(fn, *args)

    def fetch_tables(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Runs (with rates) and the newest alerts, for the trainer table and alert feed."""
        with self.client() as client:
            runs = client.query(trainer_table_sql(), timeout=TABLE_TIMEOUT).to_pylist()
            add_gpu_util(client, runs, TABLE_TIMEOUT)
            try:
                streams = client.query(stream_table_sql(), timeout=TABLE_TIMEOUT).to_pylist()
            except QueryError:
                streams = []  # a database from before streams
            add_streams(runs, streams)
            try:
                alerts = client.query(alerts_sql([]), timeout=TABLE_TIMEOUT).to_pylist()
            except QueryError:
                alerts = []  # the alerts table may not exist on an older database
        return runs, alerts

    def fetch_windows(self, run_ids: list[str], lo: float, hi: float) -> dict[str, Any]:
        """Finer history of ``[lo, hi]`` (episodes) for each run."""
        with self.client() as client:
            return {r: fetch_window(client, r, "episodes", lo, hi) for r in run_ids}

    def prefetch(self, run_ids: list[str]) -> dict[str, Future]:
        """Start fetching the history of runs on worker threads (each with its own socket)."""

        def fetch(run_id: str) -> History:
            started = time.perf_counter()
            with self.client() as client:
                h = fetch_history(client, run_id)
            log.debug(
                "history of %s (%d rows shown of %d) in %.3f s",
                run_id,
                len(h.episodes["seq"]),
                h.total_episodes,
                time.perf_counter() - started,
            )
            return h

        return {run_id: self.pool.submit(fetch, run_id) for run_id in run_ids}

    def client(self, lane: str = "service") -> QueryClient:
        """A query client for one session (ZeroMQ sockets are not shared between threads).

        The dashboard's own queries use the service lane; SQL a person types, the console lane.
        """
        return QueryClient(self.config.endpoints.query, timeout=QUERY_TIMEOUT, ctx=self.zmq_ctx, lane=lane)

    def session_theme(self) -> Theme:
        """The server's theme, unless the page was opened with ``?theme=...``."""
        args = pn.state.session_args or {}
        raw = args.get("theme", [b""])[0]
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        try:
            return get_theme(name) if name else get_theme(self.config.theme)
        except ValueError:
            return get_theme(self.config.theme)

    def theme_query(self, theme: Theme) -> str:
        return "" if theme.name == self.config.theme else f"?theme={theme.name}"


def shell(ctx: AppContext, theme: Theme, active: str, *body: Any, header_extra: Any = None) -> pn.Column:
    """The page frame: theme background, title and navigation, then ``body``."""
    pn.config.theme = theme.panel_theme  # type: ignore[misc]  # session-local in Panel
    header = pn.Row(
        pn.pane.HTML(
            nav_html(active, theme, ctx.theme_query(theme)),
            stylesheets=[css(theme)],
            sizing_mode="stretch_width",
        ),
        *([header_extra] if header_extra is not None else []),
        sizing_mode="stretch_width",
        margin=(4, 8),
    )
    return pn.Column(
        header,
        *body,
        sizing_mode="stretch_width",
        styles={
            "background": theme.page_bg,
            "color": theme.fg,
            "padding": "6px 14px 24px 14px",
            "min-height": "100vh",
        },
    )


def on_destroy(cleanup: Callable[[], None]) -> None:
    """Run ``cleanup`` when the current session ends."""

    def _destroyed(_session_context: Any) -> None:
        try:
            cleanup()
        except Exception:  # a failing cleanup must not break the server's own
            log.exception("session cleanup failed")

    pn.state.on_session_destroyed(_destroyed)
