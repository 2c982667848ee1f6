"""Publishing alerts back to the collector, so they land in the ``alerts`` table.

A role="alerts" :class:`producer.MetricsLogger` carries them like any producer's records.
Recording runs on its own thread: finding out whether a collector answers (a short query
with a timeout) never happens on the caller's thread, and without a collector nothing is
kept beyond a warning.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

from traindash.alerts.rules import Alert
from traindash.config import Endpoints, ProducerConfig
from traindash.producer import MetricsLogger
from traindash.query import QueryClient, QueryError
from traindash.wire import RecordKind

log = logging.getLogger("traindash.alerts")

PROBE_TIMEOUT = 0.5
REPROBE_AFTER = 30.0
_START = object()


class AlertRecorder:
    """Queues delivered alerts and publishes them through a role="alerts" MetricsLogger."""

    def __init__(
        self,
        endpoints: Endpoints,
        output_dir: Path,
        *,
        name: str = "traindash.alerts",
        require_collector: bool = False,
        close_timeout: float = 5.0,
    ) -> None:
        self.endpoints = endpoints
        self.output_dir = output_dir
        self.name = name
        self.require_collector = require_collector
        self.close_timeout = close_timeout
        self.recorded = 0
        # items: (alert, channels, errors), _START, or None to stop
        self._queue: queue.Queue[Any] = queue.Queue()
        self._logger: MetricsLogger | None = None
        self._next_probe = 0.0
        self._warned = False
        self._thread = threading.Thread(target=self._work, daemon=True, name="traindash-alerts-record")
        self._thread.start()

    def record(self, alert: Alert, channels: list[str], errors: dict[str, str]) -> None:
        """Queue one alert with the channels it reached; returns at once."""
        self._queue.put((alert, channels, errors))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until queued alerts are published and acknowledged by the collector."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        if self._queue.unfinished_tasks:
            return False
        lg = self._logger
        return lg is None or lg.flush(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Publish what is queued, then close the logger (waiting, bounded, for the collector)."""
        self._queue.put(None)
        self._thread.join(self.close_timeout + 5)

    def start_run(self) -> None:
        """Register the alerts run with the collector now rather than at the first alert."""
        self._queue.put(_START)

    @property
    def run_id(self) -> str | None:
        return self._logger.run_id if self._logger is not None else None

    def _reachable(self) -> bool:
        if self.require_collector:
            return True
        now = time.monotonic()
        if now < self._next_probe:
            return False
        try:
            with QueryClient(self.endpoints.query, timeout=PROBE_TIMEOUT, lane="service") as client:
                client.query("SELECT 1")
            return True
        except (QueryError, OSError):
            self._next_probe = now + REPROBE_AFTER
            if not self._warned:
                self._warned = True
                log.warning(
                    "alerts: no collector answers at %s; alerts are sent but not recorded",
                    self.endpoints.query,
                )
            return False

    def _get_logger(self) -> MetricsLogger | None:
        if self._logger is None and self._reachable():
            cfg = ProducerConfig(endpoints=self.endpoints, close_timeout=self.close_timeout)
            self._logger = MetricsLogger(
                self.name,
                output_dir=str(self.output_dir),
                role="alerts",
                config=cfg,
                description="traindash alerts",
            )
        return self._logger

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                self._queue.task_done()
                break
            try:
                lg = self._get_logger()
                if lg is None or item is _START:
                    continue
                alert, channels, errors = item
                data: dict[str, Any] = dict(alert.data)
                if errors:
                    data["delivery_errors"] = errors
                fields: dict[str, Any] = dict(
                    level=alert.level,
                    rule=alert.rule,
                    title=alert.title,
                    message=alert.message,
                    data=data,
                    channels=channels,
                )
                if alert.run_id:
                    fields["run_id"] = alert.run_id
                lg.log_event(RecordKind.ALERT, **fields)
                self.recorded += 1
            except Exception:  # recording is best effort; it must never end this thread
                log.exception("alerts: could not record an alert")
            finally:
                self._queue.task_done()
        if self._logger is not None:
            self._logger.close()
