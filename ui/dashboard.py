"""The guide's ``TrainingDashboard``: the embedded way to open a live dashboard."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from traindash.config import DEFAULT_PORT, CollectorConfig, load_file
from traindash.ui.processes import Children, port_in_use, start_dashboard
from traindash.ui.themes import get_theme

log = logging.getLogger(__name__)


class TrainingDashboard:
    """Real-time web dashboard for a training run, as in the guide.

    ``start()`` is the embedded default: when no collector answers on the logger's query
    endpoint it starts one (a ``traindash collector`` child process on the logger's
    endpoints, writing the DuckDB file every traindash process would use: ``TRAINDASH_DB``,
    else ``collector.db`` of the ``TRAINDASH_CONFIG`` file, else ``traindash.duckdb`` in the
    current folder), then starts the ui server (``traindash ui``) as a child process on
    ``port``. ``stop()`` ends only the processes this object started; a collector that was
    already running is left alone.

    Args:
        metrics_logger: the run's ``MetricsLogger``; its ``config.endpoints`` say where the
            collector is, its ``output_dir`` holds the child processes' logs.
        port: HTTP port of the dashboard (http://127.0.0.1:<port>).
        update_interval: how often the page applies new rows, in ms (2000-5000 is good).
        theme: 'cyberpunk', 'dark' or 'light'.
        host: address the ui binds; loopback by default.
    """

    def __init__(
        self,
        metrics_logger: Any,
        port: int = DEFAULT_PORT,
        update_interval: int = 2000,
        theme: str = "cyberpunk",
        host: str = "127.0.0.1",
    ) -> None:
        get_theme(theme)  # a clear ValueError for an unknown theme, before anything starts
        if not isinstance(update_interval, int) or update_interval < 50:
            raise ValueError("update_interval must be an integer number of ms, at least 50")
        if not 0 < int(port) < 65536:
            raise ValueError(f"port {port} is out of range")
        self.metrics_logger = metrics_logger
        self.port = int(port)
        self.update_interval = update_interval
        self.theme = theme
        self.host = host
        self.endpoints = metrics_logger.config.endpoints
        self._children = Children(Path(getattr(metrics_logger, "output_dir", "training_logs")))
        self.started_collector = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self, blocking: bool = False) -> None:
        """Start the dashboard; with ``blocking=True`` serve until Ctrl-C, then stop."""
        if self.is_running():
            return
        if port_in_use(self.host, self.port):
            raise RuntimeError(f"port {self.port} is already in use; pass another port")
        try:
            db = CollectorConfig.resolve(None, None, load_file(None)).db.absolute()
            self.started_collector = start_dashboard(
                self._children, self.endpoints, db, self.host, self.port, self.theme, self.update_interval
            )
        except BaseException:
            self.stop()
            raise
        log.info("training dashboard at %s", self.url)
        if blocking:
            try:
                while self.is_running():
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass
            finally:
                self.stop()

    def stop(self) -> None:
        """Stop the ui and, if this object started it, the collector."""
        self._children.stop()
        self.started_collector = False

    def is_running(self) -> bool:
        """True while the ui server this object started is alive."""
        return self._children.alive("ui")

    def pids(self) -> list[int]:
        """Process ids of the children this dashboard started and that are still alive."""
        return [p.pid for _n, p in self._children.procs if p.poll() is None]

    def __enter__(self) -> TrainingDashboard:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
