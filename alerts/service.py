"""The alerts service: committed rows in, rules applied per run, alerts out to Slack/email.

It subscribes to the collector's rows socket (run, episode, model and end sections), polls
``runs.status`` through the query socket for stalled/lost trainers, hands alerts to the
:class:`~alerts.channels.Dispatcher` (worker threads) and publishes each one, with the
channels it reached, through a role="alerts" MetricsLogger. Runs with role "alerts" are
ignored. Shutdown is a flag (SIGTERM/SIGINT) the loop checks; a second signal skips the
drain.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from traindash import security, wire
from traindash.alerts.channels import Dispatcher
from traindash.alerts.config import AlertsConfig
from traindash.alerts.record import AlertRecorder
from traindash.alerts.rules import Alert, RuleEngine
from traindash.alerts.system import build_channels
from traindash.query import QueryClient, QueryError, sql_literal
from traindash.shutdown import GracefulExit
from traindash.wire import RecordKind

log = logging.getLogger("traindash.alerts")

POLL_MS = 100
MAX_MESSAGES_PER_TICK = 1000
CONNECT_WAIT = 5.0
# Process managers (honcho, systemd) allow a few seconds after SIGTERM: deliver what is
# queued within that, and leave unacknowledged alert records in the spool.
DRAIN_TIMEOUT = 3.0
RECORD_CLOSE_TIMEOUT = 1.0
RCVHWM = 100_000
_Q_SUMMARY = ("q_mean", "q_std", "q_min", "q_max")
_SUBSCRIBE = (RecordKind.RUN, RecordKind.EPISODE, RecordKind.MODEL, RecordKind.END)


def section_rows(section: wire.Section) -> list[dict[str, Any]]:
    """The rows of a section as dicts of plain values (``extra`` dicts are left out)."""
    cols = {
        k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in section.cols.items() if k != "extra"
    }
    return [{k: v[i] for k, v in cols.items()} for i in range(len(section))]


def clean_model_row(row: dict[str, Any]) -> dict[str, Any]:
    """Drop what the wire fills with NaN for "not logged": the Q summary when no Q-values
    were logged, gradient stats when no gradients were (a NaN gradient looks the same)."""
    if row.get("q_values") is None:
        for k in _Q_SUMMARY:
            row.pop(k, None)
    for k in ("grad_mean", "grad_std"):
        v = row.get(k)
        if isinstance(v, float) and math.isnan(v):
            row.pop(k)
    return row


class AlertsService(GracefulExit):
    """Applies the rules to every trainer run the collector reports and delivers the alerts."""

    def __init__(self, config: AlertsConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.engine = RuleEngine(
            config.thresholds, config.cooldown_seconds, config.rules, config.new_best_min_episodes
        )
        self.recorder = AlertRecorder(
            config.endpoints, config.output_dir, require_collector=True, close_timeout=RECORD_CLOSE_TIMEOUT
        )
        self.channels = build_channels(config) if config.enabled else []
        self.dispatcher = Dispatcher(
            self.channels,
            self.recorder.record,
            storm_threshold=config.storm_threshold,
            batch_window=config.batch_window,
            max_attempts=config.max_attempts,
            retry_backoff=config.retry_backoff,
        )
        self.should_exit = False
        self.force_exit = False
        self.raised = 0
        self._statuses_seeded = False
        self._query_warned = False

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> None:
        ctx = zmq.Context()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        security.secure_client(sub)  # CURVE keys from TRAINDASH_CURVE_* when configured
        # Rule evaluation keeps up with normal traffic; a deep queue rides out bursts.
        sub.setsockopt(zmq.RCVHWM, RCVHWM)
        for kind in _SUBSCRIBE:
            sub.setsockopt(zmq.SUBSCRIBE, wire.rows_topic(kind))
        client = QueryClient(self.config.endpoints.query, timeout=2.0, ctx=ctx, lane="service")
        try:
            self._connect(sub)
            self.recorder.start_run()
            channels = ", ".join(c.name for c in self.channels) or "none (alerts are only recorded)"
            log.info("alerts: following %s; channels: %s", self.config.endpoints.rows, channels)
            next_poll = 0.0
            while not self.should_exit:
                if sub.poll(POLL_MS):
                    for _ in range(MAX_MESSAGES_PER_TICK):
                        try:
                            frames = sub.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self.handle_frames(frames)
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + self.config.status_poll_interval
                    self.poll_status(client)
        finally:
            sub.close(0)
            client.close()
            ctx.term()
            self._drain()
            self.recorder.close()
            log.info("alerts: stopped after raising %d alerts", self.raised)

    def _drain(self) -> None:
        """Deliver what is queued, up to DRAIN_TIMEOUT; a second signal cuts it short."""
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while not self.force_exit and time.monotonic() < deadline:
            if self.dispatcher.flush(0.2):
                break
        if not self.dispatcher.close(0.5):
            log.warning("alerts: gave up delivering some alerts at shutdown")

    def _connect(self, sub: zmq.Socket) -> None:
        """Connect and wait (bounded) for the handshake, so rows published next are not missed."""
        monitor = sub.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        try:
            sub.connect(self.config.endpoints.rows)
            deadline = time.monotonic() + CONNECT_WAIT
            while time.monotonic() < deadline and not self.should_exit:
                if monitor.poll(100):
                    recv_monitor_message(monitor)
                    return
            log.warning(
                "alerts: no collector at %s yet; will follow it when it starts", self.config.endpoints.rows
            )
        finally:
            sub.disable_monitor()
            monitor.close(0)

    # -- inputs (also driven directly by tests) --------------------------------------------------
    def handle_frames(self, frames: list[bytes]) -> None:
        try:
            msg = wire.decode(frames)
        except wire.WireError as exc:
            log.warning("alerts: skipped a malformed message: %s", exc)
            return
        if isinstance(msg, wire.Rows):
            self.handle_rows(msg.run_id, msg.section)

    def handle_rows(self, run_id: str, section: wire.Section) -> None:
        kind = section.kind
        engine = self.engine
        for row in section_rows(section):
            now = self.clock()
            if kind is RecordKind.RUN:
                alerts = engine.on_run(run_id, row, now)
            elif kind is RecordKind.EPISODE:
                alerts = engine.on_episode(run_id, row, now)
            elif kind is RecordKind.MODEL:
                alerts = engine.on_model(run_id, clean_model_row(row), now)
            elif kind is RecordKind.END:
                if run_id not in engine.runs:
                    self._learn_role(run_id)
                alerts = engine.on_end(run_id, row, now)
            else:
                continue
            self.emit(alerts)

    def poll_status(self, client: QueryClient) -> None:
        """Feed ``runs.status`` to the liveness rules (the first poll only sets a baseline)."""
        try:
            table = client.query(
                "SELECT run_id, status, coalesce(role, 'trainer') AS role, name "
                "FROM runs WHERE status IS NOT NULL"
            )
        except QueryError as exc:
            if not self._query_warned:
                self._query_warned = True
                log.warning("alerts: cannot read runs.status: %s", exc)
            return
        self._query_warned = False
        now = self.clock()
        for row in table.to_pylist():
            run_id, status, role, name = row["run_id"], row["status"], row["role"], row["name"]
            if not self._statuses_seeded:
                st = self.engine.state(run_id)
                st.role, st.status = role, status
                st.name = st.name or name
                st.ended = status in ("finished", "crashed")
                continue
            self.emit(self.engine.on_status(run_id, status, now, role=role, name=name))
        self._statuses_seeded = True

    def _learn_role(self, run_id: str) -> None:
        try:
            with QueryClient(self.config.endpoints.query, timeout=1.0, lane="service") as client:
                table = client.query(
                    f"SELECT coalesce(role, 'trainer') AS role, name FROM runs "
                    f"WHERE run_id = {sql_literal(run_id)}"
                )
        except QueryError:
            return
        if table.num_rows:
            st = self.engine.state(run_id)
            st.role = table.column(0)[0].as_py()
            st.name = st.name or table.column(1)[0].as_py()

    def emit(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            self.raised += 1
            log.info("alerts: %s %s for %s: %s", alert.level, alert.rule, alert.run_id, alert.message)
            if self.config.enabled:
                self.dispatcher.submit(alert)
